"""The train scripts' options, and the options a resumed run restores from its checkpoint."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from utils.cli import (
    MAX_CLASSES,
    MIN_INPUT_SIZE,
    ArgumentParser,
    add_device_argument,
    checked,
    float_in,
    int_at_least,
    non_negative_float,
    positive_float,
)
from utils.data.folders import split_file
from utils.errors import UserError
from utils.train.run_folder import default_run_name


def loss_spec(text: str) -> str:
    """argparse type for --loss: '+'-joined names from LOSSES."""
    from utils.train.losses import LOSSES

    names = [part.strip() for part in text.split("+")]
    unknown = [name for name in names if name not in LOSSES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown loss {', '.join(repr(n) for n in unknown)} in {text!r}; "
                                         f"join names from: {', '.join(LOSSES)}")
    return text


def parse_class_weights(text: str) -> list[float]:
    """--class-weights as numbers: finite, none negative, not all zero (a zero sum would divide the loss by 0)."""
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--class-weights must be comma-separated numbers, got '{text}'") from None
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        raise UserError(f"--class-weights must be finite numbers >= 0, not all 0, got '{text}'")
    return weights


MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit


def run_name(text: str) -> str:
    """argparse type for --run-name: one folder name, so that the run stays inside --log-dir."""
    if not text.strip() or text in (".", "..") or any(sep in text for sep in ("/", "\\", "\0")):
        raise argparse.ArgumentTypeError(f"must be a single folder name (no '/', '\\' or '..'), got {text!r}")
    return text


def train_parser(model_name: str) -> argparse.ArgumentParser:
    """Options of the three train scripts (identical for every model)."""
    from utils.data.augment import PRESETS
    from utils.train.losses import LOSSES

    parser = ArgumentParser(
        description=f"Train the '{model_name}' model on a dataset in the Images/Labels/ImageSets layout.")
    data = parser.add_argument_group("data")
    data.add_argument("--data", default="datasets/SynthLiver", help="dataset folder (Images/, Labels/, ImageSets/)")
    data.add_argument("--train-split", default="train", help="split file used for training")
    data.add_argument("--val-split", default="val", help="split file used for validation")
    data.add_argument("--fold", type=int_at_least(0), default=None, metavar="I",
                      help="train fold I of 'png2txt.py --folds K' (splits fold<I>_train / fold<I>_val); the run "
                           "name ends in -fold<I>")
    data.add_argument("--num-classes", type=int_at_least(1, MAX_CLASSES), default=None,
                      help="classes incl. background (default: lines of classes.txt, else 2); 1 = sigmoid model")
    data.add_argument("--in-channels", type=int, default=3, choices=(1, 3), help="model input channels")
    data.add_argument("--input-size", type=int_at_least(MIN_INPUT_SIZE), default=512,
                      help=f"images are letterboxed to this square size (>= {MIN_INPUT_SIZE})")
    data.add_argument("--crop", action="store_true",
                      help="train on random input-size crops at the images' own resolution (no resizing) and "
                           "validate/predict by overlapping tiles; default: letterbox every image to the input size")
    data.add_argument("--augment", default="none", choices=PRESETS, help="augmentation preset")
    data.add_argument("--augment-on-device", action="store_true",
                      help="augment each batch on the training device (e.g. the GPU) instead of in loader workers")
    data.add_argument("--workers", type=int_at_least(0), default=None,
                      help="DataLoader worker processes (0 = main process; default: 0 on CPU, where workers would "
                           "take cores from the model; with CUDA the usable CPUs shared among this machine's processes, "
                           "at most 8)")
    data.add_argument("--cache-mb", type=non_negative_float, default=4096, help="keep decoded samples in memory up to this size")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int_at_least(1), default=50,
                       help="number of epochs (with --resume: the total to reach)")
    optim.add_argument("--batch-size", type=int_at_least(1), default=2, help="images per step")
    optim.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="optimiser")
    optim.add_argument("--lr", type=positive_float, default=1e-4, help="learning rate")
    optim.add_argument("--momentum", type=float_in(0, 1, high_open=True), default=0.9, help="SGD momentum")
    optim.add_argument("--lr-decay", type=float_in(0, 1, low_open=True), default=0.92,
                       help="learning rate factor applied after each epoch, in (0, 1]")
    optim.add_argument("--weight-decay", type=non_negative_float, default=0.0, help="weight decay")
    optim.add_argument("--loss", type=loss_spec, default="ce+dice",
                       help=f"'+'-joined losses: {', '.join(LOSSES)}")
    optim.add_argument("--no-dice", action="store_true", help="drop the Dice term from --loss")
    optim.add_argument("--class-weights", type=checked(parse_class_weights), default=None,
                       help="comma-separated CE/BCE weight per class, e.g. 1,5 (a 1-class model: background, "
                            "foreground); finite, >= 0, not all 0")
    optim.add_argument("--weight-map", action="store_true",
                       help="weight CE by the U-Net paper's border map w(x) (w0=10, sigma=5 px), once per mask")
    optim.add_argument("--max-bad-steps", type=int_at_least(1), default=5,
                       help="stop after this many consecutive NaN/inf losses (each one is skipped)")
    run = parser.add_argument_group("run")
    add_device_argument(run)
    run.add_argument("--seed", type=int_at_least(0, MAX_SEED), default=0,
                     help="seed for weights, shuffling and augmentation")
    run.add_argument("--deterministic", action="store_true",
                     help="use deterministic algorithms only (turns cuDNN autotuning off)")
    run.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                     help="mixed precision for training steps: bf16, else fp16 on CUDA (default: whichever trains "
                          "faster here, timed by a short probe once per set-up and cached)")
    run.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                     help="NHWC memory layout (default: as the probe times fastest; giving both flags skips it)")
    run.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                     help="torch.compile the model (falls back to eager where a graph cannot compile)")
    run.add_argument("--fused-optimizer", action=argparse.BooleanOptionalAction, default=True,
                     help="Adam/SGD update as one fused kernel (CPU and CUDA)")
    run.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=True,
                     help="let cuDNN time its convolution algorithms for the input sizes (CUDA; off with "
                          "--deterministic)")
    run.add_argument("--pretrained", default=None, help="local torchvision VGG16 state-dict file (unet only)")
    run.add_argument("--resume", default=None, help="checkpoint (or run folder) to continue from")
    run.add_argument("--log-dir", default="logs", help="runs go to <log-dir>/<model>/<run-name>/")
    run.add_argument("--run-name", type=run_name, default=None,
                     help="run folder name inside --log-dir/<model> (default: date-time); taken names get -2, -3")
    run.add_argument("--overlays", type=int_at_least(0), default=4, help="validation overlays written to TensorBoard per epoch")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bars")
    run.add_argument("--sync-bn", action="store_true",
                     help="under torchrun, synchronise batch-norm statistics across processes")
    return parser


# Options a resumed run may change when given: how long, where and how fast it runs, never what it learns from.
# Every other option, and these when not given, come from the checkpoint.
RESUME_OVERRIDES = ("resume", "epochs", "workers", "device", "progress", "overlays", "cache_mb", "max_bad_steps",
                    "amp", "channels_last", "compile", "fused_optimizer", "cudnn_benchmark")


def restore_options(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None,
                    checkpoint: dict[str, Any]) -> argparse.Namespace:
    """The resumed run's own options from its checkpoint; one given on the command line must agree with them.

    Only RESUME_OVERRIDES may differ, and --data when it names a folder holding the same splits (a moved data
    set). Speed options (--amp, --channels-last, ...) may change for a move to other hardware, at the price of
    bit-exactness.
    """
    saved = dict(checkpoint.get("args") or {})
    # A class count taken from classes.txt is saved as None: compare with the count the run used.
    saved["num_classes"] = checkpoint["model"]["num_classes"]
    for action in parser._actions:  # parse again with no defaults: what remains was typed by the user
        action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(argv))
    conflicts = [f"--{name.replace('_', '-')} {value!r} (the run used {saved[name]!r})"
                 for name, value in given.items()
                 if name not in (*RESUME_OVERRIDES, "data") and name in saved
                 and not same_option(name, value, saved[name])]
    if conflicts:
        raise UserError(f"{args.resume}: options that contradict the run being resumed: {'; '.join(conflicts)}. "
                        f"Leave them out (the run's own are restored) or start a new run; only "
                        f"{', '.join('--' + n.replace('_', '-') for n in RESUME_OVERRIDES[1:])} may change, and "
                        f"--data for a moved data set")
    if "data" in saved:
        check_data_folder(str(args.resume), given.get("data"), saved["data"], checkpoint)
    restored = {name: value for name, value in saved.items()
                if name != "resume" and name not in given and name in vars(args)}
    return argparse.Namespace(**{**vars(args), **restored})


PATH_OPTIONS = ("log_dir", "pretrained")


def same_option(name: str, given: Any, saved: Any) -> bool:
    """Whether a given option agrees with the run's: paths compare as the folders or files they resolve to."""
    if name in PATH_OPTIONS and isinstance(given, str) and isinstance(saved, str):
        return Path(given).resolve() == Path(saved).resolve()
    return given == saved


