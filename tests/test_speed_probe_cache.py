"""The speed-probe cache: entries of the wrong types are dropped with a note, and a probe timed on a busy machine
is cached marked noisy, used while the machine stays busy and timed again once it is quiet."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.test_speed_probe import ALL, probe
from utils.runtime import speed_probe


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache folder for this test, on a machine taken as quiet (other tests run alongside)."""
    monkeypatch.setenv(speed_probe.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(speed_probe, "cpu_sample", lambda: None)
    monkeypatch.setattr(speed_probe, "others_busy_now", lambda: 0.0, raising=False)
    return tmp_path / "cache" / speed_probe.CACHE_FILE


@pytest.mark.parametrize("field, value", [
    ("seconds", {"fp32-nchw": "fast"}), ("seconds", [1, 2]), ("probe_seconds", "long"), ("choice", 3),
    ("key", "machine"), ("noisy", "yes"), ("seconds", {"fp32-nchw": -1.0}),
])
def test_an_entry_of_wrong_types_is_dropped_with_a_note(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], field: str,
                                                        value: object) -> None:
    first, _ = probe(monkeypatch, dict(zip(ALL, [1.0, 0.9, 0.7, 0.5])))
    data = json.loads(cache.read_text())
    data["entries"][0][field] = value
    cache.write_text(json.dumps(data))
    capsys.readouterr()
    choice, clock = probe(monkeypatch, dict(zip(ALL, [1.0, 0.9, 0.7, 0.5])))
    assert choice.source == "probe" and clock.calls and "cached probe" not in choice.describe()
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "dropping 1 malformed entry of the speed-probe cache" in notes[0]
    assert json.loads(cache.read_text())["entries"][0]["seconds"] == first.seconds  # rewritten whole


def test_the_good_entries_of_a_partly_bad_cache_are_kept(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe(monkeypatch, dict(zip(ALL, [1.0, 0.9, 0.7, 0.5])))
    data = json.loads(cache.read_text())
    data["entries"].insert(0, {"key": {}, "choice": "fp32-nchw", "seconds": {"fp32-nchw": "x"}})
    cache.write_text(json.dumps(data))
    choice, clock = probe(monkeypatch, dict(zip(ALL, [1.0, 0.9, 0.7, 0.5])))
    assert choice.source == "cache" and clock.calls == []


def busy_probe(monkeypatch: pytest.MonkeyPatch) -> speed_probe.SpeedChoice:
    """A probe during which other processes kept most of the 2 CPUs busy (/proc/stat: 6 CPU-s besides this one's)."""
    samples = iter([(100.0, 1.0), (112.0, 7.0)])  # others busy 6 CPU-s during the probe
    monkeypatch.setattr(speed_probe, "cpu_sample", lambda: next(samples))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    choice, _ = probe(monkeypatch, dict(zip(ALL, [1.0, 0.9, 0.7, 0.5])))
    monkeypatch.setattr(speed_probe, "cpu_sample", lambda: None)
    return choice


def test_a_noisy_probe_is_cached_and_reused_while_the_machine_stays_busy(
        cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    choice = busy_probe(monkeypatch)
    assert choice.busy > speed_probe.BUSY and choice.noisy and choice.precision == "bf16"
    assert "cached as noisy" in choice.describe() and "cached marked noisy" in capsys.readouterr().err
    [entry] = json.loads(cache.read_text())["entries"]
    assert entry["noisy"] is True and entry["choice"] == "bf16-channels-last"
    monkeypatch.setattr(speed_probe, "others_busy_now", lambda: 0.9)  # still busy: no second probe
    again, clock = probe(monkeypatch, dict(zip(ALL, [0.5, 0.9, 0.7, 1.0])))
    assert clock.calls == [] and again.source == "cache" and again.noisy and again.precision == "bf16"
    assert "noisy" in again.describe()


def test_a_quiet_machine_times_a_noisy_entry_again_and_replaces_it(
        cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    busy_probe(monkeypatch)
    capsys.readouterr()
    again, clock = probe(monkeypatch, dict(zip(ALL, [0.5, 0.9, 0.7, 1.0])))  # quiet now (the fixture)
    assert clock.calls and again.source == "probe" and not again.noisy and again.name == "fp32-nchw"
    assert "the cached timings were noisy and the machine is quiet now" in capsys.readouterr().out
    [entry] = json.loads(cache.read_text())["entries"]
    assert entry["noisy"] is False and entry["choice"] == "fp32-nchw"
    third, clock = probe(monkeypatch, dict(zip(ALL, [1.0, 0.9, 0.7, 0.5])))
    assert clock.calls == [] and third.source == "cache" and third.name == "fp32-nchw"
