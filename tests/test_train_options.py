"""Training options each change what a run does: losses, class weights, optimiser settings, splits, cache,
pretrained encoder, --sync-bn and --compile, read back from the files a run writes.

Every run is one deterministic step of the 'unet' model on the two images of split 'fit', validated on the one
image of split 'check'; the dataset has no 'train' or 'val' split, so a run that ignored --train-split or
--val-split would stop at once.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nets import build_model
from nets.vgg import make_vgg_layers
from tests.tiny_training import history, logits_and_target, run_args, softmax_dice_loss, write_squares
from utils.io.checkpoint import load_checkpoint
from utils.train.loop import train

SPLITS = ("--train-split", "fit", "--val-split", "check")
VAL_STEM = "sq_2"
PRINTED: dict[str, str] = {}  # what each run of unet_run printed, by run name


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_squares(tmp_path_factory.mktemp("options") / "squares",
                         {"fit": ["sq_0", "sq_1"], "check": [VAL_STEM]})


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("option-runs")


def unet_run(data: Path, logs: Path, name: str, *extra: str) -> Path:
    """Train one step of 'unet' with the given options; the run folder."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = train("unet", run_args(data, logs, name, *SPLITS, *extra))
    PRINTED[name] = printed.getvalue()
    print(PRINTED[name])  # shown with the report of a test that fails
    assert code == 0
    return logs / "unet" / name


@pytest.fixture(scope="module")
def base_run(data: Path, logs: Path) -> Path:
    return unet_run(data, logs, "base")


