"""miou.py's per-image CSV, plots and HTML report on hand-made predictions; palette label PNGs of the scripts."""
from __future__ import annotations

import csv
import functools
import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

import get_miou_prediction
import miou
import predict
from utils.cli import run_main
from utils.data.dataset import find_samples, read_split
from utils.data.folders import index_by_stem
from utils.evaluate import score_outputs
from utils.evaluate.report import write_html_report
from utils.evaluate.report_gallery import (
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    WRONG_CLASS,
    error_panel,
    shrink_map,
    thumbnail_size,
)
from utils.io.labels import label_to_array, palette, save_label_png
from utils.volumes.split_scores import score_pairs

# stem -> (label foreground box, prediction foreground box) as (top, left, height, width) in a 16x16 image.
CASES = {
    "p1_perfect": ((2, 2, 4, 4), (2, 2, 4, 4)),
    "p1_half #2": ((2, 2, 4, 4), (2, 2, 2, 4)),  # 8 of 16 px found: Dice 2*8/24, IoU 8/16
    "p2_missed": ((8, 8, 2, 4), None),
    "p2_empty": (None, None),
    "p2_false_alarm": (None, (0, 0, 2, 2)),
}
WORST_FIRST = ["p2_false_alarm", "p2_missed", "p1_half #2", "p1_perfect", "p2_empty"]


def box(spec: tuple[int, int, int, int] | None) -> np.ndarray:
    mask = np.zeros((16, 16), dtype=np.uint8)
    if spec:
        top, left, height, width = spec
        mask[top:top + height, left:left + width] = 1
    return mask


def write_scored(root: Path, ignored_row: bool = True) -> dict[str, Path]:
    """A 2-class dataset (root/data) whose predictions (root/pred) are written by hand as palette PNGs; every image's
    Dice is known. With `ignored_row`, p1_perfect's label has a row of 255 (left out of scores and pixel counts)."""
    data, pred = root / "data", root / "pred"
    for folder in ("Images", "Labels", "ImageSets/Segmentation"):
        (data / folder).mkdir(parents=True)
    for stem, (label_box, pred_box) in CASES.items():
        label = box(label_box)
        if stem == "p1_perfect" and ignored_row:
            label[15] = 255
        Image.fromarray((label % 255 * 150 + 40).astype(np.uint8)).save(data / "Images" / f"{stem}.png")
        Image.fromarray(label).save(data / "Labels" / f"{stem}.png")
        save_label_png(pred / f"{stem}.png", box(pred_box), 2)
    (data / "ImageSets/Segmentation/val.txt").write_text("".join(f"{s}\n" for s in CASES))
    (data / "classes.txt").write_text("background\nspot\n")
    return {"data": data, "pred": pred}


@pytest.fixture
def scored(tmp_path: Path) -> dict[str, Path]:
    """write_scored in the test's own folder."""
    return write_scored(tmp_path)


