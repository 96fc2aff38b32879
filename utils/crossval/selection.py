"""The best configuration of several cross-validations: each run and each pairwise ensemble scored on the same
out-of-fold cases, a paired test of the winner against the runner-up, and keep-largest decided class by class."""
from __future__ import annotations

import itertools
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utils.crossval.record import read_record
from utils.data.dataset import find_samples, read_split
from utils.data.splits import split_fingerprint
from utils.errors import UserError
from utils.evaluate.prediction_folder import PREDICTION_FILE
from utils.evaluate.prediction_folder import read_record as read_prediction_record
from utils.evaluate.statistics import describe, paired_comparison
from utils.infer.members import crossval_checkpoints
from utils.infer.metadata import description
from utils.infer.postprocess import keep_largest
from utils.io.checkpoint import load_checkpoint
from utils.io.images import open_image
from utils.io.labels import IGNORE_INDEX, label_to_array
from utils.metrics import class_scores, foreground_dice
from utils.volumes.index import read_volumes_file

AGREEMENT_KEYS = ("model.num_classes", "model.in_channels", "class_names", "normalization", "preprocessing")


@dataclass
class Run:
    """One cross-validated configuration: its folder, the data it used and where its out-of-fold files are."""

    cv_dir: Path
    data: Path
    folds: int
    flip_tta: bool
    described: dict[str, Any]
    stem_fold: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The configuration's name: its folder, e.g. unet_bn/base-cv."""
        return f"{self.cv_dir.parent.name}/{self.cv_dir.name}"

    def probabilities(self, stem: str) -> np.ndarray:
        """The out-of-fold class probabilities (K x H x W float32) of one case's image."""
        path = self.cv_dir / "oof" / f"fold{self.stem_fold[stem]}" / f"{stem}_probabilities.npz"
        if not path.is_file():
            raise UserError(f"{path} not found: run crossval.py for {self.cv_dir} again to write its out-of-fold "
                            f"probabilities")
        with np.load(path) as saved:
            return saved["probabilities"].astype(np.float32)


def _setting(described: dict[str, Any], key: str) -> Any:
    value: Any = described
    for part in key.split("."):
        value = value[part]
    return value


def load_run(cv_dir: Path) -> Run:
    """A cross-validation folder crossval.py finished (out-of-fold predictions and all)."""
    record = read_record(cv_dir)
    if record is None:
        raise UserError(f"{cv_dir} is not a cross-validation folder (no crossval.json); crossval.py writes one")
    folds = len(record["folds"])
    flips = set()
    for fold in range(folds):
        finished = read_prediction_record(cv_dir / "oof" / f"fold{fold}" / PREDICTION_FILE)
        if finished is None:
            raise UserError(f"{cv_dir}: fold {fold} has no finished out-of-fold predictions; run crossval.py for "
                            f"it again")
        flips.add(bool(finished.get("flip_tta")))
    checkpoint = crossval_checkpoints(cv_dir)[0]
    run = Run(cv_dir, Path(record["data"]), folds, flips == {True}, description(load_checkpoint(checkpoint)))
    for fold in range(folds):
        run.stem_fold.update({stem: fold for stem in read_split(run.data, f"fold{fold}_val")})
    return run


def check_comparable(runs: list[Run]) -> None:
    """The runs were cross-validated on the same cases in the same folds, and agree on classes.

    Their data folders may differ when they hold the same cases (two imports of the same volumes, 2-D and 2.5-D):
    every fold must list the same stems with labels of the same sizes.
    """
    first = runs[0]
    for run in runs[1:]:
        same = run.stem_fold == first.stem_fold
        if same and run.data != first.data:
            same = all(split_fingerprint(run.data, f"fold{fold}_val") == split_fingerprint(first.data, f"fold{fold}_val")
                       for fold in range(first.folds))
        if not same:
            raise UserError(f"{run.cv_dir} and {first.cv_dir} were not cross-validated on the same cases and folds, "
                            f"so their out-of-fold scores do not compare")
        if _setting(run.described, "class_names") != _setting(first.described, "class_names"):
            raise UserError(f"{run.cv_dir} and {first.cv_dir} predict different classes")


def can_ensemble(first: Run, second: Run) -> bool:
    """Whether two runs' models can average their probabilities (same classes, channels, normalisation, context)."""
    return all(_setting(first.described, key) == _setting(second.described, key) for key in AGREEMENT_KEYS)


def cases(data: Path, stems: list[str]) -> list[list[str]]:
    """The cases to compare on: volumes (their slices in order) when the data came from volumes, else images."""
    volumes = read_volumes_file(data)
    if not volumes:
        return [[stem] for stem in stems]
    present = set(stems)
    return [entry["slices"] for entry in volumes["volumes"].values() if all(s in present for s in entry["slices"])]


def labels_of(probabilities: np.ndarray) -> np.ndarray:
    """Class ids of (K, ...) probabilities."""
    return np.argmax(probabilities, axis=0).astype(np.uint8)


