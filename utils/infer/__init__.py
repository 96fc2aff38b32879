"""Inference: the predictor for .pt and .onnx files, post-processing, export with its metadata."""
