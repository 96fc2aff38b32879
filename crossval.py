"""K-fold cross-validation of one configuration: train every fold, predict each fold's validation cases with its
own model (out-of-fold), score them together, and leave a folder that predict.py and export.py take as an ensemble.

Write the folds first (python png2txt.py --data D --folds 5), then, with any train option after the own ones:
    python crossval.py --model unet_bn --folds 5 --data D --name base --epochs 40 --input-size 256
Fold I trains in <log-dir>/<model>/<name>-fold<I>; the summary, out-of-fold predictions and report go to
<log-dir>/<model>/<name>-cv/. Rerunning the same command skips finished folds, resumes an interrupted one where
it stopped, and scores again.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import get_miou_prediction
from utils.cli import ArgumentParser, int_at_least, run_main
from utils.crossval.record import check_same_run, new_record, read_record, save_record
from utils.crossval.scoring import score_out_of_fold, write_summary
from utils.crossval.training import (
    TRAIN_SCRIPTS,
    check_reserved,
    fold_command,
    read_fold,
    run_folds,
    shell_line,
)
from utils.data.folders import DATASET_FOLDERS, INCOMPLETE_FILE, read_class_names, split_file
from utils.errors import UserError
from utils.evaluate.em_metrics import class_index
from utils.evaluate.prediction_folder import PREDICTION_FILE
from utils.io.outputs import check_outputs
from utils.train.options import RESUME_OVERRIDES, run_name, train_parser

NOT_RECORDED = (*RESUME_OVERRIDES, "data", "log_dir", "run_name", "fold", "train_split", "val_split")


def parse_devices(text: str) -> list[str]:
    """--devices 0,1 -> ['cuda:0', 'cuda:1']; 'cpu' -> ['cpu']."""
    parts = [part.strip() for part in text.split(",")]
    if parts == ["cpu"]:
        return parts
    if not all(part.isdigit() for part in parts) or len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(f"expected GPU numbers such as 0,1,2 (or cpu), got {text!r}")
    return [f"cuda:{part}" for part in parts]


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str], dict, int]:
    """crossval.py's own options, the train options passed to every fold, those the run records (all but what a
    resumed run may change, such as --epochs) and the epochs."""
    # No abbreviations: every option crossval.py does not know is a train option, and --fold must not read as --folds.
    parser = ArgumentParser(description=__doc__, allow_abbrev=False,
                            epilog="Every other option is a train option (see python unet_bn_train_medical.py --help).")
    parser.add_argument("--model", required=True, choices=sorted(TRAIN_SCRIPTS), help="architecture")
    parser.add_argument("--folds", type=int_at_least(2), required=True, metavar="K", help="number of folds")
    parser.add_argument("--data", default="datasets/SynthLiver", help="dataset folder with fold<i>_train/val.txt")
    parser.add_argument("--name", type=run_name, default="crossval",
                        help="names the fold runs (<name>-fold<I>) and the summary folder (<name>-cv)")
    parser.add_argument("--log-dir", default="logs", help="runs go to <log-dir>/<model>/")
    parser.add_argument("--devices", type=parse_devices, default=None,
                        help="GPUs to train folds on side by side, one fold per GPU at a time, e.g. 0,1 "
                             "(default: one fold at a time on the train scripts' default device)")
    parser.add_argument("--print-commands", action="store_true",
                        help="print one standalone command per unfinished fold (for a cluster's job array) and exit")
    parser.add_argument("--only-fold", type=int_at_least(0), default=None, metavar="I",
                        help="train (or resume) fold I only, without scoring")
    parser.add_argument("--flip-tta", action="store_true", help="out-of-fold predictions with flip TTA")
    parser.add_argument("--empty-case", choices=("exclude", "one"), default="exclude",
                        help="per-case Dice when a class is in neither prediction nor label (as miou.py)")
    parser.add_argument("--rand-voi", default=None, metavar="CLASS",
                        help="also adapted Rand error and VOI over connected components of CLASS (as miou.py)")
    args, train_args = parser.parse_known_args(argv)
    check_reserved(train_args)
    if args.only_fold is not None and args.only_fold >= args.folds:
        raise UserError(f"--only-fold {args.only_fold}: the folds are numbered 0..{args.folds - 1}")
    options = vars(train_parser(args.model).parse_args([*train_args, "--data", args.data]))
    recorded = {key: value for key, value in options.items() if key not in NOT_RECORDED}
    return args, train_args, recorded, options["epochs"]


def check_fold_files(data: str, folds: int) -> None:
    """Every fold's split files exist and none is empty."""
    for fold in range(folds):
        for split in (f"fold{fold}_train", f"fold{fold}_val"):
            if not split_file(data, split).is_file():
                raise UserError(f"{split_file(data, split)} not found: write {folds} folds first with: "
                                f"python png2txt.py --data {data} --folds {folds}")
            if not split_file(data, split).read_text(encoding="utf-8").split():
                raise UserError(f"{split_file(data, split)} is empty: fold {fold} has no "
                                f"{'validation' if split.endswith('val') else 'training'} cases; write the folds "
                                f"again with fewer --folds")
    extra = split_file(data, f"fold{folds}_val")
    if extra.is_file():
        raise UserError(f"{extra} exists: {data} holds more than {folds} folds; give --folds to match the files "
                        f"png2txt.py wrote last, or write them again")


