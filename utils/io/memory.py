"""Memory for decoding large images and volumes: estimated from the header and checked before any pixel is read."""
from __future__ import annotations

import os

from utils.errors import UserError

# Prediction, the most demanding use, peaks at about 18 times an RGB image's decoded size (float32 input, resized
# and padded copies, class probabilities and the overlay at full size: 21.7 GB for 20000x20000 pixels).
WORKING_COPIES = 20
# Below this estimate the check is skipped: any machine that runs the models has that much to spare.
_SMALL_BYTES = 64 * 2**20


def available_memory() -> int | None:
    """Bytes of memory that can be allocated without swapping (MemAvailable), or None where it cannot be told."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(count: float) -> str:
    """A byte count for people, e.g. '9.6 GB'."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def check_fits(decoded_bytes: int, source: str, what: str) -> None:
    """Refuse, before decoding, data whose working set (WORKING_COPIES x its decoded size) exceeds free memory."""
    needed = decoded_bytes * WORKING_COPIES
    if needed < _SMALL_BYTES:
        return
    available = available_memory()
    if available is not None and needed > available:
        raise UserError(f"{source}: {what} ({_size(decoded_bytes)} decoded) needs about {_size(needed)} of memory "
                        f"to read and convert, but {_size(available)} is available; crop or downscale it first")
