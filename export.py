"""Export a checkpoint to ONNX (or TorchScript) for use outside this repository, with proven parity.

The file is written only after onnxruntime (or the TorchScript module) matched PyTorch fp32 on real inputs:
the --data/--split images prepared exactly as predict.py prepares them, else random images. The model's
description (classes, input size, normalisation, preprocessing) is stored in the file; predict.py and
get_miou_prediction.py take the .onnx file as --checkpoint. Several checkpoints (or a cross-validation folder)
export as one ensemble file that averages their probabilities.

Usage: python export.py --checkpoint logs/unet_bn/RUN/best.pt --out model.onnx --data datasets/SynthLiver
"""
from __future__ import annotations

import time

from utils.cli import ArgumentParser, run_main
from utils.errors import UserError
from utils.infer.export import DEFAULT_OPSET, OPSETS, export


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, nargs="+", metavar="PATH",
                        help="checkpoint file (best.pt / last.pt) or run folder; several, or a cross-validation "
                             "folder (crossval.json), export one ensemble (same input size and mode)")
    parser.add_argument("--out", required=True, help="output file, e.g. model.onnx (TorchScript: model.ts)")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="file format")
    parser.add_argument("--data", default=None, help="dataset whose images the parity check runs on "
                                                     "(default: random images)")
    parser.add_argument("--split", default="val", help="split of --data used for the parity check")
    parser.add_argument("--max-images", type=int, default=16, help="at most this many images of the split")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset ({OPSETS[0]}..{OPSETS[-1]})")
    args = parser.parse_args(argv)
    if args.max_images < 1:
        raise UserError(f"--max-images must be at least 1, got {args.max_images}")
    start = time.perf_counter()
    result = export(args.checkpoint, args.out, args.format, args.data, args.split, args.opset, args.max_images)
    runtime = "onnxruntime" if args.format == "onnx" else "TorchScript"
    print(f"parity ({runtime} vs PyTorch fp32): {result.summary()}")
    print(f"wrote {args.out} ({args.format}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
