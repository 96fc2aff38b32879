"""Benchmark the models: train and inference img/s, peak memory, achieved GFLOP/s against a measured
matmul peak, for the scripts' defaults ("default", levers chosen by the speed probe) beside every candidate
the probe chooses from ("fp32-nchw", ..., "bf16-channels-last"), so the report can show how close the default
comes to the best, and inference of the model exported to ONNX and run by onnxruntime ("onnxruntime").

Every (model, variant) runs in a fresh spawned process, so one configuration's peak memory (a process
high-water mark) cannot leak into the next. Writes <out>/benchmark.json (raw numbers, environment) and
<out>/benchmark.md (the table).

Usage: python benchmark.py --models unet_bn --size 256 --batch-size 2 --steps 5
"""
from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nets import MODEL_NAMES, build_model
from nets.summary import count_flops
from utils.bench.peers import PEER_NAMES, build_peer, check_peers
from utils.cli import ArgumentParser, add_device_argument, run_main
from utils.errors import UserError
from utils.infer.export import onnx_bytes
from utils.io.files import atomic_open, write_json, write_text
from utils.runtime.device import (
    amp_dtype,
    cpuinfo,
    default_normalization,
    memory_format,
    native_bf16,
    normalize,
    resolve_device,
    synchronize,
    usable_cpus,
)
from utils.runtime.forward import PREDICT_BATCH
from utils.runtime.onnx_session import open_session, session_forward
from utils.runtime.speed_probe import SpeedChoice, candidates, inference_choice, training_choice

GIB = 2**30
POOL_BATCHES = 4  # the synthetic dataset is re-iterated, so its size (and RSS) does not grow with --steps


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


def timed(work: Callable[[], object], device: torch.device) -> float:
    """Seconds `work` takes, device work included."""
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, seconds: float, chunks: int = 5
                ) -> dict[str, Any]:
    """GFLOP/s of back-to-back n x n matmuls (2 n^3 FLOP each): the fastest of `chunks` timed chunks
    filling about `seconds`, so a moment of interference from elsewhere does not lower the peak."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    out = torch.empty_like(a)
    timed(lambda: torch.mm(a, b, out=out), device)  # the first call pays for library set-up
    single = timed(lambda: torch.mm(a, b, out=out), device)
    repeats = max(1, round(seconds / chunks / single))
    elapsed = min(timed(lambda: [torch.mm(a, b, out=out) for _ in range(repeats)], device) for _ in range(chunks))
    return {"dtype": str(dtype).removeprefix("torch."), "n": n, "repeats": repeats, "seconds": elapsed,
            "gflops": 2 * n**3 * repeats / elapsed / 1e9}


def best_peaks(first: dict[str, dict[str, Any]], second: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per dtype, the higher of two peak measurements (taken before and after the models)."""
    return {dtype: max(first[dtype], second[dtype], key=lambda peak: peak["gflops"]) for dtype in first}


def probe_environment(device_name: str, threads: int, peak_seconds: float) -> dict[str, Any]:
    """Hardware, versions and matmul peaks, measured in a worker process like the models."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    bf16 = native_bf16(device)
    peaks = {"fp32": matmul_peak(device, torch.float32, 2048, peak_seconds)}
    if device.type == "cuda" or bf16:
        peaks["bf16"] = matmul_peak(device, torch.bfloat16, 8192 if device.type == "cuda" else 2048, peak_seconds)
    env = {"device": device_name, "cpu": next(iter(cpuinfo("model name")), "") or platform.processor() or "CPU",
           "physical_cores": len(set(zip(cpuinfo("physical id"), cpuinfo("core id")))) or None,
           "logical_cpus": usable_cpus(),
           "threads": threads, "torch": torch.__version__, "python": platform.python_version(),
           "native_bf16": bf16, "peaks": peaks}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                   matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return env


def peak_rss_gib() -> float:
    """This process's peak resident memory so far (getrusage's high-water mark)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / GIB if sys.platform == "darwin" else peak * 1024 / GIB  # bytes on macOS, KiB on Linux


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """Autocast to the device's mixed-precision dtype (bf16, or fp16 on GPUs without bf16) when `enabled`."""
    return torch.autocast(device.type, dtype=amp_dtype(device), enabled=enabled)


