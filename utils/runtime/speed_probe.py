"""Speed defaults by measurement: time the precision x memory-layout candidates on the run's own model, once per
set-up, and keep the fastest (a near tie goes to fp32, then to channels-last).

Candidates are timed at the run's batch on at most PROBE_SIZE pixels square, which bounds the probe's cost at
any input size. The result is cached per machine, torch version, model, channels, classes, probed size, batch
and device type in $UNET_SEGMENTATION_CACHE, else $XDG_CACHE_HOME/unet-segmentation, else
~/.cache/unet-segmentation. A probe timed while other processes kept the CPUs busy is cached marked noisy:
later runs use it as it is while the machine stays busy, and time again once it is quiet.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import math
import os
import platform
import random
from dataclasses import asdict, dataclass, field
from time import perf_counter, process_time
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from utils.runtime.device import amp_dtype, cpuinfo, memory_format, synchronize, usable_cpus
from utils.runtime.speed_cache import CACHE_ENV as CACHE_ENV  # the names users and tests set
from utils.runtime.speed_cache import CACHE_FILE as CACHE_FILE
from utils.runtime.speed_cache import cache_path, note, read_cache, write_cache

TIE = 0.05  # within this fraction of the fastest counts as as fast: the preferred such candidate wins
# A first timed step this far from the best so far decides alone; closer calls get a second step.
CLEARLY = 1.25
# Other processes busy on more than this share of the CPUs make a CPU probe noisy: cached as such, and timed again
# by a later run on a quiet machine.
BUSY = 0.25
# Probes time this side, or the run's own where it is smaller, to bound their cost: on the 2-core EPYC the
# candidates ranked alike at 128, 256 and 512 px with the batch kept, but not at batch 1 against 2 or 4
# (docs/speed.md), so the batch is never changed.
PROBE_SIZE = 128

Step = Callable[[], None]
StepFactory = Callable[["Candidate"], Step]


@dataclass(frozen=True)
class Candidate:
    """One precision x memory-layout combination."""

    precision: str  # "fp32", "bf16" or "fp16"
    channels_last: bool

    @property
    def amp(self) -> bool:
        """Whether this candidate autocasts."""
        return self.precision != "fp32"

    @property
    def name(self) -> str:
        """'fp32-nchw', 'bf16-channels-last', ..."""
        return f"{self.precision}-{'channels-last' if self.channels_last else 'nchw'}"


@dataclass(frozen=True)
class SpeedChoice:
    """The chosen precision and layout, and the timings behind it (plain types: it goes into checkpoints)."""

    precision: str
    channels_last: bool
    source: str  # "given" (nothing left to choose), "probe" (timed now) or "cache" (timed before)
    seconds: dict[str, float | None] = field(default_factory=dict)  # per candidate, fastest step; None = failed
    probe_seconds: float | None = None  # what the probe itself took
    cache: str | None = None
    busy: float | None = None  # share of the CPUs other processes used during the probe (CPU only)
    probe_size: int | None = None  # the side the candidates were timed at
    noisy: bool = False  # timed while other processes kept more than BUSY of the CPUs busy

    @property
    def amp(self) -> bool:
        """Whether the choice autocasts."""
        return self.precision != "fp32"

    @property
    def name(self) -> str:
        """'fp32-nchw', 'bf16-channels-last', ..., as the candidates are named."""
        return Candidate(self.precision, self.channels_last).name

    def describe(self) -> str:
        """One line: the choice and why."""
        what = f"{self.precision} + {'channels-last' if self.channels_last else 'NCHW'}"
        if self.source == "given":
            return f"{what} (given, not probed)"
        steps = ", ".join(f"{name} {'failed' if seconds is None else f'{seconds * 1000:.0f} ms'}"
                          for name, seconds in self.seconds.items())
        origin = f"probe took {self.probe_seconds:.1f} s" if self.source == "probe" else "cached probe"
        if self.probe_size:
            origin += f" at {self.probe_size}x{self.probe_size}"
        if self.source == "probe" and self.noisy:
            origin += (f", noisy: other processes used {self.busy:.0%} of the CPUs; cached as noisy, timed again "
                       f"when the machine is quiet")
        elif self.noisy:
            origin += ", noisy: timed on a busy machine; timed again when the machine is quiet"
        return f"{what}, the fastest per step ({steps}; {origin}; cache {self.cache})"

    def to_json(self) -> dict[str, Any]:
        """The choice as plain types."""
        return asdict(self)


def candidates(device: torch.device, amp: bool | None = None, channels_last: bool | None = None) -> list[Candidate]:
    """The combinations to time on `device`, fp32 and NCHW first; a lever given as True/False is fixed."""
    low = {torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype(device)]
    precisions = ["fp32", low] if amp is None else [low if amp else "fp32"]
    layouts = [False, True] if channels_last is None else [channels_last]
    return [Candidate(precision, layout) for precision in precisions for layout in layouts]


def choose(timings: dict[Candidate, float]) -> Candidate:
    """The preferred candidate within TIE of the fastest: fp32 before mixed precision (the scores stay those of
    fp32), then channels-last before NCHW (its lead grew with size and batch, past the probe's PROBE_SIZE)."""
    fastest = min(timings.values())
    near = [candidate for candidate, seconds in timings.items() if seconds <= fastest * (1 + TIE)]
    return min(near, key=lambda candidate: (candidate.amp, not candidate.channels_last))


def _timed(step: Step) -> float:
    start = perf_counter()
    step()
    return perf_counter() - start


def time_candidates(options: list[Candidate], make_step: StepFactory) -> dict[Candidate, float]:
    """Seconds per step of each candidate: one warm-up step, then one timed step, or two when the first lands
    within CLEARLY of the best so far. A failing candidate (e.g. out of memory) times as infinity."""
    timings: dict[Candidate, float] = {}
    errors: list[RuntimeError] = []
    for candidate in options:
        try:
            step = make_step(candidate)
            step()  # warm-up: allocations, kernel selection, autotuning
            seconds = _timed(step)
            best = min(timings.values(), default=math.inf)
            if best / CLEARLY < seconds < best * CLEARLY:
                seconds = min(seconds, _timed(step))
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            errors.append(exc)
            seconds = math.inf
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        timings[candidate] = seconds
    if len(errors) == len(options):
        raise errors[0]
    return timings


def cpu_sample() -> tuple[float, float] | None:
    """(CPU seconds the whole machine has been busy, this process's CPU seconds); None without /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            ticks = [int(value) for value in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), process_time()


def others_share(before: tuple[float, float] | None, after: tuple[float, float] | None,
                 wall: float) -> float | None:
    """The share of the machine's CPUs that other processes kept busy between two cpu_sample()s."""
    if before is None or after is None or wall < 0.5:  # /proc/stat counts in 10 ms ticks
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others / (wall * (os.cpu_count() or 1)))


