"""Scribble-supervised segmentation with size constraints (Kervadec et al.; Trombetta et al. 2024)."""
