"""crossval.py: every fold trained once (reruns skip or resume), out-of-fold predictions scored together exactly
as miou.py scores them concatenated, a folder that serves as an ensemble; choose_config.py on two of them."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import crossval
import miou
import png2txt
from tests.conftest import write_pair, write_split
from utils.cli import run_main
from utils.crossval.training import run_folds
from utils.data.dataset import read_split
from utils.io.checkpoint import load_checkpoint, save_checkpoint

TRAIN = ["--input-size", "32", "--epochs", "1", "--batch-size", "4", "--workers", "0", "--lr", "1e-3",
         "--no-progress", "--overlays", "0", "--no-amp", "--no-channels-last", "--in-channels", "1"]


def squares(root: Path, count: int = 9) -> Path:
    """`count` 32x32 grey images with a bright square (class 1) of varying size; every third one empty."""
    rng = np.random.default_rng(1)
    for index in range(count):
        label = np.zeros((32, 32), np.uint8)
        if index % 3:
            side = 6 + index
            label[4:4 + side, 5:5 + side] = 1
        image = (rng.normal(70, 12, (32, 32)) + 110 * label).clip(0, 255).astype(np.uint8)
        write_pair(root, f"img_{index}", image, label)
    (root / "classes.txt").write_text("background\nsquare\n")
    return root


def cv_args(data: Path, logs: Path, name: str, *extra: str) -> list[str]:
    return ["--model", "unet_bn", "--folds", "3", "--data", str(data), "--log-dir", str(logs), "--name", name,
            *TRAIN, *extra]


@pytest.fixture(scope="module")
def cross_validated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 3-fold cross-validation of unet_bn on nine squares, once for this module: (data, log dir)."""
    root = tmp_path_factory.mktemp("cv")
    data = squares(root / "data")
    assert run_main(png2txt.main, ["--data", str(data), "--folds", "3"]) == 0
    logs = root / "logs"
    assert run_main(crossval.main, cv_args(data, logs, "a")) == 0
    return data, logs


def test_every_fold_trained_and_scored_out_of_fold(cross_validated: tuple[Path, Path], tmp_path: Path) -> None:
    data, logs = cross_validated
    cv_dir = logs / "unet_bn" / "a-cv"
    record = json.loads((cv_dir / "crossval.json").read_text())
    assert [fold["fold"] for fold in record["folds"]] == [0, 1, 2]
    for fold in range(3):
        checkpoint = load_checkpoint(logs / "unet_bn" / f"a-fold{fold}" / "best.pt")
        assert checkpoint["args"]["train_split"] == f"fold{fold}_train"
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    assert summary["cases"] == 9 and [row["cases"] for row in summary["fold_table"]] == [3, 3, 3]
    # Out-of-fold scoring equals miou.py on all predictions in one folder, scored over a split listing them all.
    together = tmp_path / "together"
    together.mkdir()
    for fold in range(3):
        for stem in read_split(data, f"fold{fold}_val"):
            shutil.copy(cv_dir / "oof" / f"fold{fold}" / f"{stem}.png", together / f"{stem}.png")
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    write_split(copy, "all", [f"img_{i}" for i in range(9)])
    assert run_main(miou.main, ["--pred", str(together), "--data", str(copy), "--split", "all"]) == 0
    direct = json.loads((together / "miou.json").read_text())
    pooled = json.loads((cv_dir / "miou.json").read_text())
    assert pooled["confusion_matrix"] == direct["confusion_matrix"]
    assert summary["pooled_miou"] == pytest.approx(direct["miou"])
    assert summary["per_case"]["dice"]["square"]["mean"] == pytest.approx(direct["per_case"]["mean_image_dice"][1])
    page = (cv_dir / "report.html").read_text()
    assert "<h2>Folds</h2>" in page and (cv_dir / "per_image.csv").is_file()