def forever(loader: DataLoader) -> Iterator[list[torch.Tensor]]:
    """The loader's batches, pass after pass."""
    while True:
        yield from loader


class Measurement:
    """One model with one variant's levers on one device; `inference` and `training` time it."""

    def __init__(self, config: Config) -> None:
        torch.set_num_threads(config.threads)
        torch.manual_seed(0)
        self.config, self.variant, self.device = config, config.variant, torch.device(config.device)
        torch.backends.cudnn.benchmark = self.variant.cudnn_benchmark
        self.normalization = default_normalization(config.in_channels)
        model = build_benchmarked(config.model, config.num_classes, config.in_channels)
        self.model = model.to(self.device)
        self.compiled = torch.compile(self.model) if self.variant.compile else self.model
        self.phase = self.variant.infer

    def _start(self, phase: Phase) -> None:
        """Put the model in the memory format of the phase about to be measured."""
        self.phase = phase
        self.model.to(memory_format=self._memory_format())

    def _memory_format(self) -> torch.memory_format:
        """channels_last where the phase asks for it, else the default NCHW."""
        return memory_format(self.phase.channels_last)

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images on the device -> normalised float input in the phase's memory format."""
        return normalize(images, self.normalization).contiguous(memory_format=self._memory_format())

    def _first_call(self, run: Callable[[nn.Module], object]) -> nn.Module:
        """Run `run` once (warm-up) with the compiled model; if compiling fails, say so and use the eager one."""
        if self.compiled is self.model:
            run(self.model)
            return self.model
        try:
            run(self.compiled)
            return self.compiled
        except Exception as exc:  # any compiler failure (no C++ compiler, unsupported op, ...) means: measure eager
            torch.compiler.reset()
            self.compiled = self.model  # the other phase would fail the same way; don't pay for it twice
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            print(f"note: torch.compile failed for {self.config.model} ({type(exc).__name__}: {reason}); "
                  f"measuring it without compile", file=sys.stderr, flush=True)
            run(self.model)
            return self.model

    def _phase_result(self, step_seconds: list[float], net: nn.Module) -> dict[str, Any]:
        """img/s of the median timed step (a shared machine slows single steps), and whether it ran compiled."""
        median = statistics.median(step_seconds)
        return {"step_seconds": step_seconds, "median_step_seconds": median,
                "img_per_s": self.config.batch / median, "compiled": net is not self.model}

    def _reset_cuda_peak(self) -> None:
        """Start a new CUDA high-water mark (the CPU one cannot be reset, hence inference first)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _cuda_peak_gib(self) -> float | None:
        """CUDA memory high-water mark since the last reset (None on CPU)."""
        return torch.cuda.max_memory_allocated(self.device) / GIB if self.device.type == "cuda" else None

    def inference(self) -> dict[str, Any]:
        """Forward passes under inference_mode on one fixed batch."""
        self._start(self.variant.infer)
        self.model.eval()
        self._reset_cuda_peak()
        shape = (self.config.batch, self.config.in_channels, self.config.size, self.config.size)
        inputs = self._inputs(torch.randint(0, 256, shape, dtype=torch.uint8, device=self.device))

        def run(net: nn.Module, count: int = 1) -> list[float]:
            with torch.inference_mode(), autocast(self.device, self.phase.amp):
                return [timed(lambda: net(inputs), self.device) for _ in range(count)]

        net = self._first_call(run)
        run(net, self.config.warmup - 1)
        result = self._phase_result(run(net, self.config.steps), net)
        return {**result, "peak_rss_gib": peak_rss_gib(), "cuda_peak_gib": self._cuda_peak_gib()}

    def _loader(self) -> Iterator[list[torch.Tensor]]:
        """Synthetic in-memory uint8 images and labels, batched by a DataLoader in this process."""
        count, size = POOL_BATCHES * self.config.batch, self.config.size
        images = torch.randint(0, 256, (count, self.config.in_channels, size, size), dtype=torch.uint8)
        labels = torch.randint(0, self.config.num_classes, (count, size, size), dtype=torch.uint8)
        loader = DataLoader(TensorDataset(images, labels), batch_size=self.config.batch,
                            pin_memory=self.device.type == "cuda")
        return forever(loader)

    def _train_steps(self, net: nn.Module, optimizer: torch.optim.Optimizer,
                     batches: Iterator[list[torch.Tensor]], count: int) -> tuple[list[float], list[float]]:
        """Seconds waiting for data and seconds in all of each of `count` full training steps."""
        waited, total = [], []
        for _ in range(count):
            start = time.perf_counter()
            images, labels = next(batches)
            loaded = time.perf_counter()
            inputs = self._inputs(images.to(self.device, non_blocking=True))
            labels = labels.to(self.device, non_blocking=True).long()
            with autocast(self.device, self.phase.amp):
                loss = F.cross_entropy(net(inputs), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            synchronize(self.device)  # per step, so waiting for data and computing add up to the step time
            waited.append(loaded - start)
            total.append(time.perf_counter() - start)
        return waited, total

    def training(self) -> dict[str, Any]:
        """Full training steps fed by a DataLoader; the share of step time spent waiting for data."""
        self._start(self.variant.train)
        self.model.train()
        self._reset_cuda_peak()
        optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4, fused=self.variant.fused_adam or None)
        batches = self._loader()
        net = self._first_call(lambda candidate: self._train_steps(candidate, optimizer, batches, 1))
        self._train_steps(net, optimizer, batches, self.config.warmup - 1)
        waited, total = self._train_steps(net, optimizer, batches, self.config.steps)
        return {**self._phase_result(total, net), "data_seconds": sum(waited),
                "data_wait_fraction": sum(waited) / sum(total),
                "peak_rss_gib": peak_rss_gib(), "cuda_peak_gib": self._cuda_peak_gib()}


def export_model_file(config: Config) -> None:
    """Export the config's model (seeded as Measurement seeds it) to ONNX at config.model_file."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(0)
    model = build_benchmarked(config.model, config.num_classes, config.in_channels).eval()
    images = torch.randint(0, 256, (2, config.in_channels, config.size, config.size), dtype=torch.uint8)
    payload = onnx_bytes(model, normalize(images, default_normalization(config.in_channels)), {})
    with atomic_open(config.model_file, "wb") as handle:
        handle.write(payload)


