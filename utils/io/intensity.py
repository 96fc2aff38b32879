"""Intensity scaling of wide images (CT in Hounsfield units, 16-bit and float microscopy) to 8 bits.

Two rules, shared by the volume importers, the image importers and prediction:
- a CT window (a preset such as ``liver`` or ``WIDTH,LEVEL``): [level - width/2, level + width/2] -> [0, 255];
- per-volume (or per-image) percentile scaling for MRI and microscopy: [p_low, p_high] -> [0, 255].
Values below the range become 0, above it 255; in between ``round(255 * (x - low) / (high - low))``.
Data holding NaN or infinite values, and data whose values are all one, is refused with the file and the count:
no rule could say what such pixels show, and an all-black picture would pass as a real scan.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.errors import UserError

# (width, level) in Hounsfield units; common radiology display windows.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "liver": (150.0, 30.0),
    "abdomen": (400.0, 40.0),
    "brain": (80.0, 40.0),
    "bone": (1800.0, 400.0),
    "lung": (1500.0, -600.0),
}
DEFAULT_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Intensity:
    """How wide intensities become uint8: ``window`` (fixed range) or ``percentile`` (range from the data)."""

    kind: str
    low: float
    high: float
    name: str | None = None

    def value_range(self, data: np.ndarray) -> tuple[float, float]:
        """The (low, high) intensities that map to 0 and 255 for this (finite, checked) array."""
        if self.kind == "window":
            return self.low, self.high
        low, high = np.percentile(data, [self.low, self.high])
        return float(low), float(high)

    def apply(self, data: np.ndarray, source: str) -> np.ndarray:
        """Scale `data` (any shape, any real dtype) of file `source` to uint8; a percentile range is taken over all
        of `data`. Non-finite or constant data is a UserError (check_values)."""
        check_values(data, source)
        low, high = self.value_range(data)
        return scale_to_uint8(data, low, high)

    def describe(self) -> str:
        """A short human description, e.g. 'window liver (W 150, L 30)'."""
        if self.kind == "window":
            width, level = self.high - self.low, (self.high + self.low) / 2
            label = f"window {self.name} " if self.name else "window "
            return f"{label}(W {width:g}, L {level:g})"
        return f"percentiles {self.low:g}-{self.high:g} per volume/image"

    def to_json(self) -> dict[str, Any]:
        """Plain-type description for volumes.json, import reports and checkpoints."""
        return {"kind": self.kind, "low": self.low, "high": self.high, "name": self.name}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Intensity":
        """Inverse of to_json; a malformed entry is a UserError."""
        try:
            kind, low, high = str(data["kind"]), float(data["low"]), float(data["high"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"malformed intensity description {data!r}") from None
        if kind not in ("window", "percentile") or not low < high:
            raise UserError(f"malformed intensity description {data!r}")
        return cls(kind, low, high, data.get("name"))


def check_values(data: np.ndarray, source: str) -> None:
    """Refuse data that holds NaN or infinite values (naming how many), is empty, or holds one value only."""
    data = np.asarray(data)
    if data.size == 0:
        raise UserError(f"{source}: no pixels")
    if data.dtype.kind in "fc":
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad == data.size:
            raise UserError(f"{source}: all {data.size} values are NaN or infinite; the file holds no image")
        if bad:
            raise UserError(f"{source}: {bad} of {data.size} values are NaN or infinite; replace them with real "
                            f"values (or remove the file) before using it")
    low, high = data.min(), data.max()
    if low == high:
        raise UserError(f"{source}: every one of its {data.size} values is {low:g}; a constant image shows nothing "
                        f"to segment")


def scale_to_uint8(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """[low, high] -> [0, 255] rounded, clipped outside; high <= low (equal percentiles) -> all 0."""
    values = np.asarray(data, dtype=np.float64)
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint(np.clip((values - low) * 255.0 / (high - low), 0.0, 255.0)).astype(np.uint8)


def window(width: float, level: float, name: str | None = None) -> Intensity:
    """A CT window of `width` HU centred on `level` HU."""
    if not (math.isfinite(width) and math.isfinite(level) and width > 0):
        raise UserError(f"window width must be a positive number and level finite, got W {width}, L {level}")
    return Intensity("window", level - width / 2, level + width / 2, name)


def parse_window(text: str) -> Intensity:
    """'liver' (a preset) or 'WIDTH,LEVEL' such as '400,40'."""
    key = text.strip().lower()
    if key in WINDOW_PRESETS:
        return window(*WINDOW_PRESETS[key], name=key)
    parts = text.split(",")
    try:
        width, level = (float(part) for part in parts)
    except ValueError:
        raise UserError(f"--window {text!r}: give a preset ({', '.join(WINDOW_PRESETS)}) "
                        f"or WIDTH,LEVEL in HU such as 400,40") from None
    return window(width, level)


def parse_percentiles(text: str) -> Intensity:
    """'LOW,HIGH' percentiles such as '0.5,99.5' (0 <= LOW < HIGH <= 100)."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--percentile {text!r}: give LOW,HIGH such as 0.5,99.5") from None
    if not 0 <= low < high <= 100:
        raise UserError(f"--percentile {text!r}: need 0 <= LOW < HIGH <= 100")
    return Intensity("percentile", low, high)


def intensity_from_options(window_text: str | None, percentile_text: str | None) -> Intensity | None:
    """The scaling the --window / --percentile options name (at most one), or None when neither is given."""
    if window_text and percentile_text:
        raise UserError("give --window or --percentile, not both")
    if window_text:
        return parse_window(window_text)
    if percentile_text:
        return parse_percentiles(percentile_text)
    return None
