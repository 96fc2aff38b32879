"""Predict every image of a split with a checkpoint and write one label PNG (class ids) per image."""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from utils.cli import HelpFormatter, add_inference_arguments, run_main
from utils.dataloader import find_samples, read_split
from utils.fileio import save_image, write_json
from utils.inference import Predictor


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data", default="datasets/SynthLiver", help="dataset folder")
    parser.add_argument("--split", default="val", help="split file to predict")
    parser.add_argument("--out", default=None, help="output folder (default: results/<model>-<run>/<split>)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass")
    add_inference_arguments(parser)
    args = parser.parse_args(argv)
    predictor = Predictor(args.checkpoint, args.device, args.flip_tta, args.tiles, args.overlap)
    run = predictor.checkpoint_path.parent.name
    out = Path(args.out) if args.out else Path("results") / f"{predictor.model_name}-{run}" / args.split
    samples = find_samples(args.data, read_split(args.data, args.split), need_labels=False)
    paths = [sample.image_path for sample in samples]
    for path, _, label in tqdm(predictor.predict_files(paths, args.batch_size), total=len(paths), desc="predict"):
        save_image(out / f"{path.stem}.png", label)
    write_json(out / "prediction.json", {"checkpoint": str(predictor.checkpoint_path), "data": str(args.data),
                                         "split": args.split, "images": len(paths),
                                         "class_names": predictor.class_names, "flip_tta": args.flip_tta})
    print(f"{len(paths)} label maps written to {out}\nscore them with: python miou.py --pred {out} "
          f"--data {args.data} --split {args.split}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
