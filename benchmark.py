"""Benchmark the models: train and inference img/s, peak memory, achieved GFLOP/s against a measured
matmul peak, for the scripts' defaults ("default", levers chosen by the speed probe) beside every candidate
the probe chooses from ("fp32-nchw", ..., "bf16-channels-last"), so the report can show how close the default
comes to the best, and inference of the model exported to ONNX and run by onnxruntime ("onnxruntime").

Every (model, variant) runs in a fresh spawned process, so one configuration's peak memory (a process
high-water mark) cannot leak into the next. Writes <out>/benchmark.json (raw numbers, environment) and
<out>/benchmark.md (the table).

Usage: python benchmark.py --models unet_bn --input-size 256 --batch-size 2 --steps 5
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from nets import MODEL_NAMES
from utils.bench.measure import probe_environment
from utils.bench.peers import PEER_NAMES, check_peers
from utils.bench.rates import add_rates, add_speedups, best_peaks, model_flops
from utils.bench.report import markdown
from utils.bench.runs import in_fresh_process, probe_defaults, run_config
from utils.bench.variants import (
    CANDIDATE_PREFIX,
    DEFAULT_VARIANTS,
    EAGER,
    ONNXRUNTIME,
    VARIANTS,
    Config,
    Phase,
    Variant,
    probed_variant,
)
from utils.cli import ArgumentParser, add_device_argument, refuse_old_spelling, run_main
from utils.errors import UserError
from utils.io.files import write_json, write_text
from utils.runtime.device import resolve_device
from utils.runtime.speed_probe import candidates


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated model names")
    # dest "size": the key the records and the JSON settings use
    parser.add_argument("--input-size", dest="size", metavar="INPUT_SIZE", type=int, default=256,
                        help="square input size in pixels")
    refuse_old_spelling(parser, "--size", "--input-size")  # second, so `size` keeps --input-size's default
    parser.add_argument("--batch-size", type=int, default=2, help="images per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per phase")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    add_device_argument(parser)
    parser.add_argument("--in-channels", type=int, default=3, choices=(1, 3), help="model input channels")
    parser.add_argument("--num-classes", type=int, default=2, help="output classes (cross-entropy, so 2 or more)")
    parser.add_argument("--out", default="bench", help="folder for benchmark.json and benchmark.md")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help="comma-separated: eager (plain fp32 NCHW, no fused Adam), default (what the train "
                             "and predict scripts use on this device), candidates (each precision x layout the "
                             "speed probe chooses from), tuned (the levers below), onnxruntime (inference of the "
                             "model exported to ONNX)")
    parser.add_argument("--peak-seconds", type=float, default=1.0, help="time spent on each matmul peak")
    parser.add_argument("--peers", action="store_true",
                        help="also measure segmentation_models_pytorch Unet(vgg16) and MONAI AttentionUnet (2-D) "
                             "in the same harness (pip install -r requirements-bench.txt)")
    tuned = parser.add_argument_group("tuned variant levers")
    tuned.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                       help="channels-last memory format for model and input")
    tuned.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                       help="torch.compile (falls back to eager with a note if compiling fails)")
    tuned.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                       help="bf16 autocast; unset (None) = on where bf16 is native: CUDA sm80+, "
                            "CPUs with AVX512-BF16 or AMX")
    return parser


def listed_names(text: str, valid: tuple[str, ...], kind: str) -> list[str]:
    """The comma-separated names in `text`, each once; an unknown or empty list is a UserError."""
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise UserError(f"unknown {kind}(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(valid)}")
    return names


def check_args(args: argparse.Namespace) -> list[str]:
    """Validate the options; the requested model names."""
    models = listed_names(args.models, MODEL_NAMES, "model")
    limits = {"--input-size": (args.size, 16), "--batch-size": (args.batch_size, 1), "--steps": (args.steps, 1),
              "--warmup": (args.warmup, 1), "--threads": (args.threads, 1), "--num-classes": (args.num_classes, 2)}
    for option, (value, low) in limits.items():
        if value < low:
            raise UserError(f"{option} must be at least {low}, got {value}")
    if args.peak_seconds <= 0:
        raise UserError(f"--peak-seconds must be positive, got {args.peak_seconds}")
    return models


def check_device(name: str) -> torch.device:
    """resolve_device, plus a clear error for a CUDA index that does not exist."""
    device = resolve_device(name)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device '{name}' does not exist; {torch.cuda.device_count()} CUDA device(s) found")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device '{name}' is not supported; use auto, cpu, cuda or cuda:N")
    return device


def variants(args: argparse.Namespace, device: torch.device, bf16_native: bool) -> list[Variant]:
    """The variants asked for: eager; default = the scripts' defaults (precision and layout: the speed probe's
    choices per model, filled in by probed_variant); candidates = each precision x layout the probe chooses
    from, with the default's other levers; tuned = the flags, with fused Adam and, on CUDA, cuDNN autotuning;
    onnxruntime = inference of the exported model (utils.infer.export), fp32."""
    names = listed_names(args.variants, VARIANTS, "variant")
    amp = bf16_native if args.amp is None else args.amp
    if amp and not bf16_native:
        print(f"note: bf16 is not native on {device}; --amp will likely be slow", file=sys.stderr)
    cuda = device.type == "cuda"
    tuned_phase = Phase(channels_last=args.channels_last, amp=amp)
    chosen = {"eager": [EAGER],
              "default": [Variant("default", cudnn_benchmark=cuda, fused_adam=True)],
              "candidates": [Variant(CANDIDATE_PREFIX + c.name, train=Phase(c.channels_last, c.amp),
                                     infer=Phase(c.channels_last, c.amp), cudnn_benchmark=cuda, fused_adam=True)
                             for c in candidates(device)],
              "tuned": [Variant("tuned", train=tuned_phase, infer=tuned_phase, compile=args.compile,
                                cudnn_benchmark=cuda, fused_adam=True)],
              "onnxruntime": [ONNXRUNTIME]}
    return [variant for name in names for variant in chosen[name]]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = build_parser().parse_args(argv)
    models = check_args(args)
    if args.peers:
        check_peers(args.size)
        models += PEER_NAMES
    device = check_device(args.device)
    device_name = str(device)
    env = in_fresh_process(probe_environment, device_name, args.threads, args.peak_seconds)
    chosen, measured = variants(args, device, env["native_bf16"]), []
    probed = any(variant.name == "default" for variant in chosen)
    for name in models:
        flops = model_flops(name, args.size, args.in_channels, args.num_classes)
        probe = in_fresh_process(probe_defaults, name, device_name, args.size, args.batch_size, args.threads,
                                 args.in_channels, args.num_classes) if probed else None
        for variant in chosen:
            if variant.name == "default":
                variant = probed_variant(variant, probe)
            config = Config(name, variant, device_name, args.size, args.batch_size, args.steps, args.warmup,
                            args.threads, args.in_channels, args.num_classes)
            record = run_config(config)
            measured.append(({**record, "probe": probe} if variant.name == "default" else record, flops))
    # The peak is measured again after the models: a busy moment must not make the models look faster.
    env["peaks"] = best_peaks(env["peaks"], in_fresh_process(probe_environment, device_name, args.threads,
                                                             args.peak_seconds)["peaks"])
    records = []
    for record, flops in measured:
        if "error" not in record:
            add_rates(record, flops, env["peaks"])
        records.append(record)
    add_speedups(records)
    settings = vars(args)
    report = markdown(env, settings, records)
    out = Path(args.out)
    write_json(out / "benchmark.json", {"environment": env, "settings": settings, "records": records})
    write_text(out / "benchmark.md", report)
    print(report + f"wrote {out / 'benchmark.json'} and {out / 'benchmark.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