def check_data_folder(resume: str, given: str | None, saved: str, checkpoint: dict[str, Any]) -> None:
    """--data of a resumed run: the run's own folder, or one holding the same splits (the data set moved)."""
    from utils.data.splits import split_fingerprint

    if given is None:
        if not Path(saved).is_dir():
            raise UserError(f"{resume}: the run's data set {saved} is not there any more; if it moved, give "
                            f"--data NEW_FOLDER (it must hold the same splits: stems and label sizes)")
        return
    if Path(given).resolve() == Path(saved).resolve():
        return
    recorded = checkpoint.get("data_splits")
    if not recorded:
        if not Path(saved).is_dir():
            raise UserError(f"{resume}: --data {given}: the run's checkpoint records no splits to compare with and "
                            f"its data set {saved} is not there any more, so the data cannot be checked")
        args = checkpoint.get("args") or {}
        recorded = [split_fingerprint(saved, args.get(key, default))
                    for key, default in (("train_split", "train"), ("val_split", "val"))]
    for record in recorded:
        try:
            found = split_fingerprint(given, record["split"])
        except UserError as exc:
            raise UserError(f"{resume}: --data {given} is not the run's data set {saved}: its split "
                            f"'{record['split']}' cannot be read ({str(exc).splitlines()[0]})") from None
        if found != record:
            raise UserError(f"{resume}: --data {given} is not the run's data set {saved}: its split "
                            f"'{record['split']}' lists {found['images']} images (the run's: {record['images']}) "
                            f"with other stems or label sizes; a resumed run keeps its data, so start a new run "
                            f"for other data")


def apply_fold(args: argparse.Namespace) -> argparse.Namespace:
    """--fold I: the fold's split files and a run name that carries the fold (a new run; a resumed one keeps its own)."""
    if args.fold is None:
        return args
    if (args.train_split, args.val_split) != ("train", "val"):
        raise UserError("--fold chooses the split files itself; leave out --train-split and --val-split")
    train, val = f"fold{args.fold}_train", f"fold{args.fold}_val"
    missing = [split_file(args.data, split) for split in (train, val) if not split_file(args.data, split).is_file()]
    if missing:
        raise UserError(f"--fold {args.fold}: {missing[0]} not found; write the folds with: "
                        f"python png2txt.py --data {args.data} --folds K (K > {args.fold})")
    name = f"{args.run_name or default_run_name()}-fold{args.fold}"
    return argparse.Namespace(**{**vars(args), "train_split": train, "val_split": val, "run_name": name})
