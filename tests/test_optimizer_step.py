"""One optimiser step of the training loop, checked against itself in the other memory layout.

The weights after exactly one SGD step (fixed seed, fp32, CPU) must be the same whether the run trains in
channels-last or NCHW, to a tolerance far below the step's own size, so that a step skipped (or taken with
other gradients) in either layout cannot pass (tests/one_step.py).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.one_step import compare_steps, learning_weights, one_step, register

# Relative to each tensor's update: the layouts differ only in the rounding of their convolution kernels
# (measured: below 1e-4).
RELATIVE = 1e-3


@pytest.fixture(autouse=True)
def mini_unet(monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch)


def test_one_sgd_step_is_the_same_in_channels_last_and_nchw(square_dataset: Path, tmp_path: Path) -> None:
    initial, nchw = one_step(square_dataset, tmp_path / "nchw", "--no-channels-last")
    initial_nhwc, nhwc = one_step(square_dataset, tmp_path / "nhwc", "--channels-last")
    for name in initial:  # the same seed gives the same start
        torch.testing.assert_close(initial_nhwc[name], initial[name], rtol=0, atol=0)
    assert compare_steps(initial, nchw, nhwc, RELATIVE) == []
    # The tolerance is far below the step: the untrained weights (a skipped step) do not pass for the trained ones.
    assert len(compare_steps(initial, nchw, initial, RELATIVE)) >= len(learning_weights(initial))

