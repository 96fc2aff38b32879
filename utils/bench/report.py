"""The Markdown report: hardware and peak lines, one table row per record, the probe's choices and peak shares."""
from __future__ import annotations

from typing import Any

from utils.bench.rates import baseline_name
from utils.bench.variants import CANDIDATE_PREFIX, EAGER
from utils.runtime.speed_probe import SpeedChoice


def lever_text(record: dict[str, Any]) -> str:
    """The variant with the levers it actually used (per phase where the phases differ)."""
    levers = record["levers"]
    if record["variant"] == EAGER.name:
        return EAGER.name
    if levers["runtime"] == "onnxruntime":
        return "onnxruntime: fp32" + ("" if "error" in record else f", {record['infer']['provider']}")

    def phase_text(phase: dict[str, bool]) -> list[str]:
        return [name for name, on in (("channels-last", phase["channels_last"]), ("bf16", phase["amp"])) if on]

    train, infer = phase_text(levers["train"]), phase_text(levers["infer"])
    used = ["+".join(train)] if train == infer else \
        [f"train {'+'.join(train) or 'fp32-nchw'} / infer {'+'.join(infer) or 'fp32-nchw'}"]
    fell_back = "error" not in record and not (record["train"]["compiled"] and record["infer"]["compiled"])
    used += [name for name, on in (("compile (failed, ran eager)" if fell_back else "compile", levers["compile"]),
                                   ("cudnn.benchmark", levers["cudnn_benchmark"]),
                                   ("fused Adam", levers["fused_adam"])) if on]
    return f"{record['variant']}: " + (", ".join(part for part in used if part) or "no levers")


def table_row(record: dict[str, Any]) -> str:
    """One Markdown table row."""
    head = [record["model"], lever_text(record), record["device"], str(record["size"]), str(record["batch"])]
    if "error" in record:
        error = " ".join(record["error"].split()).replace("|", "/")  # one line that cannot break the table
        return "| " + " | ".join(head + [f"failed: {error}"] + [""] * 6) + " |"
    train, infer = record["train"] or {}, record["infer"]
    speedup = record.get("speedup")

    def rate(stats: dict[str, Any]) -> str:
        return f"{stats['gflops']:.1f} ({100 * stats['peak_fraction']:.1f}% {stats['peak']})" if stats else "-"

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    cells = [f"{train['img_per_s']:.2f}" if train else "-", f"{infer['img_per_s']:.2f}", rate(train), rate(infer),
             f"{100 * train['data_wait_fraction']:.1f}" if train else "-", f"{record['memory']['peak_gib']:.2f}",
             f"{ratio(speedup['train'])} / {ratio(speedup['infer'])}" if speedup else "-"]
    return "| " + " | ".join(head + cells) + " |"


def hardware_line(env: dict[str, Any]) -> str:
    """Device, CPU, cores/threads and versions in one line."""
    cores = f"{env['physical_cores']} cores, " if env["physical_cores"] else ""
    cpu = f"{env['cpu']}, {cores}{env['logical_cpus']} logical CPUs usable, {env['threads']} torch threads"
    device = f"{env['gpu']} (CUDA {env['cuda']}, cuDNN {env['cudnn']}); host {cpu}" if "gpu" in env else cpu
    return f"**Hardware:** {device}; torch {env['torch']}, Python {env['python']}"


def peak_line(env: dict[str, Any]) -> str:
    """The measured matmul peaks."""
    peaks = "; ".join(f"{p['dtype']} {p['gflops']:.1f} GFLOP/s ({p['n']}x{p['n']}, {p['repeats']} repeats)"
                      for p in env["peaks"].values())
    note = " (cuDNN fp32 convolutions may use TF32, so fp32 % can pass 100)" if env.get("cudnn_allow_tf32") else ""
    return f"**Matmul peak** (fastest of 5 chunks, before and after the models): {peaks}{note}"


