"""Score files named after their JSON report, per-case uncertainty in the CSV and report, and the library scoring
(score_predictions, write_score_outputs) writing what miou.py writes."""
from __future__ import annotations

import csv
import functools
import json
from pathlib import Path
from urllib.parse import unquote

import pytest

import miou
from tests.test_report import CASES, Page, box, write_scored
from utils.cli import run_main
from utils.data.dataset import find_samples, read_split
from utils.data.folders import index_by_stem
from utils.evaluate import score_outputs
from utils.evaluate.report import write_html_report
from utils.evaluate.score_files import output_prefix, score_path
from utils.evaluate.score_outputs import planned_outputs, write_score_outputs
from utils.io.labels import save_label_png
from utils.volumes.split_scores import score_predictions, with_source

PLAIN = ("scores.png", "confusion.png", "per_image.csv", "report.html", "report_files")
UNCERTAINTY = {"p1_perfect": 0.05, "p1_half #2": 0.9, "p2_missed": 0.4, "p2_false_alarm": 0.7}  # p2_empty: blank


@pytest.fixture
def scored(tmp_path: Path) -> dict[str, Path]:
    """The 2-class data set of test_report.py with its hand-made predictions, without the ignored row."""
    return write_scored(tmp_path, ignored_row=False)


def links_resolve(folder: Path, page: Path) -> None:
    """Every link and image of a report page names a file beside it."""
    parsed = Page(page)
    for target in [*parsed.links, *(image["src"] for image in parsed.images)]:
        assert (folder / unquote(target)).exists(), (page.name, target)


def test_names_follow_the_json_stem() -> None:
    assert output_prefix(Path("out/miou.json")) == "" and output_prefix(Path("out/val.json")) == "val_"
    assert score_path(Path("out/val.json"), "scores.png") == Path("out/val_scores.png")
    assert score_path(Path("out/miou.json"), "per_image.csv") == Path("out/per_image.csv")


def test_two_scorings_into_one_folder_keep_their_own_files(scored: dict[str, Path]) -> None:
    other = scored["pred"].parent / "other"
    other.mkdir()
    for path in scored["pred"].glob("*.png"):
        (other / path.name).write_bytes(path.read_bytes())
    save_label_png(other / "p2_missed.png", box((8, 8, 2, 4)), 2)  # the other model finds the missed spot
    out = scored["pred"].parent / "out"
    for pred, name in ((scored["pred"], "val"), (other, "other"), (scored["pred"], "miou")):
        assert run_main(miou.main, ["--pred", str(pred), "--data", str(scored["data"]), "--report",
                                    "--json", str(out / f"{name}.json")]) == 0
    for prefix in ("val_", "other_", ""):
        assert all((out / f"{prefix}{name}").exists() for name in PLAIN), prefix
        links_resolve(out, out / f"{prefix}report.html")
    rows = {}
    for prefix in ("val_", "other_"):
        with open(out / f"{prefix}per_image.csv", newline="", encoding="utf-8") as handle:
            rows[prefix] = {row["stem"]: row["dice_spot"] for row in csv.DictReader(handle)}
    assert (rows["val_"]["p2_missed"], rows["other_"]["p2_missed"]) == ("0.000000", "1.000000")
    assert json.loads((out / "val.json").read_text())["pred"] == str(scored["pred"])
    assert json.loads((out / "other.json").read_text())["pred"] == str(other)
    assert Page(out / "val_report.html").images[0]["src"] == "val_scores.png"
    assert sorted(p.name for p in out.glob("*.html")) == ["other_report.html", "report.html", "val_report.html"]


def test_uncertainty_column_and_most_uncertain_pages(scored: dict[str, Path]) -> None:
    lines = ["stem,uncertainty,mean_entropy,mean_disagreement"]
    lines += [f"{stem},{value},{value / 2},"  for stem, value in UNCERTAINTY.items()] + ["p2_empty,,0.1,"]
    (scored["pred"] / "uncertainty.csv").write_text("\n".join(lines) + "\n")
    assert run_main(miou.main, ["--pred", str(scored["pred"]), "--data", str(scored["data"]), "--report"]) == 0
    with open(scored["pred"] / "per_image.csv", newline="", encoding="utf-8") as handle:
        rows = {row["stem"]: row["uncertainty"] for row in csv.DictReader(handle)}
    assert rows == {"p1_perfect": "0.050000", "p1_half #2": "0.900000", "p2_missed": "0.400000",
                    "p2_empty": "", "p2_false_alarm": "0.700000"}
    uncertain = Page(scored["pred"] / "report_uncertain.html")
    assert uncertain.stems == ["p1_half #2", "p2_false_alarm", "p2_missed", "p1_perfect", "p2_empty"]
    assert "summary" not in uncertain.sections and "report.html" in uncertain.links
    first = Page(scored["pred"] / "report.html")
    assert first.stems[0] == "p2_false_alarm" and "report_uncertain.html" in first.links  # still worst Dice first
    text = (scored["pred"] / "report_uncertain.html").read_text(encoding="utf-8")
    assert "uncertainty 0.9<" in text and "uncertainty n/a<" in text
    links_resolve(scored["pred"], scored["pred"] / "report_uncertain.html")
    (scored["pred"] / "uncertainty.csv").unlink()
    assert run_main(miou.main, ["--pred", str(scored["pred"]), "--data", str(scored["data"]), "--report"]) == 0
    assert not (scored["pred"] / "report_uncertain.html").exists()  # an orphan of the earlier report
    with open(scored["pred"] / "per_image.csv", newline="", encoding="utf-8") as handle:
        assert "uncertainty" not in next(csv.reader(handle))


