"""The levers one measurement uses (a Variant) and everything a worker process needs to run it (a Config)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from utils.runtime.speed_probe import SpeedChoice


@dataclass(frozen=True)
class Phase:
    """The levers of one phase (training or inference)."""

    channels_last: bool = False
    amp: bool = False  # autocast to bfloat16


@dataclass(frozen=True)
class Variant:
    """The performance levers one measurement uses."""

    name: str
    train: Phase = Phase()
    infer: Phase = Phase()
    compile: bool = False
    cudnn_benchmark: bool = False
    fused_adam: bool = False
    runtime: str = "torch"  # or "onnxruntime": inference only, of the model exported by utils.infer.export


EAGER = Variant("eager-fp32-nchw")
ONNXRUNTIME = Variant("onnxruntime", runtime="onnxruntime")
VARIANTS = ("eager", "default", "candidates", "tuned", "onnxruntime")
DEFAULT_VARIANTS = "default,candidates,onnxruntime"
CANDIDATE_PREFIX = "candidate "


@dataclass(frozen=True)
class Config:
    """Everything a worker process needs to measure one (model, variant)."""

    model: str
    variant: Variant
    device: str
    size: int
    batch: int
    steps: int
    warmup: int
    threads: int
    in_channels: int
    num_classes: int
    model_file: str = ""  # the exported ONNX file, for the onnxruntime variant


def probed_variant(variant: Variant, probe: dict[str, dict[str, Any]]) -> Variant:
    """The default variant with the levers the probe chose for this model."""
    train, infer = SpeedChoice(**probe["train"]), SpeedChoice(**probe["infer"])
    return replace(variant, train=Phase(train.channels_last, train.amp), infer=Phase(infer.channels_last, infer.amp))
