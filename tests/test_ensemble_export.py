"""An ensemble exported as one ONNX (or TorchScript) file: its "logits" give back the members' mean probabilities,
so predict.py, get_miou_prediction.py and load_predictor use it as they use a single model's file."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import export as export_script
import predict
from tests.stand_in_models import register_linear, write_linear_checkpoint
from utils.cli import run_main
from utils.errors import UserError
from utils.infer.ensemble import CROSSVAL_FILE, EnsemblePredictor
from utils.infer.export import AveragedModel, export
from utils.infer.loading import load_predictor
from utils.infer.metadata import read_description
from utils.infer.onnx import OnnxPredictor
from utils.io.checkpoint import load_checkpoint, model_from_checkpoint


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Two 3-class stand-ins that disagree: their class logits follow the image brightness differently."""
    register_linear(monkeypatch)
    return [write_linear_checkpoint(tmp_path / "a" / "best.pt", [0.0, 0.5, -0.5], [0.0, 3.0, -1.0]),
            write_linear_checkpoint(tmp_path / "b" / "best.pt", [0.2, -1.0, 0.0], [1.0, -2.0, 2.0])]


def image_batch() -> list[np.ndarray]:
    """Two grey images, one not square (letterboxed, then resized back)."""
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (21, 34, 1), dtype=np.uint8), rng.integers(0, 256, (32, 32, 1), dtype=np.uint8)]


def test_averaged_model_outputs_the_log_of_the_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_linear(monkeypatch)
    softmax = [write_linear_checkpoint(tmp_path / f"s{p}.pt", [0.0, math.log(p / (1 - p))]) for p in (0.75, 0.5)]
    sigmoid = [write_linear_checkpoint(tmp_path / f"g{p}.pt", [math.log(p / (1 - p))]) for p in (0.75, 0.5)]
    tiny = [write_linear_checkpoint(tmp_path / f"t{i}.pt", [0.0, -60.0]) for i in range(2)]  # p1 = e^-60
    inputs = torch.zeros(1, 1, 2, 2)
    outputs = {}
    for name, paths in (("softmax", softmax), ("sigmoid", sigmoid), ("tiny", tiny)):
        model = AveragedModel([model_from_checkpoint(load_checkpoint(path)) for path in paths]).eval()
        with torch.inference_mode():
            outputs[name] = model(inputs)[0, :, 0, 0].tolist()
    assert outputs["softmax"] == pytest.approx([math.log(0.375), math.log(0.625)], abs=1e-6)
    assert outputs["sigmoid"] == pytest.approx([math.log(0.625 / 0.375)], abs=1e-6)  # logit(0.625) = 0.5108
    assert outputs["tiny"] == pytest.approx([0.0, math.log(1e-12)], abs=1e-6)  # floored, not -60


def test_ensemble_onnx_gives_the_ensembles_probabilities(pair: list[Path], tmp_path: Path) -> None:
    result = export(pair, tmp_path / "ensemble.onnx")
    assert result.passed and result.max_difference <= 1e-5
    exported = load_predictor(tmp_path / "ensemble.onnx", "cpu")
    reference = load_predictor(pair, "cpu")
    assert isinstance(exported, OnnxPredictor) and isinstance(reference, EnsemblePredictor)
    assert read_description(tmp_path / "ensemble.onnx")["model"] == load_checkpoint(pair[0])["model"]
    for image, got, expected in zip(image_batch(), exported.probability_batch(image_batch()),
                                    reference.probability_batch(image_batch())):
        assert got.shape == (3, *image.shape[:2])
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        own = [load_predictor(path, "cpu").probability_batch([image])[0] for path in pair]
        torch.testing.assert_close(got, (own[0] + own[1]) / 2, atol=1e-5, rtol=0)
    # ONNX members mix with checkpoints: the first member as .onnx gives the same ensemble.
    export(pair[0], tmp_path / "a.onnx")
    mixed = load_predictor([tmp_path / "a.onnx", pair[1]], "cpu").probability_batch(image_batch())
    for got, expected in zip(mixed, reference.probability_batch(image_batch())):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_sigmoid_ensemble_exports_one_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_linear(monkeypatch)
    pair = [write_linear_checkpoint(tmp_path / "a.pt", [0.5], [4.0]), write_linear_checkpoint(tmp_path / "b.pt",
                                                                                            [-1.0], [-3.0])]
    assert export(pair, tmp_path / "e.onnx").passed
    dims = onnx.load(str(tmp_path / "e.onnx")).graph.output[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 1
    images = image_batch()
    for got, expected in zip(load_predictor(tmp_path / "e.onnx", "cpu").probability_batch(images),
                             load_predictor(pair, "cpu").probability_batch(images)):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_crossval_folder_exports_and_predicts(pair: list[Path], tmp_path: Path) -> None:
    cv = tmp_path / "cv"
    cv.mkdir()
    cv.joinpath(CROSSVAL_FILE).write_text('{"folds": [{"fold": 0, "checkpoint": "../a/best.pt"}, '
                                          '{"fold": 1, "checkpoint": "../b/best.pt"}]}')
    assert run_main(export_script.main, ["--checkpoint", str(cv), "--out", str(tmp_path / "cv.onnx")]) == 0
    assert export(cv, tmp_path / "cv.ts", "torchscript").passed
    image = tmp_path / "scan.png"
    Image.fromarray(image_batch()[0][:, :, 0]).save(image)
    for name, checkpoint in (("pt", cv), ("onnx", tmp_path / "cv.onnx")):
        assert run_main(predict.main, [str(image), "--checkpoint", str(checkpoint), "--out",
                                       str(tmp_path / f"out-{name}"), "--device", "cpu"]) == 0
    labels = [np.asarray(Image.open(tmp_path / f"out-{name}" / "scan_label.png")) for name in ("pt", "onnx")]
    assert labels[0].shape == (21, 34) and np.array_equal(*labels)


@pytest.mark.parametrize("fields, what, theirs, ours", [
    ({"input_size": 48}, "input size", "48", "32"),
    ({"input_mode": "crop"}, "input mode", "tiles of the training size", "letterbox"),
])
def test_one_graph_needs_one_input(pair: list[Path], tmp_path: Path, fields: dict, what: str, theirs: str,
                                   ours: str) -> None:
    odd = write_linear_checkpoint(tmp_path / "odd.pt", [0.0, 0.0, 0.0], **fields)
    load_predictor([pair[0], odd], "cpu")  # an ensemble in PyTorch combines them at each image's size
    with pytest.raises(UserError, match=f"{odd} has {what} {theirs}, but the first member {pair[0]} has {ours}"):
        export([pair[0], odd], tmp_path / "e.onnx")
    assert not (tmp_path / "e.onnx").exists()
