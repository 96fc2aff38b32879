"""Cross-validation: training every fold, out-of-fold predictions and their scores, choosing a configuration."""