def test_rerun_resumes_an_unfinished_fold_and_skips_finished_ones(cross_validated: tuple[Path, Path],
                                                                  tmp_path: Path, capsys) -> None:
    data, logs = cross_validated
    copy = tmp_path / "logs"
    shutil.copytree(logs, copy)  # a moved log folder: its out-of-fold predictions are crossval.py's own to redo
    finished = {fold: (copy / "unet_bn" / f"a-fold{fold}" / "best.pt").read_bytes() for fold in (0, 2)}
    # Fold 1 as a run stopped before its first epoch ended leaves it: last.pt of epoch 0, no history.
    stopped = copy / "unet_bn" / "a-fold1" / "last.pt"
    checkpoint = load_checkpoint(stopped)
    save_checkpoint(stopped, {**checkpoint, "epoch": 0, "history": [], "best_miou": -1.0})
    assert run_main(crossval.main, cv_args(data, copy, "a")) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == 2 and "fold 1: resuming" in out
    assert [entry["epoch"] for entry in json.loads((stopped.parent / "history.json").read_text())] == [1]
    assert load_checkpoint(stopped)["epoch"] == 1
    assert sorted(path.name for path in (copy / "unet_bn").iterdir()) == ["a-cv", "a-fold0", "a-fold1", "a-fold2"]
    assert all((copy / "unet_bn" / f"a-fold{fold}" / "best.pt").read_bytes() == finished[fold] for fold in (0, 2))
    assert run_main(crossval.main, cv_args(data, copy, "a")) == 0
    assert capsys.readouterr().out.count("skipped") == 3


def test_other_options_under_one_name_are_refused(cross_validated: tuple[Path, Path], capsys) -> None:
    data, logs = cross_validated
    assert run_main(crossval.main, cv_args(data, logs, "a", "--loss", "ce")) == 2
    err = capsys.readouterr().err
    assert "--loss" in err and "another --name" in err and err.count("\n") == 1


def test_print_commands_one_per_unfinished_fold(cross_validated: tuple[Path, Path], capsys) -> None:
    data, logs = cross_validated
    assert run_main(crossval.main, cv_args(data, logs, "b", "--print-commands")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("--only-fold ")[-1] for line in lines[:3]] == ["0", "1", "2"]
    assert not (logs / "unet_bn" / "b-fold0").exists()


@pytest.mark.parametrize("problem", ["missing", "empty", "reserved"])
def test_bad_folds_are_one_line(tmp_path: Path, problem: str, capsys) -> None:
    data = squares(tmp_path / "data")
    assert run_main(png2txt.main, ["--data", str(data), "--folds", "3"]) == 0
    extra: list[str] = []
    if problem == "missing":
        (data / "ImageSets" / "Segmentation" / "fold2_val.txt").unlink()
    elif problem == "empty":
        (data / "ImageSets" / "Segmentation" / "fold1_val.txt").write_text("")
    else:
        extra = ["--fold", "1"]
    assert run_main(crossval.main, cv_args(data, tmp_path / "logs", "a", *extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:")
    assert not (tmp_path / "logs").exists()


def test_folds_run_side_by_side_one_per_device(tmp_path: Path, capsys) -> None:
    def command(fold: int, device: str | None) -> list[str]:
        return [sys.executable, "-c", f"import sys; print('fold {fold} on {device}'); sys.exit({3 if fold == 2 else 0})"]

    results = run_folds([0, 1, 2, 3], command, ["cuda:0", "cuda:1"], tmp_path / "fold_logs")
    assert results == {0: 0, 1: 0, 2: 3, 3: 0}  # a failed fold does not stop the others
    for fold in range(4):
        text = (tmp_path / "fold_logs" / f"fold{fold}.log").read_text()
        assert text.startswith(f"fold {fold} on cuda:")
    assert "fold 2: stopped with exit code 3" in capsys.readouterr().out
    assert run_folds([0, 1, 2], command, [None], tmp_path / "unused") == {0: 0, 1: 0, 2: 3}
    assert not (tmp_path / "unused").exists()  # one device: output to the terminal


def test_devices_option() -> None:
    assert crossval.parse_devices("0,1") == ["cuda:0", "cuda:1"] and crossval.parse_devices("cpu") == ["cpu"]
    for bad in ("0,0", "gpu1", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            crossval.parse_devices(bad)


def test_an_unknown_rand_voi_class_is_refused_before_training(tmp_path: Path, capsys) -> None:
    data = squares(tmp_path / "data")
    assert run_main(png2txt.main, ["--data", str(data), "--folds", "3"]) == 0
    assert run_main(crossval.main, cv_args(data, tmp_path / "logs", "a", "--rand-voi", "cell")) == 2
    assert "--rand-voi cell" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()
