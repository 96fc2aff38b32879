"""Checkpoint -> self-describing ONNX or TorchScript file, written only after it matched PyTorch on real inputs.

The exported graph is the bare model: float32 input (N, C, H, W) = (uint8 / 255 - mean) / std, with batch,
height and width dynamic, and logits (N, K, H, W) out (K = 1: sigmoid, else softmax). What a caller needs
around it (normalisation, input size, letterbox or tiles, class names, intensity scaling) travels in the file:
ONNX metadata_props or a TorchScript extra file, one JSON string per key.

Several checkpoints (or a cross-validation folder) export as one graph that runs every member and averages their
probabilities; it outputs log(mean p) (one sigmoid channel: logit(mean p)), which every consumer of logits turns
back into the mean probabilities. Its description is the first member's, which the others share.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from utils.data.dataset import find_samples, read_split
from utils.data.folders import DATASET_FOLDERS
from utils.errors import UserError
from utils.infer.ensemble import check_agreement
from utils.infer.members import CheckpointArgument, checkpoint_members
from utils.infer.metadata import (
    ONNX_FORMAT,
    TORCHSCRIPT_EXTRA_FILE,
    TORCHSCRIPT_FORMAT,
    load_torchscript,
    metadata_props,
    quiet_jit,
)
from utils.infer.predictor import Predictor, letterbox_batch
from utils.io.checkpoint import load_checkpoint, model_from_checkpoint
from utils.io.files import atomic_open
from utils.io.outputs import check_outputs
from utils.runtime.device import normalize
from utils.runtime.forward import probabilities_of, tile_grid

INPUT_NAME, OUTPUT_NAME = "input", "logits"
# torch 2.14's exporter translates at opset 18 and converts up to 23; 20 is its default and what
# onnxruntime has run since 1.17.
OPSETS, DEFAULT_OPSET = range(18, 24), 20
MIN_SIDE = 16  # four 2x2 poolings (nets.blocks.check_input_size)
# Measured (README, Export): onnxruntime's fp32 logits differ from eager PyTorch by at most 9e-8 (untrained,
# all three models, 1/3 channels, 1-3 classes) and 6.7e-6 for a trained unet_bn with logits up to 15, i.e.
# 4.5e-7 of the largest logit; TorchScript by 0. 1e-4 of the largest logit (at least 1) leaves a 200x margin
# for other CPUs' kernels, yet is far below what a real defect (missing layer, batch norm in training mode,
# shape baked in) does to logits of order 1-10.
LOGIT_TOLERANCE = 1e-4
# Labels flip only where two classes' logits are closer than the logit difference: 0 of the 0.4 million
# compared pixels did; 1e-4 allows rare near-ties without hiding a broken model.
LABEL_TOLERANCE = 1e-4
# An ensemble's mean probability below this is stored as this: log(1e-12) = -27.6 keeps its "logits" finite and
# of the order of a single model's, and moves a probability by at most 1e-12.
PROBABILITY_FLOOR = 1e-12


def onnx_bytes(model: nn.Module, example: torch.Tensor, props: Mapping[str, str], opset: int = DEFAULT_OPSET) -> bytes:
    """The model as a checked ONNX file (dynamic batch, height, width) with `props` as metadata_props."""
    import onnx

    batch = torch.export.Dim("batch", min=1)
    height, width = torch.export.Dim("height", min=MIN_SIDE), torch.export.Dim("width", min=MIN_SIDE)
    # The exporter reports its steps on stdout, which would mix into the script's own report.
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(model, (example,), dynamo=True, verbose=False, external_data=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                                    dynamic_shapes=({0: batch, 2: height, 3: width},))
    proto = program.model_proto
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = ("U-Net segmentation model; input float32 (N, C, H, W) = (uint8 / 255 - mean) / std, "
                        "output logits (N, K, H, W), K = 1: sigmoid; see metadata_props")
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def torchscript_bytes(model: nn.Module, example: torch.Tensor, props: Mapping[str, str]) -> bytes:
    """The model traced to TorchScript with `props` (as one JSON object) in an extra file."""
    buffer = io.BytesIO()
    with quiet_jit():
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_EXTRA_FILE: json.dumps(dict(props))})
    return buffer.getvalue()


@dataclass(frozen=True)
class Parity:
    """How an exported model's logits and labels compare with PyTorch's on the same inputs."""

    max_difference: float
    max_logit: float
    mismatched: int
    pixels: int
    inputs: str

    @property
    def mismatch_share(self) -> float:
        """Share of pixels whose argmax label differs."""
        return self.mismatched / self.pixels

    @property
    def passed(self) -> bool:
        """Within LOGIT_TOLERANCE (relative to the largest logit, at least 1) and LABEL_TOLERANCE."""
        return (self.max_difference <= LOGIT_TOLERANCE * max(1.0, self.max_logit)
                and self.mismatch_share <= LABEL_TOLERANCE)

    def summary(self) -> str:
        """One line with the figures."""
        return (f"largest |logit difference| {self.max_difference:.3g} (largest |logit| {self.max_logit:.3g}); "
                f"labels differ on {self.mismatched} of {self.pixels} pixels ({100 * self.mismatch_share:.4f} %); "
                f"inputs: {self.inputs}")


@torch.inference_mode()
def parity(reference: Callable[[torch.Tensor], torch.Tensor], candidate: Callable[[torch.Tensor], torch.Tensor],
           batches: list[torch.Tensor], normalization: dict[str, list[float]], inputs: str) -> Parity:
    """Compare logits and argmax labels of two forwards on uint8 batches (N, C, H, W), normalised as in inference."""
    max_difference = max_logit = 0.0
    mismatched = pixels = 0
    for batch in batches:
        tensor = normalize(batch, normalization)
        expected, got = reference(tensor).float(), candidate(tensor).float()
        max_difference = max(max_difference, (expected - got).abs().max().item())
        max_logit = max(max_logit, expected.abs().max().item())
        labels = probabilities_of(expected).argmax(dim=1), probabilities_of(got).argmax(dim=1)
        mismatched += int((labels[0] != labels[1]).sum())
        pixels += labels[0].numel()
    return Parity(max_difference, max_logit, mismatched, pixels, inputs)


class AveragedModel(nn.Module):
    """Members run on the same input; their class probabilities averaged and returned as logits.

    K > 1: log(mean softmax), whose softmax is the mean. K = 1 (sigmoid): log(mean p) - log(mean (1 - p)), whose
    sigmoid is the mean. Both are computed as log-sum-exp of log-probabilities, exact where p is tiny, then
    floored at log(PROBABILITY_FLOOR).
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = [member(inputs) for member in self.members]
        floor, count = math.log(PROBABILITY_FLOOR), math.log(len(logits))
        if logits[0].shape[1] == 1:
            positive = torch.stack([nn.functional.logsigmoid(value) for value in logits]).logsumexp(dim=0)
            negative = torch.stack([nn.functional.logsigmoid(-value) for value in logits]).logsumexp(dim=0)
            return (positive - count).clamp(min=floor) - (negative - count).clamp(min=floor)
        mean = torch.stack([value.log_softmax(dim=1) for value in logits]).logsumexp(dim=0) - count
        return mean.clamp(min=floor)