def measure_onnxruntime(config: Config) -> dict[str, Any]:
    """Inference of the exported model by onnxruntime (fp32) on one fixed batch, in this (fresh) process."""
    baseline = peak_rss_gib()
    session = open_session(config.model_file, config.device, threads=config.threads)
    forward = session_forward(session)
    shape = (config.batch, config.in_channels, config.size, config.size)
    inputs = normalize(torch.randint(0, 256, shape, dtype=torch.uint8), default_normalization(config.in_channels))
    cpu = torch.device("cpu")  # session.run returns on the host: its time includes the device's work
    steps = [timed(lambda: forward(inputs), cpu) for _ in range(config.warmup + config.steps)][config.warmup:]
    median = statistics.median(steps)
    infer = {"step_seconds": steps, "median_step_seconds": median, "img_per_s": config.batch / median,
             "compiled": False, "provider": session.get_providers()[0], "peak_rss_gib": peak_rss_gib(),
             "cuda_peak_gib": None}
    return {"infer": infer, "train": None, "memory": {
        "baseline_rss_gib": baseline, "peak_rss_gib": infer["peak_rss_gib"], "cuda_peak_gib": None,
        "peak_gib": infer["peak_rss_gib"], "measure": "process peak RSS (ru_maxrss)"}}


def measure(config: Config) -> dict[str, Any]:
    """Inference, then training, of one (model, variant), in this (fresh) process."""
    if config.variant.runtime == "onnxruntime":
        return measure_onnxruntime(config)
    baseline = peak_rss_gib()
    bench = Measurement(config)
    infer = bench.inference()  # first, so its RSS high-water mark is its own
    train = bench.training()
    cuda = [p for p in (infer["cuda_peak_gib"], train["cuda_peak_gib"]) if p is not None]
    return {"infer": infer, "train": train, "memory": {
        "baseline_rss_gib": baseline, "peak_rss_gib": train["peak_rss_gib"],
        "cuda_peak_gib": max(cuda) if cuda else None,
        "peak_gib": max(cuda) if cuda else train["peak_rss_gib"],
        "measure": "torch.cuda.max_memory_allocated" if cuda else "process peak RSS (ru_maxrss)"}}


