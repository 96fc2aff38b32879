"""FLOPs per image and the numbers derived from the measurements: GFLOP/s, shares of the peak, speed-ups."""
from __future__ import annotations

from typing import Any

import torch

from nets.summary import count_flops
from utils.bench.measure import build_benchmarked
from utils.bench.variants import CANDIDATE_PREFIX, EAGER


def model_flops(name: str, size: int, in_channels: int, num_classes: int) -> dict[str, int]:
    """FLOPs per image: forward (inference) and forward + backward (training)."""
    with torch.device("meta"):
        model = build_benchmarked(name, num_classes, in_channels).to("meta")  # smp makes some weights on the CPU
    return {"infer": count_flops(model, size, in_channels), "train": count_flops(model, size, in_channels, True)}


def best_peaks(first: dict[str, dict[str, Any]], second: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per dtype, the higher of two peak measurements (taken before and after the models)."""
    return {dtype: max(first[dtype], second[dtype], key=lambda peak: peak["gflops"]) for dtype in first}


def add_rates(record: dict[str, Any], flops: dict[str, int], peaks: dict[str, dict[str, Any]]) -> None:
    """GFLOP/s = FLOPs per image * img/s / 1e9, and its fraction of the matmul peak of the compute dtype."""
    for phase in ("train", "infer"):
        if record[phase] is None:  # onnxruntime: inference only
            continue
        peak = "bf16" if record["levers"][phase]["amp"] and "bf16" in peaks else "fp32"
        stats = record[phase]
        stats["flops_per_image"] = flops[phase]
        stats["gflops"] = flops[phase] * stats["img_per_s"] / 1e9
        stats["peak"] = peak
        stats["peak_fraction"] = stats["gflops"] / peaks[peak]["gflops"]


def baseline_name(records: list[dict[str, Any]]) -> str:
    """The variant speed-ups are measured against: eager where it was measured, else the fp32-nchw candidate."""
    return EAGER.name if any(r["variant"] == EAGER.name for r in records) else CANDIDATE_PREFIX + "fp32-nchw"


def add_speedups(records: list[dict[str, Any]]) -> None:
    """speed-up = img/s / baseline img/s (eager, else the fp32-nchw candidate), on each other record whose model
    has a baseline."""
    name = baseline_name(records)
    eager = {r["model"]: r for r in records if r["variant"] == name and "error" not in r}
    for record in records:
        base = eager.get(record["model"])
        if record["variant"] != name and base and "error" not in record:
            record["speedup"] = {p: record[p]["img_per_s"] / base[p]["img_per_s"] if record[p] else None
                                 for p in ("train", "infer")}
