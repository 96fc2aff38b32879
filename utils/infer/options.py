"""Options shared by the scripts that apply a model (predict.py, get_miou_prediction.py)."""
from __future__ import annotations

import argparse

from utils.cli import MAX_OVERLAP, add_device_argument, checked, float_in, int_at_least
from utils.errors import UserError
from utils.infer.postprocess import KeepLargest
from utils.io.intensity import parse_percentiles, parse_window


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by the scripts that apply a checkpoint (predict.py, get_miou_prediction.py)."""
    parser.add_argument("--checkpoint", required=True, nargs="+", metavar="PATH",
                        help="checkpoint file (best.pt / last.pt), run folder or exported .onnx file; several, or a "
                             "cross-validation folder (crossval.json), make an ensemble whose class probabilities "
                             "are averaged")
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
    parser.add_argument("--largest-classes", metavar="NAMES", default=None,
                        help="keep the largest components of these classes only (names or ids, comma-separated; "
                             "implies --keep-largest), as choose_config.py decides")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write the class probabilities: float16 .npz per image, NIfTI per volume")
    parser.add_argument("--save-uncertainty", action="store_true",
                        help="also write per-pixel uncertainty: normalised entropy (and, for an ensemble, the "
                             "models' disagreement) as 16-bit PNG per image, NIfTI per volume, and uncertainty.csv "
                             "with one number per case")
    parser.add_argument("--window", metavar="PRESET|W,L", type=checked(parse_window),
                        help="scale raw inputs (volumes, 16-bit/float images) with this CT window "
                             "(default: the scaling recorded in the checkpoint)")
    parser.add_argument("--percentile", metavar="LOW,HIGH", type=checked(parse_percentiles),
                        help="scale raw inputs by these per-volume/per-image percentiles (default: as recorded "
                             "in the checkpoint)")
    add_device_argument(parser)




def keep_largest_rule(count: int | None, classes: str | None, class_names: list[str]) -> KeepLargest | None:
    """--keep-largest K and --largest-classes as one rule, the class names resolved against the model's."""
    if count is None and classes is None:
        return None
    if classes is None:
        return KeepLargest(count or 1)
    ids = []
    for part in (part.strip() for part in classes.split(",")):
        if part in class_names[1:]:
            ids.append(class_names.index(part, 1))
        elif part.isdigit() and 0 < int(part) < len(class_names):
            ids.append(int(part))
        else:
            raise UserError(f"--largest-classes: '{part}' is not a foreground class of the model; its classes are "
                            f"{', '.join(class_names[1:])}")
    return KeepLargest(count or 1, tuple(sorted(set(ids))))
