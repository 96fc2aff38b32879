"""What a checkpoint saves of a run, and how a resumed run gets it back: weights, optimiser, progress, random states."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from utils.errors import UserError
from utils.train.state import Run

TRAINING_STATE = ("optimizer", "scheduler", "epoch", "rng")


def rng_state() -> dict[str, Any]:
    """The global random-number states (the sampler's draws depend on seed and epoch only)."""
    numpy_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *map(float, numpy_state[2:])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of rng_state."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])




def check_resumable_model(checkpoint: dict[str, Any], model_name: str, path: str) -> None:
    """A run resumes with its own model's train script."""
    if checkpoint["model"]["name"] != model_name:
        raise UserError(f"{path} holds a '{checkpoint['model']['name']}' model; "
                        f"resume it with that model's train script")


def training_checkpoint(run: Run, epoch: int, with_training_state: bool = True) -> dict[str, Any]:
    """Everything later scripts and a resumed run need, as tensors and plain types."""
    args = {k: v for k, v in vars(run.args).items() if isinstance(v, (str, int, float, bool, type(None)))}
    spec = run.spec
    state: dict[str, Any] = {
        "model": {"name": run.model_name, "num_classes": spec.num_classes, "in_channels": spec.in_channels},
        "class_names": spec.class_names,
        "input_size": spec.input_size,
        "input_mode": spec.input_mode,
        "normalization": spec.normalization,
        "preprocessing": spec.preprocessing,
        "state_dict": run.net.state_dict(),
        "epoch": epoch,
        "best_miou": run.best_miou,
        "history": run.history,
        "args": args,
        "speed": run.speed.to_json(),
        "data_splits": run.data_splits,
    }
    if with_training_state:
        state.update(optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(),
                     scaler=run.scaler.state_dict() if run.scaler.is_enabled() else {},
                     rng=rng_state())
    return state


def restore_training_state(run: Run, checkpoint: dict[str, Any], path: str) -> None:
    """Put optimiser, scheduler, scaler, progress and random states back as `training_checkpoint` saved them."""
    for key in TRAINING_STATE:
        if key not in checkpoint:
            raise UserError(f"{path}: has no training state ('{key}'); it can be used for "
                            f"prediction but not resumed")
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    if "scaler" in checkpoint and checkpoint["scaler"]:
        run.scaler.load_state_dict(checkpoint["scaler"])
    run.start_epoch = int(checkpoint["epoch"])
    run.best_miou = float(checkpoint.get("best_miou", -1.0))
    run.history = list(checkpoint.get("history", []))
    restore_rng_state(checkpoint["rng"])
