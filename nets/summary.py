"""Model summary: a layer table with output shapes and parameters, and FLOPs at a given input size.

Usage: python -m nets.summary unet --input-size 512 [--num-classes 2] [--in-channels 3]
"""
from __future__ import annotations

import sys

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nets import MODEL_NAMES, build_model
from utils.cli import MAX_CLASSES, MIN_INPUT_SIZE, ArgumentParser, int_at_least, refuse_old_spelling, run_main


def layer_table(model: nn.Module, size: int, in_channels: int) -> list[tuple[str, str, tuple[int, ...], int]]:
    """(name, type, output shape, parameters) for every leaf module, in call order (on the meta device)."""
    rows: list[tuple[str, str, tuple[int, ...], int]] = []
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        params = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append((names[module], module.__class__.__name__, tuple(output.shape), params))

    hooks = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, size, size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return rows


def count_flops(model: nn.Module, size: int, in_channels: int, backward: bool = False) -> int:
    """FLOPs (2 per multiply-add) of one forward (or forward + backward) pass of one image."""
    counter = FlopCounterMode(display=False)
    inputs = torch.zeros(1, in_channels, size, size, device="meta")
    with counter:
        if backward:
            model(inputs).sum().backward()
        else:
            with torch.no_grad():
                model(inputs)
    return counter.get_total_flops()


def summarize(name: str, size: int, num_classes: int = 2, in_channels: int = 3) -> str:
    """The whole summary of one model as text."""
    with torch.device("meta"):
        model = build_model(name, num_classes=num_classes, in_channels=in_channels)
    rows = layer_table(model, size, in_channels)
    lines = [f"{name}: input (1, {in_channels}, {size}, {size}), {num_classes} classes",
             f"{'layer':<36}{'type':<18}{'output shape':<24}{'params':>12}", "-" * 90]
    lines += [f"{n:<36}{t:<18}{str(s):<24}{p:>12,}" for n, t, s, p in rows]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    forward = count_flops(model, size, in_channels)
    training = count_flops(model, size, in_channels, backward=True)
    lines += ["-" * 90, f"parameters: {total:,} (trainable {trainable:,}; {total * 4 / 2**20:.1f} MiB in fp32)",
              f"FLOPs per image: forward {forward / 1e9:.1f} G, forward+backward {training / 1e9:.1f} G"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = ArgumentParser(prog="python -m nets.summary",
                            description="Print a model's layers, output shapes, parameters and FLOPs.")
    parser.add_argument("model", choices=MODEL_NAMES, help="registered model name")
    parser.add_argument("--input-size", type=int_at_least(MIN_INPUT_SIZE), default=512,
                        help="square input size in pixels")
    refuse_old_spelling(parser, "--size", "--input-size")
    parser.add_argument("--num-classes", type=int_at_least(1, MAX_CLASSES), default=2, help="output classes")
    parser.add_argument("--in-channels", type=int, default=3, choices=(1, 3), help="input channels")
    args = parser.parse_args(argv)
    print(summarize(args.model, args.input_size, args.num_classes, args.in_channels))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
