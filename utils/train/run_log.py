"""The run's one logger: console lines, TensorBoard scalars/images/text, history.json and curves.png."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.io.files import write_json
from utils.train.curves import sample_grid, save_training_curves
from utils.train.epoch import EpochStats
from utils.train.state import Run


def augmentation_samples(run: Run, count: int = 8) -> torch.Tensor | None:
    """A grid of augmented training samples with their masks, so the preset can be checked by eye."""
    if run.augmentation is None:
        return None
    with torch.random.fork_rng():  # drawing the samples must not shift the run's random stream
        torch.manual_seed(run.args.seed)
        samples = [run.train_set.unaugmented(i)[:2] for i in range(min(count, len(run.train_set)))]
        return sample_grid(samples, run.augmentation, run.spec.metric_classes)


class RunLog:
    """Writes what the main process reports about a run; on the other processes every call does nothing."""

    def __init__(self, run: Run) -> None:
        """Print the run's header and open its TensorBoard writer."""
        self.run_dir, self.epochs, self.enabled = run.run_dir, run.args.epochs, run.dist.is_main
        self.writer: Any = None
        if not self.enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        processes = f" x {run.dist.world_size} processes" if run.dist.enabled else ""
        print(f"run folder: {run.run_dir}\ndevice: {run.device}{processes}; train {len(run.train_set)} / "
              f"val {len(run.val_set)} images at {run.spec.input_size}x{run.spec.input_size}; "
              f"classes: {', '.join(run.spec.class_names)}\nspeed: {run.speed.describe()}")
        self.writer = SummaryWriter(str(run.run_dir))

    def start(self, run: Run) -> None:
        """A new run's speed.json, its speed as text and a grid of augmented samples."""
        if not self.enabled:
            return
        write_json(self.run_dir / "speed.json", run.speed.to_json())
        self.writer.add_text("speed", run.speed.describe(), 0)
        grid = augmentation_samples(run)
        if grid is not None:
            self.writer.add_image("train/augmentation_samples", grid, 0)

    def epoch(self, record: dict[str, Any], train: EpochStats, val: EpochStats, improved: bool,
              overlays: list[np.ndarray], history: list[dict[str, Any]]) -> None:
        """One epoch: TensorBoard scalars and overlays, history.json, curves.png and the console line."""
        if not self.enabled:
            return
        step, miou, lr = record["epoch"], record["val_miou"], record["lr"]
        for tag, value in (("Loss/train", train.loss), ("Loss/val", val.loss), ("f_score/train", train.f_score),
                           ("f_score/val", val.f_score), ("mIoU/val", miou), ("lr", lr),
                           ("time/data_wait_s", train.data_seconds), ("time/step_s", train.step_seconds)):
            self.writer.add_scalar(tag, value, step)
        for index, image in enumerate(overlays):
            self.writer.add_image(f"val/overlay_{index}", image, step, dataformats="HWC")
        self.writer.flush()
        write_json(self.run_dir / "history.json", history)
        save_training_curves(self.run_dir / "curves.png", history)
        print(f"epoch {step}/{self.epochs}: train loss {train.loss:.4f} f {train.f_score:.4f} | "
              f"val loss {val.loss:.4f} f {val.f_score:.4f} mIoU {miou:.4f}{' (best)' if improved else ''} | "
              f"lr {lr:.2e} | data wait {train.data_seconds:.1f}s of {train.data_seconds + train.step_seconds:.1f}s"
              + (f" | {train.bad_steps} non-finite steps skipped" if train.bad_steps else ""))

    def interrupted(self, epoch: int) -> None:
        """Where a stopped run's weights are, and the command that resumes it."""
        if self.enabled:
            print(f"\ninterrupted in epoch {epoch + 1}: weights so far saved to {self.run_dir / 'interrupted.pt'}; "
                  f"the last complete epoch is in {self.run_dir / 'last.pt'}.\nresume exactly with: "
                  f"python {Path(sys.argv[0]).name} --resume {self.run_dir / 'last.pt'}", file=sys.stderr)

    def done(self, best_miou: float) -> None:
        """The closing line of a finished run."""
        if self.enabled:
            best = self.run_dir / "best.pt"
            print(f"done: best validation mIoU {best_miou:.4f}; checkpoints {self.run_dir / 'last.pt'}, {best}")

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()
