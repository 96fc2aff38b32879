"""Trustworthy runs: SIGKILL and Ctrl-C recovery, seeded workers, NaN losses, unwritable folders."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from nets import build_model
from tests.conftest import ROOT, tiny_train_args
from utils.data.augment import build_augmentation
from utils.data.dataset import SegmentationDataset
from utils.data.sampler import SeededSampler
from utils.io.checkpoint import load_checkpoint
from utils.train.loop import train

TIMING = ("data_seconds", "step_seconds")


def args(data: Path, logs: Path, epochs: int, *extra: str) -> list[str]:
    return tiny_train_args(data, logs, "--batch-size", "2", "--in-channels", "1", "--augment", "medical",
                           "--deterministic", "--seed", "7", "--epochs", str(epochs), *extra)


def start(arguments: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "unet_bn_train_medical.py", *arguments], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(path: Path, epoch: int, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and load_checkpoint(path)["epoch"] >= epoch:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout} s")


def curve(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


def test_sampler_draws_depend_on_seed_and_epoch_only() -> None:
    sampler = SeededSampler(10, seed=1)
    first = list(sampler)
    assert list(sampler) == first and sorted(i for i, _ in first) == list(range(10))
    assert len({s for _, s in first}) == 10
    sampler.set_epoch(1)
    assert list(sampler) != first
    shards = [list(SeededSampler(10, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert {i for shard in shards for i, _ in shard} == set(range(10))


def test_worker_augmentations_differ_and_repeat(tmp_path: Path, square_dataset: Path) -> None:
    # Four copies of one image: any repeated random stream would show up as identical outputs.
    (square_dataset / "ImageSets" / "Segmentation" / "same.txt").write_text("img_0\n" * 4)
    data = SegmentationDataset(square_dataset, "same", 2, 1, 32, build_augmentation("medical"))

    def draw(workers: int) -> list[torch.Tensor]:
        sampler = SeededSampler(len(data), seed=5)
        loader = DataLoader(data, sampler=sampler, batch_size=1, num_workers=workers)
        images = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            images += [batch["image"] for batch in loader]
        return images

    with_workers = draw(2)
    assert all(not torch.equal(a, b) for i, a in enumerate(with_workers) for b in with_workers[i + 1:])
    assert all(torch.equal(a, b) for a, b in zip(with_workers, draw(0)))


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path: Path, square_dataset: Path) -> None:
    assert train("unet_bn", args(square_dataset, tmp_path / "straight", 3)) == 0
    killed = start(args(square_dataset, tmp_path / "killed", 3))
    last = tmp_path / "killed" / "unet_bn" / "r" / "last.pt"
    wait_for_epoch(last, 1, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert train("unet_bn", ["--resume", str(last)]) == 0  # the run's own options come from the checkpoint
    straight = load_checkpoint(tmp_path / "straight" / "unet_bn" / "r" / "last.pt")
    resumed = load_checkpoint(last)
    assert resumed["epoch"] == 3 and curve(resumed["history"]) == curve(straight["history"])
    assert all(torch.equal(t, resumed["state_dict"][k]) for k, t in straight["state_dict"].items())


def test_ctrl_c_saves_and_explains_resume(tmp_path: Path, square_dataset: Path) -> None:
    process = start(args(square_dataset, tmp_path, 50))
    run = tmp_path / "unet_bn" / "r"
    wait_for_epoch(run / "last.pt", 1, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "--resume" in err and str(run / "last.pt") in err and "Traceback" not in err
    assert load_checkpoint(run / "interrupted.pt")["state_dict"]


def test_nan_losses_stop_the_run_and_keep_the_checkpoint(tmp_path: Path, square_dataset: Path,
                                                         monkeypatch, capsys) -> None:
    monkeypatch.setattr("utils.train.losses.SegmentationLoss.__call__",
                        lambda self, logits, target, weights=None: logits.sum() * float("nan"))
    assert train("unet_bn", args(square_dataset, tmp_path, 2, "--max-bad-steps", "2")) == 2
    assert "NaN or infinite for 2 steps in a row" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "unet_bn" / "r" / "last.pt")["epoch"] == 0


def test_unwritable_log_folder_is_refused(tmp_path: Path, square_dataset: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert train("unet_bn", args(square_dataset, blocker, 1)) == 2
    assert "cannot write to the log folder" in capsys.readouterr().err


def test_torchrun_two_processes_match_one_process_on_the_global_batch(tmp_path: Path,
                                                                      square_dataset: Path) -> None:
    # VGG16-UNet has no batch norm and CE has no batch-level term, so 2 x batch 1 must equal 1 x batch 2
    # (no augmentation: padding marked "ignore" would give the ranks different pixel counts to average over).
    # SGD, because Adam's normalised step turns float rounding in near-zero gradients into sign flips.
    common = ("--lr", "1e-2", "--optimizer", "sgd", "--in-channels", "1", "--loss", "ce", "--seed", "4", "--epochs", "2")
    assert train("unet", tiny_train_args(square_dataset, tmp_path / "single", *common, "--batch-size", "2")) == 0
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "unet_train_medical.py",
                             *tiny_train_args(square_dataset, tmp_path / "ddp", *common, "--batch-size", "1")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ddp" / "unet").iterdir()) == ["r"]  # rank 0 alone writes
    single = load_checkpoint(tmp_path / "single" / "unet" / "r" / "last.pt")
    ddp = load_checkpoint(tmp_path / "ddp" / "unet" / "r" / "last.pt")
    torch.manual_seed(4)  # the run's seed: the same initial weights as both runs
    initial = build_model("unet", num_classes=2, in_channels=1).state_dict()
    steps = {key: (single["state_dict"][key] - start, ddp["state_dict"][key] - start) for key, start in initial.items()
             if start.is_floating_point()}
    whole = torch.cat([a.flatten() for a, _ in steps.values()]).norm()
    difference = torch.cat([(b - a).flatten() for a, b in steps.values()]).norm()
    # The updates agree to float rounding (summation order differs between 1 x 2 and 2 x 1 images): as a
    # whole, and per tensor to 1e-3 of its own step or, for deep layers whose gradients nearly vanish at 32 px
    # (steps of 1e-6, sums of cancelling terms), 1e-5 of the whole model's step.
    assert difference <= 1e-5 * whole
    for key, (step_single, step_ddp) in steps.items():
        assert (step_ddp - step_single).norm() <= 1e-3 * step_single.norm() + 1e-5 * whole, key
    for a, b in zip(single["history"], ddp["history"]):
        assert a["val_miou"] == pytest.approx(b["val_miou"], abs=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
