"""Predict label maps for image files and write <stem>_label.png (class ids) and <stem>_overlay.png."""
from __future__ import annotations

import argparse
from pathlib import Path

from utils.cli import HelpFormatter, add_inference_arguments, run_main
from utils.errors import UserError
from utils.fileio import save_image
from utils.inference import Predictor
from utils.visualize import overlay


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    parser.add_argument("--out", default="results/predict", help="output folder")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the class colours in the overlay")
    add_inference_arguments(parser)
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"image(s) not found: {', '.join(missing)}")
    predictor = Predictor(args.checkpoint, args.device, args.flip_tta, args.tiles, args.overlap)
    out = Path(args.out)
    classes = max(predictor.num_classes, 2)
    for path, image, label in predictor.predict_files(paths, batch_size=1):
        save_image(out / f"{path.stem}_label.png", label)
        save_image(out / f"{path.stem}_overlay.png", overlay(image, label, classes, args.alpha))
        counts = {predictor.class_names[c]: int((label == c).sum()) for c in range(classes) if (label == c).any()}
        print(f"{path}: {', '.join(f'{k} {v} px' for k, v in counts.items())} -> {out / (path.stem + '_overlay.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