def probe_text(data: dict[str, Any]) -> tuple[str, str]:
    """The probe's choice and its candidates' step times (ms), from a SpeedChoice's JSON."""
    choice = SpeedChoice(**data)
    chosen = choice.name
    steps = ", ".join(f"{name} {1000 * s:.0f}" if s is not None else f"{name} failed"
                      for name, s in choice.seconds.items()) or "-"
    return chosen, f"{steps} ({choice.source})"


def choice_lines(records: list[dict[str, Any]]) -> list[str]:
    """Per model and phase: the probe's choice and its timings, and the default row's img/s against the best
    candidate row's in this harness. Inference defaults are fp32 (scores must not depend on the machine), so they
    are held against the fp32 candidates only."""
    ok = [r for r in records if "error" not in r]
    rows = []
    for record in (r for r in ok if r["variant"] == "default" and r.get("probe")):
        for phase in ("train", "infer"):
            chosen, steps = probe_text(record["probe"][phase])
            rivals = [r for r in ok if r["model"] == record["model"] and r["variant"].startswith(CANDIDATE_PREFIX)
                      and (phase == "train" or not r["levers"]["infer"]["amp"])]
            best = max(rivals, key=lambda r: r[phase]["img_per_s"], default=None)
            mine = record[phase]["img_per_s"]
            versus = ("- | -" if best is None else
                      f"{best['variant'].removeprefix(CANDIDATE_PREFIX)} {best[phase]['img_per_s']:.3g} | "
                      f"{mine / best[phase]['img_per_s']:.2f}")
            rows.append(f"| {record['model']} | {phase} | {chosen} | {steps} | {mine:.3g} | {versus} |")
    if not rows:
        return []
    return ["", "**Default against the best candidate** (the speed probe's choice and its own step times; then "
            "img/s of the default row and of the fastest candidate row in this harness):", "",
            "| model | phase | default | probe: ms per step | default img/s | best candidate img/s | default / best |",
            "|" + "---|" * 7, *rows]


def share_lines(records: list[dict[str, Any]]) -> list[str]:
    """Per model (the peers included), each variant's share of the matmul peak, train / infer: efficiency
    comparable across models of different FLOP counts."""
    ok = [r for r in records if "error" not in r and r["train"] is not None]
    names = list(dict.fromkeys(r["variant"] for r in ok))
    if not ok:
        return []
    rows = []
    for model in dict.fromkeys(r["model"] for r in ok):
        cells = {r["variant"]: f"{100 * r['train']['peak_fraction']:.0f} / {100 * r['infer']['peak_fraction']:.0f}"
                 for r in ok if r["model"] == model}
        rows.append(f"| {model} | " + " | ".join(cells.get(name, "-") for name in names) + " |")
    return ["", "**Share of the matmul peak** (% of the compute dtype's peak, train / infer; peers, where "
            "measured, in the same run and harness):", "",
            "| model | " + " | ".join(name.removeprefix(CANDIDATE_PREFIX) for name in names) + " |",
            "|" + "---|" * (1 + len(names)), *rows]


def markdown(env: dict[str, Any], settings: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The report: hardware and peak lines, then one table row per record."""
    memory = ("CUDA max_memory_allocated" if "gpu" in env
              else "process peak RSS, Python and torch included (their share: memory.baseline_rss_gib in the JSON)")
    lines = ["# Benchmark", "", hardware_line(env), "", peak_line(env), "",
             f"img/s from the median of {settings['steps']} timed steps, after {settings['warmup']} warm-up steps; "
             f"training is fed by an "
             f"in-process DataLoader over in-memory uint8 samples; % of the matmul peak of the compute dtype; "
             f"peak memory is the {memory}; speed-up is img/s over the {baseline_name(records)} row of the same model "
             f"(train / infer); onnxruntime rows run "
             f"the model exported to ONNX (fp32), inference only.", "",
             "| model | variant | device | size | batch | train img/s | infer img/s | train GFLOP/s (% of peak) "
             "| infer GFLOP/s (% of peak) | data wait % | peak memory (GiB) | speed-up |",
             "|" + "---|" * 12]
    return "\n".join(lines + [table_row(r) for r in records] + choice_lines(records) + share_lines(records)) + "\n"
