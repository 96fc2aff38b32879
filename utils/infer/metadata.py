"""The description an exported model carries (classes, channels, size, normalisation), written and read back."""
from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from utils.errors import UserError
from utils.io.checkpoint import description_problem

ONNX_FORMAT = "unet-segmentation-onnx"
TORCHSCRIPT_FORMAT = "unet-segmentation-torchscript"
METADATA_VERSION = 1
METADATA_KEYS = ("model_name", "num_classes", "in_channels", "class_names", "input_size", "input_mode",
                 "normalization", "preprocessing")
TORCHSCRIPT_EXTRA_FILE = "unet_segmentation.json"



def description(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a checkpoint a predictor needs, checkpoint-shaped (utils.infer.predictor.Predictor reads both)."""
    return {"model": {key: checkpoint["model"][key] for key in ("name", "num_classes", "in_channels")},
            "class_names": list(checkpoint["class_names"]), "input_size": int(checkpoint["input_size"]),
            "input_mode": checkpoint.get("input_mode") or "letterbox",
            "normalization": checkpoint["normalization"],
            "preprocessing": checkpoint.get("preprocessing") or {"intensity": None, "context": 0}}


def metadata_props(checkpoint: Mapping[str, Any], file_format: str) -> dict[str, str]:
    """Key -> JSON string for the exported file: the checkpoint's description plus a format tag and version."""
    described = description(checkpoint)
    flat = {"format": file_format, "version": METADATA_VERSION, "model_name": described["model"]["name"],
            "num_classes": described["model"]["num_classes"], "in_channels": described["model"]["in_channels"],
            **{key: described[key] for key in METADATA_KEYS[3:]}}
    return {key: json.dumps(value) for key, value in flat.items()}


def description_from_props(props: Mapping[str, str], source: str | os.PathLike, file_format: str) -> dict[str, Any]:
    """Read metadata_props back into the checkpoint-shaped description; a foreign file raises UserError."""
    try:
        tag = json.loads(props["format"])
    except (KeyError, ValueError):
        tag = None
    if tag != file_format:
        kind = "an ONNX" if file_format == ONNX_FORMAT else "a TorchScript"
        raise UserError(f"{source}: {kind} model without this repository's metadata (no format '{file_format}'); "
                        f"export a checkpoint with: python export.py --checkpoint best.pt --out model.onnx")
    try:
        values = {key: json.loads(props[key]) for key in ("version", *METADATA_KEYS)}
    except (KeyError, ValueError) as exc:
        raise UserError(f"{source}: exported model metadata is incomplete or not JSON ({exc}); "
                        f"export it again") from None
    if values["version"] != METADATA_VERSION:
        raise UserError(f"{source}: exported model metadata version {values['version']} is not supported "
                        f"(this code reads version {METADATA_VERSION})")
    described = {"model": {"name": values["model_name"], "num_classes": values["num_classes"],
                           "in_channels": values["in_channels"]},
                 **{key: values[key] for key in METADATA_KEYS[3:]}}
    problem = description_problem(described)
    if problem:
        raise UserError(f"{source}: exported model metadata: {problem} (the file was edited or damaged); "
                        f"export it again")
    return described


def read_description(path: str | os.PathLike) -> dict[str, Any]:
    """The description stored in an exported file: TorchScript (a zip archive) or ONNX."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"exported model not found: {path}")
    if zipfile.is_zipfile(path):
        extra = {TORCHSCRIPT_EXTRA_FILE: ""}
        try:
            load_torchscript(path, extra)
        except RuntimeError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"{path}: not a readable TorchScript file ({reason})") from None
        try:
            props = json.loads(extra[TORCHSCRIPT_EXTRA_FILE] or "{}")
        except ValueError:
            props = {}
        return description_from_props(props, path, TORCHSCRIPT_FORMAT)
    from utils.runtime.onnx_session import open_session

    return description_from_props(open_session(path).get_modelmeta().custom_metadata_map, path, ONNX_FORMAT)


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence torch.jit's deprecation notes (the user chose TorchScript) and the trace's notes on dropping the
    Python-side input-size check (nets.blocks.check_input_size), which are harmless."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def load_torchscript(source: str | os.PathLike | bytes, extra_files: dict[str, str] | None = None) -> Any:
    """A TorchScript module from a file or bytes, on the CPU, filling `extra_files` (name -> content)."""
    with quiet_jit():
        return torch.jit.load(io.BytesIO(source) if isinstance(source, bytes) else str(source), map_location="cpu",
                              _extra_files=extra_files if extra_files is not None else {})
