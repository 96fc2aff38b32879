"""Ensembles: several checkpoints, or a cross-validation folder, predict as one model whose probabilities are the
members' mean; with --save-uncertainty, the entropy and disagreement maps and uncertainty.csv hold known values."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import get_miou_prediction
import miou
import predict
from tests.conftest import write_pair, write_split
from tests.stand_in_models import register_linear, write_linear_checkpoint
from tests.volume_data import LPS_AFFINE, write_nifti
from utils.cli import run_main
from utils.errors import UserError
from utils.infer.ensemble import CROSSVAL_FILE, EnsemblePredictor
from utils.infer.loading import load_predictor
from utils.infer.members import checkpoint_members
from utils.infer.predictor import Predictor
from utils.io.outputs import resolved

H_075 = 0.8112781  # -(0.75 log2 0.75 + 0.25 log2 0.25)
H_0625 = 0.9544340  # the mean of 0.75 and 0.5: -(0.625 log2 0.625 + 0.375 log2 0.375)
MI = H_0625 - (H_075 + 1.0) / 2  # 0.0487950: H(mean) - mean H
U = H_0625 / (H_0625 + 2)  # every pixel foreground: sum H / (sum H + 2 n) = 0.3230493
WINDOW = {"intensity": {"kind": "window", "low": -160.0, "high": 240.0, "name": None}, "context": 0}


def sure_of(path: Path, p: float, **fields: object) -> Path:
    """A stand-in whose class-1 probability is `p` at every pixel: softmax of (0, log(p / (1 - p)))."""
    return write_linear_checkpoint(path, [0.0, math.log(p / (1 - p))], **fields)


@pytest.fixture
def members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Two fold checkpoints (class 1 at 0.75 and at 0.5 everywhere) and a cross-validation folder naming them."""
    register_linear(monkeypatch)
    runs = tmp_path / "runs"
    first = sure_of(runs / "fold0" / "best.pt", 0.75, preprocessing=WINDOW)
    second = sure_of(runs / "fold1" / "best.pt", 0.5, preprocessing=WINDOW)
    (runs / "cv").mkdir()
    folds = [{"fold": 0, "checkpoint": "../fold0/best.pt"}, {"fold": 1, "checkpoint": str(second.resolve())}]
    (runs / "cv" / CROSSVAL_FILE).write_text(json.dumps({"folds": folds, "model": "att_unet"}))
    return {"first": first, "second": second, "cv": runs / "cv"}


def test_probabilities_are_the_members_mean_at_the_image_size(tmp_path: Path, monkeypatch) -> None:
    register_linear(monkeypatch)
    # Letterboxed at 32 and tiled at 16: the members see different inputs, and agree only at the image's size.
    first = write_linear_checkpoint(tmp_path / "a.pt", [0.0, 0.0], [0.0, 4.0])
    second = write_linear_checkpoint(tmp_path / "b.pt", [0.0, 1.0], [0.0, -2.0], input_size=16, input_mode="crop")
    ensemble = load_predictor([first, second], "cpu")
    assert isinstance(ensemble, EnsemblePredictor) and [m.tiles for m in ensemble.members] == [False, True]
    image = np.full((20, 28, 1), 255, dtype=np.uint8)  # normalised to 1 everywhere
    mean = ensemble.probability_batch([image])[0]
    assert mean.shape == (2, 20, 28)
    own = [Predictor(path, "cpu").probability_batch([image])[0] for path in (first, second)]
    torch.testing.assert_close(mean, (own[0] + own[1]) / 2, atol=1e-7, rtol=0)
    expected = (1 / (1 + math.exp(-4)) + 1 / (1 + math.exp(1))) / 2  # (sigmoid(4) + sigmoid(-1)) / 2 = 0.6254776
    torch.testing.assert_close(mean[1], torch.full((20, 28), expected), atol=1e-6, rtol=0)
    pairs = ensemble.probabilities_with_disagreement([image])
    assert torch.equal(pairs[0][0], mean) and pairs[0][1].shape == (20, 28)