class Page(HTMLParser):
    """The parts of a report page the tests look at."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.sections: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.stems: list[str] = []
        self._in_caption_code = self._in_cell = False
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(values)
        elif tag == "a":
            self.links.append(values["href"])
        elif tag == "section":
            self.sections.append(values["id"])
        elif tag == "tr":
            self.rows.setdefault(self.sections[-1], []).append([])
        elif tag in ("td", "th"):
            self._in_cell = True
            self.rows[self.sections[-1]][-1].append("")
        elif tag == "code" and self.sections and self.sections[-1] == "gallery":
            self._in_caption_code = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False
        elif tag == "code":
            self._in_caption_code = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[self.sections[-1]][-1][-1] += data
        if self._in_caption_code:
            self.stems.append(data)


def test_miou_writes_per_image_csv_and_plots(scored: dict[str, Path], capsys) -> None:
    assert run_main(miou.main, ["--pred", str(scored["pred"]), "--data", str(scored["data"])]) == 0
    out = capsys.readouterr().out
    assert "blank where a class is in neither the label nor the prediction" in out
    for name in ("scores.png", "confusion.png"):
        with Image.open(scored["pred"] / name) as image:
            assert image.format == "PNG" and min(image.size) > 200
    with open(scored["pred"] / "per_image.csv", newline="", encoding="utf-8") as handle:
        rows = {row["stem"]: row for row in csv.DictReader(handle)}
    assert list(rows) == list(CASES)
    half = rows["p1_half #2"]
    assert (half["foreground_dice"], half["dice_spot"], half["iou_spot"]) == ("0.666667", "0.666667", "0.500000")
    assert (half["dice_background"], half["iou_background"]) == ("0.983607", "0.967742")  # 480/488, 240/248
    assert (half["label_pixels_spot"], half["pred_pixels_spot"], half["pred_pixels_background"]) == ("16", "8", "248")
    perfect = rows["p1_perfect"]
    assert (perfect["dice_spot"], perfect["label_pixels_background"], perfect["pred_pixels_background"]) == \
        ("1.000000", "224", "224")  # the 16 ignored pixels are not counted
    assert (rows["p2_missed"]["dice_spot"], rows["p2_missed"]["iou_spot"]) == ("0.000000", "0.000000")
    assert (rows["p2_false_alarm"]["dice_spot"], rows["p2_false_alarm"]["pred_pixels_spot"]) == ("0.000000", "4")
    empty = rows["p2_empty"]
    assert (empty["foreground_dice"], empty["dice_spot"], empty["iou_spot"], empty["dice_background"]) == \
        ("", "", "", "1.000000")


def test_report_is_offline_worst_first_with_groups(scored: dict[str, Path], capsys) -> None:
    assert run_main(miou.main, ["--pred", str(scored["pred"]), "--data", str(scored["data"]),
                                "--group", r"^(p\d)_", "--report"]) == 0
    assert "HTML report written to" in capsys.readouterr().out
    report = scored["pred"] / "report.html"
    text = report.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    page = Page(report)
    assert page.stems == WORST_FIRST
    assert page.sections == ["summary", "plots", "groups", "gallery"]
    for image in page.images:
        target = scored["pred"] / unquote(image["src"])
        assert not Path(image["src"]).is_absolute() and target.is_file(), image["src"]
    thumbnails = [image for image in page.images if image["src"].startswith("report_files/")]
    assert len(thumbnails) == 3 * len(CASES) and all(image["loading"] == "lazy" for image in thumbnails)
    assert {image["src"] for image in page.images} >= {"scores.png", "confusion.png"}
    assert page.rows["groups"] == [["group", "images", "Dice spot"], ["p2", "3", "0.0000"], ["p1", "2", "0.8571"]]
    summary = {row[0]: row[1:] for row in page.rows["summary"]}
    assert summary["spot"][:3] == ["54.55%", "60.00%", "70.59%"]  # IoU 24/44, PA 24/40, Dice 48/68
    with Image.open(scored["pred"] / "report_files" / "p1_half #2_pred.png") as panel:
        codes = np.asarray(panel)
    assert (codes == FALSE_NEGATIVE).sum() == 8 and (codes == 1).sum() == 8 and (codes == FALSE_POSITIVE).sum() == 0


def test_gallery_pages_link_to_each_other(scored: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    stale = scored["pred"] / "report_4.html"
    stale.write_text("from an earlier, longer split")
    monkeypatch.setattr(score_outputs, "write_html_report", functools.partial(write_html_report, page_size=2))
    assert run_main(miou.main, ["--pred", str(scored["pred"]), "--data", str(scored["data"]), "--report"]) == 0
    pages = [scored["pred"] / name for name in ("report.html", "report_2.html", "report_3.html")]
    assert sorted(scored["pred"].glob("report*.html")) == sorted(pages)  # the stale page is gone
    stems = []
    for path in pages:
        page = Page(path)
        stems += page.stems
        for link in page.links:
            assert (scored["pred"] / unquote(link)).is_file(), (path.name, link)
        assert {"report.html", "report_2.html", "report_3.html"} - {path.name} <= set(page.links)
        assert all((scored["pred"] / unquote(image["src"])).is_file() for image in page.images)
    assert stems == WORST_FIRST
    assert "summary" in Page(pages[0]).sections and "summary" not in Page(pages[1]).sections


def test_report_lists_volumes_when_scored_per_volume(scored: dict[str, Path]) -> None:
    assert run_main(miou.main, ["--pred", str(scored["pred"]), "--data", str(scored["data"])]) == 0
    scores = json.loads((scored["pred"] / "miou.json").read_text())
    scores["volumes"] = {
        "volumes_scored": 2, "empty_rules": {"both_empty": "left out"}, "incomplete_volumes": {"v3": 4},
        "per_volume": {"v1": {"spot": {"dice": 0.9, "iou": 0.8181, "hd95": 1.5, "assd": 0.25}},
                       "v2": {"spot": {"dice": 0.4, "iou": 0.25, "hd95": 12.0, "assd": 3.5}}},
        "summary": {"spot": {"dice": {"mean": 0.65, "median": 0.65}, "global_dice": 0.7,
                             "hd95": {"mean": 6.75}, "assd": {"mean": 1.875}}}}
    samples = find_samples(scored["data"], read_split(scored["data"], "val"))
    predictions = index_by_stem(scored["pred"])
    matrices = score_pairs([(predictions[s.stem], s.label_path) for s in samples], 2)[0]
    page = Page(write_html_report(scored["pred"], scores, samples, predictions, matrices, None))
    assert page.rows["volumes"][1:3] == [["v2", "spot", "0.4000", "0.2500", "12.00", "3.50"],
                                         ["v1", "spot", "0.9000", "0.8181", "1.50", "0.25"]]
    assert ["spot", "0.6500", "0.6500", "0.7000", "6.75", "1.88"] in page.rows["volumes"]


def test_a_plot_never_replaces_a_prediction(scored: dict[str, Path], capsys) -> None:
    for folder in ("Images", "Labels"):
        (scored["data"] / folder / "p2_empty.png").rename(scored["data"] / folder / "scores.png")
    (scored["pred"] / "p2_empty.png").rename(scored["pred"] / "scores.png")
    split = scored["data"] / "ImageSets/Segmentation/val.txt"
    split.write_text(split.read_text().replace("p2_empty", "scores"))
    before = (scored["pred"] / "scores.png").read_bytes()
    assert run_main(miou.main, ["--pred", str(scored["pred"]), "--data", str(scored["data"])]) == 2
    assert "--json" in capsys.readouterr().err and (scored["pred"] / "scores.png").read_bytes() == before
    assert run_main(miou.main, ["--pred", str(scored["pred"]), "--data", str(scored["data"]),
                                "--json", str(scored["pred"].parent / "elsewhere" / "miou.json")]) == 0
    assert (scored["pred"].parent / "elsewhere" / "scores.png").is_file()


def test_error_panel_codes() -> None:
    label = np.array([[0, 1, 2, 255], [1, 0, 2, 0]], dtype=np.uint8)
    pred = np.array([[0, 0, 1, 1], [1, 2, 2, 0]], dtype=np.uint8)
    assert error_panel(label, pred).tolist() == [[0, FALSE_NEGATIVE, WRONG_CLASS, 1], [1, FALSE_POSITIVE, 2, 0]]


def test_thumbnails_keep_thin_errors_and_fit_256() -> None:
    assert thumbnail_size(300, 600) == (256, 128) and thumbnail_size(40, 64) == (64, 40)
    codes = np.zeros((300, 600), dtype=np.uint8)
    codes[100:200, 100:300] = 1
    codes[:, 400] = FALSE_NEGATIVE  # one pixel wide: nearest-neighbour shrinking alone would drop it
    small = shrink_map(codes, (256, 128))
    assert small.shape == (128, 256)
    assert (small == FALSE_NEGATIVE).all(axis=0).any()
    assert (small == 1).sum() == pytest.approx(200 * 100 * (256 / 600) * (128 / 300), rel=0.1)


def test_save_label_png_keeps_class_ids_in_a_palette_image(tmp_path: Path) -> None:
    label = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    save_label_png(tmp_path / "l.png", label, 3)
    with Image.open(tmp_path / "l.png") as image:
        assert image.mode == "P"
        assert np.array_equal(label_to_array(image, tmp_path / "l.png"), label)
        colours = np.array(image.getpalette()[:768]).reshape(-1, 3)
    assert np.array_equal(colours[[0, 1, 2, 255]], palette(3)[[0, 1, 2, 255]])


def test_scripts_write_palette_label_pngs(shared_square_dataset: Path, trained_run: Path, tmp_path: Path) -> None:
    data, checkpoint = shared_square_dataset, str(trained_run / "best.pt")
    pred = tmp_path / "pred"
    assert run_main(get_miou_prediction.main, ["--checkpoint", checkpoint, "--data", str(data),
                                               "--out", str(pred), "--save-probabilities"]) == 0
    out = tmp_path / "predict"
    assert run_main(predict.main, [str(data / "Images" / "img_0.png"), "--checkpoint", checkpoint,
                                   "--out", str(out), "--save-probabilities"]) == 0
    for png, npz in ((pred / "img_6.png", pred / "img_6_probabilities.npz"),
                     (out / "img_0_label.png", out / "img_0_probabilities.npz")):
        with Image.open(png) as image:
            assert image.mode == "P" and image.getpalette()[3:6] == palette(2)[1].tolist()
            ids = np.asarray(image)
        assert np.array_equal(ids, np.load(npz)["probabilities"].astype(np.float32).argmax(axis=0))
    assert run_main(miou.main, ["--pred", str(pred), "--data", str(data)]) == 0
