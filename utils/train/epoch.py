"""One epoch of a run: `train_one_epoch` over the training split and `evaluate` over the validation split."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils.data.augment import augment_batch
from utils.errors import UserError
from utils.io.labels import overlay
from utils.metrics import ConfusionMatrix, f_score, predict_labels
from utils.runtime.device import memory_format, normalize
from utils.runtime.forward import class_probabilities, sliding_window
from utils.train.distributed import all_reduce_sum
from utils.train.state import Run

Batch = dict[str, torch.Tensor]
Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # logits, labels, loss


@dataclass
class EpochStats:
    """Means over one epoch, plus timing split into waiting for data and computing."""

    loss: float = 0.0
    f_score: float = 0.0
    steps: int = 0
    bad_steps: int = 0
    data_seconds: float = 0.0
    step_seconds: float = 0.0
    confusion: np.ndarray | None = field(default=None, repr=False)
    non_finite: bool = False


def forward_loss(run: Run, batch: Batch, train: bool = False) -> Outputs:
    """Logits and loss of one batch; the training step augments on the device when asked and autocasts."""
    images = batch["image"].to(run.device, non_blocking=True)
    labels = batch["label"].to(run.device, non_blocking=True)
    weights = batch["weight"].to(run.device, non_blocking=True) if "weight" in batch else None
    if train and run.device_augmentation is not None:
        images, labels, weights = augment_batch(run.device_augmentation, images, labels, weights, batch["seed"])
    images = normalize(images, run.spec.normalization)
    images = images.contiguous(memory_format=memory_format(run.speed.channels_last))
    labels = labels.long()
    # Validation runs in fp32 like utils.infer.predictor.Predictor, so the mIoU printed here is the one
    # get_miou_prediction.py + miou.py report for the same checkpoint.
    amp = train and run.amp_dtype is not None
    with torch.autocast(run.device.type, dtype=run.amp_dtype or torch.float32, enabled=amp):
        logits = run.model(images)
    return logits, labels, run.criterion(logits, labels, weights)


def sliding_window_loss(run: Run, batch: Batch) -> Outputs:
    """Loss of one whole validation image predicted by overlapping tiles, as the predict scripts do."""
    def tile_probabilities(tiles: torch.Tensor) -> torch.Tensor:
        return class_probabilities(run.model, tiles, run.spec.normalization)

    probs = sliding_window(tile_probabilities, batch["image"][0], run.spec.input_size)[None].to(run.device)
    log_probs = probs.clamp_min(1e-12).log()
    # softmax(log p) = p, so log-probabilities stand in for logits in every loss and metric.
    logits = log_probs[:, 1:] - log_probs[:, :1] if run.spec.num_classes == 1 else log_probs
    labels = batch["label"].to(run.device).long()
    return logits, labels, run.criterion(logits, labels)


def progress_bar(run: Run, loader: DataLoader, epoch: int, stage: str) -> tqdm:
    """The per-step bar of one stage, shown by the main process under --progress."""
    return tqdm(loader, desc=f"epoch {epoch + 1}/{run.args.epochs} {stage}", leave=False,
                disable=not (run.args.progress and run.dist.is_main), dynamic_ncols=True)


def step_flags(run: Run, loss: torch.Tensor) -> tuple[bool, bool]:
    """(loss non-finite on some rank, stop requested on some rank): every rank acts on the same answer."""
    flags = torch.stack([(~torch.isfinite(loss.detach())).float(),
                         torch.full((), float(run.stop_requested), device=loss.device)])
    bad, stop = all_reduce_sum(flags, run.dist).tolist()  # the step's one wait for the device
    return bad > 0, stop > 0


def reduce_means(run: Run, stats: EpochStats) -> EpochStats:
    """Turn per-rank sums of loss and f-score into means over all steps of all ranks."""
    totals = all_reduce_sum(torch.tensor([stats.loss, stats.f_score, float(stats.steps)], dtype=torch.float64),
                            run.dist)
    steps = max(totals[2].item(), 1.0)
    stats.loss, stats.f_score = totals[0].item() / steps, totals[1].item() / steps
    return stats


def check_bad_step(run: Run, epoch: int, consecutive_bad: int) -> None:
    """Stop the run once the loss has been non-finite for --max-bad-steps steps in a row."""
    if consecutive_bad >= run.args.max_bad_steps:
        raise UserError(f"the loss was NaN or infinite for {consecutive_bad} steps in a row in epoch "
                        f"{epoch + 1}; stopped. The last good checkpoint is {run.run_dir / 'last.pt'}. "
                        f"Try a lower --lr, --no-amp, or check the data.")


def train_one_epoch(run: Run, epoch: int) -> EpochStats:
    """One pass over the training split; non-finite losses are skipped and counted."""
    run.model.train()
    run.train_sampler.set_epoch(epoch)
    stats, consecutive_bad = EpochStats(), 0
    bar = progress_bar(run, run.train_loader, epoch, "train")
    # Running sums stay on the device: reading them back every step would make the host wait for the
    # device. The one wait per step is the non-finite-loss check, after backward is already queued.
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    f_sum = torch.zeros_like(loss_sum)
    tick = shown = time.perf_counter()
    for batch in bar:
        loaded = time.perf_counter()
        logits, labels, loss = forward_loss(run, batch, train=True)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        bad, stop = step_flags(run, loss)
        if stop:
            raise KeyboardInterrupt
        if bad:
            stats.bad_steps += 1
            consecutive_bad += 1
            run.optimizer.zero_grad(set_to_none=True)
            check_bad_step(run, epoch, consecutive_bad)
            continue
        consecutive_bad = 0
        run.scaler.step(run.optimizer)
        run.scaler.update()
        loss_sum += loss.detach()
        f_sum += f_score(logits.detach(), labels)
        stats.steps += 1
        done = time.perf_counter()
        stats.data_seconds += loaded - tick
        stats.step_seconds += done - loaded
        tick = done
        if done - shown > 1.0 and not bar.disable:  # the postfix reads the sums back: once a second
            shown = done
            mean_loss, mean_f = (torch.stack([loss_sum, f_sum]) / stats.steps).tolist()
            bar.set_postfix(loss=f"{mean_loss:.4f}", f_score=f"{mean_f:.4f}")
    stats.loss, stats.f_score = loss_sum.item(), f_sum.item()
    if stats.steps == 0:
        raise UserError(f"no training step succeeded in epoch {epoch + 1} ({stats.bad_steps} non-finite losses)")
    return reduce_means(run, stats)


@torch.inference_mode()
def evaluate(run: Run, epoch: int) -> tuple[EpochStats, list[np.ndarray]]:
    """Loss, f-score and confusion matrix over the validation split, plus a few overlays."""
    run.model.eval()
    stats, overlays = EpochStats(), []
    classes = run.spec.metric_classes
    confusion = ConfusionMatrix(classes)
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    f_sum = torch.zeros_like(loss_sum)
    non_finite = torch.zeros((), device=run.device)
    for batch in progress_bar(run, run.val_loader, epoch, "val"):
        if run.spec.input_mode == "crop":
            logits, labels, loss = sliding_window_loss(run, batch)
        else:
            logits, labels, loss = forward_loss(run, batch)
        # NaN logits argmax to class 0, which can score better than a weak real model: never let them count.
        non_finite += (~torch.isfinite(logits)).any() | ~torch.isfinite(loss)
        pred = predict_labels(logits)
        confusion.update(pred, labels)
        loss_sum += loss
        f_sum += f_score(logits, labels)
        stats.steps += 1
        if run.stop_requested and not run.dist.enabled:  # ranks' validation shards differ in length
            raise KeyboardInterrupt
        wanted = run.args.overlays - len(overlays)
        for image, prediction in zip(batch["image"][:wanted], pred[:wanted].cpu()):
            overlays.append(overlay(image.permute(1, 2, 0).numpy(), prediction.numpy().astype(np.uint8), classes))
    stats.loss, stats.f_score = loss_sum.item(), f_sum.item()
    stats.non_finite = all_reduce_sum(non_finite.float().cpu(), run.dist).item() > 0
    stats.confusion = all_reduce_sum(torch.from_numpy(confusion.compute()), run.dist).numpy()
    return reduce_means(run, stats), overlays
