"""Cross-validation folds: png2txt.py --folds K keeps groups whole, covers every image once, spreads foreground;
the train scripts' --fold I trains on fold I under a run name that carries the fold."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import png2txt
from tests.conftest import tiny_train_args, write_pair
from utils.cli import run_main
from utils.data.dataset import read_split
from utils.data.splits import fold_stems
from utils.train.loop import train


def grouped_dataset(root: Path) -> Path:
    """Six patients p0..p5 with 2-3 slices each; the slices of p0..p2 hold foreground, p3..p5 are empty."""
    rng = np.random.default_rng(0)
    for patient in range(6):
        for index in range(2 + patient % 2):
            label = np.zeros((32, 32), np.uint8)
            if patient < 3:
                label[8:20, 8:20] = 1
            image = (rng.normal(60, 10, (32, 32)) + 120 * label).clip(0, 255).astype(np.uint8)
            write_pair(root, f"p{patient}_{index}", image, label)
    (root / "classes.txt").write_text("background\nsquare\n")
    return root


def test_folds_keep_groups_whole_and_cover_every_image_once(tmp_path: Path) -> None:
    data = grouped_dataset(tmp_path / "d")
    assert run_main(png2txt.main, ["--data", str(data), "--folds", "3", "--group", r"^(p\d+)_"]) == 0
    stems = read_split(data, "trainval")
    vals = [read_split(data, f"fold{i}_val") for i in range(3)]
    assert sorted(sum(vals, [])) == sorted(stems)  # every image validated exactly once
    for i, val in enumerate(vals):
        train = read_split(data, f"fold{i}_train")
        assert sorted(train + val) == sorted(stems) and not set(train) & set(val)
        patients = {stem.split("_")[0] for stem in val}
        assert not patients & {stem.split("_")[0] for stem in train}  # a patient never on both sides
        assert len({stem.split("_")[0] for stem in val if stem[1] in "012"}) == 1  # one patient with foreground each
    again = tmp_path / "again"
    grouped_dataset(again)
    assert run_main(png2txt.main, ["--data", str(again), "--folds", "3", "--group", r"^(p\d+)_"]) == 0
    assert [read_split(again, f"fold{i}_val") for i in range(3)] == vals  # same seed, same folds


def test_fold_assignment_by_hand() -> None:
    stems = ["a1", "a2", "b1", "c1", "c2", "c3", "d1"]
    groups = {stem: stem[0] for stem in stems}
    foreground = {stem: stem[0] in "ac" for stem in stems}
    folds = fold_stems(stems, 2, 0, groups, foreground)
    assert sorted(sum(folds, [])) == sorted(stems)
    # Foreground first, largest first: c (3) to fold 0, a (2) to fold 1; then the empty b and d (1 each) go to the
    # smaller fold in turn, one to each: sizes 4 and 3.
    letters = [{s[0] for s in fold} for fold in folds]
    assert "c" in letters[0] and "a" in letters[1] and len(letters[0] & {"b", "d"}) == len(letters[1] & {"b", "d"}) == 1
    with pytest.raises(Exception, match="needs at least 5 groups"):
        fold_stems(stems, 5, 0, groups, foreground)


def test_more_folds_than_groups_is_one_line(tmp_path: Path, capsys) -> None:
    data = grouped_dataset(tmp_path / "d")
    assert run_main(png2txt.main, ["--data", str(data), "--folds", "7", "--group", r"^(p\d+)_"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs at least 7 groups" in err
    assert not (data / "ImageSets").exists()


def test_a_fold_trains_on_its_files_under_a_fold_run_name(tmp_path: Path, capsys) -> None:
    data = grouped_dataset(tmp_path / "d")
    assert run_main(png2txt.main, ["--data", str(data), "--folds", "2", "--group", r"^(p\d+)_"]) == 0
    assert train("unet_bn", tiny_train_args(data, tmp_path / "logs", "--fold", "1", "--in-channels", "1")) == 0
    run = tmp_path / "logs" / "unet_bn" / "r-fold1"
    assert (run / "best.pt").is_file()
    out = capsys.readouterr().out
    train_count, val_count = (len(read_split(data, f"fold1_{part}")) for part in ("train", "val"))
    assert f"train {train_count} / val {val_count} images" in out
    assert len(json.loads((run / "history.json").read_text())) == 1
    assert train("unet_bn", tiny_train_args(data, tmp_path / "logs", "--fold", "2")) == 2
    assert "fold2_train.txt not found; write the folds with: python png2txt.py" in capsys.readouterr().err
    assert train("unet_bn", tiny_train_args(data, tmp_path / "logs", "--fold", "0", "--val-split", "x")) == 2
    assert "leave out --train-split and --val-split" in capsys.readouterr().err


def test_test_part_is_whole_groups_kept_out_of_every_fold(tmp_path: Path) -> None:
    data = grouped_dataset(tmp_path / "d")
    assert run_main(png2txt.main, ["--data", str(data), "--folds", "2", "--test", "2", "--group", r"^(p\d+)_"]) == 0
    test = read_split(data, "test")
    patients = {stem.split("_")[0] for stem in test}
    assert len(patients) == 2
    # Three of six patients hold foreground: the test part takes them in proportion, one of each kind.
    assert len(patients & {"p0", "p1", "p2"}) == 1
    folds = [read_split(data, f"fold{i}_{part}") for i in range(2) for part in ("train", "val")]
    assert not set(test) & set(sum(folds, []))
    assert sorted(read_split(data, "fold0_val") + read_split(data, "fold1_val")) == sorted(read_split(data, "trainval"))
    assert not set(test) & set(read_split(data, "trainval"))


def test_test_part_needs_folds_and_a_group_left(tmp_path: Path, capsys) -> None:
    data = grouped_dataset(tmp_path / "d")
    assert run_main(png2txt.main, ["--data", str(data), "--test", "1"]) == 2
    assert "--folds" in capsys.readouterr().err
    assert run_main(png2txt.main, ["--data", str(data), "--folds", "2", "--test", "6", "--group", r"^(p\d+)_"]) == 2
    assert "no group" in capsys.readouterr().err


def test_group_pattern_that_groups_nothing_is_refused_for_folds(tmp_path: Path, capsys) -> None:
    data = grouped_dataset(tmp_path / "d")
    assert run_main(png2txt.main, ["--data", str(data), "--folds", "2", "--group", r"^(p\d+_\d+)$"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "group of its own" in err
    assert not (data / "ImageSets" / "Segmentation" / "fold0_val.txt").exists()
