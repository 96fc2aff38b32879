"""Messages of refused files never advise turning torch's safe loading off, and report tables keep columns apart."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import predict
from nets.vgg import VGG16Encoder
from tests.stand_in_models import register, write_checkpoint
from utils.cli import run_main
from utils.errors import UserError
from utils.infer.export import export
from utils.io.checkpoint import load_checkpoint
from utils.volumes.scoring import format_volume_report


class RunsCode:
    """A pickle that would call os.system when loaded without weights_only."""

    def __reduce__(self) -> tuple:
        return os.system, ("echo this-ran",)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A TorchScript export of a stand-in model and a pickle that would run code."""
    folder = tmp_path_factory.mktemp("files")
    with pytest.MonkeyPatch.context() as monkeypatch:
        register(monkeypatch, "unet_bn")
        export(write_checkpoint(folder / "c.pt", name="unet_bn"), folder / "m.ts", "torchscript")
    torch.save({"features.0.weight": RunsCode()}, folder / "evil.pth")
    return {"torchscript": folder / "m.ts", "pickle": folder / "evil.pth"}


def message(load: object, path: Path) -> str:
    with pytest.raises(UserError) as error:
        load(path)  # type: ignore[operator]
    text = str(error.value)
    assert "weights_only" not in text and "\n" not in text
    return text


def test_torchscript_as_checkpoint(files: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert "is a TorchScript model (written by export.py), not a checkpoint" in message(load_checkpoint,
                                                                                         files["torchscript"])
    assert run_main(predict.main, ["--checkpoint", str(files["torchscript"]), str(files["torchscript"]),
                                   "--out", str(files["torchscript"].parent / "out")]) == 2
    assert "weights_only" not in capsys.readouterr().err


def test_code_running_pickle_as_checkpoint_or_pretrained(files: dict[str, Path], tmp_path: Path,
                                                         capfd: pytest.CaptureFixture) -> None:
    checkpoint = tmp_path / "evil.pt"
    checkpoint.write_bytes(files["pickle"].read_bytes())
    assert "refused to load" in message(load_checkpoint, checkpoint)
    text = message(VGG16Encoder().load_torchvision_weights, files["pickle"])
    assert "refused to load" in text and "could run code" in text and "GLOBAL" in text
    assert "this-ran" not in capfd.readouterr().out


def test_torchscript_as_pretrained(files: dict[str, Path]) -> None:
    assert "cannot read pretrained weights" in message(VGG16Encoder().load_torchvision_weights, files["torchscript"])


def test_huge_distances_keep_the_columns_apart() -> None:
    huge = {"dice": 0.5, "iou": 0.25, "hd95": 123456789012.5, "assd": 98765432101.25}
    report = {"volumes_scored": 1, "per_volume": {"a_volume_name_of_25_chars": {"a_class_name_of_18": huge}},
              "summary": {"liver": {"dice": {"mean": 0.5, "median": 0.5}, "global_dice": 0.5,
                                    "hd95": {"mean": 1e12}, "assd": {"mean": None}}},
              "empty_rules": {}, "incomplete_volumes": {}}
    lines = format_volume_report(report).splitlines()
    assert lines[2].split() == ["a_volume_name_of_25_chars", "a_class_name_of_18", "50.00%", "25.00%",
                                "123456789012.50", "98765432101.25"]
    assert lines[5].split() == ["liver", "50.00%", "50.00%", "50.00%", "1000000000000.00", "-"]


def test_ordinary_report_keeps_its_layout() -> None:
    values = {"dice": 0.9, "iou": 0.8, "hd95": 3.5, "assd": 1.25}
    report = {"volumes_scored": 1, "per_volume": {"vol_a": {"liver": values}}, "summary": {},
              "empty_rules": {}, "incomplete_volumes": {}}
    lines = format_volume_report(report).splitlines()
    assert lines[1] == f"{'volume':<20}{'class':<14}{'Dice':>9}{'IoU':>9}{'HD95 mm':>10}{'ASSD mm':>10}"
    assert lines[2] == f"{'vol_a':<20}{'liver':<14}{'90.00%':>9}{'80.00%':>9}{'3.50':>10}{'1.25':>10}"
