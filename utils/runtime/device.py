"""Device choice, seeding and input normalisation shared by training, inference and the benchmark."""
from __future__ import annotations

import functools
import os
import random

import numpy as np
import torch

from utils.errors import UserError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def default_normalization(in_channels: int) -> dict[str, list[float]]:
    """ImageNet statistics (their channel mean for grey input), what VGG16 weights expect."""
    if in_channels == 3:
        return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    return {"mean": [sum(IMAGENET_MEAN) / 3], "std": [sum(IMAGENET_STD) / 3]}


def normalize(images: torch.Tensor, normalization: dict[str, list[float]]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (x / 255 - mean) / std, on the images' device."""
    mean, std = _statistics(tuple(normalization["mean"]), tuple(normalization["std"]), images.device)
    return (images.float() / 255 - mean) / std


@functools.lru_cache(maxsize=16)
def _statistics(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as (1, C, 1, 1) tensors on `device`, made once: a fresh host-to-GPU copy every batch
    would make the host wait for the GPU."""
    return (torch.tensor(mean, device=device).view(1, -1, 1, 1), torch.tensor(std, device=device).view(1, -1, 1, 1))


@functools.lru_cache(maxsize=None)
def cpuinfo(field: str) -> list[str]:
    """Every value of `field` in /proc/cpuinfo, one per logical CPU (none where that file is missing)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            pairs = [line.partition(":") for line in handle]
    except OSError:
        return []
    return [value.strip() for key, _, value in pairs if key.strip() == field]  # cached: it never changes


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs in hardware: CUDA compute capability 8+, or oneDNN on a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    flags = set(next(iter(cpuinfo("flags")), "").split())
    return torch.backends.mkldnn.is_available() and bool(flags & {"avx512_bf16", "amx_bf16"})


def memory_format(channels_last: bool) -> torch.memory_format:
    """torch.channels_last (NHWC) or the default NCHW layout."""
    return torch.channels_last if channels_last else torch.contiguous_format


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device`, so wall-clock times cover it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype on `device`: bf16 on the CPU and on GPUs that have it, else fp16 (with a grad scaler)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def usable_cpus() -> int:
    """Logical CPUs this process may run on (a container or taskset may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(device: torch.device, local_processes: int = 1) -> int:
    """DataLoader workers: none on the CPU, where they would take cores from the model; with CUDA the
    usable CPUs shared among this machine's training processes, at most 8 each."""
    if device.type == "cpu":
        return 0
    return max(1, min(8, usable_cpus() // max(1, local_processes)))


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; an unavailable CUDA device is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but CUDA is not available; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
