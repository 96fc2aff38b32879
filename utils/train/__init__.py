"""Training: options, the loop (train_one_epoch, evaluate), losses, resume, run folder, run log, distributed."""
