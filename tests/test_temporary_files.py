"""Atomic writes: a killed write's temporary is removed by the next write there; long names still fit."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

import get_miou_prediction
from tests.conftest import write_checkpoint, write_pair, write_split
from utils.cli import run_main
from utils.io.files import write_text


def test_a_stale_temporary_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    stale = tmp_path / ".model.onnx.k3j9x_2a.tmp"
    live = tmp_path / ".other.png.ab12cd34.tmp"
    stale_volume = tmp_path / ".ct_label.nii.gz.zz99yy88.tmp.nii.gz"
    mine = tmp_path / "notes.tmp"  # not a temporary's name: never touched
    for path in (stale, live, stale_volume, mine):
        path.write_bytes(b"partial")
    hour_ago = time.time() - 3600
    for path in (stale, stale_volume, mine):
        os.utime(path, (hour_ago, hour_ago))
    write_text(tmp_path / "model.onnx", "done")
    assert not stale.exists() and not stale_volume.exists()
    assert live.exists() and mine.exists() and (tmp_path / "model.onnx").read_text() == "done"


def test_a_name_that_fits_is_written_although_its_temporary_name_would_not(tmp_path: Path) -> None:
    name = "s" * 246 + ".png"  # 250 characters: fits the file system's 255, the temporary's 264 would not
    write_text(tmp_path / name, "x")
    write_text(tmp_path / name, "y")
    assert os.listdir(tmp_path) == [name] and (tmp_path / name).read_text() == "y"


def test_predictions_of_stems_of_240_characters(tmp_path: Path) -> None:
    stem = "case_" + "7" * 240
    data = tmp_path / "data"
    write_pair(data, stem, np.full((32, 32), 90, np.uint8), np.zeros((32, 32), np.uint8))
    write_split(data, "val", [stem])
    checkpoint = write_checkpoint(tmp_path / "best.pt")
    out = tmp_path / "pred"
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(checkpoint), "--data", str(data),
                                               "--out", str(out)]) == 0
    assert (out / f"{stem}.png").is_file() and not [p for p in os.listdir(out) if p.endswith(".tmp")]


def test_a_killed_writers_temporary_goes_at_once(tmp_path: Path) -> None:
    """SIGKILL during a write (here: a child process killed mid-write), then at once another write to the folder."""
    import signal
    import subprocess
    import sys

    code = ("import time; from utils.io.files import atomic_open\n"
            "with atomic_open(r'%s', 'wb') as handle:\n"
            "    handle.write(b'partial'); handle.flush(); print('writing', flush=True); time.sleep(60)\n"
            % (tmp_path / "model.onnx"))
    child = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    leftover = [p for p in tmp_path.iterdir() if p.name.startswith(".model.onnx.")]
    live_elsewhere = tmp_path / f".other.png.abcdef-{os.getpid()}.ab12cd34.tmp"  # another machine's pid: kept
    live_elsewhere.write_bytes(b"partial")
    write_text(tmp_path / "first.txt", "x")  # the writer still runs: its temporary stays
    assert len(leftover) == 1 and leftover[0].exists()
    child.send_signal(signal.SIGKILL)
    child.wait()
    import utils.io.files
    utils.io.files._swept.clear()  # a new run of a script: sweeps the folder again
    write_text(tmp_path / "model.onnx", "done")
    assert not leftover[0].exists() and live_elsewhere.exists()
    assert (tmp_path / "model.onnx").read_text() == "done"
