"""Set-up of a training run, one step per function, in the order the run's random draws depend on."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader

from nets import build_model
from utils.data.augment import Augmentation, build_augmentation
from utils.data.dataset import SegmentationDataset
from utils.data.folders import CLASSES_FILE, read_class_names, read_preprocessing
from utils.data.sampler import SeededSampler
from utils.data.splits import fingerprint
from utils.errors import UserError
from utils.io.checkpoint import load_checkpoint, model_from_checkpoint
from utils.io.labels import IGNORE_INDEX
from utils.runtime.device import (
    amp_dtype,
    default_normalization,
    default_workers,
    memory_format,
    resolve_device,
    seed_everything,
)
from utils.runtime.speed_probe import SpeedChoice, training_choice
from utils.train.distributed import DistributedContext, broadcast_object, init_distributed
from utils.train.losses import SegmentationLoss, parse_loss
from utils.train.options import parse_class_weights
from utils.train.resume import check_resumable_model, restore_training_state
from utils.train.run_folder import lock_run_dir, new_run_dir
from utils.train.state import InputSpec, Run


def start_device(args: argparse.Namespace) -> tuple[torch.device, DistributedContext]:
    """The device, and under torchrun this process's place in the process group (one GPU per process)."""
    device = resolve_device(args.device)
    dist = init_distributed(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    return device, dist


def configure_backends(args: argparse.Namespace, device: torch.device) -> None:
    """--deterministic, else cuDNN autotuning as --cudnn-benchmark says."""
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark


def read_classes(args: argparse.Namespace) -> tuple[list[str], int]:
    """Class names and count of a new run: --num-classes, else the dataset's classes.txt, else 2."""
    names = read_class_names(args.data)
    if names and args.num_classes is None and len(names) > IGNORE_INDEX:
        raise UserError(f"{Path(args.data) / CLASSES_FILE} names {len(names)} classes; a model has at most "
                        f"{IGNORE_INDEX} (label value {IGNORE_INDEX} means 'ignore')")
    num_classes = args.num_classes or (len(names) if names else 2)
    expected = max(num_classes, 2)
    if names and len(names) != expected:
        raise UserError(f"--num-classes {num_classes} but {args.data}/classes.txt names "
                        f"{len(names)} classes: {', '.join(names)}")
    if num_classes < 1 or num_classes > IGNORE_INDEX:
        raise UserError(f"--num-classes must be between 1 and {IGNORE_INDEX}, got {num_classes}")
    return names or [f"class_{i}" for i in range(expected)], num_classes


def input_spec(args: argparse.Namespace, resume: dict[str, Any] | None) -> InputSpec:
    """A resumed run keeps its checkpoint's inputs; a new one takes them from the options and the dataset."""
    if resume:
        return InputSpec(list(resume["class_names"]), int(resume["model"]["num_classes"]),
                         resume["model"]["in_channels"], resume["input_size"], resume["normalization"],
                         resume.get("input_mode", "letterbox"), resume.get("preprocessing"))
    class_names, num_classes = read_classes(args)
    return InputSpec(class_names, num_classes, args.in_channels, args.input_size,
                     default_normalization(args.in_channels), "crop" if args.crop else "letterbox",
                     read_preprocessing(args.data))


def augmentation_of(args: argparse.Namespace) -> Augmentation | None:
    """The --augment preset."""
    try:
        return build_augmentation(args.augment)
    except ValueError as exc:
        raise UserError(f"--augment: {exc}") from None


def build_datasets(args: argparse.Namespace, spec: InputSpec, augmentation: Augmentation | None
                   ) -> tuple[SegmentationDataset, SegmentationDataset]:
    """Load and check both splits; the problems of both are reported in one message."""
    weight_map: Callable | None = None
    if args.weight_map:
        from utils.data.weightmap import unet_weight_map
        weight_map = unet_weight_map
    in_loader = None if args.augment_on_device else augmentation
    crop = spec.input_mode == "crop"
    datasets, problems = [], []
    for split, augment, weights, mode in ((args.train_split, in_loader, weight_map, spec.input_mode),
                                          (args.val_split, None, None, "full" if crop else "letterbox")):
        try:
            datasets.append(SegmentationDataset(args.data, split, spec.num_classes, spec.in_channels,
                                                spec.input_size, augment, weights, args.cache_mb, mode))
        except UserError as exc:
            problems.append(f"split '{split}': {exc}")
    if problems:
        raise UserError("\n".join(problems))
    if not datasets[0].has_foreground:
        print(f"note: every label of the training split '{args.train_split}' ({len(datasets[0])} images of "
              f"{args.data}) is background: the model learns no class from it; check the split or the label "
              f"values", file=sys.stderr)
    return datasets[0], datasets[1]


def build_loaders(args: argparse.Namespace, spec: InputSpec, device: torch.device, dist: DistributedContext,
                  train_set: SegmentationDataset, val_set: SegmentationDataset
                  ) -> tuple[SeededSampler, DataLoader, DataLoader]:
    """The training sampler (its epoch is set each epoch) and both loaders, each rank reading its own shard."""
    rank, world = dist.rank, dist.world_size
    train_sampler = SeededSampler(len(train_set), args.seed, rank=rank, world_size=world)
    val_sampler = SeededSampler(len(val_set), args.seed, shuffle=False, rank=rank, world_size=world, pad=False)
    workers = args.workers if args.workers is not None else default_workers(device, dist.local_world_size)
    options = dict(batch_size=args.batch_size, num_workers=workers, pin_memory=device.type == "cuda",
                   persistent_workers=workers > 0)
    train_loader = DataLoader(train_set, sampler=train_sampler, drop_last=len(train_sampler) > args.batch_size,
                              **options)
    # Whole images of differing sizes are validated one at a time.
    val_loader = DataLoader(val_set, sampler=val_sampler,
                            **{**options, "batch_size": 1 if spec.input_mode == "crop" else args.batch_size})
    return train_sampler, train_loader, val_loader


def build_network(model_name: str, args: argparse.Namespace, spec: InputSpec, resume: dict[str, Any] | None
                  ) -> torch.nn.Module:
    """The resumed weights, or a new model (with VGG16 encoder weights under --pretrained)."""
    if resume:
        return model_from_checkpoint(resume, args.resume)
    options = {"pretrained": args.pretrained} if args.pretrained else {}
    if args.pretrained and model_name != "unet":
        raise UserError("--pretrained loads a VGG16 encoder, which only the 'unet' model has")
    return build_model(model_name, spec.num_classes, spec.in_channels, **options)


def choose_speed(net: torch.nn.Module, model_name: str, args: argparse.Namespace, spec: InputSpec,
                 device: torch.device, dist: DistributedContext, resume: dict[str, Any] | None) -> SpeedChoice:
    """Precision and layout: --amp / --channels-last, else a resumed run's own, else the fastest by the probe."""
    saved = SpeedChoice(**resume["speed"]) if resume and "speed" in resume else None
    amp = args.amp if args.amp is not None or saved is None else saved.amp
    layout = args.channels_last if args.channels_last is not None or saved is None else saved.channels_last
    # Rank 0 times the candidates alone, so the ranks neither disturb its timings nor choose differently.
    choice = training_choice(net, device, model_name, spec.in_channels, spec.num_classes, spec.input_size,
                             args.batch_size, amp, layout) if dist.is_main else None
    return broadcast_object(choice, dist)


def place_model(net: torch.nn.Module, args: argparse.Namespace, device: torch.device, dist: DistributedContext,
                speed: SpeedChoice) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(network, what runs forward): the network on its device and layout, wrapped in DDP and compiled as asked."""
    net.to(device, memory_format=memory_format(speed.channels_last))
    model = net
    if dist.enabled:
        if args.sync_bn:
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    if args.compile:
        from torch import _dynamo
        _dynamo.config.suppress_errors = True  # a graph that cannot compile runs eagerly instead
        model = torch.compile(model)
    return net, model


def loss_names(args: argparse.Namespace, num_classes: int) -> list[str]:
    """--loss (without 'dice' under --no-dice); a one-class model takes binary cross-entropy for 'ce'."""
    names = parse_loss(args.loss, use_dice=not args.no_dice)
    if num_classes == 1:
        names = ["bce" if name == "ce" else name for name in names]
    if not names:
        raise UserError(f"--loss '{args.loss}' with --no-dice leaves no loss")
    return names


def class_weights(args: argparse.Namespace, num_classes: int) -> torch.Tensor | None:
    """--class-weights as a tensor, one value per class (background and foreground for a 1-class sigmoid model)."""
    if not args.class_weights:
        return None
    weights = parse_class_weights(args.class_weights)
    expected = max(num_classes, 2)
    if len(weights) != expected:
        what = "background and foreground of a 1-class model" if num_classes == 1 else f"{num_classes} classes"
        raise UserError(f"--class-weights has {len(weights)} values for {what}; give {expected}")
    return torch.tensor(weights)


def build_optimizer(net: torch.nn.Module, args: argparse.Namespace, device: torch.device
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with momentum or Adam, and the per-epoch exponential learning-rate decay."""
    fused = args.fused_optimizer and device.type in ("cpu", "cuda")
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum,
                                    weight_decay=args.weight_decay, fused=fused)
    else:
        optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=args.weight_decay, fused=fused)
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=args.lr_decay)


