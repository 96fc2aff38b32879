"""What one training run holds: what its inputs are, and the pieces set-up builds for the epoch functions."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch.utils.data import DataLoader

from utils.data.augment import Augmentation
from utils.data.dataset import SegmentationDataset
from utils.data.sampler import SeededSampler
from utils.runtime.speed_probe import SpeedChoice
from utils.train.distributed import DistributedContext
from utils.train.losses import SegmentationLoss


@dataclass
class InputSpec:
    """What the model sees and predicts; a checkpoint carries it to prediction and to a resumed run."""

    class_names: list[str]
    num_classes: int
    in_channels: int
    input_size: int
    normalization: dict[str, list[float]]
    input_mode: str
    preprocessing: dict[str, Any] | None

    @property
    def metric_classes(self) -> int:
        """Classes of the confusion matrix: a one-class (sigmoid) model is scored as background vs foreground."""
        return max(self.num_classes, 2)


@dataclass
class Run:
    """One training run: options, device, data, model, optimiser and progress."""

    model_name: str
    args: argparse.Namespace
    device: torch.device
    dist: DistributedContext
    spec: InputSpec
    augmentation: Augmentation | None  # applied in the loader, or on the device when --augment-on-device
    train_set: SegmentationDataset
    val_set: SegmentationDataset
    train_sampler: SeededSampler
    train_loader: DataLoader
    val_loader: DataLoader
    net: torch.nn.Module
    model: torch.nn.Module  # what runs forward: the network, or its DDP / compiled wrapper
    speed: SpeedChoice
    criterion: SegmentationLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler
    run_dir: Path = field(default_factory=Path)
    lock: IO[str] | None = None
    start_epoch: int = 0
    best_miou: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_requested: bool = False  # set by Ctrl-C / SIGTERM; the loops stop at the next step boundary
    data_splits: list[dict[str, Any]] = field(default_factory=list)  # splits.split_fingerprint of train and val

    @property
    def device_augmentation(self) -> Augmentation | None:
        """The augmentation the training step applies on the device, or None when the loader applies it."""
        return self.augmentation if self.args.augment_on_device else None
