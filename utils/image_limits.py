"""Pillow's decompression-bomb limit, raisable from the environment, and the message when an image passes it."""
from __future__ import annotations

import os

from PIL import Image

from utils.errors import UserError

LIMIT_VARIABLE = "SEGMENTATION_MAX_IMAGE_PIXELS"

if os.environ.get(LIMIT_VARIABLE, "").isdigit():
    Image.MAX_IMAGE_PIXELS = int(os.environ[LIMIT_VARIABLE])


def too_large(path: object, error: Exception) -> UserError:
    """A UserError for an image that Pillow refuses as a possible decompression bomb."""
    limit = Image.MAX_IMAGE_PIXELS
    return UserError(f"{path}: {error.args[0].split('exceeds limit')[0].strip() if error.args else 'image'} is over "
                     f"twice Pillow's safety limit of {limit} pixels (a possible decompression bomb). If the file "
                     f"is trusted, raise the limit: {LIMIT_VARIABLE}={4 * (limit or 0)} python ...")