def print_commands(args: argparse.Namespace, argv: list[str], todo: list[int]) -> None:
    """One standalone command per unfinished fold, then the command that scores them all."""
    base = [arg for arg in argv if arg != "--print-commands"]
    for fold in todo:
        print(shell_line(["python", "crossval.py", *base, "--only-fold", str(fold)]))
    print(f"# when every fold has finished, score them: {shell_line(['python', 'crossval.py', *base])}")


def predict_out_of_fold(args: argparse.Namespace, cv_dir: Path, checkpoints: list[Path]) -> list[Path]:
    """Each fold's validation cases predicted by that fold's model, into <cv>/oof/fold<I>/."""
    folders = []
    device = ["--device", args.devices[0]] if args.devices else []
    for fold, checkpoint in enumerate(checkpoints):
        out = cv_dir / "oof" / f"fold{fold}"
        if any((out / name).exists() for name in (PREDICTION_FILE, INCOMPLETE_FILE)):
            shutil.rmtree(out)  # this command's own earlier predictions, perhaps of a checkpoint since moved
        code = run_main(get_miou_prediction.main,
                        ["--checkpoint", str(checkpoint), "--data", args.data, "--split", f"fold{fold}_val",
                         "--out", str(out), "--save-probabilities", "--save-uncertainty", *device,
                         *(["--flip-tta"] if args.flip_tta else [])])
        if code != 0:
            raise SystemExit(code)
        folders.append(out)
    return folders


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, train_args, options, epochs = parse(argv)
    check_fold_files(args.data, args.folds)
    if args.rand_voi:  # checked now, not after hours of training
        names = read_class_names(args.data) or ["background", "foreground"]
        class_index(args.rand_voi, names)
    folds = [read_fold(args.log_dir, args.model, args.name, i, epochs) for i in range(args.folds)]
    cv_dir = Path(args.log_dir) / args.model / f"{args.name}-cv"
    record = new_record(args.model, args.data, [fold.run_dir for fold in folds], cv_dir, options, train_args)
    saved = read_record(cv_dir)
    if saved:
        check_same_run(saved, record, cv_dir)
    todo = [fold.index for fold in folds if fold.state != "done"
            and (args.only_fold is None or fold.index == args.only_fold)]
    if args.print_commands:
        print_commands(args, argv, todo)
        return 0
    check_outputs([cv_dir], [split_file(args.data, f"fold{i}_{part}") for i in range(args.folds)
                             for part in ("train", "val")], DATASET_FOLDERS)
    cv_dir.mkdir(parents=True, exist_ok=True)
    save_record(cv_dir, record)
    for fold in folds:
        if args.only_fold is not None and fold.index != args.only_fold:
            continue
        if fold.state == "done":
            print(f"fold {fold.index}: finished ({fold.epochs_done} epochs) in {fold.run_dir}, skipped")
        elif fold.state == "resume":
            print(f"fold {fold.index}: resuming {fold.run_dir} after epoch {fold.epochs_done}")

    def command(index: int, device: str | None) -> list[str]:
        return fold_command(folds[index], args.model, args.name, args.data, args.log_dir, train_args, device)

    results = run_folds(todo, command, args.devices or [None], cv_dir / "fold_logs")
    failed = {fold: code for fold, code in results.items() if code != 0}
    if failed:
        fold, code = min(failed.items())
        print(f"error: fold {fold} stopped (exit code {code}, its reason above); run the same command again to "
              f"resume it", file=sys.stderr)
        return code
    if args.only_fold is not None:
        print(f"fold {args.only_fold} done; when every fold is, score them with the same command without --only-fold")
        return 0
    for index in todo:  # only the folds trained just now can have changed
        folds[index] = read_fold(args.log_dir, args.model, args.name, index, epochs)
    unfinished = [fold.index for fold in folds if fold.state != "done"]
    if unfinished:
        raise UserError(f"fold(s) {', '.join(map(str, unfinished))} not finished; run the same command again")
    oof = predict_out_of_fold(args, cv_dir, [fold.checkpoint for fold in folds])
    summary = score_out_of_fold(args.data, args.folds, oof, [fold.checkpoint for fold in folds], args.empty_case,
                                args.rand_voi)
    for line in write_summary(cv_dir, summary):
        print(line)
    print(f"ensemble of the {args.folds} fold models: python predict.py --checkpoint {cv_dir} IMAGES...")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