@pytest.mark.parametrize("content, message", [
    ("stem,score\na,1\n", "has no 'stem' and 'uncertainty' columns"),
    ("stem,uncertainty\np1_perfect,high\n", "line 2: uncertainty 'high' of 'p1_perfect' is not a finite number"),
    ("stem,uncertainty\np1_perfect,0.1\np1_perfect,0.2\n", "line 3: stem 'p1_perfect' is listed twice"),
])
def test_a_bad_uncertainty_file_is_one_line(scored: dict[str, Path], capsys, content: str, message: str) -> None:
    (scored["pred"] / "uncertainty.csv").write_text(content)
    assert run_main(miou.main, ["--pred", str(scored["pred"]), "--data", str(scored["data"])]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (scored["pred"] / "miou.json").exists()


def test_library_scoring_writes_what_miou_writes(scored: dict[str, Path]) -> None:
    assert run_main(miou.main, ["--pred", str(scored["pred"]), "--data", str(scored["data"]), "--report",
                                "--json", str(scored["pred"].parent / "script" / "miou.json")]) == 0
    samples = find_samples(scored["data"], read_split(scored["data"], "val"))
    predictions = index_by_stem(scored["pred"])
    scores, matrices = score_predictions(samples, predictions, 2, ["background", "spot"])
    assert [m.sum() for m in matrices] == [256] * len(CASES)
    assert matrices[1].tolist() == [[240, 0], [8, 8]]  # p1_half #2: 8 of its 16 spot pixels found
    scores = with_source(scores, split="val", data=str(scored["data"]), pred=str(scored["pred"]))
    report = scored["pred"].parent / "library" / "miou.json"
    planned = planned_outputs(report, [s.stem for s in samples], scored["pred"], 2, html=True)
    write_score_outputs(report, scores, samples, predictions, matrices, html=True)
    assert all(path.exists() for path in planned)
    for name in ("miou.json", "per_image.csv", "report.html", "scores.png", "confusion.png"):
        assert (report.parent / name).read_bytes() == (report.parent.parent / "script" / name).read_bytes(), name


def test_extra_html_follows_the_summary(scored: dict[str, Path]) -> None:
    assert run_main(miou.main, ["--pred", str(scored["pred"]), "--data", str(scored["data"])]) == 0
    scores = json.loads((scored["pred"] / "miou.json").read_text())
    samples = find_samples(scored["data"], read_split(scored["data"], "val"))
    predictions = index_by_stem(scored["pred"])
    matrices = score_predictions(samples, predictions, 2)[1]
    extra = '<section id="folds"><h2>Folds</h2><table><tr><td>fold 1</td><td>0.5</td></tr></table></section>'
    page = Page(write_html_report(scored["pred"], scores, samples, predictions, matrices, None, extra_html=extra))
    assert page.sections == ["summary", "folds", "plots", "gallery"]
    assert page.rows["folds"] == [["fold 1", "0.5"]]


def test_paged_orders_link_within_their_prefix(scored: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    (scored["pred"] / "uncertainty.csv").write_text(
        "stem,uncertainty\n" + "".join(f"{stem},{value}\n" for stem, value in UNCERTAINTY.items()))
    monkeypatch.setattr(score_outputs, "write_html_report", functools.partial(write_html_report, page_size=2))
    out = scored["pred"].parent / "out"
    assert run_main(miou.main, ["--pred", str(scored["pred"]), "--data", str(scored["data"]), "--report",
                                "--json", str(out / "val.json")]) == 0
    pages = {order: [out / f"val_{base}{suffix}.html" for suffix in ("", "_2", "_3")]
             for order, base in (("dice", "report"), ("uncertainty", "report_uncertain"))}
    assert sorted(out.glob("*.html")) == sorted(pages["dice"] + pages["uncertainty"])
    stems = []
    for path in pages["uncertainty"]:
        links_resolve(out, path)
        stems += Page(path).stems
    assert stems == ["p1_half #2", "p2_false_alarm", "p2_missed", "p1_perfect", "p2_empty"]
    assert all("val_report_uncertain_2.html" in Page(path).links for path in pages["uncertainty"][::2])
    for path in pages["dice"]:
        links_resolve(out, path)