def in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """function(*args) in a new spawned process: its own getrusage high-water mark and CUDA state."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def build_benchmarked(name: str, num_classes: int, in_channels: int) -> nn.Module:
    """One of this repository's models, or a peer (--peers)."""
    if name in PEER_NAMES:
        return build_peer(name, num_classes, in_channels)
    return build_model(name, num_classes=num_classes, in_channels=in_channels)


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


def probed_variant(variant: Variant, probe: dict[str, dict[str, Any]]) -> Variant:
    """The default variant with the levers the probe chose for this model."""
    train, infer = SpeedChoice(**probe["train"]), SpeedChoice(**probe["infer"])
    return replace(variant, train=Phase(train.channels_last, train.amp), infer=Phase(infer.channels_last, infer.amp))


def model_flops(name: str, size: int, in_channels: int, num_classes: int) -> dict[str, int]:
    """FLOPs per image: forward (inference) and forward + backward (training)."""
    with torch.device("meta"):
        model = build_benchmarked(name, num_classes, in_channels).to("meta")  # smp makes some weights on the CPU
    return {"infer": count_flops(model, size, in_channels), "train": count_flops(model, size, in_channels, True)}


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


def lever_text(record: dict[str, Any]) -> str:
    """The variant with the levers it actually used (per phase where the phases differ)."""
    levers = record["levers"]
    if record["variant"] == EAGER.name:
        return EAGER.name
    if levers["runtime"] == "onnxruntime":
        return "onnxruntime: fp32" + ("" if "error" in record else f", {record['infer']['provider']}")

    def phase_text(phase: dict[str, bool]) -> list[str]:
        return [name for name, on in (("channels-last", phase["channels_last"]), ("bf16", phase["amp"])) if on]

    train, infer = phase_text(levers["train"]), phase_text(levers["infer"])
    used = ["+".join(train)] if train == infer else \
        [f"train {'+'.join(train) or 'fp32-nchw'} / infer {'+'.join(infer) or 'fp32-nchw'}"]
    fell_back = "error" not in record and not (record["train"]["compiled"] and record["infer"]["compiled"])
    used += [name for name, on in (("compile (failed, ran eager)" if fell_back else "compile", levers["compile"]),
                                   ("cudnn.benchmark", levers["cudnn_benchmark"]),
                                   ("fused Adam", levers["fused_adam"])) if on]
    return f"{record['variant']}: " + (", ".join(part for part in used if part) or "no levers")


def table_row(record: dict[str, Any]) -> str:
    """One Markdown table row."""
    head = [record["model"], lever_text(record), record["device"], str(record["size"]), str(record["batch"])]
    if "error" in record:
        error = " ".join(record["error"].split()).replace("|", "/")  # one line that cannot break the table
        return "| " + " | ".join(head + [f"failed: {error}"] + [""] * 6) + " |"
    train, infer = record["train"] or {}, record["infer"]
    speedup = record.get("speedup")

    def rate(stats: dict[str, Any]) -> str:
        return f"{stats['gflops']:.1f} ({100 * stats['peak_fraction']:.1f}% {stats['peak']})" if stats else "-"

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    cells = [f"{train['img_per_s']:.2f}" if train else "-", f"{infer['img_per_s']:.2f}", rate(train), rate(infer),
             f"{100 * train['data_wait_fraction']:.1f}" if train else "-", f"{record['memory']['peak_gib']:.2f}",
             f"{ratio(speedup['train'])} / {ratio(speedup['infer'])}" if speedup else "-"]
    return "| " + " | ".join(head + cells) + " |"


