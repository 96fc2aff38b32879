"""The dataset folder, split files, the validated Dataset, letterboxing, sampling, augmentation, weight maps."""
