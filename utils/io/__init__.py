"""Files in and out: atomic writes, image and label decoding, intensity scaling, figures, checkpoints."""
