"""Inference: predictors for .pt and .onnx files and their ensembles, post-processing, uncertainty, export."""
