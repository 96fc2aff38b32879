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


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_usable_cpus_is_the_affinity_mask() -> None:
    assert runtime.usable_cpus() == len(os.sched_getaffinity(0))