def test_crossval_folder_predicts_a_split_with_uncertainty(members: dict[str, Path], shared_square_dataset: Path,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["--checkpoint", "runs/cv", "--data", str(shared_square_dataset), "--device", "cpu"]
    assert run_main(get_miou_prediction.main, [*args, "--save-uncertainty", "--save-probabilities"]) == 0
    out = tmp_path / "results" / "ensemble-cv" / "val"  # the default folder of an ensemble: its folder's name
    for stem in ("img_6", "img_7"):
        assert (np.asarray(Image.open(out / f"{stem}.png")) == 1).all()  # mean class-1 probability 0.625
        saved = np.load(out / f"{stem}_probabilities.npz")["probabilities"]
        np.testing.assert_allclose(saved[:, 0, 0], [0.375, 0.625], atol=1e-3)
        entropy = np.asarray(Image.open(out / f"{stem}_entropy.png")).astype(int)
        disagreement = np.asarray(Image.open(out / f"{stem}_disagreement.png")).astype(int)
        assert entropy.shape == (32, 32) and np.abs(entropy - round(H_0625 * 65535)).max() <= 1
        assert np.abs(disagreement - round(MI * 65535)).max() <= 1
    with open(out / "uncertainty.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["stem"] for row in rows] == ["img_6", "img_7"]
    for row in rows:
        assert float(row["uncertainty"]) == pytest.approx(U, abs=1e-5)
        assert float(row["mean_entropy"]) == pytest.approx(H_0625, abs=1e-5)
        assert float(row["mean_disagreement"]) == pytest.approx(MI, abs=1e-5)
    record = json.loads((out / "prediction.json").read_text())
    assert record["checkpoint"] == str(resolved(members["cv"])) and record["uncertainty"] is True
    assert record["checkpoints"] == [str(resolved(members["first"])), str(resolved(members["second"]))]
    assert run_main(miou.main, ["--pred", str(out), "--data", str(shared_square_dataset)]) == 0  # maps ignored
    assert json.loads((out / "miou.json").read_text())["images"] == 2

    # Again without --save-uncertainty: the earlier uncertainty.csv must not pass for this run's.
    assert run_main(get_miou_prediction.main, args) == 0
    assert not (out / "uncertainty.csv").exists()
    assert json.loads((out / "prediction.json").read_text())["uncertainty"] is False


def test_another_member_set_is_refused_in_the_same_folder(members: dict[str, Path], shared_square_dataset: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    third = sure_of(tmp_path / "third.pt", 0.9, preprocessing=WINDOW)
    out = tmp_path / "out"
    common = ["--data", str(shared_square_dataset), "--out", str(out), "--device", "cpu"]
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(members["first"]), str(members["second"]),
                                               *common]) == 0
    capsys.readouterr()
    # The same first member (the record's "checkpoint"), another second one.
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(members["first"]), str(third), *common]) == 2
    assert f"{out} holds the predictions of other models" in capsys.readouterr().err


def test_ensemble_names(members: dict[str, Path]) -> None:
    """results/ensemble-<name>: the cross-validation folder's name, else the first run's and the member count."""
    assert checkpoint_members(members["cv"]).name == "cv"
    assert checkpoint_members([members["first"], members["second"]]).name == "fold0-x2"
    assert not checkpoint_members([members["first"]]).is_ensemble and checkpoint_members(members["cv"]).is_ensemble


@pytest.mark.parametrize("what, fields, theirs, ours", [
    ("classes", {"biases": [0.0, 0.0, 0.0]}, "3", "2"),
    ("input channels", {"in_channels": 3}, "3", "1"),
    ("normalisation", {"normalization": {"mean": [0.4], "std": [0.5]}}, "{'mean': [0.4], 'std': [0.5]}",
     "{'mean': [0.5], 'std': [0.5]}"),
    ("preprocessing", {"preprocessing": {**WINDOW, "context": 1}}, str({**WINDOW, "context": 1}), str(WINDOW)),
])
def test_members_that_disagree_are_refused(members: dict[str, Path], shared_square_dataset: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture, what: str, fields: dict, theirs: str,
                                           ours: str) -> None:
    odd = write_linear_checkpoint(tmp_path / "odd.pt", **{"biases": [0.0, 0.0], "preprocessing": WINDOW, **fields})
    out = tmp_path / "out"
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(members["first"]), str(odd), "--data",
                                               str(shared_square_dataset), "--out", str(out), "--device", "cpu"]) == 2
    message = (f"ensemble members disagree: {odd} has {what} {theirs}, but the first member {members['first']} "
               f"has {ours}; combine models trained on the same classes and data")
    assert capsys.readouterr().err == f"error: {message}\n" and not out.exists()
    image = shared_square_dataset / "Images" / "img_6.png"
    assert run_main(predict.main, [str(image), "--checkpoint", str(members["first"]), str(odd), "--out", str(out),
                                   "--device", "cpu"]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_crossval_folder_problems_are_one_line(members: dict[str, Path], tmp_path: Path) -> None:
    cv = members["cv"]
    assert checkpoint_members(cv).paths == [cv / "../fold0/best.pt", members["second"].resolve()]
    record = json.loads((cv / CROSSVAL_FILE).read_text())
    record["folds"].append({"fold": 2, "checkpoint": "../fold2/best.pt"})
    (cv / CROSSVAL_FILE).write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"cv: fold 2 has no checkpoint yet \(.*fold2/best\.pt is missing\); finish "
                                        r"training first: the crossval\.py command that made the folder, run again"):
        load_predictor(cv, "cpu")
    (cv / CROSSVAL_FILE).write_text(json.dumps({"folds": [{"fold": "zero", "checkpoint": "x.pt"}]}))
    with pytest.raises(UserError, match="fold entry 'zero' is malformed"):
        checkpoint_members(cv)
    (cv / CROSSVAL_FILE).write_text("{}")
    with pytest.raises(UserError, match="not a cross-validation record"):
        checkpoint_members(cv)
    with pytest.raises(UserError, match="is named twice among the checkpoints"):
        checkpoint_members([members["first"], members["first"].parent / ".." / "fold0" / "best.pt"])


