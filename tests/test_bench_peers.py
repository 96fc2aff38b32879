"""utils.bench.peers: the peer models match this repository's input and output, and a missing package is one line."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import benchmark
from utils.bench import peers as bench_peers
from utils.bench.rates import model_flops
from utils.cli import run_main


@pytest.mark.parametrize("name, package", [("smp_unet_vgg16", "segmentation_models_pytorch"),
                                           ("monai_attention_unet", "monai")])
def test_a_peer_maps_the_input_to_logits_of_its_size(name: str, package: str) -> None:
    pytest.importorskip(package)
    model = bench_peers.build_peer(name, num_classes=3, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 3, 64, 64)
    assert model_flops(name, 64, 1, 3)["train"] > model_flops(name, 64, 1, 3)["infer"] > 0


def test_a_missing_peer_package_is_one_line_naming_the_requirements_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for package in ("segmentation_models_pytorch", "monai"):  # makes the import fail as if it were not installed
        monkeypatch.setitem(sys.modules, package, None)
    arguments = ["--models", "unet_bn", "--peers", "--input-size", "64", "--out", str(tmp_path)]
    assert run_main(benchmark.main, arguments) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -r requirements-bench.txt" in err
    assert "needs segmentation_models_pytorch" in err  # the first peer it tries
    assert not (tmp_path / "benchmark.json").exists()


def test_a_size_the_peers_cannot_take_is_refused_up_front(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["--models", "unet_bn", "--peers", "--input-size", "48", "--out", str(tmp_path)]
    assert run_main(benchmark.main, arguments) == 2
    assert "--peers needs an --input-size of at least 64 and a multiple of 32" in capsys.readouterr().err
