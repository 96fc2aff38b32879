"""The CUDA paths: one optimiser step against the CPU's, AMP (bf16, fp16 with the grad scaler), channels-last,
fused Adam, cuDNN autotuning, on-device augmentation, the torchrun process group, train -> score -> predict, and
GPU checkpoints on a CPU-only machine.

Every test here is marked `cuda` and skips without a GPU: `pytest -m cuda` selects them.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import get_miou_prediction
import miou
import predict
from nets import build_model
from tests import one_step
from tests.conftest import tiny_train_args
from utils.cli import run_main
from utils.infer.predictor import Predictor
from utils.io.checkpoint import load_checkpoint
from utils.train import build as training
from utils.train.build import build_run
from utils.train.loop import train
from utils.train.options import train_parser

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
TIMING = ("data_seconds", "step_seconds")


@pytest.fixture(autouse=True)
def restore_cudnn_benchmark() -> None:
    """Runs set the global cuDNN autotuning flag: put it back for the next test."""
    before = torch.backends.cudnn.benchmark
    yield
    torch.backends.cudnn.benchmark = before


def cuda_args(data: Path, logs: Path, *extra: str) -> list[str]:
    """A tiny run on the GPU, speed options left to each test (or to the probe)."""
    return tiny_train_args(data, logs, "--in-channels", "1", "--overlays", "1", "--device", "cuda", *extra,
                           pin_speed=False)


def curve(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


def last(logs: Path, model: str = "unet_bn") -> dict:
    return load_checkpoint(logs / model / "r" / "last.pt")


# Relative to each tensor's update. With TF32 off, cuDNN's and the CPU's fp32 kernels differ in rounding
# only; a step skipped, or weights read back in the wrong memory layout, differ by the whole step or more.
CUDA_RELATIVE = 1e-2


@pytest.mark.parametrize("layout", ["--no-channels-last", "--channels-last"])
def test_one_sgd_step_on_cuda_is_the_step_on_the_cpu(square_dataset: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, layout: str) -> None:
    one_step.register(monkeypatch)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    initial, cpu = one_step.one_step(square_dataset, tmp_path / "cpu", "--no-channels-last")
    initial_cuda, cuda = one_step.one_step(square_dataset, tmp_path / "cuda", layout, "--no-cudnn-benchmark",
                                           device="cuda")
    for name in initial:  # the weights are drawn on the CPU, with the same seed
        torch.testing.assert_close(initial_cuda[name], initial[name], rtol=0, atol=0)
    assert all(t.device.type == "cpu" for t in cuda.values())
    assert one_step.compare_steps(initial, cpu, cuda, CUDA_RELATIVE) == []
    # The tolerance is far below the step: the untrained weights do not pass for the trained ones.
    assert len(one_step.compare_steps(initial, cpu, initial, CUDA_RELATIVE)) >= len(one_step.learning_weights(initial))


def test_bf16_autocast_training_step() -> None:
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    torch.manual_seed(0)
    model = build_model("unet_bn", num_classes=2, in_channels=1).cuda()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    inputs, labels = torch.randn(2, 1, 32, 32, device="cuda"), torch.randint(0, 2, (2, 32, 32), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(inputs)
    assert logits.dtype == torch.bfloat16
    torch.nn.functional.cross_entropy(logits.float(), labels).backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer.step()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_fp16_grad_scaler_skips_an_overflowing_step_and_lowers_the_scale() -> None:
    torch.manual_seed(0)
    model = build_model("unet_bn", num_classes=2, in_channels=1).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**16)
    inputs = torch.randn(2, 1, 32, 32, device="cuda")

    def step(overflow: bool) -> None:
        with torch.autocast("cuda", dtype=torch.float16):
            loss = model(inputs).float().mean()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if overflow:
            next(model.parameters()).grad.view(-1)[0] = float("inf")
        scaler.step(optimizer)
        scaler.update()

    before = [p.detach().clone() for p in model.parameters()]
    step(overflow=True)
    assert scaler.get_scale() == 2.0**15  # backoff factor 0.5
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the step was skipped
    step(overflow=False)
    assert scaler.get_scale() == 2.0**15 and any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_train_script_uses_the_grad_scaler_with_fp16(square_dataset: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "amp_dtype", lambda device: torch.float16)  # as on a GPU before sm80
    assert train("unet_bn", cuda_args(square_dataset, tmp_path, "--epochs", "1", "--amp", "--channels-last")) == 0
    checkpoint = last(tmp_path)
    assert checkpoint["scaler"]["scale"] > 0 and checkpoint["speed"]["source"] == "given"
    assert np.isfinite(checkpoint["history"][0]["train_loss"])


@pytest.mark.parametrize("amp", ["--amp", "--no-amp"])
def test_channels_last_trains_the_same_model_on_cuda(square_dataset: Path, tmp_path: Path, amp: str) -> None:
    for layout in ("--channels-last", "--no-channels-last"):
        assert train("unet_bn", cuda_args(square_dataset, tmp_path / layout, "--epochs", "1", "--optimizer", "sgd",
                                          "--no-cudnn-benchmark", amp, layout)) == 0
    nhwc, nchw = last(tmp_path / "--channels-last"), last(tmp_path / "--no-channels-last")
    assert nhwc["speed"]["channels_last"] and not nchw["speed"]["channels_last"]
    for a, b in zip(curve(nhwc["history"]), curve(nchw["history"])):
        # cuDNN may use TF32 for fp32 convolutions, and each layout has its own kernels.
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.05 if amp == "--amp" else 0.01)


def test_fused_adam_on_cuda_trains_like_the_loop(square_dataset: Path, tmp_path: Path) -> None:
    for flag in ("--fused-optimizer", "--no-fused-optimizer"):
        assert train("unet_bn", cuda_args(square_dataset, tmp_path / flag, "--epochs", "2", "--no-amp",
                                          "--no-channels-last", flag)) == 0
    fused, loop = last(tmp_path / "--fused-optimizer"), last(tmp_path / "--no-fused-optimizer")
    assert fused["optimizer"]["param_groups"][0]["fused"] is True
    assert not loop["optimizer"]["param_groups"][0]["fused"]
    for a, b in zip(fused["history"], loop["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-2)


@pytest.mark.parametrize("flags, expected", [((), True), (("--no-cudnn-benchmark",), False),
                                             (("--deterministic",), False)])
def test_cudnn_benchmark_follows_the_options(square_dataset: Path, tmp_path: Path, flags: tuple[str, ...],
                                             expected: bool) -> None:
    args = train_parser("unet_bn").parse_args(cuda_args(square_dataset, tmp_path, "--no-amp", "--no-channels-last",
                                                        *flags))
    run = build_run("unet_bn", args)
    try:
        assert torch.backends.cudnn.benchmark is expected
        assert next(run.net.parameters()).is_cuda
    finally:
        run.lock.close()
        torch.use_deterministic_algorithms(False)


def test_augmenting_on_the_gpu_trains_like_augmenting_in_the_loader(square_dataset: Path, tmp_path: Path) -> None:
    common = ("--augment", "light", "--epochs", "2", "--seed", "5", "--no-amp", "--no-channels-last",
              "--no-cudnn-benchmark")
    assert train("unet_bn", cuda_args(square_dataset, tmp_path / "loader", *common)) == 0
    assert train("unet_bn", cuda_args(square_dataset, tmp_path / "device", *common, "--augment-on-device")) == 0
    loader, device = last(tmp_path / "loader"), last(tmp_path / "device")
    # The same per-sample seeds and operations; only GPU vs CPU rounding in the colour jitter may differ.
    for a, b in zip(curve(loader["history"]), curve(device["history"])):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.02)
        assert a["val_miou"] == pytest.approx(b["val_miou"], abs=0.02)


WORKER = """
import os, sys
sys.path.insert(0, {root!r})
import torch, torch.distributed as dist
from utils.train.distributed import CUDA_BACKENDS
dist.init_process_group(CUDA_BACKENDS)
device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
torch.cuda.set_device(device)
sums = torch.ones(3, dtype=torch.float64)
dist.all_reduce(sums)  # gloo: the epoch sums live on the CPU
flags = torch.ones(2, device=device)
dist.all_reduce(flags)  # nccl: the per-step flags live on the GPU
holder = [f"rank {{dist.get_rank()}} of {{dist.get_world_size()}}"]
dist.broadcast_object_list(holder, src=0)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Conv2d(1, 2, 3).to(device), device_ids=[device.index])
model(torch.randn(1, 1, 8, 8, device=device)).sum().backward()
dist.destroy_process_group()
print("ok", sums.tolist(), flags.tolist(), holder[0])
"""


def test_one_process_torchrun_with_gloo_for_cpu_and_nccl_for_cuda(square_dataset: Path, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(ROOT)))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    result = subprocess.run([*torchrun, str(script)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ok [1.0, 1.0, 1.0] [1.0, 1.0] rank 0 of 1" in result.stdout
    result = subprocess.run([*torchrun, "unet_bn_train_medical.py",
                             *cuda_args(square_dataset, tmp_path / "logs", "--epochs", "1", "--no-amp",
                                        "--no-channels-last")],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert last(tmp_path / "logs")["epoch"] == 1


def test_train_score_predict_on_cuda(square_dataset: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    assert train("unet_bn", cuda_args(square_dataset, logs, "--epochs", "2")) == 0  # the probe runs on the GPU
    run = logs / "unet_bn" / "r"
    speed = json.loads((run / "speed.json").read_text())
    assert speed["source"] == "probe" and len(speed["seconds"]) == 4
    assert speed["precision"] in ("fp32", "bf16" if torch.cuda.is_bf16_supported() else "fp16")
    checkpoint = load_checkpoint(run / "best.pt")
    pred = tmp_path / "pred"
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(run / "best.pt"), "--data", str(square_dataset),
                                               "--out", str(pred), "--device", "cuda"]) == 0
    assert run_main(miou.main, ["--pred", str(pred), "--data", str(square_dataset)]) == 0
    report = json.loads((pred / "miou.json").read_text())
    assert report["pixels"] == 2 * 32 * 32
    # Validation and scoring both run fp32; cuDNN may pick other algorithms for the two layouts.
    assert report["miou"] == pytest.approx(checkpoint["history"][checkpoint["epoch"] - 1]["val_miou"], abs=0.01)
    for extra in ((), ("--amp",)):
        out = tmp_path / f"predict{''.join(extra)}"
        image = square_dataset / "Images" / "img_0.png"
        assert run_main(predict.main, [str(image), "--checkpoint", str(run / "best.pt"), "--out", str(out),
                                       "--device", "cuda", *extra]) == 0
        assert np.asarray(Image.open(out / "img_0_label.png")).shape == (32, 32)


def test_a_checkpoint_saved_on_the_gpu_loads_on_a_cpu_only_machine(square_dataset: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert train("unet_bn", cuda_args(square_dataset, tmp_path, "--epochs", "1", "--amp", "--channels-last")) == 0
    run = tmp_path / "unet_bn" / "r"
    gpu = Predictor(run / "best.pt", "cuda").probabilities(torch.full((1, 1, 32, 32), 128, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    checkpoint = load_checkpoint(run / "last.pt")
    assert all(t.device.type == "cpu" for t in checkpoint["state_dict"].values())
    assert all(t.device.type == "cpu" for state in checkpoint["optimizer"]["state"].values()
               for t in state.values() if isinstance(t, torch.Tensor))
    predictor = Predictor(run / "best.pt", "cpu")
    assert next(predictor.model.parameters()).device.type == "cpu"
    cpu = predictor.probabilities(torch.full((1, 1, 32, 32), 128, dtype=torch.uint8))
    torch.testing.assert_close(cpu, gpu.cpu(), atol=1e-3, rtol=1e-3)