def hardware_line(env: dict[str, Any]) -> str:
    """Device, CPU, cores/threads and versions in one line."""
    cores = f"{env['physical_cores']} cores, " if env["physical_cores"] else ""
    cpu = f"{env['cpu']}, {cores}{env['logical_cpus']} logical CPUs usable, {env['threads']} torch threads"
    device = f"{env['gpu']} (CUDA {env['cuda']}, cuDNN {env['cudnn']}); host {cpu}" if "gpu" in env else cpu
    return f"**Hardware:** {device}; torch {env['torch']}, Python {env['python']}"


def peak_line(env: dict[str, Any]) -> str:
    """The measured matmul peaks."""
    peaks = "; ".join(f"{p['dtype']} {p['gflops']:.1f} GFLOP/s ({p['n']}x{p['n']}, {p['repeats']} repeats)"
                      for p in env["peaks"].values())
    note = " (cuDNN fp32 convolutions may use TF32, so fp32 % can pass 100)" if env.get("cudnn_allow_tf32") else ""
    return f"**Matmul peak** (fastest of 5 chunks, before and after the models): {peaks}{note}"


def probe_text(data: dict[str, Any]) -> tuple[str, str]:
    """The probe's choice and its candidates' step times (ms), from a SpeedChoice's JSON."""
    choice = SpeedChoice(**data)
    chosen = choice.name
    steps = ", ".join(f"{name} {1000 * s:.0f}" if s is not None else f"{name} failed"
                      for name, s in choice.seconds.items()) or "-"
    return chosen, f"{steps} ({choice.source})"


def choice_lines(records: list[dict[str, Any]]) -> list[str]:
    """Per model and phase: the probe's choice and its timings, and the default row's img/s against the best
    candidate row's in this harness. Inference defaults are fp32 (scores must not depend on the machine), so they
    are held against the fp32 candidates only."""
    ok = [r for r in records if "error" not in r]
    rows = []
    for record in (r for r in ok if r["variant"] == "default" and r.get("probe")):
        for phase in ("train", "infer"):
            chosen, steps = probe_text(record["probe"][phase])
            rivals = [r for r in ok if r["model"] == record["model"] and r["variant"].startswith(CANDIDATE_PREFIX)
                      and (phase == "train" or not r["levers"]["infer"]["amp"])]
            best = max(rivals, key=lambda r: r[phase]["img_per_s"], default=None)
            mine = record[phase]["img_per_s"]
            versus = ("- | -" if best is None else
                      f"{best['variant'].removeprefix(CANDIDATE_PREFIX)} {best[phase]['img_per_s']:.3g} | "
                      f"{mine / best[phase]['img_per_s']:.2f}")
            rows.append(f"| {record['model']} | {phase} | {chosen} | {steps} | {mine:.3g} | {versus} |")
    if not rows:
        return []
    return ["", "**Default against the best candidate** (the speed probe's choice and its own step times; then "
            "img/s of the default row and of the fastest candidate row in this harness):", "",
            "| model | phase | default | probe: ms per step | default img/s | best candidate img/s | default / best |",
            "|" + "---|" * 7, *rows]