class InputPreparation(Predictor):
    """A checkpoint's input preparation (image loading and scaling, letterbox or tiles) without its model."""

    def __init__(self, checkpoint: Mapping[str, Any], path: str | os.PathLike) -> None:
        self._configure(path, dict(checkpoint), flip_tta=False, tiles=None, overlap=0.25, intensity=None)


def model_batches(predictor: Predictor, data: str | os.PathLike, split: str, max_images: int,
                  batch_size: int = 4) -> tuple[list[torch.Tensor], str]:
    """A split's images as the predictor feeds them to the model (letterboxed, or tiles), and a description."""
    samples = find_samples(data, read_split(data, split), need_labels=False)[:max_images]
    images = [predictor.load(sample.image_path) for sample in samples]
    size = predictor.input_size
    if predictor.tiles:
        tiles = []
        for image in images:
            padded, positions = tile_grid(torch.from_numpy(image).permute(2, 0, 1), size, predictor.overlap)
            tiles += [padded[:, y:y + size, x:x + size] for y, x in positions]
        batches = [torch.stack(tiles[i:i + batch_size]) for i in range(0, len(tiles), batch_size)]
        return batches, f"{len(images)} '{split}' images of {data} as {len(tiles)} {size}x{size} tiles"
    batches = [letterbox_batch(images[i:i + batch_size], size) for i in range(0, len(images), batch_size)]
    return batches, f"{len(images)} '{split}' images of {data} letterboxed to {size}x{size}"


