"""Choose the best of several cross-validated configurations (crossval.py folders) and how to post-process it.

Each configuration and each pairwise ensemble of them is scored on the same out-of-fold cases (per-case foreground
Dice; volumes when the data came from volumes); the winner is tested against the runner-up (paired Wilcoxon test,
bootstrap 95 % interval of the difference); keep-largest is turned on only for the classes whose out-of-fold Dice
it raises. The result is choice.json and the predict.py command that applies all of it (its options are also in
choice.json as a list, "predict_arguments", which get_miou_prediction.py takes too).

Usage: python choose_config.py logs/unet_bn/base-cv logs/att_unet/base-cv logs/unet_bn/ctx-cv
"""
from __future__ import annotations

from pathlib import Path

from utils.cli import ArgumentParser, run_main
from utils.crossval.selection import choose, predict_arguments, predict_command
from utils.errors import UserError
from utils.evaluate.statistics import interval_text, number, spread_text
from utils.io.files import write_json
from utils.io.outputs import check_outputs


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="cross-validation folders (<log-dir>/<model>/<name>-cv)")
    parser.add_argument("--out", default="results/choice.json", help="where the choice is written")
    args = parser.parse_args(argv)
    folders = [Path(run) for run in args.runs]
    if len({folder.resolve() for folder in folders}) != len(folders):
        raise UserError("a cross-validation folder is named twice")
    out = Path(args.out)
    check_outputs([out], [folder / "crossval.json" for folder in folders])
    record = choose(folders)
    print(f"{record['cases']} out-of-fold cases ({record['case_unit']}s), mean per-case foreground Dice:")
    for row in record["ranking"]:
        print(f"  {spread_text(row)}  {row['candidate']}")
    print(f"best: {record['winner']}")
    if "winner_vs_runner_up" in record:
        test = record["winner_vs_runner_up"]
        ci = interval_text(test["ci95"], sign=True)
        print(f"  vs runner-up {record['runner_up']}: mean difference {test['mean_difference']:+.4f}, 95% CI {ci}, "
              f"Wilcoxon p = {number(test['p_value'])} ({test['cases']} paired cases)")
    for name, decision in record["keep_largest"].items():
        verdict = "on" if decision["keep_largest"] else "off"
        print(f"  keep-largest for {name}: {verdict} (Dice {number(decision['dice_without'])} -> "
              f"{number(decision['dice_with'])})")
    record["predict_arguments"] = predict_arguments(record)
    record["predict_command"] = predict_command(record)
    write_json(out, record)
    print(f"choice written to {out}\napply it with:\n  {record['predict_command']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