def matrix(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix of one case, label 255 left out."""
    valid = label != IGNORE_INDEX
    return np.bincount(label[valid].astype(np.int64) * num_classes + pred[valid],
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass
class Candidate:
    """A run or a pairwise ensemble of runs, with its per-case foreground Dice."""

    runs: tuple[Run, ...]
    case_dice: list[float | None] = field(default_factory=list)

    @property
    def name(self) -> str:
        """'a' or 'a + b'."""
        return " + ".join(run.name for run in self.runs)

    @property
    def mean(self) -> float:
        """Mean per-case foreground Dice (undefined cases left out)."""
        return describe(self.case_dice)["mean"] or 0.0


def case_arrays(runs: list[Run], case: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """One case's label stack (slices, H, W) and each run's probability stack (K, slices, H, W)."""
    samples = find_samples(runs[0].data, case)
    label = np.stack([label_to_array(open_image(s.label_path), s.label_path) for s in samples])
    return label, [np.stack([run.probabilities(stem) for stem in case], axis=1) for run in runs]


def compare(runs: list[Run]) -> tuple[list[Candidate], list[list[str]]]:
    """Every run and every pair that can be ensembled, scored on per-case foreground Dice; best first."""
    candidates = [Candidate((run,)) for run in runs]
    candidates += [Candidate(pair) for pair in itertools.combinations(runs, 2) if can_ensemble(*pair)]
    index = {run.cv_dir: i for i, run in enumerate(runs)}
    num_classes = max(len(_setting(runs[0].described, "class_names")), 2)
    groups = cases(runs[0].data, sorted(runs[0].stem_fold))
    for case in groups:
        label, stacks = case_arrays(runs, case)
        for candidate in candidates:
            mean = sum(stacks[index[run.cv_dir]] for run in candidate.runs) / len(candidate.runs)
            candidate.case_dice.append(foreground_dice(matrix(labels_of(mean), label, num_classes)))
    return sorted(candidates, key=lambda c: c.mean, reverse=True), groups


def keep_largest_effect(candidate: Candidate, groups: list[list[str]], class_names: list[str]
                        ) -> dict[str, dict[str, Any]]:
    """Per foreground class: its per-case Dice without and with keep-largest (3-D for volumes), and the choice."""
    runs = list(candidate.runs)
    num_classes = max(len(class_names), 2)
    before: dict[int, list[float | None]] = {c: [] for c in range(1, num_classes)}
    after: dict[int, list[float | None]] = {c: [] for c in range(1, num_classes)}
    for case in groups:
        label, stacks = case_arrays(runs, case)
        pred = labels_of(sum(stacks) / len(stacks))
        for c in before:
            cleaned, _ = keep_largest(pred, num_classes, 1, classes=[c])
            before[c].append(class_scores(matrix(pred, label, num_classes))[0][c])
            after[c].append(class_scores(matrix(cleaned, label, num_classes))[0][c])
    decisions = {}
    for c in before:
        without, with_largest = describe(before[c]), describe(after[c])
        gain = (with_largest["mean"] or 0.0) - (without["mean"] or 0.0)
        decisions[class_names[c]] = {"dice_without": without["mean"], "dice_with": with_largest["mean"],
                                     "gain": gain, "keep_largest": gain > 0}
    return decisions


def choose(cv_dirs: list[Path]) -> dict[str, Any]:
    """The comparison, the winner, its test against the runner-up and its post-processing, as one record."""
    runs = [load_run(Path(folder)) for folder in cv_dirs]
    check_comparable(runs)
    ranked, groups = compare(runs)
    winner = ranked[0]
    class_names = list(_setting(runs[0].described, "class_names"))
    record: dict[str, Any] = {
        "cases": len(groups), "case_unit": "volume" if read_volumes_file(runs[0].data) else "image",
        "ranking": [{"candidate": c.name, **describe(c.case_dice)} for c in ranked],
        "winner": winner.name,
        "winner_folders": [str(run.cv_dir) for run in winner.runs],
        "flip_tta": all(run.flip_tta for run in winner.runs)}
    if len(ranked) > 1:
        record["runner_up"] = ranked[1].name
        record["winner_vs_runner_up"] = paired_comparison(winner.case_dice, ranked[1].case_dice)
    record["keep_largest"] = keep_largest_effect(winner, groups, class_names)
    return record


def predict_arguments(record: dict[str, Any]) -> list[str]:
    """The options of predict.py (and get_miou_prediction.py) that apply everything the choice decided."""
    arguments = ["--checkpoint", *record["winner_folders"]]
    if record["flip_tta"]:
        arguments.append("--flip-tta")
    chosen = [name for name, decision in record["keep_largest"].items() if decision["keep_largest"]]
    if chosen:
        arguments += ["--keep-largest", "--largest-classes", ",".join(chosen)]
    return arguments


def predict_command(record: dict[str, Any]) -> str:
    """The predict.py command line that applies the choice, for the user to fill in the images."""
    return " ".join(["python predict.py", *map(shlex.quote, predict_arguments(record)), "--out results/best IMAGES..."])
