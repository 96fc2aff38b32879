"""benchmark.py: a tiny run writes a JSON and Markdown report whose derived numbers follow from the raw ones."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

import benchmark
from utils.bench import measure, rates
from utils.bench.report import choice_lines
from utils.bench.variants import Config, Variant
from utils.cli import run_main

CANDIDATES = ["fp32-nchw", "fp32-channels-last", "bf16-nchw", "bf16-channels-last"]
TINY = ["--input-size", "32", "--batch-size", "1", "--steps", "1", "--warmup", "1", "--models", "unet_bn",
        "--no-compile", "--peak-seconds", "0.2"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """One tiny run of the default and candidate variants (each in a spawned process): JSON and Markdown."""
    out = tmp_path_factory.mktemp("bench")
    assert benchmark.main([*TINY, "--variants", "default,candidates", "--device", "cpu", "--out", str(out)]) == 0
    return json.loads((out / "benchmark.json").read_text()), (out / "benchmark.md").read_text()


def test_records_are_positive(report: tuple[dict, str]) -> None:
    data, _ = report
    assert [r["variant"] for r in data["records"]] == ["default"] + [f"candidate {name}" for name in CANDIDATES]
    default, probe = data["records"][0]["levers"], data["records"][0]["probe"]  # the speed probe's choices
    assert default["train"] == {"channels_last": probe["train"]["channels_last"],
                                "amp": probe["train"]["precision"] != "fp32"}
    assert default["infer"] == {"channels_last": probe["infer"]["channels_last"], "amp": False}
    assert len(probe["train"]["seconds"]) == 4 and len(probe["infer"]["seconds"]) == 2
    assert all("probe" not in record for record in data["records"][1:])
    for record, name in zip(data["records"][1:], CANDIDATES):
        precision, _, layout = name.partition("-")
        expected = {"channels_last": layout == "channels-last", "amp": precision == "bf16"}
        assert record["levers"]["train"] == record["levers"]["infer"] == expected and record["levers"]["fused_adam"]
    for record in data["records"]:
        assert "error" not in record
        for phase in ("train", "infer"):
            assert record[phase]["img_per_s"] > 0 and record[phase]["gflops"] > 0
            assert record[phase]["flops_per_image"] > 0 and record[phase]["peak_fraction"] > 0
        assert 0 <= record["train"]["data_wait_fraction"] < 1
        assert record["memory"]["peak_gib"] > 0
    assert data["environment"]["peaks"]["fp32"]["gflops"] > 0


def test_gflops_and_peak_fraction_follow_from_stored_fields(report: tuple[dict, str]) -> None:
    data, _ = report
    peaks = data["environment"]["peaks"]
    for record in data["records"]:
        for phase in ("train", "infer"):
            stats = record[phase]
            steps = sorted(stats["step_seconds"])
            assert len(steps) == data["settings"]["steps"]
            assert stats["median_step_seconds"] == pytest.approx(statistics.median(steps))
            assert stats["img_per_s"] == pytest.approx(record["batch"] / stats["median_step_seconds"])
            assert stats["gflops"] == pytest.approx(stats["flops_per_image"] * stats["img_per_s"] / 1e9)
            assert stats["peak_fraction"] == pytest.approx(stats["gflops"] / peaks[stats["peak"]]["gflops"])
    peak = peaks["fp32"]
    assert peak["gflops"] == pytest.approx(2 * peak["n"] ** 3 * peak["repeats"] / peak["seconds"] / 1e9)
    for record in data["records"]:
        for phase in ("train", "infer"):
            expected = "bf16" if record["levers"][phase]["amp"] and "bf16" in peaks else "fp32"
            assert record[phase]["peak"] == expected


def test_markdown_has_header_and_one_row_per_record(report: tuple[dict, str]) -> None:
    data, text = report
    assert "**Hardware:**" in text and data["environment"]["torch"] in text and "**Matmul peak** (fastest of 5 chunks" in text
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    for column in ("train img/s", "infer img/s", "train GFLOP/s (% of peak)", "data wait %", "peak memory (GiB)"):
        assert column in header
    rows = [line for line in text.splitlines() if line.startswith("| unet_bn |") and "| cpu |" in line]
    assert len(rows) == len(data["records"]) == 5
    assert all(row.count("|") == header.count("|") for row in rows)
    default = data["records"][0]
    infer = default["probe"]["infer"]
    chosen = f"{infer['precision']}-{'channels-last' if infer['channels_last'] else 'nchw'}"
    row = next(line for line in text.splitlines() if line.startswith(f"| unet_bn | infer | {chosen} | fp32-nchw "))
    fp32 = [r for r in data["records"][1:] if not r["levers"]["infer"]["amp"]]
    best = max(fp32, key=lambda r: r["infer"]["img_per_s"])
    assert row.endswith(f"| {default['infer']['img_per_s'] / best['infer']['img_per_s']:.2f} |")
    assert "| model | default | fp32-nchw | fp32-channels-last | bf16-nchw | bf16-channels-last |" in text


@pytest.mark.parametrize("arguments, message", [
    (["--models", "unet,nope"], "unknown model"),
    (["--device", "cuda:99"], "device"),
    (["--device", "tpu"], "device"),
    (["--device", "mps"], "not supported"),
    (["--warmup", "0"], "--warmup must be at least 1"),
    (["--variants", "eager,fast"], "unknown variant(s) fast"),
])
def test_bad_options_are_user_errors(arguments: list[str], message: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(benchmark.main, [*TINY, *arguments, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "benchmark.json").exists()


def test_the_old_size_spelling_is_refused_naming_input_size(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        benchmark.main(["--size", "64", "--out", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--input-size" in err
    assert "--size" not in benchmark.build_parser().format_help().replace("--input-size", "")


def test_the_default_is_held_against_the_fastest_candidate_and_fp32_ones_for_inference() -> None:
    def record(variant: str, train: float, infer: float, amp: bool = False) -> dict:
        return {"model": "unet", "variant": variant, "train": {"img_per_s": train}, "infer": {"img_per_s": infer},
                "levers": {"infer": {"amp": amp}}}

    choice = {"precision": "bf16", "channels_last": True, "source": "cache", "seconds": {"bf16-nchw": 0.5}}
    default = {**record("default", 1.0, 2.0), "probe": {"train": choice, "infer": {**choice, "precision": "fp32"}}}
    records = [default, record("candidate fp32-nchw", 0.5, 1.6), record("candidate fp32-channels-last", 1.25, 2.5),
               record("candidate bf16-channels-last", 0.9, 4.0, amp=True)]
    lines = choice_lines(records)
    assert lines[-2] == "| unet | train | bf16-channels-last | bf16-nchw 500 (cache) | 1 | fp32-channels-last 1.25 | 0.80 |"
    assert lines[-1] == "| unet | infer | fp32-channels-last | bf16-nchw 500 (cache) | 2 | fp32-channels-last 2.5 | 0.80 |"


def test_speedup_is_over_eager_else_over_the_fp32_nchw_candidate() -> None:
    def record(variant: str, train: float, infer: float) -> dict:
        return {"model": "unet", "variant": variant, "train": {"img_per_s": train}, "infer": {"img_per_s": infer}}

    records = [record("eager-fp32-nchw", 2.0, 8.0), record("tuned", 3.0, 4.0)]
    rates.add_speedups(records)
    assert "speedup" not in records[0]
    assert records[1]["speedup"] == {"train": 1.5, "infer": 0.5}
    records = [record("candidate fp32-nchw", 1.0, 4.0), record("default", 3.0, 4.0)]
    rates.add_speedups(records)
    assert "speedup" not in records[0] and records[1]["speedup"] == {"train": 3.0, "infer": 1.0}


def test_compile_failure_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def broken_compile(model: object) -> object:
        def fail(*_args: object) -> None:
            raise RuntimeError("no C++ compiler here")
        return fail

    monkeypatch.setattr(measure.torch, "compile", broken_compile)
    config = Config("unet_bn", Variant("tuned", compile=True), "cpu", size=32, batch=1, steps=1, warmup=1, threads=2,
                    in_channels=3, num_classes=2)
    result = measure.Measurement(config).inference()  # training takes the same _first_call path
    assert not result["compiled"] and result["img_per_s"] > 0
    assert "torch.compile failed for unet_bn (RuntimeError: no C++ compiler here)" in capsys.readouterr().err


def test_the_higher_peak_of_two_measurements_is_kept() -> None:
    before = {"fp32": {"gflops": 150.0, "n": 2048}, "bf16": {"gflops": 300.0, "n": 2048}}
    after = {"fp32": {"gflops": 110.0, "n": 2048}, "bf16": {"gflops": 360.0, "n": 2048}}
    assert rates.best_peaks(before, after) == {"fp32": before["fp32"], "bf16": after["bf16"]}
