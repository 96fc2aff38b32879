"""ONNX / TorchScript export: parity with PyTorch, self-description, and ONNX models in predict and scoring."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import nibabel as nib
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

import export as export_script
import get_miou_prediction
import miou
import predict
from tests.conftest import ROOT, write_checkpoint, write_pair, write_split
from tests.volume_data import LPS_AFFINE, phantom, write_nifti
from utils.bench.measure import export_model_file, measure
from utils.bench.rates import add_rates, add_speedups
from utils.bench.report import table_row
from utils.bench.variants import EAGER, ONNXRUNTIME, Config
from utils.cli import run_main
from utils.errors import UserError
from utils.infer import export as export_module
from utils.infer.export import DEFAULT_OPSET, LABEL_TOLERANCE, export
from utils.infer.loading import load_predictor
from utils.infer.metadata import (
    ONNX_FORMAT,
    TORCHSCRIPT_EXTRA_FILE,
    TORCHSCRIPT_FORMAT,
    description,
    description_from_props,
    load_torchscript,
    metadata_props,
    read_description,
)
from utils.infer.onnx import OnnxPredictor
from utils.infer.predictor import Predictor
from utils.io.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from utils.runtime.device import default_normalization

WINDOW = {"intensity": {"kind": "window", "low": -160.0, "high": 240.0, "name": None}, "context": 0}


@pytest.mark.parametrize("name, in_channels, num_classes", [
    ("unet", 3, 2), ("unet_bn", 3, 2), ("att_unet", 3, 2), ("unet_bn", 1, 1), ("att_unet", 1, 3)])
def test_onnx_export_matches_pytorch(tmp_path: Path, name: str, in_channels: int, num_classes: int) -> None:
    checkpoint = write_checkpoint(tmp_path / "c.pt", name, in_channels=in_channels, num_classes=num_classes)
    result = export(checkpoint, tmp_path / "m.onnx")
    # random inputs: 2 at 32x32 and 1 at an odd, non-square 17x40 (dynamic height and width)
    assert result.pixels == 2 * 32 * 32 + 17 * 40
    assert result.max_difference <= 1e-5 * max(1.0, result.max_logit) and result.mismatch_share <= LABEL_TOLERANCE
    assert result.passed
    model = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == DEFAULT_OPSET
    for value, channels in ((model.graph.input[0], in_channels), (model.graph.output[0], num_classes)):
        dims = value.type.tensor_type.shape.dim
        assert [dims[i].dim_param for i in (0, 2, 3)] == ["batch", "height", "width"] and dims[1].dim_value == channels
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "m.onnx"]  # no temporary file left


def test_metadata_round_trip(trained: dict[str, Path], tmp_path: Path) -> None:
    checkpoint_path = write_checkpoint(tmp_path / "c.pt", "unet_bn", num_classes=1, input_mode="crop",
                                       preprocessing=WINDOW)
    checkpoint = load_checkpoint(checkpoint_path)
    expected = {"model": {"name": "unet_bn", "num_classes": 1, "in_channels": 1},
                "class_names": ["class0", "class1"], "input_size": 32, "input_mode": "crop",
                "normalization": default_normalization(1), "preprocessing": WINDOW}
    assert description(checkpoint) == expected
    props = metadata_props(checkpoint, ONNX_FORMAT)
    assert json.loads(props["format"]) == ONNX_FORMAT and json.loads(props["preprocessing"]) == WINDOW
    assert description_from_props(props, "m.onnx", ONNX_FORMAT) == expected
    result = export(checkpoint_path, tmp_path / "m.onnx", data=trained["data"], split="val")
    # a crop-trained model is checked on the tiles it predicts by: 2 val images of 40x56 -> 2 x 2 tiles each
    assert result.inputs.endswith("2 'val' images of " + str(trained["data"]) + " as 8 32x32 tiles")
    assert result.pixels == 8 * 32 * 32 and result.passed
    stored = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert {k: stored[k] for k in props} == props
    assert read_description(tmp_path / "m.onnx") == expected
    predictor = load_predictor(tmp_path / "m.onnx", "cpu")
    assert isinstance(predictor, OnnxPredictor) and predictor.tiles  # crop-trained: tiles by default
    assert predictor.intensity.low == -160.0 and predictor.class_names == ["class0", "class1"]


def test_torchscript_export_loads_and_matches(tmp_path: Path) -> None:
    checkpoint = write_checkpoint(tmp_path / "c.pt", "att_unet")
    result = export(checkpoint, tmp_path / "m.ts", "torchscript")
    assert result.passed and result.max_difference <= 1e-6
    assert read_description(tmp_path / "m.ts") == description(load_checkpoint(checkpoint))
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    module = load_torchscript(tmp_path / "m.ts", extra)
    assert json.loads(json.loads(extra[TORCHSCRIPT_EXTRA_FILE])["format"]) == TORCHSCRIPT_FORMAT
    reference = model_from_checkpoint(load_checkpoint(checkpoint)).eval()
    inputs = torch.randn(3, 1, 48, 24)  # batch and size other than the traced (2, 1, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(module(inputs), reference(inputs), atol=1e-5, rtol=1e-5)


def test_parity_failure_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = write_checkpoint(tmp_path / "c.pt")
    monkeypatch.setattr(export_module, "LOGIT_TOLERANCE", -1.0)  # any difference, even 0, fails
    with pytest.raises(UserError, match=r"m\.ts: not written: the exported model does not match PyTorch"):
        export(checkpoint, tmp_path / "m.ts", "torchscript")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_bad_options_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = write_checkpoint(tmp_path / "c.pt")
    cases = [(["--opset", "9"], "--opset 9 is not supported"),
             (["--format", "torchscript"], "must not be named .onnx"),
             (["--max-images", "0"], "--max-images must be at least 1")]
    for extra, message in cases:
        assert run_main(export_script.main, ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"),
                                             *extra]) == 2
        assert message in capsys.readouterr().err
    assert run_main(export_script.main, ["--checkpoint", str(checkpoint), "--out", str(checkpoint),
                                         "--format", "torchscript"]) == 2
    assert f"refusing to write {checkpoint}: it is the input" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, trained_run: Path) -> dict[str, Path]:
    """The shared trained unet_bn (trained_run) re-saved with a CT window and exported to ONNX, checked on squares
    whose val images are not square."""
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    data, stems = root / "squares", ["img_6", "img_7"]
    for stem in stems:  # not square: letterbox + resize back
        label = np.zeros((40, 56), dtype=np.uint8)
        top, left = rng.integers(2, 40 - 14), rng.integers(2, 56 - 14)
        label[top:top + 12, left:left + 12] = 1
        write_pair(data, stem, (rng.normal(60, 10, label.shape) + 120 * label).clip(0, 255).astype(np.uint8), label)
    write_split(data, "val", stems)
    checkpoint = load_checkpoint(trained_run / "best.pt")
    pt = root / "model" / "best.pt"
    save_checkpoint(pt, {**checkpoint, "preprocessing": WINDOW})  # volumes need the import's scaling
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        assert run_main(export_script.main, ["--checkpoint", str(pt), "--out", str(root / "model" / "model.onnx"),
                                             "--data", str(data), "--split", "val"]) == 0
    return {"root": root, "data": data, "pt": pt, "onnx": root / "model" / "model.onnx", "report": report.getvalue()}


def test_export_reports_parity_on_the_split(trained: dict[str, Path]) -> None:
    out = trained["report"]
    assert "parity (onnxruntime vs PyTorch fp32): largest |logit difference|" in out
    assert "2 'val' images of" in out and "letterboxed to 32x32" in out and "of 2048 pixels" in out
    assert "labels differ on 0 of 2048 pixels" in out and f"wrote {trained['onnx']} (onnx)" in out


def test_split_scores_match_pytorch(trained: dict[str, Path], tmp_path: Path) -> None:
    scores = {}
    for kind in ("pt", "onnx"):
        pred = tmp_path / kind
        assert run_main(get_miou_prediction.main, ["--checkpoint", str(trained[kind]), "--data", str(trained["data"]),
                                                   "--out", str(pred)]) == 0
        assert run_main(miou.main, ["--pred", str(pred), "--data", str(trained["data"])]) == 0
        scores[kind] = json.loads((pred / "miou.json").read_text())
    labels = {kind: [np.asarray(Image.open(tmp_path / kind / f"img_{i}.png")) for i in (6, 7)] for kind in scores}
    assert labels["onnx"][0].shape == (40, 56)
    mismatched = sum(int((a != b).sum()) for a, b in zip(labels["pt"], labels["onnx"]))
    assert mismatched <= LABEL_TOLERANCE * 2 * 40 * 56  # i.e. 0 pixels of 4480
    assert scores["onnx"]["miou"] == pytest.approx(scores["pt"]["miou"], abs=1e-4)
    prediction = json.loads((tmp_path / "onnx" / "prediction.json").read_text())
    assert prediction["checkpoint"] == str(trained["onnx"])


@pytest.mark.parametrize("tiles, flip_tta", [(False, False), (True, True)])
def test_onnx_predictor_matches_pytorch(trained: dict[str, Path], tiles: bool, flip_tta: bool) -> None:
    torch_predictor = load_predictor(trained["pt"], "cpu", flip_tta, tiles)
    onnx_predictor = load_predictor(trained["onnx"], "cpu", flip_tta, tiles)
    assert type(torch_predictor) is Predictor and type(onnx_predictor) is OnnxPredictor
    for attribute in ("model_name", "num_classes", "in_channels", "class_names", "input_size", "normalization",
                      "preprocessing", "intensity", "tiles", "overlap", "flip_tta"):
        assert getattr(onnx_predictor, attribute) == getattr(torch_predictor, attribute), attribute
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (37, 53, 1), dtype=np.uint8), rng.integers(0, 256, (32, 32, 1), dtype=np.uint8)]
    expected, got = torch_predictor.probability_batch(images), onnx_predictor.probability_batch(images)
    for image, a, b in zip(images, expected, got):
        assert b.shape == (2, *image.shape[:2])
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
        assert torch.equal(a.argmax(dim=0), b.argmax(dim=0))
    paths = [trained["data"] / "Images" / f"img_{i}.png" for i in (6, 7)]
    for (path, _, a), (_, _, b) in zip(torch_predictor.predict_files(paths, 2), onnx_predictor.predict_files(paths, 2)):
        assert np.array_equal(a.argmax(axis=0), b.argmax(axis=0)), path


def test_predict_images_and_volumes_with_onnx(trained: dict[str, Path], tmp_path: Path) -> None:
    hu, _ = phantom((40, 36, 6))
    volume = write_nifti(tmp_path / "ct.nii.gz", hu.astype(np.int16), LPS_AFFINE)
    image = trained["data"] / "Images" / "img_7.png"
    for kind in ("pt", "onnx"):
        assert run_main(predict.main, [str(image), str(volume), "--checkpoint", str(trained[kind]), "--flip-tta",
                                       "--out", str(tmp_path / kind)]) == 0
    for name in ("img_7_label.png", "img_7_overlay.png"):
        pictures = [np.asarray(Image.open(tmp_path / kind / name)) for kind in ("pt", "onnx")]
        assert np.array_equal(*pictures), name
    a, b = (nib.load(str(tmp_path / kind / "ct_label.nii.gz")) for kind in ("pt", "onnx"))
    assert b.shape == (40, 36, 6) and np.allclose(b.affine, LPS_AFFINE)
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def test_onnx_is_told_by_content(trained: dict[str, Path], tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(trained["onnx"].read_bytes())
    assert isinstance(load_predictor(renamed, "cpu"), OnnxPredictor)


def foreign_model(path: Path, shape: list, props: dict[str, str] | None = None) -> Path:
    """A valid ONNX model (Identity) that this repository did not write."""
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "foreign", [value],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    helper.set_model_props(model, props or {})
    onnx.save(model, str(path))
    return path


def test_corrupt_and_foreign_onnx_files_are_refused(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(trained["onnx"].read_bytes()[:5000])
    ours = {p.key: p.value for p in onnx.load(str(trained["onnx"])).metadata_props}
    cases = [(truncated, "truncated.onnx: not a readable ONNX model"),
             (tmp_path / "missing.onnx", "ONNX model not found"),
             (foreign_model(tmp_path / "foreign.onnx", ["N", 1, "H", "W"]),
              "foreign.onnx: an ONNX model without this repository's metadata"),
             (foreign_model(tmp_path / "rank3.onnx", ["N", "H", "W"], ours),
              "rank3.onnx: ONNX model input 'x' has shape ['N', 'H', 'W'] (rank 3)")]
    image = trained["data"] / "Images" / "img_7.png"
    for path, message in cases:
        assert run_main(predict.main, [str(image), "--checkpoint", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_onnx_with_non_finite_weights_is_refused(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    model = onnx.load(str(trained["onnx"]))
    weight = next(t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT)
    values = onnx.numpy_helper.to_array(weight).copy()
    values.flat[0] = np.nan
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    onnx.save(model, str(tmp_path / "nan.onnx"))
    image = trained["data"] / "Images" / "img_7.png"
    assert run_main(predict.main, [str(image), "--checkpoint", str(tmp_path / "nan.onnx"),
                                   "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"1 of {len(model.graph.initializer)} weight tensors hold NaN or infinite values" in err
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()


def test_pytorch_users_do_not_load_onnxruntime() -> None:
    code = "import sys, predict, get_miou_prediction; print(sorted({'onnx', 'onnxruntime'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_benchmark_measures_onnxruntime_inference(tmp_path: Path) -> None:
    config = Config("unet_bn", ONNXRUNTIME, "cpu", size=32, batch=2, steps=2, warmup=1, threads=2, in_channels=1,
                    num_classes=2, model_file=str(tmp_path / "m.onnx"))
    export_model_file(config)
    record = {"model": "unet_bn", "variant": "onnxruntime", "levers": asdict(config.variant), "device": "cpu",
              "size": 32, "batch": 2, **measure(config)}
    infer = record["infer"]
    assert record["train"] is None and len(infer["step_seconds"]) == 2 and infer["provider"] == "CPUExecutionProvider"
    assert infer["img_per_s"] == pytest.approx(2 / infer["median_step_seconds"])
    eager = {"model": "unet_bn", "variant": EAGER.name, "train": {"img_per_s": 1.0},
             "infer": {"img_per_s": infer["img_per_s"] / 2}}
    add_rates(record, {"infer": 1e9, "train": 3e9}, {"fp32": {"gflops": 100.0}})
    add_speedups([eager, record])
    assert infer["gflops"] == pytest.approx(infer["img_per_s"]) and infer["peak"] == "fp32"
    assert record["speedup"] == {"train": None, "infer": pytest.approx(2.0)}
    cells = [cell.strip() for cell in table_row(record).split("|")[1:-1]]
    assert cells[1] == "onnxruntime: fp32, CPUExecutionProvider" and len(cells) == 12
    assert cells[5] == cells[7] == cells[9] == "-" and cells[11] == "- / 2.00x"
