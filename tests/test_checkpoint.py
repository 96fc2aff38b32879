"""Checkpoints: round trip, atomic writes, truncated / foreign / unsafe files refused clearly."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import untrained_checkpoint
from utils.errors import UserError
from utils.io.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from utils.io.files import atomic_open


def test_round_trip_rebuilds_identical_model(tmp_path: Path) -> None:
    state = untrained_checkpoint(num_classes=3, size=64, class_names=["a", "b", "c"])
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["class_names"] == ["a", "b", "c"] and loaded["input_size"] == 64
    model = model_from_checkpoint(loaded)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, state["state_dict"][key])
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.pt", untrained_checkpoint())
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "c.pt")


def test_foreign_and_unsafe_files_are_refused(tmp_path: Path) -> None:
    torch.save({"weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not a checkpoint of this repository"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": "x", "payload": os.system}, tmp_path / "pickle.pt")  # would run code if unpickled
    with pytest.raises(UserError, match="refused to load"):
        load_checkpoint(tmp_path / "pickle.pt")
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_of_another_shape_are_refused(tmp_path: Path) -> None:
    state = untrained_checkpoint()
    state["model"]["num_classes"] = 5
    state["class_names"] = [f"c{i}" for i in range(5)]
    save_checkpoint(tmp_path / "c.pt", state)
    with pytest.raises(UserError, match="weights do not fit model unet_bn"):
        model_from_checkpoint(load_checkpoint(tmp_path / "c.pt"))


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_full_disk_during_save_is_a_clear_error_and_keeps_the_old_checkpoint(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.pt"
    save_checkpoint(target, untrained_checkpoint())
    before = target.read_bytes()

    def full_disk(*_args, **_kwargs) -> None:  # what torch's zip writer raises when the disk fills up
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 156854592 vs 156854484")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UserError, match=r"could not write checkpoint .*last\.pt.*unchanged"):
        save_checkpoint(target, untrained_checkpoint())
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