def share_lines(records: list[dict[str, Any]]) -> list[str]:
    """Per model (the peers included), each variant's share of the matmul peak, train / infer: efficiency
    comparable across models of different FLOP counts."""
    ok = [r for r in records if "error" not in r and r["train"] is not None]
    names = list(dict.fromkeys(r["variant"] for r in ok))
    if not ok:
        return []
    rows = []
    for model in dict.fromkeys(r["model"] for r in ok):
        cells = {r["variant"]: f"{100 * r['train']['peak_fraction']:.0f} / {100 * r['infer']['peak_fraction']:.0f}"
                 for r in ok if r["model"] == model}
        rows.append(f"| {model} | " + " | ".join(cells.get(name, "-") for name in names) + " |")
    return ["", "**Share of the matmul peak** (% of the compute dtype's peak, train / infer; peers, where "
            "measured, in the same run and harness):", "",
            "| model | " + " | ".join(name.removeprefix(CANDIDATE_PREFIX) for name in names) + " |",
            "|" + "---|" * (1 + len(names)), *rows]


def markdown(env: dict[str, Any], settings: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The report: hardware and peak lines, then one table row per record."""
    memory = ("CUDA max_memory_allocated" if "gpu" in env
              else "process peak RSS, Python and torch included (their share: memory.baseline_rss_gib in the JSON)")
    lines = ["# Benchmark", "", hardware_line(env), "", peak_line(env), "",
             f"img/s from the median of {settings['steps']} timed steps, after {settings['warmup']} warm-up steps; "
             f"training is fed by an "
             f"in-process DataLoader over in-memory uint8 samples; % of the matmul peak of the compute dtype; "
             f"peak memory is the {memory}; speed-up is img/s over the {baseline_name(records)} row of the same model "
             f"(train / infer); onnxruntime rows run "
             f"the model exported to ONNX (fp32), inference only.", "",
             "| model | variant | device | size | batch | train img/s | infer img/s | train GFLOP/s (% of peak) "
             "| infer GFLOP/s (% of peak) | data wait % | peak memory (GiB) | speed-up |",
             "|" + "---|" * 12]
    return "\n".join(lines + [table_row(r) for r in records] + choice_lines(records) + share_lines(records)) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated model names")
    parser.add_argument("--size", type=int, default=256, help="square input size in pixels")
    parser.add_argument("--batch-size", type=int, default=2, help="images per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per phase")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    add_device_argument(parser)
    parser.add_argument("--in-channels", type=int, default=3, choices=(1, 3), help="model input channels")
    parser.add_argument("--num-classes", type=int, default=2, help="output classes (cross-entropy, so 2 or more)")
    parser.add_argument("--out", default="bench", help="folder for benchmark.json and benchmark.md")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help="comma-separated: eager (plain fp32 NCHW, no fused Adam), default (what the train "
                             "and predict scripts use on this device), candidates (each precision x layout the "
                             "speed probe chooses from), tuned (the levers below), onnxruntime (inference of the "
                             "model exported to ONNX)")
    parser.add_argument("--peak-seconds", type=float, default=1.0, help="time spent on each matmul peak")
    parser.add_argument("--peers", action="store_true",
                        help="also measure segmentation_models_pytorch Unet(vgg16) and MONAI AttentionUnet (2-D) "
                             "in the same harness (pip install -r requirements-bench.txt)")
    tuned = parser.add_argument_group("tuned variant levers")
    tuned.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                       help="channels-last memory format for model and input")
    tuned.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                       help="torch.compile (falls back to eager with a note if compiling fails)")
    tuned.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                       help="bf16 autocast; unset (None) = on where bf16 is native: CUDA sm80+, "
                            "CPUs with AVX512-BF16 or AMX")
    return parser


def listed_names(text: str, valid: tuple[str, ...], kind: str) -> list[str]:
    """The comma-separated names in `text`, each once; an unknown or empty list is a UserError."""
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise UserError(f"unknown {kind}(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(valid)}")
    return names


def check_args(args: argparse.Namespace) -> list[str]:
    """Validate the options; the requested model names."""
    models = listed_names(args.models, MODEL_NAMES, "model")
    limits = {"--size": (args.size, 16), "--batch-size": (args.batch_size, 1), "--steps": (args.steps, 1),
              "--warmup": (args.warmup, 1), "--threads": (args.threads, 1), "--num-classes": (args.num_classes, 2)}
    for option, (value, low) in limits.items():
        if value < low:
            raise UserError(f"{option} must be at least {low}, got {value}")
    if args.peak_seconds <= 0:
        raise UserError(f"--peak-seconds must be positive, got {args.peak_seconds}")
    return models


def check_device(name: str) -> torch.device:
    """resolve_device, plus a clear error for a CUDA index that does not exist."""
    device = resolve_device(name)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device '{name}' does not exist; {torch.cuda.device_count()} CUDA device(s) found")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device '{name}' is not supported; use auto, cpu, cuda or cuda:N")
    return device


def variants(args: argparse.Namespace, device: torch.device, bf16_native: bool) -> list[Variant]:
    """The variants asked for: eager; default = the scripts' defaults (precision and layout: the speed probe's
    choices per model, filled in by probed_variant); candidates = each precision x layout the probe chooses
    from, with the default's other levers; tuned = the flags, with fused Adam and, on CUDA, cuDNN autotuning;
    onnxruntime = inference of the exported model (utils.infer.export), fp32."""
    names = listed_names(args.variants, VARIANTS, "variant")
    amp = bf16_native if args.amp is None else args.amp
    if amp and not bf16_native:
        print(f"note: bf16 is not native on {device}; --amp will likely be slow", file=sys.stderr)
    cuda = device.type == "cuda"
    tuned_phase = Phase(channels_last=args.channels_last, amp=amp)
    chosen = {"eager": [EAGER],
              "default": [Variant("default", cudnn_benchmark=cuda, fused_adam=True)],
              "candidates": [Variant(CANDIDATE_PREFIX + c.name, train=Phase(c.channels_last, c.amp),
                                     infer=Phase(c.channels_last, c.amp), cudnn_benchmark=cuda, fused_adam=True)
                             for c in candidates(device)],
              "tuned": [Variant("tuned", train=tuned_phase, infer=tuned_phase, compile=args.compile,
                                cudnn_benchmark=cuda, fused_adam=True)],
              "onnxruntime": [ONNXRUNTIME]}
    return [variant for name in names for variant in chosen[name]]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = build_parser().parse_args(argv)
    models = check_args(args)
    if args.peers:
        check_peers(args.size)
        models += PEER_NAMES
    device = check_device(args.device)
    device_name = str(device)
    env = in_fresh_process(probe_environment, device_name, args.threads, args.peak_seconds)
    chosen, measured = variants(args, device, env["native_bf16"]), []
    probed = any(variant.name == "default" for variant in chosen)
    for name in models:
        flops = model_flops(name, args.size, args.in_channels, args.num_classes)
        probe = in_fresh_process(probe_defaults, name, device_name, args.size, args.batch_size, args.threads,
                                 args.in_channels, args.num_classes) if probed else None
        for variant in chosen:
            if variant.name == "default":
                variant = probed_variant(variant, probe)
            config = Config(name, variant, device_name, args.size, args.batch_size, args.steps, args.warmup,
                            args.threads, args.in_channels, args.num_classes)
            record = run_config(config)
            measured.append(({**record, "probe": probe} if variant.name == "default" else record, flops))
    # The peak is measured again after the models: a busy moment must not make the models look faster.
    env["peaks"] = best_peaks(env["peaks"], in_fresh_process(probe_environment, device_name, args.threads,
                                                             args.peak_seconds)["peaks"])
    records = []
    for record, flops in measured:
        if "error" not in record:
            add_rates(record, flops, env["peaks"])
        records.append(record)
    add_speedups(records)
    settings = vars(args)
    report = markdown(env, settings, records)
    out = Path(args.out)
    write_json(out / "benchmark.json", {"environment": env, "settings": settings, "records": records})
    write_text(out / "benchmark.md", report)
    print(report + f"wrote {out / 'benchmark.json'} and {out / 'benchmark.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
