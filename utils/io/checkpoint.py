"""Self-describing checkpoints: plain types only, written atomically, loaded with weights_only=True."""
from __future__ import annotations

import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from nets import MODEL_NAMES, build_model
from utils.errors import UserError, refused_load_reason
from utils.io.files import atomic_open

FORMAT = "unet-segmentation-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "model", "class_names", "input_size", "normalization", "state_dict")


def non_finite_tensors(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold NaN or infinity."""
    return [name for name, tensor in state_dict.items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


def _diverged(path: str | os.PathLike, bad: list[str], total: int) -> str:
    return (f"{path}: {len(bad)} of {total} weight tensors hold NaN or infinite values (e.g. {bad[0]}): "
            f"the training run diverged")


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """Write a checkpoint atomically (temporary file in the same folder, then rename); diverged weights are refused."""
    bad = non_finite_tensors(checkpoint["state_dict"])
    if bad:
        raise UserError(_diverged(path, bad, len(checkpoint["state_dict"])) + "; the file was not written")
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
    kind = _foreign_kind(path)
    if kind is None and _is_torchscript(path):
        kind = "a TorchScript model (written by export.py)"
    if kind:
        raise UserError(f"{path} is {kind}, not a checkpoint; pass the best.pt or last.pt of a training run")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: refused to load: it holds objects other than tensors and plain types, "
                        f"which could run code ({refused_load_reason(exc)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable checkpoint (truncated or not written by torch.save): "
                        f"{refused_load_reason(exc)}") from None
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
    problem = description_problem(checkpoint)
    if problem:
        raise UserError(f"{path}: {problem} (the file was edited or damaged)")
    return checkpoint


# Leading bytes of files that are often passed by mistake, and what to call them.
_SIGNATURES = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"II*\x00", "a TIFF image"),
               (b"MM\x00*", "a TIFF image"), (b"\x1f\x8b", "a gzip file (a .nii.gz volume?)"),
               (b"\x08", "an ONNX model"))


def _foreign_kind(path: Path) -> str | None:
    """What a file is when it clearly is not a torch.save checkpoint (a zip or a pickle), else None."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head.startswith(b"PK") or head.startswith(b"\x80"):
        return None
    if not head:
        return "an empty file"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    try:
        text = head.decode("utf-8").lstrip()
    except UnicodeDecodeError:
        return None
    if text.startswith(("{", "[")):
        return "a JSON file"
    return "a text file" if text else "an empty text file"


def _is_torchscript(path: Path) -> bool:
    """A zip archive as torch.jit.save writes it: its members include <archive>/constants.pkl."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def description_problem(checkpoint: Mapping[str, Any]) -> str | None:
    """What is wrong with the fields later scripts rely on (of a checkpoint or an exported model's description),
    or None."""
    spec = checkpoint["model"]
    num_classes, in_channels = spec.get("num_classes"), spec.get("in_channels")
    if not _is_int(num_classes, 1, 255):
        return f"model num_classes is {num_classes!r}; expected an integer from 1 to 255"
    if in_channels not in (1, 3) or isinstance(in_channels, bool):
        return f"model in_channels is {in_channels!r}; expected 1 or 3"
    if not _is_int(checkpoint["input_size"], 16, 1 << 16):
        return f"input_size is {checkpoint['input_size']!r}; expected an integer >= 16"
    names, expected = checkpoint["class_names"], max(num_classes, 2)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return f"class_names is {names!r:.200}; expected a list of {expected} names"
    if len(names) != expected:
        return f"class_names lists {len(names)} names for {num_classes} classes; expected {expected} names"
    norm = checkpoint["normalization"]
    if not isinstance(norm, dict) or not all(
            isinstance(norm.get(key), list) and len(norm[key]) == in_channels
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in norm[key]) for key in ("mean", "std")) \
            or not all(v > 0 for v in norm["std"]):
        return f"normalization is {norm!r}; expected mean and std lists of {in_channels} finite numbers, std > 0"
    if checkpoint.get("input_mode", "letterbox") not in ("letterbox", "crop"):
        return f"input_mode is {checkpoint.get('input_mode')!r}; expected letterbox or crop"
    preprocessing = checkpoint.get("preprocessing")
    if preprocessing is not None and not (
            isinstance(preprocessing, dict) and isinstance(preprocessing.get("intensity"), (dict, type(None)))
            and _is_int(preprocessing.get("context", 0), 0, 1 << 10)):
        return f"preprocessing is {preprocessing!r:.200}; expected intensity (an object or null) and context >= 0"
    return None


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike = "checkpoint") -> nn.Module:
    """Build the checkpoint's model and load its weights (strictly: a partial load is an error)."""
    spec = checkpoint["model"]
    bad = non_finite_tensors(checkpoint["state_dict"])
    if bad:
        raise UserError(_diverged(path, bad, len(checkpoint["state_dict"])) + "; use an earlier checkpoint")
    model = build_model(spec["name"], num_classes=spec["num_classes"], in_channels=spec["in_channels"])
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit model {spec['name']}: "
                        f"{str(exc).splitlines()[0]}") from None
    return model
