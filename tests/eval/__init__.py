"""Tests of medwss.eval."""
