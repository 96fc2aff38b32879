"""Load a predictor from a .pt checkpoint, a run folder or an .onnx file, or an ensemble of them."""
from __future__ import annotations

import os
from pathlib import Path

from utils.errors import UserError
from utils.infer.ensemble import EnsemblePredictor, check_agreement
from utils.infer.members import CheckpointArgument, checkpoint_members
from utils.infer.predictor import Predictor
from utils.io.intensity import Intensity


def is_onnx_file(path: Path) -> bool:
    """An exported ONNX model: named .onnx, or a file starting as ONNX protobufs do (field 1, ir_version)."""
    if path.suffix.lower() == ".onnx":
        return True
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x08"  # a checkpoint starts with a zip ("PK") or pickle (0x80) header


def load_model(path: str | os.PathLike, device: str = "auto", flip_tta: bool = False, tiles: bool | None = None,
               overlap: float = 0.25, intensity: Intensity | None = None, amp: bool = False) -> Predictor:
    """A Predictor for a checkpoint (file or run folder), or an OnnxPredictor for an exported ONNX model."""
    if is_onnx_file(Path(path)):
        from utils.infer.onnx import OnnxPredictor

        if amp:
            raise UserError(f"--amp applies to PyTorch checkpoints; {path} is an ONNX model, which runs in the "
                            f"precision it was exported in")
        return OnnxPredictor(path, device, flip_tta, tiles, overlap, intensity)
    return Predictor(path, device, flip_tta, tiles, overlap, intensity, amp)


def load_predictor(checkpoint: CheckpointArgument, device: str = "auto", flip_tta: bool = False,
                   tiles: bool | None = None, overlap: float = 0.25, intensity: Intensity | None = None,
                   amp: bool = False) -> Predictor:
    """One model's predictor (.pt, run folder, .onnx), or an EnsemblePredictor for several or a cross-validation
    folder; members are checked to agree as each is loaded, so a mismatch is reported before the rest load."""
    members = checkpoint_members(checkpoint)
    if not members.is_ensemble:
        return load_model(members.paths[0], device, flip_tta, tiles, overlap, intensity, amp)
    loaded: list[Predictor] = []
    for path in members.paths:
        loaded.append(load_model(path, device, flip_tta, tiles, overlap, intensity, amp))
        check_agreement(loaded)
    return EnsemblePredictor(loaded, members.name, members.crossval)
