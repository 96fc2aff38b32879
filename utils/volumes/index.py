"""volumes.json: which slices of an imported dataset came from which volume, with spacing and affine."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from utils.errors import UserError

VOLUMES_FILE = "volumes.json"


VOLUMES_FORMAT = "unet-segmentation-volumes"


def read_volumes_file(root: str | os.PathLike) -> dict[str, Any] | None:
    """<root>/volumes.json, or None when the dataset was not imported from volumes."""
    path = Path(root) / VOLUMES_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); re-import the volumes") from None
    if not isinstance(data, dict) or data.get("format") != VOLUMES_FORMAT or not isinstance(data.get("volumes"), dict):
        raise UserError(f"{path} was not written by import_dataset.py nifti/dicom; re-import the volumes")
    return data


