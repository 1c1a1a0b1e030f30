"""Multiple-instance learning: INSIGHT and baselines (mean, max, ABMIL, CLAM-SB, TransMIL), training, heatmaps."""