class RecordedModel(nn.Module):
    """What the stand-in torch.compile returns: the model, counting the forward passes that go through it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module, self.calls = module, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.module(x)


@pytest.fixture(scope="module")
def no_dice_compiled_run(data: Path, logs: Path) -> tuple[Path, list[RecordedModel]]:
    """--no-dice --compile, with torch.compile replaced: a real compile takes minutes on a CPU."""
    compiled: list[RecordedModel] = []

    def fake_compile(model: nn.Module, *args: object, **kwargs: object) -> nn.Module:
        compiled.append(RecordedModel(model))
        return compiled[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "compile", fake_compile)
        return unet_run(data, logs, "no-dice", "--no-dice", "--compile"), compiled


@pytest.fixture(scope="module")
def weighted_sgd_run(data: Path, logs: Path) -> Path:
    return unet_run(data, logs, "weighted-sgd", "--class-weights", "1,3", "--optimizer", "sgd",
                    "--momentum", "0.5", "--weight-decay", "0.01")


def test_validation_loss_is_ce_plus_dice_on_the_named_split(data: Path, base_run: Path) -> None:
    logits, target = logits_and_target(base_run, data, VAL_STEM)
    expected = F.cross_entropy(logits, target).item() + softmax_dice_loss(logits, target)
    assert history(base_run)[0]["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert "train 2 / val 1 images" in PRINTED["base"]


def test_no_dice_trains_and_validates_on_cross_entropy_alone(data: Path, base_run: Path,
                                                              no_dice_compiled_run: tuple[Path, list]) -> None:
    run, _ = no_dice_compiled_run
    logits, target = logits_and_target(run, data, VAL_STEM)
    assert history(run)[0]["val_loss"] == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-5)
    # Same seed, same first batch, same initial weights: the first step's losses differ by that batch's Dice term.
    dice_term = history(base_run)[0]["train_loss"] - history(run)[0]["train_loss"]
    assert 0.01 < dice_term < 1


def test_compile_wraps_the_model_that_trains_and_validates(no_dice_compiled_run: tuple[Path, list]) -> None:
    run, compiled = no_dice_compiled_run
    assert len(compiled) == 1 and type(compiled[0].module).__name__ == "VGGUNet"
    assert compiled[0].calls == 2  # the one training step and the one validation batch
    assert load_checkpoint(run / "last.pt")["args"]["compile"] is True
    assert not any(key.startswith("module.") for key in load_checkpoint(run / "best.pt")["state_dict"])


def test_class_weights_weigh_the_cross_entropy(data: Path, base_run: Path, weighted_sgd_run: Path) -> None:
    logits, target = logits_and_target(weighted_sgd_run, data, VAL_STEM)
    weighted = F.cross_entropy(logits, target, weight=torch.tensor([1.0, 3.0])).item()
    assert weighted != pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-3)
    expected = weighted + softmax_dice_loss(logits, target)
    assert history(weighted_sgd_run)[0]["val_loss"] == pytest.approx(expected, rel=1e-5)
    # The first step starts from the same weights as the base run's, so only the class weights change its loss.
    assert history(weighted_sgd_run)[0]["train_loss"] != pytest.approx(history(base_run)[0]["train_loss"], rel=1e-3)
    assert load_checkpoint(weighted_sgd_run / "best.pt")["args"]["class_weights"] == "1,3"


def test_momentum_and_weight_decay_reach_sgd(weighted_sgd_run: Path) -> None:
    optimizer = load_checkpoint(weighted_sgd_run / "last.pt")["optimizer"]
    group = optimizer["param_groups"][0]
    assert (group["momentum"], group["weight_decay"], group["initial_lr"]) == (0.5, 0.01, 1e-3)
    assert all("momentum_buffer" in state for state in optimizer["state"].values())


def test_a_class_weight_count_other_than_the_classes_is_refused(data: Path, tmp_path: Path, capsys) -> None:
    assert train("unet", run_args(data, tmp_path, "r", *SPLITS, "--class-weights", "1,2,3")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 values for 2 classes" in err


def test_a_missing_split_is_named(data: Path, tmp_path: Path, capsys) -> None:
    assert train("unet", run_args(data, tmp_path, "r", "--train-split", "fit", "--val-split", "holdout")) == 2
    err = capsys.readouterr().err
    assert "'holdout'" in err and "'fit'" not in err
    assert not (tmp_path / "unet").exists()


def test_no_cache_and_sync_bn_in_one_process_change_nothing(data: Path, logs: Path, base_run: Path) -> None:
    # Without torchrun there are no other processes to synchronise with: --sync-bn leaves the model as it is.
    run = unet_run(data, logs, "no-cache", "--cache-mb", "0", "--sync-bn")
    cached, uncached = load_checkpoint(base_run / "last.pt"), load_checkpoint(run / "last.pt")
    assert (cached["args"]["cache_mb"], uncached["args"]["cache_mb"]) == (4096, 0)
    assert uncached["args"]["sync_bn"] is True
    assert cached["state_dict"].keys() == uncached["state_dict"].keys()
    assert all(torch.equal(cached["state_dict"][key], uncached["state_dict"][key]) for key in cached["state_dict"])
    assert history(run)[0]["val_loss"] == history(base_run)[0]["val_loss"]


def vgg16_features_file(path: Path) -> Path:
    """A torchvision-VGG16-shaped state dict (random features.*, a stand-in classifier key) saved at path."""
    torch.manual_seed(123)
    features = {f"features.{key}": torch.randn_like(value) * 0.05
                for key, value in make_vgg_layers(3).state_dict().items()}
    torch.save({**features, "classifier.6.bias": torch.zeros(1000)}, path)
    return path


def test_pretrained_weights_are_where_the_unet_run_starts(data: Path, tmp_path: Path) -> None:
    weights = torch.load(vgg16_features_file(tmp_path / "vgg16.pth"), weights_only=True)
    first = weights["features.0.weight"].sum(dim=1, keepdim=True)  # RGB kernels summed for grey input
    built = build_model("unet", 2, 1, pretrained=tmp_path / "vgg16.pth")
    assert torch.equal(built.encoder.features[0].weight, first)
    # A learning rate of 1e-10 leaves the weights where the run started, to within 1e-10 per step.
    assert train("unet", run_args(data, tmp_path, "pre", *SPLITS, "--pretrained", str(tmp_path / "vgg16.pth"),
                                  "--lr", "1e-10", "--weight-decay", "0.01")) == 0
    checkpoint = load_checkpoint(tmp_path / "unet" / "pre" / "last.pt")
    state = checkpoint["state_dict"]
    assert torch.allclose(state["encoder.features.0.weight"], first, rtol=0, atol=1e-7)
    for key in ("features.2.weight", "features.28.weight", "features.28.bias"):
        assert torch.allclose(state[f"encoder.{key}"], weights[key], rtol=0, atol=1e-7)
    assert checkpoint["optimizer"]["param_groups"][0]["weight_decay"] == 0.01  # reaches Adam as well


@pytest.mark.parametrize("model", ["unet_bn", "att_unet"])
def test_pretrained_is_refused_for_models_without_a_vgg_encoder(data: Path, tmp_path: Path, capsys,
                                                                 model: str) -> None:
    weights = vgg16_features_file(tmp_path / "vgg16.pth")
    assert train(model, run_args(data, tmp_path, "r", *SPLITS, "--pretrained", str(weights))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "only the 'unet' model" in err
    assert not (tmp_path / model).exists()


@pytest.mark.parametrize("weights", ["-1,5", "nan,1", "0,0", "inf,1", "1,x"])
def test_class_weights_are_checked_before_anything_is_written(tmp_path: Path, capsys, weights: str) -> None:
    with pytest.raises(SystemExit) as exit_info:  # refused by the parser, before the run starts
        train("unet", ["--data", str(tmp_path / "none"), "--log-dir", str(tmp_path / "logs"),
                       f"--class-weights={weights}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--class-weights" in err
    assert not (tmp_path / "logs").exists()
