"""choose_config.py on hand-made out-of-fold probabilities of two configurations, with Dice worked out by hand."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import choose_config
from tests.conftest import write_pair, write_split
from tests.stand_in_models import write_linear_checkpoint
from utils.cli import run_main
from utils.io.files import write_json

STEMS = ["img0", "img1", "img2", "img3"]
FOLDS = [["img0", "img1"], ["img2", "img3"]]


def dataset(root: Path) -> Path:
    """Four 8x8 images whose label is the 4x4 square [2:6, 2:6] (class 'square'), in two folds."""
    label = np.zeros((8, 8), np.uint8)
    label[2:6, 2:6] = 1
    for stem in STEMS:
        write_pair(root, stem, (label * 200).astype(np.uint8), label)
    (root / "classes.txt").write_text("background\nsquare\n")
    for fold, val in enumerate(FOLDS):
        write_split(root, f"fold{fold}_val", val)
        write_split(root, f"fold{fold}_train", [s for s in STEMS if s not in val])
    return root


def configuration(logs: Path, name: str, data: Path, masks: dict[str, np.ndarray]) -> Path:
    """A cross-validation folder as crossval.py leaves it, with `masks` as its out-of-fold predictions (p = 0 or 1)."""
    cv_dir = logs / "unet_bn" / f"{name}-cv"
    folds = []
    for fold, val in enumerate(FOLDS):
        run_dir = logs / "unet_bn" / f"{name}-fold{fold}"
        run_dir.mkdir(parents=True)
        checkpoint = write_linear_checkpoint(run_dir / "best.pt", [0.0, 0.0], class_names=["background", "square"])
        folds.append({"fold": fold, "checkpoint": f"../{checkpoint.parent.name}/best.pt", "val_split": f"fold{fold}_val",
                      "splits_digest": "-"})
        oof = cv_dir / "oof" / f"fold{fold}"
        write_json(oof / "prediction.json", {"flip_tta": False, "stems": val})
        for stem in val:
            fg = masks[stem].astype(np.float16)
            np.savez_compressed(oof / f"{stem}_probabilities.npz", probabilities=np.stack([1 - fg, fg]),
                                class_names=np.array(["background", "square"]))
    write_json(cv_dir / "crossval.json", {"version": 1, "model": "unet_bn", "data": str(data.resolve()),
                                          "folds": folds, "train_options": {}, "train_args": []})
    return cv_dir


def test_choice_ranking_paired_test_and_keep_largest_by_hand(tmp_path: Path, capsys) -> None:
    data = dataset(tmp_path / "data")
    square = np.zeros((8, 8), bool)
    square[2:6, 2:6] = True
    with_speck = square.copy()
    with_speck[7, 7] = True  # a one-pixel false positive, apart from the square
    shifted = np.roll(square, 1, axis=1)  # 12 of 16 pixels right
    good = configuration(tmp_path / "logs", "a", data, {"img0": with_speck, "img1": square, "img2": square,
                                                         "img3": square})
    worse = configuration(tmp_path / "logs", "b", data, {stem: shifted for stem in STEMS})
    out = tmp_path / "choice.json"
    assert run_main(choose_config.main, [str(good), str(worse), "--out", str(out)]) == 0
    choice = json.loads(out.read_text())
    ranking = {row["candidate"]: row["mean"] for row in choice["ranking"]}
    a, b = "unet_bn/a-cv", "unet_bn/b-cv"
    assert ranking[a] == pytest.approx((32 / 33 + 3) / 4)  # img0: 2*16 / (17 + 16)
    assert ranking[b] == pytest.approx(24 / 32)  # 2*12 / (16 + 16)
    # The average is 1/2 : 1/2 where one says square: a tie, which goes to background; the 12 shared pixels stay.
    assert ranking[f"{a} + {b}"] == pytest.approx(24 / 28)
    assert [row["candidate"] for row in choice["ranking"]] == [a, f"{a} + {b}", b]
    test = choice["winner_vs_runner_up"]
    assert test["cases"] == 4 and test["mean_difference"] == pytest.approx(ranking[a] - 24 / 28)
    assert test["p_value"] == pytest.approx(2 / 16)  # four positive differences: exact two-sided Wilcoxon
    largest = choice["keep_largest"]["square"]
    assert largest["keep_largest"] and largest["dice_with"] == pytest.approx(1.0)
    assert choice["predict_arguments"] == ["--checkpoint", str(good), "--keep-largest", "--largest-classes", "square"]
    assert choice["predict_command"].startswith(f"python predict.py --checkpoint {good} --keep-largest "
                                                f"--largest-classes square")
    assert "apply it with" in capsys.readouterr().out


def test_keep_largest_stays_off_when_it_does_not_help(tmp_path: Path) -> None:
    data = dataset(tmp_path / "data")
    two = np.zeros((8, 8), bool)
    two[2:6, 2:6] = True
    only = configuration(tmp_path / "logs", "a", data, {stem: two for stem in STEMS})
    assert run_main(choose_config.main, [str(only), "--out", str(tmp_path / "c.json")]) == 0
    choice = json.loads((tmp_path / "c.json").read_text())
    assert not choice["keep_largest"]["square"]["keep_largest"]
    assert "--keep-largest" not in choice["predict_command"] and "winner_vs_runner_up" not in choice


def test_runs_on_other_folds_are_refused(tmp_path: Path, capsys) -> None:
    first = dataset(tmp_path / "data")
    second = dataset(tmp_path / "other")
    for fold, val in enumerate(FOLDS[::-1]):  # the same cases, dealt to the folds the other way round
        write_split(second, f"fold{fold}_val", val)
    square = np.zeros((8, 8), bool)
    a = configuration(tmp_path / "logs", "a", first, {stem: square for stem in STEMS})
    b = configuration(tmp_path / "logs", "b", second, {stem: square for stem in STEMS})
    assert run_main(choose_config.main, [str(a), str(b), "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "same cases and folds" in err and err.count("\n") == 1
    assert not (tmp_path / "c.json").exists()


def test_two_imports_of_the_same_cases_compare(tmp_path: Path) -> None:
    """E.g. 2-D and 2.5-D imports of the same volumes: other folders, the same stems, folds and label sizes."""
    square = np.zeros((8, 8), bool)
    square[2:6, 2:6] = True
    a = configuration(tmp_path / "logs", "a", dataset(tmp_path / "flat"), {stem: square for stem in STEMS})
    b = configuration(tmp_path / "logs", "b", dataset(tmp_path / "context"), {stem: square for stem in STEMS})
    assert run_main(choose_config.main, [str(a), str(b), "--out", str(tmp_path / "c.json")]) == 0
    assert len(json.loads((tmp_path / "c.json").read_text())["ranking"]) == 3
