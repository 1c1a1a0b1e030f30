"""Patch embeddings: tissue detection, tiling, encoders, the feature store and the extraction engine."""
