"""Each measurement in a fresh spawned process, so one configuration's peak memory cannot leak into the next."""
from __future__ import annotations

import multiprocessing
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import torch

from utils.bench.measure import build_benchmarked, export_model_file, measure
from utils.bench.variants import Config
from utils.runtime.forward import PREDICT_BATCH
from utils.runtime.speed_probe import inference_choice, training_choice


def in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """function(*args) in a new spawned process: its own getrusage high-water mark and CUDA state."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def probe_defaults(name: str, device_name: str, size: int, batch: int, threads: int, in_channels: int,
                   num_classes: int) -> dict[str, dict[str, Any]]:
    """The speed probe's training and inference choices for one model, as the train scripts and the Predictor
    make them (through the same cache), in this (fresh) process."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as the train scripts set it
    torch.manual_seed(0)
    model = build_benchmarked(name, num_classes, in_channels)
    train = training_choice(model, device, name, in_channels, num_classes, size, batch)
    infer = inference_choice(model.to(device).eval(), device, name, in_channels, num_classes, size, False,
                             PREDICT_BATCH)
    return {"train": train.to_json(), "infer": infer.to_json()}


def run_config(config: Config) -> dict[str, Any]:
    """One record; a failing configuration (e.g. out of memory) becomes a record with an error."""
    record: dict[str, Any] = {"model": config.model, "variant": config.variant.name,
                              "levers": asdict(config.variant), "device": config.device,
                              "size": config.size, "batch": config.batch}
    print(f"measuring {config.model} {config.variant.name} ...", flush=True)
    try:
        if config.variant.runtime == "onnxruntime":
            # Exported in a process of its own, so the exporter's memory is not counted as inference memory.
            with tempfile.TemporaryDirectory() as folder:
                config = replace(config, model_file=str(Path(folder) / f"{config.model}.onnx"))
                in_fresh_process(export_model_file, config)
                record.update(in_fresh_process(measure, config))
        else:
            record.update(in_fresh_process(measure, config))
    except Exception as exc:  # one bad configuration must not lose the others' numbers
        print(f"error: {config.model} {config.variant.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return {**record, "error": f"{type(exc).__name__}: {exc}"}
    return record
