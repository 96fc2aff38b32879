"""Masks to class ids: by value, by colour, black/white, or by threshold; unmapped values are named."""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

from utils.errors import UserError
from utils.io.images import grey_channel

# Modes whose pixels are plain numbers (a value map uses them as they are).
VALUE_MODES = ("L", "I", "I;16", "I;16L", "I;16B", "I;16N")
# Black/white and grey-with-alpha modes: their grey level (1-bit as 0/255) is the value.
TO_GREY_MODES = ("1", "LA", "La")


def mask_values(mask: Image.Image) -> np.ndarray:
    """A mask's pixel values: palette indices for P, 0/255 for 1-bit, the grey level for grey-looking RGB."""
    if mask.mode in TO_GREY_MODES:
        mask = mask.convert("L")
    if mask.mode in VALUE_MODES or mask.mode == "P":
        return np.asarray(mask)
    grey = grey_channel(np.asarray(mask.convert("RGB")))
    if grey is None:
        raise UserError(f"mask is in colour (mode {mask.mode}): map it by colour, not by value")
    return grey


def _lookup(keys: np.ndarray, table: dict[int, int], describe: Callable[[int], str], what: str) -> np.ndarray:
    """Map every key through `table`; an unmapped key is an error that names it."""
    uniques, inverse = np.unique(keys, return_inverse=True)
    missing = [describe(key) for key in uniques.tolist() if key not in table]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise UserError(f"unmapped {what} {', '.join(missing[:10])}{more}")
    lut = np.array([table[key] for key in uniques.tolist()], dtype=np.uint8)
    return lut[inverse].reshape(keys.shape)


def map_values(mask: Image.Image, table: dict[int, int]) -> np.ndarray:
    """Class ids from a value -> class table (palette masks: the index is the value)."""
    what = "palette index(es)" if mask.mode == "P" else "mask value(s)"
    return _lookup(mask_values(mask), table, str, what)


def map_0_255(mask: Image.Image) -> np.ndarray:
    """Class ids from a strictly black/white mask: 0 -> 0, 255 -> 1; any other value is an error."""
    return map_values(mask, {0: 0, 255: 1})


def _colour_key(rgb: tuple[int, int, int] | np.ndarray) -> int | np.ndarray:
    """Pack R, G, B into one integer so colours can be looked up like values."""
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def map_colours(mask: Image.Image, table: dict[tuple[int, int, int], int]) -> np.ndarray:
    """Class ids from an (R, G, B) -> class table (palette masks: by the palette colour)."""
    rgb = np.asarray(mask.convert("RGB")).astype(np.uint32)
    keys = _colour_key((rgb[..., 0], rgb[..., 1], rgb[..., 2]))
    packed = {_colour_key(colour): class_id for colour, class_id in table.items()}
    return _lookup(keys, packed, lambda key: f"({key >> 16},{(key >> 8) & 255},{key & 255})", "colour(s)")


def threshold(mask: Image.Image, level: int) -> np.ndarray:
    """Binary classes: value > level -> 1, else 0 (colour and palette masks by their grey level)."""
    if mask.mode not in VALUE_MODES + TO_GREY_MODES:
        mask = mask.convert("L")
    return (mask_values(mask) > level).astype(np.uint8)