@contextlib.contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Leave the python, numpy and torch (CPU and `device`) random streams as they were."""
    python, numpy = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)


def others_busy_now() -> float | None:
    """The share of the CPUs other processes keep busy now, from the 1-minute load average less this process;
    None where the system has no load average."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
    return max(0.0, load - 1) / (os.cpu_count() or 1)


def machine_key(device: torch.device) -> dict[str, Any]:
    """What makes timings of one machine valid: GPU name or CPU model and flags, usable cores, threads, torch."""
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    else:
        flags = hashlib.sha256(next(iter(cpuinfo("flags")), "").encode()).hexdigest()[:16]
        machine = f"{next(iter(cpuinfo('model name')), '') or platform.processor() or 'CPU'} flags:{flags}"
    return {"machine": machine, "cpus": usable_cpus(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": device.type}


def decide(device: torch.device, key: dict[str, Any], options: list[Candidate],
           make_steps: Callable[[], StepFactory], what: str) -> SpeedChoice:
    """The cached choice for `key`, else time `options` (steps from `make_steps()`) and cache the fastest."""
    if len(options) == 1:
        return SpeedChoice(options[0].precision, options[0].channels_last, "given")
    names = [candidate.name for candidate in options]
    key = {**machine_key(device), **key, "candidates": names}
    path = cache_path()
    entries = read_cache(path)
    hit = next((e for e in reversed(entries) if e["key"] == key and e["choice"] in names), None)
    retime = hit is not None and hit.get("noisy") and (others_busy_now() or 0.0) <= BUSY
    if hit and not retime:
        chosen = options[names.index(hit["choice"])]
        return SpeedChoice(chosen.precision, chosen.channels_last, "cache", hit["seconds"],
                           hit.get("probe_seconds"), str(path), probe_size=key.get("probe_size"),
                           noisy=bool(hit.get("noisy")))
    again = "again: the cached timings were noisy and the machine is quiet now" if retime else "once for this set-up"
    print(f"speed probe: timing {what} as {', '.join(names)} ({again}; cached in {path})", flush=True)
    sample, start = cpu_sample(), perf_counter()
    with preserved_rng(device):
        timings = time_candidates(options, make_steps())
    wall = perf_counter() - start
    busy = others_share(sample, cpu_sample(), wall) if device.type == "cpu" else None
    chosen = choose(timings)
    seconds = {c.name: (s if math.isfinite(s) else None) for c, s in timings.items()}
    noisy = busy is not None and busy > BUSY
    choice = SpeedChoice(chosen.precision, chosen.channels_last, "probe", seconds, wall, str(path), busy,
                         key.get("probe_size"), noisy)
    if noisy:
        note(f"other processes kept {busy:.0%} of the CPUs busy during the speed probe, so its timings are "
              f"noisy: its choice ({chosen.name}) is cached marked noisy, used while the machine stays busy and "
              f"timed again by a run on a quiet machine")
    entry = {"key": key, "choice": chosen.name, "seconds": seconds, "probe_seconds": wall,
             "measured": datetime.datetime.now().isoformat(timespec="seconds"), "noisy": noisy}
    write_cache(path, [e for e in entries if e["key"] != key] + [entry])
    return choice


def training_steps(model: torch.nn.Module, device: torch.device, in_channels: int, num_classes: int, size: int,
                   batch: int) -> StepFactory:
    """Full training steps (forward, loss, backward, fused Adam step) of a throwaway copy of `model` on a
    synthetic batch."""
    probe = copy.deepcopy(model).to(device).train()
    inputs = torch.randn(batch, in_channels, size, size, device=device)
    labels = torch.randint(0, max(num_classes, 2), (batch, size, size), device=device)

    def loss_of(logits: torch.Tensor) -> torch.Tensor:
        if num_classes == 1:
            return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
        return F.cross_entropy(logits, labels)

    def make_step(candidate: Candidate) -> Step:
        layout = memory_format(candidate.channels_last)
        probe.to(memory_format=layout)
        optimizer = torch.optim.Adam(probe.parameters(), lr=1e-4, fused=device.type in ("cpu", "cuda"))
        scaler = torch.amp.GradScaler(device.type, enabled=candidate.precision == "fp16")

        def step() -> None:
            with torch.autocast(device.type, dtype=amp_dtype(device), enabled=candidate.amp):
                logits = probe(inputs.contiguous(memory_format=layout))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss_of(logits.float())).backward()
            scaler.step(optimizer)
            scaler.update()
            synchronize(device)
        return step
    return make_step


def inference_steps(model: torch.nn.Module, device: torch.device, in_channels: int, size: int,
                    batch: int) -> StepFactory:
    """Forward passes (to probabilities) of `model` in eval mode on a synthetic batch; only its layout changes."""
    inputs = torch.randn(batch, in_channels, size, size, device=device)

    def make_step(candidate: Candidate) -> Step:
        layout = memory_format(candidate.channels_last)
        model.to(memory_format=layout)

        def step() -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype(device), enabled=candidate.amp):
                model(inputs.contiguous(memory_format=layout)).float().softmax(dim=1)
            synchronize(device)
        return step
    return make_step


