"""The one training loop every train script shares: data, model, optimiser, epochs, TensorBoard, checkpoints."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from nets import build_model
from utils.cli import run_main
from utils.data.augment import augment_batch, build_augmentation
from utils.data.dataset import SegmentationDataset
from utils.data.folders import read_class_names, read_preprocessing
from utils.data.sampler import SeededSampler
from utils.errors import UserError
from utils.io.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from utils.io.files import write_json
from utils.io.labels import IGNORE_INDEX, overlay
from utils.metrics import ConfusionMatrix, f_score, predict_labels, scores_from_confusion
from utils.runtime.device import (
    amp_dtype,
    default_normalization,
    default_workers,
    memory_format,
    normalize,
    resolve_device,
    seed_everything,
)
from utils.runtime.forward import class_probabilities, sliding_window
from utils.runtime.speed_probe import SpeedChoice, training_choice
from utils.train.curves import sample_grid, save_training_curves
from utils.train.distributed import all_reduce_sum, broadcast_object, init_distributed, shutdown
from utils.train.losses import SegmentationLoss, parse_loss
from utils.train.options import restore_options, train_parser
from utils.train.resume import restore_rng_state, rng_state
from utils.train.run_folder import lock_run_dir, new_run_dir


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


class Trainer:
    """Holds the model, data and optimiser of one run and runs its epochs."""

    def __init__(self, model_name: str, args: argparse.Namespace, resume: dict | None = None) -> None:
        """`resume`: the checkpoint of `args.resume` when the caller has loaded it already."""
        self.model_name, self.args = model_name, args
        self.device = resolve_device(args.device)
        self.dist = init_distributed(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        if resume is None and args.resume:
            resume = load_checkpoint(args.resume)
        if resume and resume["model"]["name"] != model_name:
            raise UserError(f"{args.resume} holds a '{resume['model']['name']}' model; "
                            f"resume it with that model's train script")
        if args.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = args.cudnn_benchmark
        seed_everything(args.seed)
        self.class_names, self.num_classes = self._classes(resume)
        self.in_channels = resume["model"]["in_channels"] if resume else args.in_channels
        self.input_size = resume["input_size"] if resume else args.input_size
        self.normalization = resume["normalization"] if resume else default_normalization(self.in_channels)
        self.input_mode = resume.get("input_mode", "letterbox") if resume else ("crop" if args.crop else "letterbox")
        self.preprocessing = resume.get("preprocessing") if resume else read_preprocessing(args.data)
        self.metric_classes = max(self.num_classes, 2)

        weight_map = None
        if args.weight_map:
            from utils.data.weightmap import unet_weight_map
            weight_map = unet_weight_map
        try:
            self.augmentation = build_augmentation(args.augment)
        except ValueError as exc:
            raise UserError(f"--augment: {exc}") from None
        self.device_augmentation = self.augmentation if args.augment_on_device else None
        self.train_set, self.val_set = self._datasets(None if args.augment_on_device else self.augmentation,
                                                      weight_map)
        rank, world = self.dist.rank, self.dist.world_size
        self.train_sampler = SeededSampler(len(self.train_set), args.seed, rank=rank, world_size=world)
        val_sampler = SeededSampler(len(self.val_set), args.seed, shuffle=False, rank=rank, world_size=world,
                                    pad=False)
        workers = args.workers if args.workers is not None else \
            default_workers(self.device, self.dist.local_world_size)
        loader_options = dict(batch_size=args.batch_size, num_workers=workers,
                              pin_memory=self.device.type == "cuda", persistent_workers=workers > 0)
        self.train_loader = DataLoader(self.train_set, sampler=self.train_sampler,
                                       drop_last=len(self.train_sampler) > args.batch_size, **loader_options)
        # Whole images of differing sizes are validated one at a time.
        self.val_loader = DataLoader(self.val_set, sampler=val_sampler,
                                     **{**loader_options, "batch_size": 1 if self.input_mode == "crop" else args.batch_size})

        if resume:
            self.net = model_from_checkpoint(resume, args.resume)
        else:
            options = {"pretrained": args.pretrained} if args.pretrained else {}
            if args.pretrained and model_name != "unet":
                raise UserError("--pretrained loads a VGG16 encoder, which only the 'unet' model has")
            self.net = build_model(model_name, self.num_classes, self.in_channels, **options)
        self.speed = self._speed(resume)
        self.net.to(self.device, memory_format=memory_format(self.speed.channels_last))
        self.model = self.net  # what runs forward: the network, or its DDP / compiled wrapper
        if self.dist.enabled:
            if args.sync_bn:
                self.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if args.compile:
            from torch import _dynamo
            _dynamo.config.suppress_errors = True  # a graph that cannot compile runs eagerly instead
            self.model = torch.compile(self.model)
        self.criterion = SegmentationLoss(self._loss_names(), self._class_weights())
        fused = args.fused_optimizer and self.device.type in ("cpu", "cuda")
        if args.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.net.parameters(), lr=args.lr, momentum=args.momentum,
                                             weight_decay=args.weight_decay, fused=fused)
        else:
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=args.lr, weight_decay=args.weight_decay,
                                              fused=fused)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=args.lr_decay)
        self.amp_dtype = amp_dtype(self.device) if self.speed.amp else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.start_epoch, self.best_miou, self.history = 0, -1.0, []
        self.stop_requested = False
        if resume:
            self._restore(resume)
            self.run_dir = Path(args.resume) if Path(args.resume).is_dir() else Path(args.resume).parent
            if self.start_epoch >= args.epochs:
                raise UserError(f"{args.resume} has already trained {self.start_epoch} of --epochs {args.epochs}; "
                                f"give a larger --epochs to train on")
        else:
            made = new_run_dir(Path(args.log_dir), model_name, args.run_name) if self.dist.is_main else None
            self.run_dir = Path(broadcast_object(str(made), self.dist))
        self.lock = lock_run_dir(self.run_dir) if self.dist.is_main else None

    def _speed(self, resume: dict | None) -> SpeedChoice:
        """Precision and layout: --amp / --channels-last, else a resumed run's own, else the fastest by the probe."""
        saved = SpeedChoice(**resume["speed"]) if resume and "speed" in resume else None
        amp = self.args.amp if self.args.amp is not None or saved is None else saved.amp
        layout = self.args.channels_last if self.args.channels_last is not None or saved is None else \
            saved.channels_last
        # Rank 0 times the candidates alone, so the ranks neither disturb its timings nor choose differently.
        choice = training_choice(self.net, self.device, self.model_name, self.in_channels, self.num_classes,
                                 self.input_size, self.args.batch_size, amp, layout) if self.dist.is_main else None
        return broadcast_object(choice, self.dist)

    def _datasets(self, augmentation: Any, weight_map: Any) -> tuple[SegmentationDataset, SegmentationDataset]:
        """Load and check both splits; the problems of both are reported in one message."""
        args, datasets, problems = self.args, [], []
        crop = self.input_mode == "crop"
        for split, augment, weights, mode in ((args.train_split, augmentation, weight_map, self.input_mode),
                                              (args.val_split, None, None, "full" if crop else "letterbox")):
            try:
                datasets.append(SegmentationDataset(args.data, split, self.num_classes, self.in_channels,
                                                    self.input_size, augment, weights, args.cache_mb, mode))
            except UserError as exc:
                problems.append(f"split '{split}': {exc}")
        if problems:
            raise UserError("\n".join(problems))
        return datasets[0], datasets[1]

    def _classes(self, resume: dict | None) -> tuple[list[str], int]:
        if resume:
            return list(resume["class_names"]), int(resume["model"]["num_classes"])
        names = read_class_names(self.args.data)
        num_classes = self.args.num_classes or (len(names) if names else 2)
        expected = max(num_classes, 2)
        if names and len(names) != expected:
            raise UserError(f"--num-classes {num_classes} but {self.args.data}/classes.txt names "
                            f"{len(names)} classes: {', '.join(names)}")
        if num_classes < 1 or num_classes > IGNORE_INDEX:
            raise UserError(f"--num-classes must be between 1 and {IGNORE_INDEX}, got {num_classes}")
        return names or [f"class_{i}" for i in range(expected)], num_classes

    def _loss_names(self) -> list[str]:
        names = parse_loss(self.args.loss, use_dice=not self.args.no_dice)
        if self.num_classes == 1:
            names = ["bce" if name == "ce" else name for name in names]
        if not names:
            raise UserError(f"--loss '{self.args.loss}' with --no-dice leaves no loss")
        return names

    def _class_weights(self) -> torch.Tensor | None:
        if not self.args.class_weights:
            return None
        try:
            weights = [float(w) for w in self.args.class_weights.split(",")]
        except ValueError:
            raise UserError(f"--class-weights must be comma-separated numbers, got '{self.args.class_weights}'") from None
        if len(weights) != self.num_classes:
            raise UserError(f"--class-weights has {len(weights)} values for {self.num_classes} classes")
        return torch.tensor(weights)

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        for key in ("optimizer", "scheduler", "epoch", "rng"):
            if key not in checkpoint:
                raise UserError(f"{self.args.resume}: has no training state ('{key}'); it can be used for "
                                f"prediction but not resumed")
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if "scaler" in checkpoint and checkpoint["scaler"]:
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.start_epoch = int(checkpoint["epoch"])
        self.best_miou = float(checkpoint.get("best_miou", -1.0))
        self.history = list(checkpoint.get("history", []))
        restore_rng_state(checkpoint["rng"])

    def checkpoint(self, epoch: int, with_training_state: bool = True) -> dict[str, Any]:
        """Everything later scripts and a resumed run need, as tensors and plain types."""
        args = {k: v for k, v in vars(self.args).items() if isinstance(v, (str, int, float, bool, type(None)))}
        state: dict[str, Any] = {
            "model": {"name": self.model_name, "num_classes": self.num_classes, "in_channels": self.in_channels},
            "class_names": self.class_names,
            "input_size": self.input_size,
            "input_mode": self.input_mode,
            "normalization": self.normalization,
            "preprocessing": self.preprocessing,
            "state_dict": self.net.state_dict(),
            "epoch": epoch,
            "best_miou": self.best_miou,
            "history": self.history,
            "args": args,
            "speed": self.speed.to_json(),
        }
        if with_training_state:
            state.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                         scaler=self.scaler.state_dict() if self.scaler.is_enabled() else {},
                         rng=rng_state())
        return state

    def _forward_loss(self, batch: dict[str, torch.Tensor], train: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images = batch["image"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        weights = batch["weight"].to(self.device, non_blocking=True) if "weight" in batch else None
        if train and self.device_augmentation is not None:
            images, labels, weights = augment_batch(self.device_augmentation, images, labels, weights, batch["seed"])
        images = normalize(images, self.normalization)
        images = images.contiguous(memory_format=memory_format(self.speed.channels_last))
        labels = labels.long()
        # Validation runs in fp32 like utils.inference.Predictor, so the mIoU printed here is the one
        # get_miou_prediction.py + miou.py report for the same checkpoint.
        amp = train and self.amp_dtype is not None
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=amp):
            logits = self.model(images)
        return logits, labels, self.criterion(logits, labels, weights)

    def _sliding_window_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss of one whole validation image predicted by overlapping tiles, as the predict scripts do."""
        def tile_probabilities(tiles: torch.Tensor) -> torch.Tensor:
            return class_probabilities(self.model, tiles, self.normalization)

        probs = sliding_window(tile_probabilities, batch["image"][0], self.input_size)[None].to(self.device)
        log_probs = probs.clamp_min(1e-12).log()
        # softmax(log p) = p, so log-probabilities stand in for logits in every loss and metric.
        logits = log_probs[:, 1:] - log_probs[:, :1] if self.num_classes == 1 else log_probs
        labels = batch["label"].to(self.device).long()
        return logits, labels, self.criterion(logits, labels)

    def train_one_epoch(self, epoch: int) -> EpochStats:
        """One pass over the training split; non-finite losses are skipped and counted."""
        self.model.train()
        self.train_sampler.set_epoch(epoch)
        stats, consecutive_bad = EpochStats(), 0
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{self.args.epochs} train", leave=False,
                   disable=not (self.args.progress and self.dist.is_main), dynamic_ncols=True)
        # Running sums stay on the device: reading them back every step would make the host wait for the
        # device. The one wait per step is the non-finite-loss check, after backward is already queued.
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        f_sum = torch.zeros_like(loss_sum)
        tick = shown = time.perf_counter()
        for batch in bar:
            loaded = time.perf_counter()
            logits, labels, loss = self._forward_loss(batch, train=True)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            bad, stop = self._step_flags(loss)
            if stop:
                raise KeyboardInterrupt
            if bad:
                stats.bad_steps += 1
                consecutive_bad += 1
                self.optimizer.zero_grad(set_to_none=True)
                if consecutive_bad >= self.args.max_bad_steps:
                    raise UserError(f"the loss was NaN or infinite for {consecutive_bad} steps in a row in epoch "
                                    f"{epoch + 1}; stopped. The last good checkpoint is {self.run_dir / 'last.pt'}. "
                                    f"Try a lower --lr, --no-amp, or check the data.")
                continue
            consecutive_bad = 0
            self.scaler.step(self.optimizer)
            self.scaler.update()
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
        return self._reduce_means(stats)

    def _reduce_means(self, stats: EpochStats) -> EpochStats:
        """Turn per-rank sums of loss and f-score into means over all steps of all ranks."""
        totals = all_reduce_sum(torch.tensor([stats.loss, stats.f_score, float(stats.steps)], dtype=torch.float64),
                                self.dist)
        steps = max(totals[2].item(), 1.0)
        stats.loss, stats.f_score = totals[0].item() / steps, totals[1].item() / steps
        return stats

    @torch.inference_mode()
    def evaluate(self, epoch: int) -> tuple[EpochStats, list[np.ndarray]]:
        """Loss, f-score and confusion matrix over the validation split, plus a few overlays."""
        self.model.eval()
        stats, overlays = EpochStats(), []
        confusion = ConfusionMatrix(self.metric_classes)
        bar = tqdm(self.val_loader, desc=f"epoch {epoch + 1}/{self.args.epochs} val", leave=False,
                   disable=not (self.args.progress and self.dist.is_main), dynamic_ncols=True)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        f_sum = torch.zeros_like(loss_sum)
        non_finite = torch.zeros((), device=self.device)
        for batch in bar:
            if self.input_mode == "crop":
                logits, labels, loss = self._sliding_window_loss(batch)
            else:
                logits, labels, loss = self._forward_loss(batch)
            # NaN logits argmax to class 0, which can score better than a weak real model: never let them count.
            non_finite += (~torch.isfinite(logits)).any() | ~torch.isfinite(loss)
            pred = predict_labels(logits)
            confusion.update(pred, labels)
            loss_sum += loss
            f_sum += f_score(logits, labels)
            stats.steps += 1
            if self.stop_requested and not self.dist.enabled:  # ranks' validation shards differ in length
                raise KeyboardInterrupt
            wanted = self.args.overlays - len(overlays)
            for image, prediction in zip(batch["image"][:wanted], pred[:wanted].cpu()):
                overlays.append(overlay(image.permute(1, 2, 0).numpy(), prediction.numpy().astype(np.uint8),
                                        self.metric_classes))
        stats.loss, stats.f_score = loss_sum.item(), f_sum.item()
        stats.non_finite = all_reduce_sum(non_finite.float().cpu(), self.dist).item() > 0
        matrix = torch.from_numpy(confusion.compute())
        stats.confusion = all_reduce_sum(matrix, self.dist).numpy()
        return self._reduce_means(stats), overlays

    def fit(self) -> int:
        """Run the remaining epochs; Ctrl-C saves interrupted.pt and says how to resume."""
        from torch.utils.tensorboard import SummaryWriter

        main = self.dist.is_main
        if main:
            processes = f" x {self.dist.world_size} processes" if self.dist.enabled else ""
            print(f"run folder: {self.run_dir}\ndevice: {self.device}{processes}; train {len(self.train_set)} / "
                  f"val {len(self.val_set)} images at {self.input_size}x{self.input_size}; "
                  f"classes: {', '.join(self.class_names)}\nspeed: {self.speed.describe()}")
        writer = SummaryWriter(str(self.run_dir)) if main else None
        if self.start_epoch == 0 and main:
            save_checkpoint(self.run_dir / "last.pt", self.checkpoint(0))
            write_json(self.run_dir / "speed.json", self.speed.to_json())
            writer.add_text("speed", self.speed.describe(), 0)
            self._log_augmentation_samples(writer)
        epoch = self.start_epoch
        previous_handlers = self._catch_stop_signals()
        try:
            for epoch in range(self.start_epoch, self.args.epochs):
                self._run_epoch(epoch, writer)
        except KeyboardInterrupt:
            if not main:
                return 130
            save_checkpoint(self.run_dir / "interrupted.pt", self.checkpoint(epoch, with_training_state=False))
            print(f"\ninterrupted in epoch {epoch + 1}: weights so far saved to {self.run_dir / 'interrupted.pt'}; "
                  f"the last complete epoch is in {self.run_dir / 'last.pt'}.\nresume exactly with: "
                  f"python {Path(sys.argv[0]).name} --resume {self.run_dir / 'last.pt'}", file=sys.stderr)
            return 130
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            if writer is not None:
                writer.close()
            if self.lock is not None:
                self.lock.close()
            shutdown(self.dist)
        if not main:
            return 0
        best = self.run_dir / "best.pt"
        print(f"done: best validation mIoU {self.best_miou:.4f}; checkpoints {self.run_dir / 'last.pt'}, {best}")
        return 0

    def _catch_stop_signals(self) -> dict[int, Any]:
        """Turn Ctrl-C / SIGTERM into a stop at the next step boundary, never inside a checkpoint write.

        A second signal interrupts at once.
        """
        if threading.current_thread() is not threading.main_thread():
            return {}
        self.stop_requested = False

        def request_stop(signum: int, _frame: Any) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            print(f"\n{signal.Signals(signum).name}: stopping after this step (again to stop at once)",
                  file=sys.stderr)

        return {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}

    def _step_flags(self, loss: torch.Tensor) -> tuple[bool, bool]:
        """(loss non-finite on some rank, stop requested on some rank): every rank acts on the same answer."""
        flags = torch.stack([(~torch.isfinite(loss.detach())).float(),
                             torch.full((), float(self.stop_requested), device=loss.device)])
        bad, stop = all_reduce_sum(flags, self.dist).tolist()  # the step's one wait for the device
        return bad > 0, stop > 0

    def _log_augmentation_samples(self, writer: Any, count: int = 8) -> None:
        """A grid of augmented training samples with their masks, so the preset can be checked by eye."""
        augmentation = self.augmentation
        if augmentation is None:
            return
        with torch.random.fork_rng():  # drawing the samples must not shift the run's random stream
            torch.manual_seed(self.args.seed)
            samples = [self.train_set.unaugmented(i)[:2] for i in range(min(count, len(self.train_set)))]
            grid = sample_grid(samples, augmentation, self.metric_classes)
        writer.add_image("train/augmentation_samples", grid, 0)

    def _run_epoch(self, epoch: int, writer: Any) -> None:
        train = self.train_one_epoch(epoch)
        val, overlays = self.evaluate(epoch)
        if val.non_finite:
            raise UserError(f"validation in epoch {epoch + 1} gave NaN or infinite logits or loss: the model "
                            f"diverged (too high a --lr?); stopped without saving this epoch. "
                            f"{self._last_good()}")
        scores = scores_from_confusion(val.confusion, self._metric_names())
        miou = scores["miou"] if scores["miou"] is not None else 0.0
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": train.loss, "val_loss": val.loss,
                  "train_f_score": train.f_score, "val_f_score": val.f_score, "val_miou": miou,
                  "val_mpa": scores["mpa"], "skipped_steps": train.bad_steps,
                  "data_seconds": round(train.data_seconds, 3), "step_seconds": round(train.step_seconds, 3),
                  "speed": self.speed.name}  # a resume may change the levers; speed.json has the probe's timings
        self.history.append(record)
        improved = miou > self.best_miou
        if improved:
            self.best_miou = miou
        if writer is None:  # not the main process: nothing to write
            return
        for tag, value in (("Loss/train", train.loss), ("Loss/val", val.loss), ("f_score/train", train.f_score),
                           ("f_score/val", val.f_score), ("mIoU/val", miou), ("lr", lr),
                           ("time/data_wait_s", train.data_seconds), ("time/step_s", train.step_seconds)):
            writer.add_scalar(tag, value, epoch + 1)
        for index, image in enumerate(overlays):
            writer.add_image(f"val/overlay_{index}", image, epoch + 1, dataformats="HWC")
        writer.flush()
        save_checkpoint(self.run_dir / "last.pt", self.checkpoint(epoch + 1))
        if improved:  # best.pt is for scoring and prediction: weights only, a third of last.pt's size with Adam
            save_checkpoint(self.run_dir / "best.pt", self.checkpoint(epoch + 1, with_training_state=False))
        write_json(self.run_dir / "history.json", self.history)
        save_training_curves(self.run_dir / "curves.png", self.history)
        print(f"epoch {epoch + 1}/{self.args.epochs}: train loss {train.loss:.4f} f {train.f_score:.4f} | "
              f"val loss {val.loss:.4f} f {val.f_score:.4f} mIoU {miou:.4f}{' (best)' if improved else ''} | "
              f"lr {lr:.2e} | data wait {train.data_seconds:.1f}s of {train.data_seconds + train.step_seconds:.1f}s"
              + (f" | {train.bad_steps} non-finite steps skipped" if train.bad_steps else ""))

    def _last_good(self) -> str:
        """Where the last good weights are, for messages that stop a run."""
        if not self.history:
            return f"No epoch completed; {self.run_dir / 'last.pt'} holds the initial weights."
        best_epoch = max(self.history, key=lambda record: record["val_miou"])["epoch"]
        return (f"The last good checkpoints: {self.run_dir / 'last.pt'} (epoch {self.history[-1]['epoch']}) and "
                f"{self.run_dir / 'best.pt'} (epoch {best_epoch}, mIoU {self.best_miou:.4f}).")

    def _metric_names(self) -> list[str]:
        return self.class_names if len(self.class_names) == self.metric_classes else \
            [f"class_{i}" for i in range(self.metric_classes)]


def train(model_name: str, argv: list[str] | None = None) -> int:
    """Entry point of the train scripts: parse options, build the run, fit; errors exit with code 2."""
    def main(arguments: list[str] | None) -> int:
        parser = train_parser(model_name)
        args = parser.parse_args(arguments)
        resume = load_checkpoint(args.resume) if args.resume else None
        if resume:
            args = restore_options(parser, args, arguments, resume)
        return Trainer(model_name, args, resume).fit()
    return run_main(main, argv)