def test_uncertainty_maps_must_not_replace_a_prediction(members: dict[str, Path], tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    for stem in ("a", "a_entropy"):
        write_pair(data, stem, np.zeros((16, 16), dtype=np.uint8), np.zeros((16, 16), dtype=np.uint8))
    write_split(data, "val", ["a", "a_entropy"])
    out = tmp_path / "out"
    common = ["--checkpoint", str(members["first"]), "--data", str(data), "--out", str(out), "--device", "cpu"]
    assert run_main(get_miou_prediction.main, [*common, "--save-uncertainty"]) == 2
    assert ("the split has images 'a' and 'a_entropy': the uncertainty map of 'a' would replace the prediction "
            "a_entropy.png") in capsys.readouterr().err
    assert not out.exists()
    assert run_main(get_miou_prediction.main, common) == 0  # without maps nothing clashes


def test_predict_writes_uncertainty_for_images_and_volumes(members: dict[str, Path], tmp_path: Path) -> None:
    image = tmp_path / "in" / "scan.png"
    image.parent.mkdir()
    Image.fromarray(np.full((20, 28), 90, dtype=np.uint8)).save(image)
    hu = np.random.default_rng(0).integers(0, 100, (12, 10, 4)).astype(np.int16)
    volume = write_nifti(tmp_path / "in" / "ct.nii.gz", hu, LPS_AFFINE)
    out = tmp_path / "ens"
    assert run_main(predict.main, [str(image), str(volume), "--checkpoint", str(members["cv"]), "--out", str(out),
                                   "--save-uncertainty", "--device", "cpu"]) == 0
    entropy = np.asarray(Image.open(out / "scan_entropy.png")).astype(int)
    assert entropy.shape == (20, 28) and np.abs(entropy - round(H_0625 * 65535)).max() <= 1
    assert np.abs(np.asarray(Image.open(out / "scan_disagreement.png")).astype(int) - round(MI * 65535)).max() <= 1
    for kind, value in (("entropy", H_0625), ("disagreement", MI)):
        written = nib.load(str(out / f"ct_{kind}.nii.gz"))
        assert written.shape == (12, 10, 4) and written.get_data_dtype() == np.float32
        assert np.allclose(written.affine, LPS_AFFINE)
        np.testing.assert_allclose(np.asarray(written.dataobj), value, atol=1e-5)
    with open(out / "uncertainty.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["stem"] for row in rows] == ["scan", "ct"]
    assert [float(row["uncertainty"]) for row in rows] == pytest.approx([U, U], abs=1e-5)

    single = tmp_path / "single"
    assert run_main(predict.main, [str(image), "--checkpoint", str(members["first"]), "--out", str(single),
                                   "--save-uncertainty", "--device", "cpu"]) == 0
    assert sorted(p.name for p in single.iterdir()) == ["scan_entropy.png", "scan_label.png", "scan_overlay.png",
                                                         "uncertainty.csv"]
    entropy = np.asarray(Image.open(single / "scan_entropy.png")).astype(int)
    assert np.abs(entropy - round(H_075 * 65535)).max() <= 1
    with open(single / "uncertainty.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["mean_disagreement"] == "" and float(row["uncertainty"]) == pytest.approx(H_075 / (H_075 + 2), abs=1e-5)


def test_images_may_follow_the_checkpoints(members: dict[str, Path], tmp_path: Path, capsys) -> None:
    image = tmp_path / "scan.png"
    Image.fromarray(np.full((16, 16), 90, dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    run = members["second"].parent  # a run folder predicts with its last.pt
    (run / "last.pt").write_bytes(members["second"].read_bytes())
    assert run_main(predict.main, ["--checkpoint", str(members["first"]), str(run), str(image),
                                   "--out", str(out), "--save-uncertainty", "--device", "cpu"]) == 0
    assert (np.asarray(Image.open(out / "scan_label.png")) == 1).all()  # both members: mean 0.625
    assert (out / "scan_disagreement.png").exists()
    assert run_main(predict.main, ["--checkpoint", str(members["first"]), str(members["second"]), "--out",
                                   str(tmp_path / "none")]) == 2
    assert "no images or volumes to predict" in capsys.readouterr().err