def training_choice(model: torch.nn.Module, device: torch.device, model_name: str, in_channels: int,
                    num_classes: int, size: int, batch: int, amp: bool | None = None,
                    channels_last: bool | None = None) -> SpeedChoice:
    """Precision and layout for training: the given levers, the rest the fastest by the probe (or its cache),
    timed at the run's batch and at most PROBE_SIZE pixels square."""
    side = min(size, PROBE_SIZE)
    key = {"phase": "train", "model": model_name, "in_channels": in_channels, "num_classes": num_classes,
           "probe_size": side, "batch": batch}
    return decide(device, key, candidates(device, amp, channels_last),
                  lambda: training_steps(model, device, in_channels, num_classes, side, batch),
                  f"training steps of {model_name} at {side}x{side}, batch {batch}")


def inference_choice(model: torch.nn.Module, device: torch.device, model_name: str, in_channels: int,
                     num_classes: int, size: int, amp: bool, batch: int) -> SpeedChoice:
    """The faster layout for inference at the given precision, timed at most PROBE_SIZE pixels square;
    `model` is left in either layout."""
    side = min(size, PROBE_SIZE)
    key = {"phase": "infer", "model": model_name, "in_channels": in_channels, "num_classes": num_classes,
           "probe_size": side, "batch": batch}
    return decide(device, key, candidates(device, amp, None),
                  lambda: inference_steps(model, device, in_channels, side, batch),
                  f"inference of {model_name} at {side}x{side}, batch {batch}")