def open_run_dir(run: Run, resume: dict[str, Any] | None) -> None:
    """Restore a resumed run into its own folder, or make a new folder; the main process then locks it."""
    args = run.args
    if resume:
        restore_training_state(run, resume, args.resume)
        run.run_dir = Path(args.resume) if Path(args.resume).is_dir() else Path(args.resume).parent
        if run.start_epoch >= args.epochs:
            raise UserError(f"{args.resume} has already trained {run.start_epoch} of --epochs {args.epochs}; "
                            f"give a larger --epochs to train on")
    else:
        made = new_run_dir(Path(args.log_dir), run.model_name, args.run_name) if run.dist.is_main else None
        run.run_dir = Path(broadcast_object(str(made), run.dist))
    run.lock = lock_run_dir(run.run_dir) if run.dist.is_main else None


def build_run(model_name: str, args: argparse.Namespace, resume: dict[str, Any] | None = None) -> Run:
    """Everything one run needs; `resume`: the checkpoint of --resume when the caller has loaded it already.

    The order matters: the seed comes before the datasets, the model's initial weights and the speed probe,
    whose random draws follow in this order.
    """
    device, dist = start_device(args)
    if resume is None and args.resume:
        resume = load_checkpoint(args.resume)
    if resume:
        check_resumable_model(resume, model_name, args.resume)
    configure_backends(args, device)
    seed_everything(args.seed)
    spec = input_spec(args, resume)
    augmentation = augmentation_of(args)
    train_set, val_set = build_datasets(args, spec, augmentation)
    train_sampler, train_loader, val_loader = build_loaders(args, spec, device, dist, train_set, val_set)
    net = build_network(model_name, args, spec, resume)
    speed = choose_speed(net, model_name, args, spec, device, dist, resume)
    net, model = place_model(net, args, device, dist, speed)
    criterion = SegmentationLoss(loss_names(args, spec.num_classes), class_weights(args, spec.num_classes))
    optimizer, scheduler = build_optimizer(net, args, device)
    autocast_dtype = amp_dtype(device) if speed.amp else None
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
    run = Run(model_name, args, device, dist, spec, augmentation, train_set, val_set, train_sampler, train_loader,
              val_loader, net, model, speed, criterion, optimizer, scheduler, autocast_dtype, scaler,
              data_splits=[fingerprint(data.split, data.label_sizes) for data in (train_set, val_set)])
    open_run_dir(run, resume)
    return run
