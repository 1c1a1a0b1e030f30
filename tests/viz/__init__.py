"""Tests of medwss.viz."""
