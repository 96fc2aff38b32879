"""The one training loop every train script shares: set up the run, then fit it epoch by epoch."""
from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from utils.cli import run_main
from utils.errors import UserError
from utils.io.checkpoint import load_checkpoint, save_checkpoint
from utils.metrics import scores_from_confusion
from utils.train.build import build_run
from utils.train.distributed import shutdown
from utils.train.epoch import EpochStats, evaluate, train_one_epoch
from utils.train.options import apply_fold, restore_options, train_parser
from utils.train.resume import training_checkpoint
from utils.train.run_log import RunLog
from utils.train.state import Run


def catch_stop_signals(run: Run) -> dict[int, Any]:
    """Turn Ctrl-C / SIGTERM into a stop at the next step boundary, never inside a checkpoint write.

    A second signal interrupts at once. Returns the previous handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    run.stop_requested = False

    def request_stop(signum: int, _frame: Any) -> None:
        if run.stop_requested:
            raise KeyboardInterrupt
        run.stop_requested = True
        print(f"\n{signal.Signals(signum).name}: stopping after this step (again to stop at once)", file=sys.stderr)

    return {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}


def last_good(run: Run) -> str:
    """Where the last good weights are, for messages that stop a run."""
    if not run.history:
        return f"No epoch completed; {run.run_dir / 'last.pt'} holds the initial weights."
    best_epoch = max(run.history, key=lambda record: record["val_miou"])["epoch"]
    return (f"The last good checkpoints: {run.run_dir / 'last.pt'} (epoch {run.history[-1]['epoch']}) and "
            f"{run.run_dir / 'best.pt'} (epoch {best_epoch}, mIoU {run.best_miou:.4f}).")


def metric_names(run: Run) -> list[str]:
    """Class names for the scores, one per row of the confusion matrix."""
    spec = run.spec
    return spec.class_names if len(spec.class_names) == spec.metric_classes else \
        [f"class_{i}" for i in range(spec.metric_classes)]


def epoch_record(run: Run, epoch: int, lr: float, train: EpochStats, val: EpochStats, scores: dict[str, Any]
                 ) -> dict[str, Any]:
    """The epoch's entry of history.json (and of the checkpoints' history)."""
    miou = scores["miou"] if scores["miou"] is not None else 0.0
    return {"epoch": epoch + 1, "lr": lr, "train_loss": train.loss, "val_loss": val.loss,
            "train_f_score": train.f_score, "val_f_score": val.f_score, "val_miou": miou,
            "val_mpa": scores["mpa"], "skipped_steps": train.bad_steps,
            "data_seconds": round(train.data_seconds, 3), "step_seconds": round(train.step_seconds, 3),
            "speed": run.speed.name}  # a resume may change the levers; speed.json has the probe's timings


def run_epoch(run: Run, epoch: int, log: RunLog) -> None:
    """Train, validate, step the learning rate, then save last.pt (and best.pt when the mIoU improved) and log."""
    train = train_one_epoch(run, epoch)
    val, overlays = evaluate(run, epoch)
    if val.non_finite:
        raise UserError(f"validation in epoch {epoch + 1} gave NaN or infinite logits or loss: the model "
                        f"diverged (too high a --lr?); stopped without saving this epoch. {last_good(run)}")
    lr = run.optimizer.param_groups[0]["lr"]
    run.scheduler.step()
    record = epoch_record(run, epoch, lr, train, val, scores_from_confusion(val.confusion, metric_names(run)))
    run.history.append(record)
    improved = record["val_miou"] > run.best_miou
    if improved:
        run.best_miou = record["val_miou"]
    if not run.dist.is_main:  # only the main process writes
        return
    save_checkpoint(run.run_dir / "last.pt", training_checkpoint(run, epoch + 1))
    if improved:  # best.pt is for scoring and prediction: weights only, a third of last.pt's size with Adam
        save_checkpoint(run.run_dir / "best.pt", training_checkpoint(run, epoch + 1, with_training_state=False))
    log.epoch(record, train, val, improved, overlays, run.history)


def fit(run: Run) -> int:
    """Run the remaining epochs; Ctrl-C saves interrupted.pt and says how to resume."""
    log = RunLog(run)
    if run.start_epoch == 0 and run.dist.is_main:
        save_checkpoint(run.run_dir / "last.pt", training_checkpoint(run, 0))
        log.start(run)
    epoch = run.start_epoch
    previous_handlers = catch_stop_signals(run)
    try:
        for epoch in range(run.start_epoch, run.args.epochs):
            run_epoch(run, epoch, log)
    except KeyboardInterrupt:
        if run.dist.is_main:
            save_checkpoint(run.run_dir / "interrupted.pt", training_checkpoint(run, epoch, with_training_state=False))
            log.interrupted(epoch)
        return 130
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        log.close()
        if run.lock is not None:
            run.lock.close()
        shutdown(run.dist)
    log.done(run.best_miou)
    return 0


def train(model_name: str, argv: list[str] | None = None) -> int:
    """Entry point of the train scripts: parse options, build the run, fit; errors exit with code 2."""
    def main(arguments: list[str] | None) -> int:
        parser = train_parser(model_name)
        args = parser.parse_args(arguments)
        resume = load_checkpoint(args.resume) if args.resume else None
        if resume:
            args = restore_options(parser, args, arguments, resume)
        else:
            args = apply_fold(args)
        return fit(build_run(model_name, args, resume))
    return run_main(main, argv)
