"""A whole run (generate, import, split, train, predict, score, predict files) changes no byte of any input."""
from __future__ import annotations

from pathlib import Path

import get_miou_prediction
import import_dataset
import miou
import png2txt
import predict
from tests.conftest import tiny_train_args
from tests.test_output_paths import digests
from utils.cli import run_main
from utils.synthetic.__main__ import main as synthetic_main
from utils.train.loop import train


def test_no_input_file_changes_across_a_full_run(tmp_path: Path) -> None:
    raw, data, logs = tmp_path / "raw", tmp_path / "data", tmp_path / "logs"
    assert run_main(synthetic_main, ["--out", str(raw), "--count", "12", "--size", "32"]) == 0
    raw_files = digests(raw)
    assert run_main(import_dataset.main, ["pairs", str(raw / "Images"), str(raw / "Labels"), "--out", str(data),
                                          "--threshold", "0", "--classes", "background,liver"]) == 0
    assert run_main(png2txt.main, ["--data", str(data), "--val-ratio", "0.25"]) == 0
    data_files = digests(data)
    assert train("unet_bn", tiny_train_args(data, logs, "--in-channels", "1")) == 0
    run = logs / "unet_bn" / "r"
    checkpoint = digests(run)["best.pt"]
    pred = tmp_path / "pred"
    assert run_main(get_miou_prediction.main, ["--checkpoint", str(run / "best.pt"), "--data", str(data),
                                               "--out", str(pred)]) == 0
    assert run_main(miou.main, ["--pred", str(pred), "--data", str(data), "--report"]) == 0
    images = sorted((data / "Images").iterdir())[:2]
    assert run_main(predict.main, ["--checkpoint", str(run / "best.pt"), *map(str, images),
                                   "--out", str(tmp_path / "predicted")]) == 0
    assert digests(raw) == raw_files
    assert digests(data) == data_files
    assert digests(run)["best.pt"] == checkpoint
    assert (pred / "miou.json").is_file() and (pred / "report.html").is_file()
