"""Measuring in this process: matmul peaks, the environment, and one (model, variant)'s inference and training."""
from __future__ import annotations

import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nets import build_model
from utils.bench.peers import PEER_NAMES, build_peer
from utils.bench.variants import Config, Phase
from utils.infer.export import onnx_bytes
from utils.io.files import atomic_open
from utils.runtime.device import (
    amp_dtype,
    cpuinfo,
    default_normalization,
    memory_format,
    native_bf16,
    normalize,
    synchronize,
    usable_cpus,
)
from utils.runtime.onnx_session import open_session, session_forward

GIB = 2**30
POOL_BATCHES = 4  # the synthetic dataset is re-iterated, so its size (and RSS) does not grow with --steps


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


def build_benchmarked(name: str, num_classes: int, in_channels: int) -> nn.Module:
    """One of this repository's models, or a peer (--peers)."""
    if name in PEER_NAMES:
        return build_peer(name, num_classes, in_channels)
    return build_model(name, num_classes=num_classes, in_channels=in_channels)


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
