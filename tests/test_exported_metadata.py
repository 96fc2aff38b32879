"""An exported model's metadata is checked against its types and its graph when it is loaded, in one line."""
from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

import predict
from tests.stand_in_models import register, write_checkpoint
from utils.cli import run_main
from utils.errors import UserError
from utils.infer.export import export
from utils.infer.loading import load_predictor
from utils.infer.metadata import read_description


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1x1-convolution stand-in model (2 classes, 1 channel) exported to ONNX."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        register(monkeypatch, "unet_bn")
        folder = tmp_path_factory.mktemp("exported")
        export(write_checkpoint(folder / "c.pt", name="unet_bn"), folder / "m.onnx")
    return folder / "m.onnx"


def edited(source: Path, out: Path, **changes: object) -> Path:
    """A copy of an exported ONNX file with some metadata values replaced (each given as its JSON value)."""
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key in changes:
            prop.value = json.dumps(changes[prop.key])
    onnx.save(model, str(out))
    return out


def test_unedited_export_loads(exported: Path) -> None:
    predictor = load_predictor(exported, "cpu")
    assert predictor.num_classes == 2 and predictor.class_names == ["background", "bright"]


@pytest.mark.parametrize("changes, message", [
    ({"num_classes": "abc"}, "num_classes is 'abc'"),
    ({"input_size": "big"}, "input_size is 'big'"),
    ({"input_size": -3}, "input_size is -3"),
    ({"normalization": {}}, "normalization is {}"),
    ({"class_names": ["background"]}, "class_names lists 1 names for 2 classes"),
    ({"input_mode": "zoom"}, "input_mode is 'zoom'"),
    ({"preprocessing": [1]}, "preprocessing is [1]"),
])
def test_bad_metadata_types_are_one_line(exported: Path, tmp_path: Path, changes: dict, message: str) -> None:
    path = edited(exported, tmp_path / "m.onnx", **changes)
    for load in (read_description, lambda p: load_predictor(p, "cpu")):
        with pytest.raises(UserError, match="exported model metadata") as error:
            load(path)
        assert message in str(error.value) and "\n" not in str(error.value)


def test_num_classes_must_match_the_graph(exported: Path, tmp_path: Path) -> None:
    path = edited(exported, tmp_path / "m.onnx", num_classes=3, class_names=["a", "b", "c"])
    with pytest.raises(UserError, match="output has 2 channels but its metadata says num_classes 3"):
        load_predictor(path, "cpu")


def test_predict_refuses_before_writing(exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    Image.new("L", (32, 32), 200).save(tmp_path / "a.png")
    path = edited(exported, tmp_path / "m.onnx", class_names=["background"])
    out = tmp_path / "out"
    assert run_main(predict.main, ["--checkpoint", str(path), str(tmp_path / "a.png"), "--out", str(out),
                         "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "class_names lists 1 names" in error and "Traceback" not in error
    assert not out.exists()
