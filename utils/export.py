"""Checkpoint -> self-describing ONNX or TorchScript file, written only after it matched PyTorch on real inputs.

The exported graph is the bare model: float32 input (N, C, H, W) = (uint8 / 255 - mean) / std, with batch,
height and width dynamic, and logits (N, K, H, W) out (K = 1: sigmoid, else softmax). What a caller needs
around it (normalisation, input size, letterbox or tiles, class names, intensity scaling) travels in the file:
ONNX metadata_props or a TorchScript extra file, one JSON string per key.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from utils.checkpoint import load_checkpoint, model_from_checkpoint
from utils.dataloader import find_samples, read_split
from utils.errors import UserError
from utils.fileio import atomic_open
from utils.inference import Predictor, letterbox_batch, probabilities_of, tile_grid
from utils.runtime import normalize

ONNX_FORMAT = "unet-segmentation-onnx"
TORCHSCRIPT_FORMAT = "unet-segmentation-torchscript"
METADATA_VERSION = 1
METADATA_KEYS = ("model_name", "num_classes", "in_channels", "class_names", "input_size", "input_mode",
                 "normalization", "preprocessing")
TORCHSCRIPT_EXTRA_FILE = "unet_segmentation.json"
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


def description(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a checkpoint a predictor needs, checkpoint-shaped (utils.inference.Predictor reads both)."""
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
    return {"model": {"name": values["model_name"], "num_classes": values["num_classes"],
                      "in_channels": values["in_channels"]},
            **{key: values[key] for key in METADATA_KEYS[3:]}}


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
    from utils.onnx_predictor import open_session

    return description_from_props(open_session(path).get_modelmeta().custom_metadata_map, path, ONNX_FORMAT)


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


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence torch.jit's deprecation notes (the user chose TorchScript) and the trace's notes on dropping the
    Python-side input-size check (nets.blocks.check_input_size), which are harmless."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def torchscript_bytes(model: nn.Module, example: torch.Tensor, props: Mapping[str, str]) -> bytes:
    """The model traced to TorchScript with `props` (as one JSON object) in an extra file."""
    buffer = io.BytesIO()
    with quiet_jit():
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_EXTRA_FILE: json.dumps(dict(props))})
    return buffer.getvalue()


def load_torchscript(source: str | os.PathLike | bytes, extra_files: dict[str, str] | None = None) -> Any:
    """A TorchScript module from a file or bytes, on the CPU, filling `extra_files` (name -> content)."""
    with quiet_jit():
        return torch.jit.load(io.BytesIO(source) if isinstance(source, bytes) else str(source), map_location="cpu",
                              _extra_files=extra_files if extra_files is not None else {})


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
        from utils.onnx_predictor import open_session, session_forward

        return session_forward(open_session(payload, source="exported model"))
    return load_torchscript(payload)


def export(checkpoint_path: str | os.PathLike, out: str | os.PathLike, file_format: str = "onnx",
           data: str | os.PathLike | None = None, split: str = "val", opset: int = DEFAULT_OPSET,
           max_images: int = 16) -> Parity:
    """Export a checkpoint, check parity with PyTorch (fp32, eval) and only then write `out` atomically."""
    out = Path(out)
    if file_format not in ("onnx", "torchscript"):
        raise UserError(f"unknown format '{file_format}'; use onnx or torchscript")
    if opset not in OPSETS:
        raise UserError(f"--opset {opset} is not supported by torch's exporter; use {OPSETS[0]}..{OPSETS[-1]}")
    if file_format == "torchscript" and out.suffix.lower() == ".onnx":
        raise UserError(f"{out}: a TorchScript file must not be named .onnx (predict.py would read it as ONNX); "
                        f"use e.g. {out.with_suffix('.ts')}")
    checkpoint = load_checkpoint(checkpoint_path)
    source = Path(checkpoint_path) / "last.pt" if Path(checkpoint_path).is_dir() else Path(checkpoint_path)
    if out.resolve() == source.resolve():
        raise UserError(f"{out}: refusing to overwrite the checkpoint being exported; choose another --out")
    # The reference is the checkpoint's model in fp32 NCHW on the CPU, whatever layout predict.py would time faster.
    model = model_from_checkpoint(checkpoint, source).eval()
    preparation = InputPreparation(checkpoint, source)
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
