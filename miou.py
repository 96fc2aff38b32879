"""Score predicted label maps against the labels of a split: confusion matrix, IoU, PA, Dice, mIoU, mPA.

For datasets imported from volumes (volumes.json) also per volume: Dice, IoU, HD95 and ASSD in mm. With
--pred-volumes and --label-volumes, a folder of NIfTI predictions is scored against a folder of NIfTI labels.
"""
from __future__ import annotations

from pathlib import Path

from utils.cli import MAX_CLASSES, ArgumentParser, int_at_least, run_main
from utils.data.dataset import find_samples, read_split
from utils.data.folders import CLASSES_FILE, DATASET_FOLDERS, GROUPS_FILE, index_by_stem, read_class_names, split_file
from utils.errors import UserError
from utils.evaluate.em_metrics import class_index
from utils.evaluate.prediction_folder import PREDICTION_FILE, predicted_stems
from utils.evaluate.score_files import UNCERTAINTY_FILE, read_uncertainty
from utils.evaluate.score_outputs import planned_outputs, write_score_outputs
from utils.evaluate.score_text import format_report
from utils.io.files import write_json
from utils.io.outputs import check_outputs
from utils.volumes.folder_scoring import (
    check_volume_report,
    nifti_files,
    read_class_file,
    score_volume_folders,
    write_per_volume_csv,
)
from utils.volumes.index import VOLUMES_FILE, read_volumes_file
from utils.volumes.scoring import format_volume_report
from utils.volumes.split_scores import read_groups, score_predictions, with_source

SPLIT_ONLY = ("report", "rand_voi", "group")  # options that need images of a split


def score_split(args) -> int:
    """Score the predictions of a split of a dataset folder."""
    names = read_class_names(args.data)
    num_classes = max(args.num_classes or (len(names) if names else 2), 2)
    if names and len(names) != num_classes:
        names = None
    samples = find_samples(args.data, read_split(args.data, args.split))
    pred, data = Path(args.pred), Path(args.data)
    stems = predicted_stems(pred, data, args.split, [s.stem for s in samples])
    predictions = index_by_stem(pred)
    missing = [stem for stem in stems if stem not in predictions]
    if missing:
        raise UserError(f"{len(missing)} image(s) of split '{args.split}' have no prediction in {args.pred}: "
                        f"{', '.join(missing[:10])}")
    segment_class = None
    if args.rand_voi is not None:
        segment_class = class_index(args.rand_voi, names or [f"class_{i}" for i in range(num_classes)])
    groups = read_groups(data, stems, args.group)
    uncertainty = read_uncertainty(pred)
    report = Path(args.json) if args.json else pred / "miou.json"
    outputs = planned_outputs(report, stems, pred, num_classes, html=args.report, uncertainty=uncertainty is not None)
    inputs = [*(predictions[stem] for stem in stems), *(s.label_path for s in samples),
              *(s.image_path for s in samples), split_file(data, args.split), pred / PREDICTION_FILE,
              pred / UNCERTAINTY_FILE, *(data / name for name in (CLASSES_FILE, GROUPS_FILE, VOLUMES_FILE))]
    check_outputs(outputs, inputs, DATASET_FOLDERS)
    empty = None if args.empty_case == "exclude" else 1.0
    scores, matrices = score_predictions(samples, predictions, num_classes, names, groups,
                                         read_volumes_file(args.data), empty, segment_class)
    scores = with_source(scores, split=args.split, data=str(args.data), pred=str(args.pred))
    print(format_report(scores))
    if "volumes" in scores:
        print()
        print(format_volume_report(scores["volumes"]))
    print("\n".join(write_score_outputs(report, scores, samples, predictions, matrices, groups, html=args.report,
                                        uncertainty=uncertainty)))
    return 0


def score_volume_files(args) -> int:
    """Score a folder of NIfTI predictions against a folder of NIfTI labels."""
    given = [f"--{name.replace('_', '-')}" for name in SPLIT_ONLY if getattr(args, name) not in (None, False)]
    if given:
        raise UserError(f"{', '.join(given)} score the images of a split; leave them out with --pred-volumes")
    if not args.label_volumes:
        raise UserError("--pred-volumes needs --label-volumes: the folder of NIfTI labels to score against")
    pred_dir = Path(args.pred_volumes)
    report = Path(args.json) if args.json else pred_dir / "miou.json"
    names = read_class_file(args.classes) if args.classes else None
    outputs = check_volume_report(report)
    inputs = [*nifti_files(pred_dir, "prediction").values(), *nifti_files(args.label_volumes, "label").values()]
    check_outputs(outputs, inputs)
    scores = score_volume_folders(pred_dir, args.label_volumes, args.num_classes, names)
    print(format_report(scores, counted=f"{scores['pixels']} voxels, {scores['volume_pairs']} volumes"))
    print()
    print(format_volume_report(scores["volumes"]))
    write_json(report, scores)
    write_per_volume_csv(outputs[1], scores)
    print(f"report written to {report}\nper-volume scores written to {outputs[1]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--pred", default=None, help="folder of predicted label PNGs (get_miou_prediction.py)")
    parser.add_argument("--data", default="datasets/SynthLiver", help="dataset folder with the true labels")
    parser.add_argument("--split", default="val", help="split whose images are scored")
    parser.add_argument("--pred-volumes", default=None, metavar="DIR",
                        help="instead of --pred: a folder of NIfTI predictions (<name>.nii.gz or <name>_label.nii.gz)")
    parser.add_argument("--label-volumes", default=None, metavar="DIR",
                        help="with --pred-volumes: the folder of NIfTI labels (<name>.nii.gz) they are scored against")
    parser.add_argument("--classes", default=None, metavar="FILE",
                        help="with --pred-volumes: class names, one a line (default: class_0, class_1, ...)")
    parser.add_argument("--num-classes", type=int_at_least(1, MAX_CLASSES), default=None,
                        help="classes (default: lines of classes.txt, else 2; with --pred-volumes: the --classes "
                             "lines, else the largest class id found + 1)")
    parser.add_argument("--json", default=None,
                        help="report file (default: <pred>/miou.json); the other files are named after it")
    parser.add_argument("--group", default=None,
                        help="regex on the stem naming the case group (patient) for per-group Dice "
                             "(default: the dataset's groups.json when present)")
    parser.add_argument("--report", action="store_true",
                        help="also write report.html next to the JSON: summary, plots and a worst-first image gallery")
    parser.add_argument("--empty-case", choices=("exclude", "one"), default="exclude",
                        help="per-case Dice when a class is in neither prediction nor label: "
                             "leave the case out of that class's mean, or count it as 1")
    parser.add_argument("--rand-voi", default=None, metavar="CLASS",
                        help="also score the segments (4-connected components) of CLASS (name or id, e.g. 'cell' "
                             "on ISBI 2012) per image: adapted Rand error and variation of information")
    args = parser.parse_args(argv)
    if args.pred_volumes:
        if args.pred:
            raise UserError("give --pred (label PNGs of a split) or --pred-volumes (NIfTI files), not both")
        return score_volume_files(args)
    if not args.pred:
        raise UserError("give --pred FOLDER (label PNGs of a split) or --pred-volumes DIR --label-volumes DIR")
    if args.classes or args.label_volumes:
        raise UserError("--classes and --label-volumes go with --pred-volumes; a split's classes are in classes.txt")
    return score_split(args)


if __name__ == "__main__":
    raise SystemExit(run_main(main))
