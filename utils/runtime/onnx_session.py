"""onnxruntime sessions: providers for a device, reading a model once, its forward pass and input checks."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from utils.errors import UserError


def execution_providers(device: str) -> list[Any]:
    """onnxruntime providers for --device: auto (CUDA when this onnxruntime has it, else CPU), cpu, cuda[:N]."""
    import onnxruntime

    cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    kind, _, index = device.partition(":")
    if device == "cpu" or (device == "auto" and not cuda):
        return ["CPUExecutionProvider"]
    if device == "auto" or (kind == "cuda" and (not index or index.isdigit())):
        if not cuda:
            raise UserError(f"device '{device}' requested but this onnxruntime has no CUDA provider "
                            f"(install onnxruntime-gpu); use --device cpu")
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]
    raise UserError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N")


def read_model(path: str | os.PathLike) -> bytes:
    """The bytes of an ONNX file, read once for onnxruntime and the weight check alike."""
    if not Path(path).is_file():
        raise UserError(f"ONNX model not found: {path}")
    return Path(path).read_bytes()


def open_session(model: str | os.PathLike | bytes, device: str = "cpu", source: str | None = None,
                 threads: int | None = None) -> Any:
    """An onnxruntime InferenceSession of a file or serialized model (`threads`: intra-op threads, default one per
    physical core); an unreadable one raises UserError."""
    import onnxruntime

    name = source or str(model)
    if not isinstance(model, bytes):
        model = read_model(model)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: graph-optimiser notes would interleave with the report
    if threads:
        options.intra_op_num_threads = threads
    providers = execution_providers(device)
    try:
        return onnxruntime.InferenceSession(model, options, providers=providers)
    except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, InvalidGraph, ...) derive from Exception only
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from X failed:Protobuf parsing failed."
        raise UserError(f"{name}: not a readable ONNX model ({reason.rsplit('failed:', 1)[-1].strip()})") from None


def session_forward(session: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """A forward (normalised float32 (N, C, H, W) -> logits tensor on the CPU) through an onnxruntime session."""
    input_name = session.get_inputs()[0].name

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(inputs.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(session.run(None, {input_name: array})[0])

    return forward


def check_signature(session: Any, in_channels: int, num_classes: int, source: str | os.PathLike) -> None:
    """One input and one output, both (N, C, H, W), with the described channels and classes."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError(f"{source}: ONNX model with {len(inputs)} inputs and {len(outputs)} outputs; "
                        f"this repository's models have one input (N, C, H, W) and one output")
    for kind, value in (("input", inputs[0]), ("output", outputs[0])):
        if len(value.shape) != 4:
            raise UserError(f"{source}: ONNX model {kind} '{value.name}' has shape {value.shape} (rank "
                            f"{len(value.shape)}); this repository's models take and return (N, C, H, W)")
    channels = inputs[0].shape[1]
    if isinstance(channels, int) and channels != in_channels:
        raise UserError(f"{source}: ONNX model input has {channels} channels but its metadata says {in_channels}")
    classes = outputs[0].shape[1]
    if isinstance(classes, int) and classes != num_classes:
        raise UserError(f"{source}: ONNX model output has {classes} channels but its metadata says num_classes "
                        f"{num_classes}")


def non_finite_initializers(payload: bytes) -> tuple[list[str], int]:
    """Names of the weight tensors of a serialized ONNX model that hold NaN or infinity, and how many there are."""
    import onnx
    from onnx import numpy_helper

    initializers = onnx.load_model_from_string(payload).graph.initializer
    bad = [tensor.name for tensor in initializers
           if (array := numpy_helper.to_array(tensor)).dtype.kind == "f" and not np.isfinite(array).all()]
    return bad, len(initializers)
