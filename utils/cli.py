"""The shared command-line parsers and the error handling every script uses."""
from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Callable, NoReturn

from utils.errors import UserError
from utils.intensity import parse_percentiles, parse_window


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show every option's default and keep the description's line breaks."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with every script's conventions: defaults in --help, and a bad option is one line and exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print one line naming the problem (not the whole usage) and exit 2."""
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _number(text: str, kind: type) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        value = int(_number(text, int))
        if value < low or (high is not None and value > high):
            accepted = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be an integer {accepted}, got {value}")
        return value
    return parse


def float_in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in the interval from low to high (each end open or closed)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        value = float(_number(text, float))
        inside = math.isfinite(value) and (value > low if low_open else value >= low) and \
            (value < high if high_open else value <= high)
        if not inside:
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text}")
        return value
    return parse


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(_number(text, float))
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = float(_number(text, float))
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse type from a parser that raises UserError, so the problem is reported at parse time."""
    def wrapper(text: str) -> Any:
        try:
            parse(text)
        except UserError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return text
    return wrapper


MIN_INPUT_SIZE = 16  # four 2x poolings leave at least 1 pixel; every model takes any size from here up
MAX_CLASSES = 255  # 255 is the ignore value
# Past this the tiles' stride shrinks towards 1 pixel and a large image becomes millions of tiles.
MAX_OVERLAP = 0.9


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """--device: auto (CUDA when available, else CPU), cpu, cuda or cuda:N."""
    parser.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda, cuda:N")


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by the scripts that apply a checkpoint (predict.py, get_miou_prediction.py)."""
    parser.add_argument("--checkpoint", required=True, help="checkpoint file (best.pt / last.pt) or run folder")
    parser.add_argument("--flip-tta", action="store_true", help="average with the horizontally flipped prediction")
    parser.add_argument("--amp", action="store_true",
                        help="mixed-precision inference (bf16 autocast on the CPU; bf16, else fp16, on CUDA): faster "
                             "where bf16 is native, scores may differ slightly from fp32")
    parser.add_argument("--tiles", action=argparse.BooleanOptionalAction, default=None,
                        help="predict at the image's own resolution by overlapping tiles of the training size "
                             "(default: on for models trained with --crop, else letterbox to the training size)")
    parser.add_argument("--overlap", type=float_in(0, MAX_OVERLAP), default=0.25,
                        help=f"fraction of a tile shared with its neighbour, 0 to {MAX_OVERLAP}")
    parser.add_argument("--keep-largest", type=int_at_least(1), nargs="?", const=1, default=None, metavar="K",
                        help="keep each class's K largest connected components (default K: 1; 3-D for volumes)")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write the class probabilities: float16 .npz per image, NIfTI per volume")
    parser.add_argument("--window", metavar="PRESET|W,L", type=checked(parse_window),
                        help="scale raw inputs (volumes, 16-bit/float images) with this CT window "
                             "(default: the scaling recorded in the checkpoint)")
    parser.add_argument("--percentile", metavar="LOW,HIGH", type=checked(parse_percentiles),
                        help="scale raw inputs by these per-volume/per-image percentiles (default: as recorded "
                             "in the checkpoint)")
    add_device_argument(parser)


def loss_spec(text: str) -> str:
    """argparse type for --loss: '+'-joined names from LOSSES."""
    from utils.losses import LOSSES

    names = [part.strip() for part in text.split("+")]
    unknown = [name for name in names if name not in LOSSES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown loss {', '.join(repr(n) for n in unknown)} in {text!r}; "
                                         f"join names from: {', '.join(LOSSES)}")
    return text


def train_parser(model_name: str) -> argparse.ArgumentParser:
    """Options of the three train scripts (identical for every model)."""
    from utils.augment import PRESETS
    from utils.losses import LOSSES

    parser = ArgumentParser(
        description=f"Train the '{model_name}' model on a dataset in the Images/Labels/ImageSets layout.")
    data = parser.add_argument_group("data")
    data.add_argument("--data", default="datasets/SynthLiver", help="dataset folder (Images/, Labels/, ImageSets/)")
    data.add_argument("--train-split", default="train", help="split file used for training")
    data.add_argument("--val-split", default="val", help="split file used for validation")
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
    optim.add_argument("--class-weights", default=None, help="comma-separated CE weight per class, e.g. 1,5")
    optim.add_argument("--weight-map", action="store_true",
                       help="weight CE by the U-Net paper's border map w(x) (w0=10, sigma=5 px), once per mask")
    optim.add_argument("--max-bad-steps", type=int_at_least(1), default=5,
                       help="stop after this many consecutive NaN/inf losses (each one is skipped)")
    run = parser.add_argument_group("run")
    add_device_argument(run)
    run.add_argument("--seed", type=int, default=0, help="seed for weights, shuffling and augmentation")
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
    run.add_argument("--run-name", default=None, help="run folder name (default: date-time); taken names get -2, -3")
    run.add_argument("--overlays", type=int_at_least(0), default=4, help="validation overlays written to TensorBoard per epoch")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bars")
    run.add_argument("--sync-bn", action="store_true",
                     help="under torchrun, synchronise batch-norm statistics across processes")
    return parser


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a script's main: a UserError becomes one 'error:' line and exit code 2."""
    try:
        return main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written, a full disk: the path and reason suffice
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
