"""Data, losses, metrics and the training loop shared by every script."""
