"""The embedded synthetic data sets: liver CT slices and abdominal CT volumes."""
