"""Self-describing checkpoints: plain types only, written atomically, loaded with weights_only=True."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nets import MODEL_NAMES, build_model
from utils.errors import UserError
from utils.fileio import atomic_open

FORMAT = "unet-segmentation-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "model", "class_names", "input_size", "normalization", "state_dict")


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """Write a checkpoint atomically (temporary file in the same folder, then rename)."""
    checkpoint = {"format": FORMAT, "version": VERSION, **checkpoint}
    try:
        with atomic_open(path, "wb") as handle:
            torch.save(checkpoint, handle)
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError from its zip writer
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UserError(f"could not write checkpoint {path}: {reason}; the previous file, if any, is unchanged "
                        f"(check free disk space with `df -h {Path(path).parent}`)") from None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; truncated, foreign or unsafe files raise UserError."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: refused to load: it holds objects other than tensors and plain types, "
                        f"which could run code ({str(exc).splitlines()[0]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable checkpoint (truncated or not written by torch.save): "
                        f"{str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UserError(f"{path}: not a checkpoint of this repository (no '{FORMAT}' tag); "
                        f"for VGG16 ImageNet weights use --pretrained instead")
    if checkpoint.get("version") != VERSION:
        raise UserError(f"{path}: checkpoint version {checkpoint.get('version')} is not supported "
                        f"(this code reads version {VERSION})")
    missing = [key for key in REQUIRED if key not in checkpoint]
    if missing:
        raise UserError(f"{path}: checkpoint lacks {', '.join(missing)}")
    spec = checkpoint["model"]
    if not isinstance(spec, dict) or spec.get("name") not in MODEL_NAMES:
        raise UserError(f"{path}: unknown model {spec!r}; valid names: {', '.join(MODEL_NAMES)}")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike = "checkpoint") -> nn.Module:
    """Build the checkpoint's model and load its weights (strictly: a partial load is an error)."""
    spec = checkpoint["model"]
    model = build_model(spec["name"], num_classes=spec["num_classes"], in_channels=spec["in_channels"])
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit model {spec['name']}: "
                        f"{str(exc).splitlines()[0]}") from None
    return model
