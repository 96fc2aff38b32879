"""utils.runtime.speed_probe: the fastest candidate wins (near ties go to fp32 / NCHW), flags fix levers, the cache is
keyed, robust and atomic, runs record the choice, and the probe leaves the run untouched."""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from nets import build_model
from tests.conftest import tiny_train_args, write_checkpoint
from utils.infer.predictor import Predictor
from utils.io.checkpoint import load_checkpoint
from utils.runtime import speed_probe
from utils.runtime.forward import PREDICT_BATCH
from utils.runtime.speed_probe import Candidate, SpeedChoice
from utils.train.loop import train

CPU = torch.device("cpu")
KEY = {"phase": "train", "model": "unet_bn", "in_channels": 1, "num_classes": 2, "size": 32, "batch": 2}
ALL = ["fp32-nchw", "fp32-channels-last", "bf16-nchw", "bf16-channels-last"]


class FakeClock:
    """perf_counter stand-in: each fake step advances it by its candidate's programmed seconds."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.now, self.seconds, self.calls = 0.0, seconds, []

    def __call__(self) -> float:
        return self.now

    def make_step(self, candidate: Candidate) -> Callable[[], None]:
        def step() -> None:
            self.calls.append(candidate.name)
            self.now += self.seconds[candidate.name]
        return step


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty cache folder for this test, on a machine taken as quiet (other tests run alongside)."""
    monkeypatch.setenv(speed_probe.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(speed_probe, "cpu_sample", lambda: None)
    return tmp_path / "cache" / speed_probe.CACHE_FILE


def probe(monkeypatch: pytest.MonkeyPatch, seconds: dict[str, float], **levers: bool | None
          ) -> tuple[SpeedChoice, FakeClock]:
    clock = FakeClock(seconds)
    monkeypatch.setattr(speed_probe, "perf_counter", clock)
    options = speed_probe.candidates(CPU, levers.get("amp"), levers.get("channels_last"))
    return speed_probe.decide(CPU, KEY, options, lambda: clock.make_step, "fake steps"), clock


def test_the_fastest_candidate_is_chosen_and_its_timings_kept(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    choice, _ = probe(monkeypatch, dict(zip(ALL, [1.0, 0.9, 0.7, 0.5])))
    assert (choice.precision, choice.channels_last, choice.source) == ("bf16", True, "probe")
    assert choice.seconds == pytest.approx(dict(zip(ALL, [1.0, 0.9, 0.7, 0.5]))) and choice.amp
    assert "bf16 + channels-last, the fastest per step (fp32-nchw 1000 ms" in choice.describe()


@pytest.mark.parametrize("seconds, expected", [
    ([1.00, 0.99, 0.98, 0.97], "fp32-channels-last"),  # all within 5 % of the fastest: fp32, then channels-last
    ([1.00, 0.96, 0.80, 0.95], "bf16-nchw"),           # a clear win for bf16 in NCHW
    ([0.80, 1.00, 0.70, 0.69], "bf16-channels-last"),  # bf16 wins; its layouts tie
    ([1.00, 1.20, 0.99, 0.97], "fp32-nchw"),           # NCHW clearly faster in fp32; bf16 only ties
    ([1.00, math.inf, 1.00, math.inf], "fp32-nchw"),   # a failed candidate never wins
])
def test_a_near_tie_goes_to_fp32_then_to_channels_last(seconds: list[float], expected: str) -> None:
    options = speed_probe.candidates(CPU)
    assert [c.name for c in options] == ALL  # timed fp32 and NCHW first
    assert speed_probe.choose(dict(zip(options, seconds))).name == expected


def test_a_given_flag_fixes_its_lever_and_both_skip_the_probe(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seconds = dict(zip(ALL, [1.0, 0.9, 0.7, 0.5]))
    assert [c.name for c in speed_probe.candidates(CPU, amp=False)] == ["fp32-nchw", "fp32-channels-last"]
    assert [c.name for c in speed_probe.candidates(CPU, channels_last=False)] == ["fp32-nchw", "bf16-nchw"]
    choice, clock = probe(monkeypatch, seconds, amp=False)
    assert choice.precision == "fp32" and choice.channels_last and set(clock.calls) == set(ALL[:2])
    choice, clock = probe(monkeypatch, seconds, amp=True, channels_last=False)
    assert (choice.precision, choice.channels_last, choice.source) == ("bf16", False, "given") and not clock.calls
    assert len(json.loads(cache.read_text())["entries"]) == 1  # only the first probe's


def test_a_clearly_slower_or_faster_step_decides_alone_a_close_one_gets_a_second(monkeypatch: pytest.MonkeyPatch
                                                                                  ) -> None:
    clock = FakeClock(dict(zip(ALL, [1.0, 1.1, 2.0, 0.5])))
    monkeypatch.setattr(speed_probe, "perf_counter", clock)
    timings = speed_probe.time_candidates(speed_probe.candidates(CPU), clock.make_step)
    assert [clock.calls.count(name) for name in ALL] == [2, 3, 2, 2]  # warm-up + 1, + 2 for the close call
    assert [timings[c] for c in speed_probe.candidates(CPU)] == pytest.approx([1.0, 1.1, 2.0, 0.5])


def test_a_failing_candidate_is_skipped_and_all_failing_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(dict(zip(ALL, [1.0, 0.9, 0.7, 0.5])))
    monkeypatch.setattr(speed_probe, "perf_counter", clock)

    def make_step(candidate: Candidate) -> Callable[[], None]:
        if candidate.amp:
            raise torch.OutOfMemoryError("out of memory")
        return clock.make_step(candidate)

    timings = speed_probe.time_candidates(speed_probe.candidates(CPU), make_step)
    assert speed_probe.choose(timings).name == "fp32-channels-last" and math.isinf(timings[Candidate("bf16", True)])
    with pytest.raises(torch.OutOfMemoryError):
        speed_probe.time_candidates(speed_probe.candidates(CPU, amp=True), make_step)


def test_a_cache_hit_skips_timing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, clock = probe(monkeypatch, dict(zip(ALL, [1.0, 0.9, 0.7, 0.5])))
    assert len(clock.calls) == 9 and cache.is_file()  # 4 warm-ups, 4 timed steps, 1 second step (a close call)
    again, clock = probe(monkeypatch, dict(zip(ALL, [0.1, 0.9, 0.7, 0.5])))
    assert clock.calls == [] and again.source == "cache"
    assert (again.precision, again.channels_last, again.seconds) == (first.precision, first.channels_last,
                                                                      first.seconds)
    assert "cached probe" in again.describe()


@pytest.mark.parametrize("field, other", [("torch", "1.0.0"), ("machine", "Other CPU flags:0"), ("threads", 64)])
def test_a_cache_entry_of_another_torch_or_machine_misses(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                          field: str, other: object) -> None:
    real = speed_probe.machine_key
    monkeypatch.setattr(speed_probe, "machine_key", lambda device: {**real(device), field: other})
    probe(monkeypatch, dict(zip(ALL, [1.0, 0.9, 0.7, 0.5])))
    monkeypatch.setattr(speed_probe, "machine_key", real)
    choice, clock = probe(monkeypatch, dict(zip(ALL, [0.5, 0.9, 0.7, 1.0])))
    assert clock.calls and choice.source == "probe" and choice.precision == "fp32" and not choice.channels_last
    assert len(json.loads(cache.read_text())["entries"]) == 2  # the other set-up's entry stays


@pytest.mark.parametrize("content", [
    '{"version": 1, "entries": [{"key": {"machine": "AMD', "", "[1, 2]", '{"version": 1, "entries": [{"key": 3}]}',
    '{"version": 99, "entries": []}', "\x00\xff garbage",
])
def test_a_corrupt_cache_is_ignored_with_a_note_and_rewritten(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str], content: str) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text(content, encoding="latin-1")
    choice, clock = probe(monkeypatch, dict(zip(ALL, [1.0, 0.9, 0.7, 0.5])))
    assert choice.source == "probe" and clock.calls
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and f"speed-probe cache {cache}" in notes[0]  # the whole file, or its bad entry
    assert json.loads(cache.read_text())["entries"][0]["choice"] == "bf16-channels-last"


def test_the_cache_is_written_atomically(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    probe(monkeypatch, dict(zip(ALL, [1.0, 0.9, 0.7, 0.5])))
    before = cache.read_bytes()

    def crash(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)  # the write dies just before the rename
    monkeypatch.setattr(speed_probe, "machine_key", lambda device: {"machine": "another"})
    choice, _ = probe(monkeypatch, dict(zip(ALL, [0.5, 0.9, 0.7, 1.0])))
    assert choice.precision == "fp32"  # the run goes on
    assert cache.read_bytes() == before and [p.name for p in cache.parent.iterdir()] == [cache.name]
    assert "note: could not write the speed-probe cache" in capsys.readouterr().err


def test_others_share_is_the_machine_busy_time_less_this_process() -> None:
    assert speed_probe.others_share((10.0, 2.0), (14.0, 5.0), 2.0) == pytest.approx(1 / (2 * (os.cpu_count() or 1)))
    assert speed_probe.others_share(None, (14.0, 5.0), 2.0) is None
    assert speed_probe.others_share((10.0, 2.0), (14.0, 5.0), 0.1) is None  # too short for 10 ms ticks
    sample = speed_probe.cpu_sample()
    assert sample is None or (sample[0] > 0 and sample[1] >= 0)


def test_the_rng_streams_are_left_as_they_were() -> None:
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with speed_probe.preserved_rng(CPU):
        random.random(), np.random.rand(3), torch.rand(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_real_probe_at_32_px_runs_end_to_end(cache: Path) -> None:
    torch.manual_seed(0)
    model = build_model("unet_bn", num_classes=2, in_channels=1)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    choice = speed_probe.training_choice(model, CPU, "unet_bn", 1, 2, 32, 2)
    assert choice.source == "probe" and list(choice.seconds) == ALL
    assert all(s is not None and 0 < s < 60 for s in choice.seconds.values()) and choice.probe_seconds > 0
    assert f"{choice.precision}-{'channels-last' if choice.channels_last else 'nchw'}" in ALL
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())  # timed on a copy
    again = speed_probe.training_choice(model, CPU, "unet_bn", 1, 2, 32, 2)
    assert again.source == "cache"
    assert (again.precision, again.channels_last) == (choice.precision, choice.channels_last)
    entry = json.loads(cache.read_text())["entries"][0]
    assert entry["key"]["torch"] == torch.__version__ and entry["key"]["probe_size"] == 32 and entry["key"]["batch"] == 2


def test_probes_time_a_bounded_size_at_the_runs_batch_and_share_the_cache_entry(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    timed_shapes = []

    def fake_steps(model: object, device: object, in_channels: int, num_classes: int, size: int, batch: int
                   ) -> Callable[[Candidate], Callable[[], None]]:
        timed_shapes.append((size, batch))
        return lambda candidate: lambda: None

    monkeypatch.setattr(speed_probe, "training_steps", fake_steps)
    monkeypatch.setattr(speed_probe, "time_candidates", lambda options, make_step: (
        make_step(options[0]), {c: 1.0 + i for i, c in enumerate(options)})[1])
    model = torch.nn.Conv2d(1, 2, 1)
    first = speed_probe.training_choice(model, CPU, "unet_bn", 1, 2, 512, 3)
    assert timed_shapes == [(speed_probe.PROBE_SIZE, 3)] and first.probe_size == 128
    assert "probe took" in first.describe() and "at 128x128" in first.describe()
    # 256 probes the same shape as 512: the cached choice serves it; a smaller run, or another batch, is timed.
    assert speed_probe.training_choice(model, CPU, "unet_bn", 1, 2, 256, 3).source == "cache"
    assert speed_probe.training_choice(model, CPU, "unet_bn", 1, 2, 64, 3).source == "probe"
    assert speed_probe.training_choice(model, CPU, "unet_bn", 1, 2, 256, 2).source == "probe"
    assert timed_shapes[1:] == [(64, 3), (128, 2)]


# Runs that leave the speed options to the probe: 1 channel, deterministic.
PROBED = ("--in-channels", "1", "--deterministic")


def test_a_run_records_the_choice_in_log_folder_checkpoint_and_tensorboard(
        square_dataset: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    seconds = dict(zip(ALL, [0.4, 0.3, 0.2, 0.1]))
    monkeypatch.setattr(speed_probe, "time_candidates",
                        lambda options, make_step: {c: seconds[c.name] for c in options})
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, *PROBED, "--no-amp", pin_speed=False)) == 0
    run = tmp_path / "unet_bn" / "r"
    recorded = json.loads((run / "speed.json").read_text())
    assert recorded["precision"] == "fp32" and recorded["channels_last"] is True  # --no-amp fixed precision
    assert recorded["seconds"] == {"fp32-nchw": 0.4, "fp32-channels-last": 0.3} and recorded["source"] == "probe"
    assert load_checkpoint(run / "last.pt")["speed"] == recorded
    assert [r["speed"] for r in json.loads((run / "history.json").read_text())] == ["fp32-channels-last"]
    assert "speed: fp32 + channels-last, the fastest per step (fp32-nchw 400 ms, fp32-channels-last 300 ms" in \
        capsys.readouterr().out
    events = EventAccumulator(str(run)).Reload()
    assert "speed/text_summary" in events.Tags()["tensors"]
    # A resumed run keeps its recorded choice without probing again.
    monkeypatch.setattr(speed_probe, "time_candidates", None)
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, *PROBED, "--epochs", "2", "--resume",
                                            str(run / "last.pt"), pin_speed=False)) == 0
    assert load_checkpoint(run / "last.pt")["speed"]["channels_last"] is True
    assert [r["speed"] for r in json.loads((run / "history.json").read_text())] == ["fp32-channels-last"] * 2


def test_a_probed_run_is_bit_identical_to_one_given_the_same_choice(
        square_dataset: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Real steps run on the copy; the choice is pinned to fp32 NCHW so both runs train alike.
    monkeypatch.setattr(speed_probe, "choose", lambda timings: next(iter(timings)))
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path / "probed", *PROBED, "--augment", "light",
                                            pin_speed=False)) == 0
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path / "given", *PROBED, "--augment", "light")) == 0
    probed = load_checkpoint(tmp_path / "probed" / "unet_bn" / "r" / "last.pt")
    given = load_checkpoint(tmp_path / "given" / "unet_bn" / "r" / "last.pt")
    assert probed["speed"]["source"] == "probe" and given["speed"]["source"] == "given"
    timing = ("data_seconds", "step_seconds")
    assert [{k: v for k, v in r.items() if k not in timing} for r in probed["history"]] == \
        [{k: v for k, v in r.items() if k not in timing} for r in given["history"]]
    for key, tensor in given["state_dict"].items():
        assert torch.equal(tensor, probed["state_dict"][key]), key


@pytest.mark.parametrize("fast", ["fp32-nchw", "fp32-channels-last"])
def test_the_predictor_takes_the_faster_layout(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                               fast: str) -> None:
    write_checkpoint(tmp_path / "m.pt", in_channels=3)
    monkeypatch.setattr(speed_probe, "time_candidates",
                        lambda options, make_step: {c: 1.0 if c.name == fast else 2.0 for c in options})
    predictor = Predictor(tmp_path / "m.pt", "cpu")
    weight = next(predictor.model.parameters())
    assert predictor.speed.channels_last is (fast == "fp32-channels-last") and predictor.amp_dtype is None
    assert weight.is_contiguous(memory_format=torch.channels_last if predictor.speed.channels_last
                                else torch.contiguous_format)
    key = json.loads(cache.read_text())["entries"][0]["key"]
    assert key["phase"] == "infer" and key["batch"] == PREDICT_BATCH and key["probe_size"] == 32