def random_batches(in_channels: int, size: int) -> tuple[list[torch.Tensor], str]:
    """Seeded random uint8 batches: two images at the training size, one at an odd, non-square size."""
    generator = torch.Generator().manual_seed(0)
    odd = (max(MIN_SIDE, size // 2 + 1), size + 8)  # odd height: the decoder's up-sampling must follow the skips
    batches = [torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
               for shape in ((2, in_channels, size, size), (1, in_channels, *odd))]
    return batches, f"random images: 2 at {size}x{size}, 1 at {odd[0]}x{odd[1]}"


def exported_forward(payload: bytes, file_format: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A forward (normalised float32 -> logits) of the exported bytes, loaded the way a user loads the file."""
    if file_format == "onnx":
        from utils.runtime.onnx_session import open_session, session_forward

        return session_forward(open_session(payload, source="exported model"))
    return load_torchscript(payload)


def reference_model(checkpoint_path: CheckpointArgument) -> tuple[nn.Module, dict, Predictor]:
    """(PyTorch model in fp32 eval, the checkpoint whose description the file carries, its input preparation): one
    checkpoint's model, or the AveragedModel of an ensemble's members."""
    members = checkpoint_members(checkpoint_path)
    if not members.is_ensemble:
        source = members.paths[0] / "last.pt" if members.paths[0].is_dir() else members.paths[0]
        checkpoint = load_checkpoint(members.paths[0])
        return model_from_checkpoint(checkpoint, source).eval(), checkpoint, InputPreparation(checkpoint, source)
    checkpoints = [load_checkpoint(path) for path in members.paths]
    preparations = [InputPreparation(checkpoint, path) for checkpoint, path in zip(checkpoints, members.paths)]
    check_agreement(preparations, same_input=True)  # one graph: one input size and mode for all
    models = [model_from_checkpoint(checkpoint, path).eval() for checkpoint, path in zip(checkpoints, members.paths)]
    return AveragedModel(models).eval(), checkpoints[0], preparations[0]


def export(checkpoint_path: CheckpointArgument, out: str | os.PathLike, file_format: str = "onnx",
           data: str | os.PathLike | None = None, split: str = "val", opset: int = DEFAULT_OPSET,
           max_images: int = 16) -> Parity:
    """Export a checkpoint (or an ensemble), check parity with PyTorch (fp32, eval), then write `out` atomically."""
    out = Path(out)
    if file_format not in ("onnx", "torchscript"):
        raise UserError(f"unknown format '{file_format}'; use onnx or torchscript")
    if opset not in OPSETS:
        raise UserError(f"--opset {opset} is not supported by torch's exporter; use {OPSETS[0]}..{OPSETS[-1]}")
    if file_format == "torchscript" and out.suffix.lower() == ".onnx":
        raise UserError(f"{out}: a TorchScript file must not be named .onnx (predict.py would read it as ONNX); "
                        f"use e.g. {out.with_suffix('.ts')}")
    members = checkpoint_members(checkpoint_path)
    # A run folder's best.pt is as much an input as the last.pt exported from it (members.inputs names both).
    check_outputs([out], [*members.paths, *members.inputs], DATASET_FOLDERS)
    # The reference is the model in fp32 NCHW on the CPU, whatever layout predict.py would time faster.
    model, checkpoint, preparation = reference_model(checkpoint_path)
    size, channels = preparation.input_size, preparation.in_channels
    batches, inputs = (model_batches(preparation, data, split, max_images) if data is not None
                       else random_batches(channels, size))
    example = normalize(torch.randint(0, 256, (2, channels, size, size), dtype=torch.uint8),
                        preparation.normalization)
    tag = ONNX_FORMAT if file_format == "onnx" else TORCHSCRIPT_FORMAT
    props = metadata_props(checkpoint, tag)
    payload = (onnx_bytes(model, example, props, opset) if file_format == "onnx"
               else torchscript_bytes(model, example, props))
    result = parity(model, exported_forward(payload, file_format), batches, preparation.normalization, inputs)
    if not result.passed:
        raise UserError(f"{out}: not written: the exported model does not match PyTorch: {result.summary()} "
                        f"(tolerance: {LOGIT_TOLERANCE:g} x largest logit, {LABEL_TOLERANCE:g} of the labels)")
    with atomic_open(out, "wb") as handle:
        handle.write(payload)
    return result
