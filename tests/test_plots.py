"""Training curves written every epoch, the score bar chart and the confusion-matrix heat map."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import utils.io.figures
import utils.train.curves
import utils.train.run_log
from tests.conftest import ROOT, tiny_train_args
from utils.evaluate.plots import confusion_figure, row_normalised, scores_figure
from utils.train.curves import curves_figure
from utils.train.loop import train


def test_curves_png_is_rewritten_after_every_epoch(square_dataset: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    snapshots: list[bytes] = []

    def save_and_keep(path: Path, history: list[dict]) -> None:
        utils.train.curves.save_training_curves(path, history)
        snapshots.append(Path(path).read_bytes())

    monkeypatch.setattr(utils.train.run_log, "save_training_curves", save_and_keep)
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, "--epochs", "2", "--in-channels", "1")) == 0
    run = tmp_path / "unet_bn" / "r"
    assert len(snapshots) == 2 and snapshots[0] != snapshots[1]
    assert (run / "curves.png").read_bytes() == snapshots[1]
    for data in snapshots:
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG" and 900 <= image.size[0] <= 1100 and 550 <= image.size[1] <= 750
            image.verify()
    assert len(json.loads((run / "history.json").read_text())) == 2
    assert not list(run.glob(".curves.png.*"))  # no temporary file left behind


def test_a_plotting_failure_warns_and_training_goes_on(square_dataset: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def broken(history: list[dict]) -> None:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(utils.train.curves, "curves_figure", broken)
    assert train("unet_bn", tiny_train_args(square_dataset, tmp_path, "--in-channels", "1")) == 0
    run = tmp_path / "unet_bn" / "r"
    warnings = [line for line in capsys.readouterr().err.splitlines() if "curves" in line]
    assert warnings == [f"warning: training curves not written to {run / 'curves.png'}: no fonts"]
    assert not (run / "curves.png").exists() and (run / "best.pt").is_file()
    assert len(json.loads((run / "history.json").read_text())) == 1


def test_the_same_plotting_failure_is_reported_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys) -> None:
    def broken(history: list[dict]) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(utils.train.curves, "curves_figure", broken)
    for _ in range(3):
        utils.train.curves.save_training_curves(tmp_path / "curves.png", [])
    assert capsys.readouterr().err.count("disk full") == 1


def test_importing_the_library_does_not_load_matplotlib() -> None:
    code = "import sys, utils.train.loop, utils.evaluate.report, miou; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def record(epoch: int, miou: float, lr: float) -> dict:
    return {"epoch": epoch, "lr": lr, "train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch, "train_f_score": 0.5,
            "val_f_score": 0.4, "val_miou": miou, "val_mpa": None}


def test_curves_figure_plots_the_history_and_marks_the_best_epoch() -> None:
    history = [record(1, 0.50, 1e-3), record(2, 0.70, 9.2e-4), record(3, 0.60, 8.5e-4)]
    figure = curves_figure(history)
    loss, f_score, validation, rate = figure.axes[:4]
    assert [line.get_label() for line in loss.lines] == ["train", "val"]
    assert list(loss.lines[1].get_ydata()) == pytest.approx([1.2, 0.6, 0.4])
    assert list(validation.lines[0].get_ydata()) == [0.50, 0.70, 0.60]
    assert np.isnan(validation.lines[1].get_ydata()).all()  # mPA None in every record: no points
    assert validation.lines[2].get_label() == "best 0.7000 (epoch 2)"
    assert rate.get_yscale() == "linear"  # within one decade a log axis would hide the decay
    long_run = [record(e, 0.5, 1e-3 * 0.5 ** e) for e in range(1, 12)]
    assert curves_figure(long_run).axes[3].get_yscale() == "log"


def test_row_normalised_rows_sum_to_one_and_empty_rows_stay_zero() -> None:
    shares = row_normalised(np.array([[3, 1, 0], [0, 0, 0], [2, 2, 4]]))
    assert shares.tolist() == [[0.75, 0.25, 0.0], [0.0, 0.0, 0.0], [0.25, 0.25, 0.5]]


def test_confusion_figure_shows_cell_values_up_to_twelve_classes() -> None:
    figure = confusion_figure(np.array([[3, 1, 0], [0, 0, 0], [2, 2, 4]]), ["bg", "liver", "tumour"])
    axis = figure.axes[0]
    assert [t.get_text() for t in axis.texts] == ["0.75", "0.25", "0.00", "0.00", "0.00", "0.00",
                                                  "0.25", "0.25", "0.50"]
    assert [t.get_text() for t in axis.get_xticklabels()] == ["bg", "liver", "tumour"]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["bg", "liver", "tumour"]
    many = confusion_figure(np.eye(13, dtype=int), [f"c{i}" for i in range(13)])
    assert len(many.axes[0].texts) == 0


def test_scores_figure_bars_are_the_scores_and_missing_ones_say_na() -> None:
    scores = {"class_names": ["bg", "liver", "tumour"], "iou": [0.9, 0.5, None], "dice": [0.95, 0.6667, None],
              "miou": 0.7, "mdice": 0.80835}
    axis = scores_figure(scores).axes[0]
    heights = [round(patch.get_height(), 4) for patch in axis.patches]
    assert heights == [0.9, 0.5, 0.0, 0.95, 0.6667, 0.0]
    labels = [t.get_text() for t in axis.texts]
    assert labels == ["0.900", "0.500", "n/a", "0.950", "0.667", "n/a"]
    assert "mIoU 70.00%" in axis.get_title()


def test_save_figure_writes_a_png(tmp_path: Path) -> None:
    utils.io.figures.save_figure(confusion_figure(np.eye(2, dtype=int), ["a", "b"]), tmp_path / "sub" / "c.png")
    with Image.open(tmp_path / "sub" / "c.png") as image:
        assert image.format == "PNG" and min(image.size) > 100
