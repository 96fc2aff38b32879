"""utils.runtime.device: DataLoader worker defaults follow the CPUs this process may use."""
from __future__ import annotations

import os

import pytest
import torch

from utils.runtime import device as runtime


@pytest.mark.parametrize("usable, local_processes, expected", [
    (16, 1, 8), (16, 2, 8), (12, 4, 3), (6, 4, 1), (1, 8, 1),
])
def test_cuda_workers_share_the_usable_cpus_among_local_processes(monkeypatch, usable: int, local_processes: int,
                                                                   expected: int) -> None:
    monkeypatch.setattr(runtime, "usable_cpus", lambda: usable)
    assert runtime.default_workers(torch.device("cuda"), local_processes) == expected


def test_cpu_training_loads_in_the_main_process(monkeypatch) -> None:
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 64)
    assert runtime.default_workers(torch.device("cpu"), 1) == 0


def test_usable_cpus_is_the_affinity_mask_else_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)  # e.g. taskset -c 0,3,5
    assert runtime.usable_cpus() == 3
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows
    assert runtime.usable_cpus() == 64
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # undeterminable
    assert runtime.usable_cpus() == 1
