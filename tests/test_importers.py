"""Dataset importers: small made-up sources, plus the real subsets in ../shared/datasets where present."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import import_dataset
from tests.conftest import ROOT, shared_dataset
from utils.data.folders import images_dir, labels_dir, read_class_names
from utils.errors import UserError
from utils.importers import import_flood, import_isbi2012, import_lgg, import_liver, import_msrc, import_pairs
from utils.importers.msrc import CLASS_COLOURS
from utils.io.labels import IGNORE_INDEX

RNG = np.random.default_rng(0)


def save(path: Path, image: np.ndarray | Image.Image, format: str | None = None) -> None:
    """Write a test file, making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(image) if isinstance(image, np.ndarray) else image).save(path, format=format)


def grey(h: int = 6, w: int = 8) -> np.ndarray:
    """A random 8-bit grey picture."""
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def binary(h: int = 6, w: int = 8) -> np.ndarray:
    """A random 0/255 mask."""
    return (RNG.integers(0, 2, (h, w)) * 255).astype(np.uint8)


def label(out: Path, stem: str) -> np.ndarray:
    """The label map written for `stem`."""
    with Image.open(labels_dir(out) / f"{stem}.png") as image:
        assert image.mode == "L"
        return np.array(image)


def picture(out: Path, stem: str) -> Image.Image:
    """The input image written for `stem`."""
    with Image.open(images_dir(out) / f"{stem}.png") as image:
        image.load()
        return image


def report(out: Path) -> dict:
    """The import report."""
    return json.loads((out / "import_report.json").read_text())


def stems(folder: Path) -> list[str]:
    """Sorted PNG stems in a folder."""
    return sorted(path.stem for path in folder.glob("*.png"))


def test_liver_made_up_pair_with_orphans(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    ct, mask = grey(), binary()
    save(src / "000.png", np.stack([ct] * 3, axis=-1))  # stored RGB with R=G=B, as the real slices are
    save(src / "000_mask.png", mask)
    save(src / "001.png", grey())
    save(src / "002_mask.png", binary())
    assert import_dataset.main(["liver", str(src), "--out", str(out)]) == 0
    image = picture(out, "000")
    assert image.mode == "L" and np.array_equal(np.array(image), ct)
    assert np.array_equal(label(out, "000"), (mask == 255).astype(np.uint8))
    assert read_class_names(out) == ["background", "liver"]
    reasons = {item["stem"]: item["reason"] for item in report(out)["left_out"]}
    assert reasons == {"001": "image without a mask", "002": "mask without an image"}
    captured = capsys.readouterr()
    assert "1 pairs imported, 2 left out" in captured.out
    assert "warning: left out" in captured.err and "001.png" in captured.err and "002_mask.png" in captured.err


def test_liver_colour_image_stays_rgb(tmp_path: Path) -> None:
    save(tmp_path / "src" / "000.png", RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    save(tmp_path / "src" / "000_mask.png", binary())
    import_liver(tmp_path / "src", tmp_path / "out")
    assert picture(tmp_path / "out", "000").mode == "RGB"


def test_liver_real_slice(tmp_path: Path) -> None:
    src = shared_dataset("liver_ct") / "data" / "train"
    summary = import_liver(src, tmp_path)
    assert summary.imported == ["000"] and not summary.left_out
    image = picture(tmp_path, "000")
    assert image.mode == "L" and image.size == (512, 512)
    with Image.open(src / "000.png") as original:
        assert np.array_equal(np.array(image), np.array(original)[..., 0])
    values = np.unique(label(tmp_path, "000"))
    assert values.tolist() == [0, 1]


def test_value_map_on_0_255_mask_and_unmapped_value(tmp_path: Path) -> None:
    mask, image = binary(), grey()
    save(tmp_path / "img" / "a.gif", image)
    save(tmp_path / "msk" / "a_manual1.png", mask)
    import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "out", mask_suffix="_manual1",
                 value_map="0:0,255:1", classes=["background", "vessel"])
    assert np.array_equal(label(tmp_path / "out", "a"), mask // 255)
    assert picture(tmp_path / "out", "a").mode == "L"  # a grey GIF is a palette image of greys
    mask[0, 0] = 128
    save(tmp_path / "msk" / "a_manual1.png", mask)
    with pytest.raises(UserError, match=r"a_manual1\.png.*unmapped mask value\(s\) 128"):
        import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "out2", mask_suffix="_manual1",
                     value_map="0:0,255:1", classes=["background", "vessel"])
    assert not (tmp_path / "out2").exists()


def palette_mask(indices: np.ndarray) -> Image.Image:
    """A palette PNG mask: index 0 black, 1 red, 2 green."""
    mask = Image.fromarray(indices).convert("P")
    mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (253 * 3))
    return mask


def test_palette_mask_by_index_and_by_colour(tmp_path: Path) -> None:
    indices = RNG.integers(0, 3, (6, 8), dtype=np.uint8)
    save(tmp_path / "img" / "a.png", RNG.integers(0, 256, (6, 8, 4), dtype=np.uint8))  # RGBA -> RGB
    save(tmp_path / "msk" / "a.png", palette_mask(indices))
    import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "by_index", value_map="0:0,1:1,2:ignore",
                 classes=["background", "lesion"])
    assert np.array_equal(label(tmp_path / "by_index", "a"), np.array([0, 1, 255], np.uint8)[indices])
    assert picture(tmp_path / "by_index", "a").mode == "RGB"
    colours = tmp_path / "colours.json"
    colours.write_text(json.dumps({"0,0,0": "background", "255,0,0": "lesion", "0,255,0": "ignore"}))
    summary = import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "by_colour", colour_map=colours)
    assert summary.class_names == ["background", "lesion"]
    assert np.array_equal(label(tmp_path / "by_colour", "a"), np.array([0, 1, 255], np.uint8)[indices])


def test_one_bit_mask(tmp_path: Path) -> None:
    bits = RNG.integers(0, 2, (6, 8)).astype(bool)
    save(tmp_path / "img" / "a.bmp", grey())
    save(tmp_path / "msk" / "a.png", Image.fromarray(bits).convert("1"))
    import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "t", level=127)
    assert np.array_equal(label(tmp_path / "t", "a"), bits.astype(np.uint8))
    assert read_class_names(tmp_path / "t") == ["background", "foreground"]
    # 1-bit pixels read as 0/255, as every viewer shows them.
    import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "v", value_map="0:0,255:1", classes=["a", "b"])
    assert np.array_equal(label(tmp_path / "v", "a"), bits.astype(np.uint8))


def make_msrc(root: Path, gts: dict[str, np.ndarray]) -> None:
    """An MSRC-style source: images/<stem>.bmp + targets/<stem>_GT.bmp (colour arrays)."""
    for stem, gt in gts.items():
        save(root / "images" / f"{stem}.bmp", RNG.integers(0, 256, gt.shape, dtype=np.uint8))
        save(root / "targets" / f"{stem}_GT.bmp", gt)


def test_msrc_colour_gt_groups_and_unknown_colour(tmp_path: Path) -> None:
    horse, mountain, void = (128, 0, 128), (64, 0, 0), (0, 0, 0)
    row = [CLASS_COLOURS[0], horse, mountain, void, CLASS_COLOURS[20], CLASS_COLOURS[1]]
    gt = np.array([row, row[::-1]], dtype=np.uint8)
    make_msrc(tmp_path / "src", {"1_25_s": gt, "12_3_s": gt[::-1]})
    (tmp_path / "src" / "train.txt").write_text("1_25_s.bmp\n99_1_s.bmp\n")
    out = tmp_path / "out"
    import_msrc(tmp_path / "src", out)
    assert label(out, "1_25_s").tolist() == [[0, 255, 255, 255, 20, 1], [1, 20, 255, 255, 255, 0]]
    assert len(read_class_names(out)) == 21
    assert json.loads((out / "groups.json").read_text()) == {"12_3_s": "12", "1_25_s": "1"}
    assert report(out)["source_splits"]["train"] == {"imported": ["1_25_s"], "not_imported": ["99_1_s"]}

    gt[1, 2] = (1, 2, 3)
    make_msrc(tmp_path / "bad", {"3_1_s": gt})
    with pytest.raises(UserError, match=r"3_1_s_GT\.bmp.*\(1,2,3\)"):
        import_msrc(tmp_path / "bad", tmp_path / "out_bad")


def test_missing_image_and_size_mismatch_are_left_out(tmp_path: Path) -> None:
    save(tmp_path / "img" / "ok.png", grey())
    save(tmp_path / "msk" / "ok.png", binary())
    save(tmp_path / "img" / "big.png", grey(8, 10))
    save(tmp_path / "msk" / "big.png", binary(6, 8))
    save(tmp_path / "msk" / "lonely.png", binary())
    summary = import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "out", value_map="0:0,255:1",
                           classes=["bg", "fg"])
    assert summary.imported == ["ok"]
    reasons = {item.stem: item.reason for item in summary.left_out}
    assert reasons["lonely"] == "mask without an image"
    assert reasons["big"].startswith("size mismatch: image 10x8, mask 8x6")
    assert stems(labels_dir(tmp_path / "out")) == ["ok"]


def make_isbi(root: Path, pages: int = 12) -> None:
    """Both forms of one made-up ISBI set: stack/*.tif and membrane/train/{image,label}/N.png."""
    images = [Image.fromarray(grey(8, 8)) for _ in range(pages)]
    labels = [Image.fromarray(binary(8, 8)) for _ in range(pages)]
    # Stacks first: saving a PNG leaves PNG encoder settings on the image that break Pillow's raw TIFF writer.
    (root / "stack").mkdir(parents=True)
    images[0].save(root / "stack" / "train-volume.tif", save_all=True, append_images=images[1:])
    labels[0].save(root / "stack" / "train-labels.tif", save_all=True, append_images=labels[1:],
                   compression="tiff_deflate")
    for i, (image, mask) in enumerate(zip(images, labels)):
        save(root / "membrane" / "train" / "image" / f"{i}.png", image)
        save(root / "membrane" / "train" / "label" / f"{i}.png", mask)


def assert_same_dataset(a: Path, b: Path) -> None:
    """Two imports wrote the same stems with the same pixels."""
    for folder in (images_dir, labels_dir):
        assert stems(folder(a)) == stems(folder(b))
        for stem in stems(folder(a)):
            with Image.open(folder(a) / f"{stem}.png") as left, Image.open(folder(b) / f"{stem}.png") as right:
                assert left.mode == right.mode and np.array_equal(np.array(left), np.array(right))
    assert read_class_names(a) == read_class_names(b)


def test_isbi_tiff_stack_equals_png_folders(tmp_path: Path) -> None:
    make_isbi(tmp_path / "isbi")
    import_isbi2012(tmp_path / "isbi", tmp_path / "png", form="png")
    import_isbi2012(tmp_path / "isbi" / "stack", tmp_path / "tiff")
    assert stems(labels_dir(tmp_path / "png")) == [f"slice_{i:02d}" for i in range(12)]
    assert_same_dataset(tmp_path / "png", tmp_path / "tiff")
    # Numeric order: slice_10 is 10.png, not the 2nd file in string order.
    with Image.open(tmp_path / "isbi" / "membrane" / "train" / "label" / "10.png") as original:
        assert np.array_equal(label(tmp_path / "png", "slice_10"), np.array(original) // 255)
    assert read_class_names(tmp_path / "png") == ["membrane", "cell"]


def test_lgg_groups_by_patient(tmp_path: Path) -> None:
    for case, slices in {"TCGA_CS_4941_19960909": [4, 11], "TCGA_DU_7010_19860307": [8, 23, 37]}.items():
        for n in slices:
            save(tmp_path / "kaggle_3m" / case / f"{case}_{n}.tif", RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8))
            save(tmp_path / "kaggle_3m" / case / f"{case}_{n}_mask.tif", binary())
    (tmp_path / "kaggle_3m" / "data.csv").write_text("Patient\n")
    summary = import_lgg(tmp_path, tmp_path / "out")
    groups = json.loads((tmp_path / "out" / "groups.json").read_text())
    assert len(groups) == 5 and summary.groups == 2
    assert groups["TCGA_DU_7010_19860307_37"] == "TCGA_DU_7010_19860307"
    assert picture(tmp_path / "out", "TCGA_CS_4941_19960909_11").mode == "RGB"


def test_flood_threshold_content_sniffing_and_metadata(tmp_path: Path) -> None:
    src = tmp_path / "flood"
    levels = np.array([[0, 1, 100, 127, 128, 129, 200, 255]], dtype=np.uint8).repeat(4, axis=0)
    save(src / "Image" / "1.jpg", RNG.integers(0, 256, (4, 8, 3), dtype=np.uint8), format="WEBP")
    save(src / "Mask" / "1.png", levels)
    save(src / "Image" / "2.jpg", RNG.integers(0, 256, (4, 8, 4), dtype=np.uint8), format="PNG")  # RGBA
    save(src / "Mask" / "2.png", levels)
    save(src / "Image" / "14.jpg", RNG.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    save(src / "Mask" / "14.png", binary(6, 9))
    save(src / "Image" / "15.jpg", RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8))
    save(src / "Mask" / "15.png", binary(10, 12))
    save(src / "Mask" / "7.png", levels)
    save(src / "Image" / "99.jpg", RNG.integers(0, 256, (4, 8, 3), dtype=np.uint8))
    (src / "metadata.csv").write_text("Image,Mask\n1.jpg,1.png\n2.jpg,2.png\n14.jpg,14.png\n15.jpg,15.png\n7.jpg,7.png")
    summary = import_flood(src, tmp_path / "out")
    assert summary.imported == ["1", "2"]
    assert label(tmp_path / "out", "1")[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert picture(tmp_path / "out", "2").mode == "RGB"
    reasons = {item.stem: item.reason for item in summary.left_out}
    assert set(reasons) == {"14", "15", "7", "99"}
    assert "swapped" in reasons["14"] and "missing" in reasons["7"] and "not listed" in reasons["99"]


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    save(tmp_path / "src" / "000.png", grey())
    save(tmp_path / "src" / "000_mask.png", binary())
    import_liver(tmp_path / "src", tmp_path / "out")
    save(images_dir(tmp_path / "out") / "stale.png", grey())
    with pytest.raises(UserError, match="--overwrite"):
        import_liver(tmp_path / "src", tmp_path / "out")
    import_liver(tmp_path / "src", tmp_path / "out", overwrite=True)
    assert stems(images_dir(tmp_path / "out")) == ["000"]
    assert [path.name for path in (tmp_path / "out").iterdir() if path.name.startswith(".")] == []


def test_cli_bad_source_exits_2_with_message(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    result = subprocess.run([sys.executable, str(ROOT / "import_dataset.py"), "liver", str(missing),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: source folder not found: {missing}"
    assert not (tmp_path / "out").exists()


def test_cli_help_documents_defaults(capsys: pytest.CaptureFixture) -> None:
    for command in ("liver", "isbi2012", "lgg", "msrc", "flood", "pairs"):
        with pytest.raises(SystemExit) as exit_info:
            import_dataset.main([command, "--help"])
        assert exit_info.value.code == 0
        assert "--overwrite" in capsys.readouterr().out


def test_real_isbi2012_both_forms(tmp_path: Path) -> None:
    src = shared_dataset("isbi2012")
    png = import_isbi2012(src, tmp_path / "png", form="png")
    tiff = import_isbi2012(None, tmp_path / "tiff", volume=src / "stack" / "train-volume.tif",
                           labels=src / "stack" / "train-labels.tif")
    assert len(png.imported) == len(tiff.imported) == 30 and not png.left_out and not tiff.left_out
    assert png.imported[0] == "slice_00" and png.imported[-1] == "slice_29"
    assert_same_dataset(tmp_path / "png", tmp_path / "tiff")


def test_real_lgg(tmp_path: Path) -> None:
    summary = import_lgg(shared_dataset("lgg"), tmp_path)
    assert len(summary.imported) == 40 and not summary.left_out and summary.groups == 8
    groups = json.loads((tmp_path / "groups.json").read_text())
    assert len(set(groups.values())) == 8 and groups["TCGA_CS_4941_19960909_11"] == "TCGA_CS_4941_19960909"


def test_real_msrc(tmp_path: Path) -> None:
    summary = import_msrc(shared_dataset("msrc"), tmp_path)
    assert len(summary.imported) == 60 and not summary.left_out
    values: set[int] = set()
    for stem in summary.imported:
        values |= set(np.unique(label(tmp_path, stem)).tolist())
    assert values <= set(range(21)) | {IGNORE_INDEX}
    assert IGNORE_INDEX in np.unique(label(tmp_path, "1_25_s"))  # horse
    splits = report(tmp_path)["source_splits"]
    assert len(splits["train"]["imported"]) == 51 and len(splits["val"]["imported"]) == 9


def test_real_flood(tmp_path: Path) -> None:
    summary = import_flood(shared_dataset("flood"), tmp_path)
    assert len(summary.imported) + len(summary.left_out) == 60
    assert len(summary.imported) == 56
    assert {item.stem for item in summary.left_out} == {"14", "15", "1061", "3059"}
    assert all(item.reason.startswith("size mismatch") for item in summary.left_out)
    assert picture(tmp_path, "2").mode == "RGB"  # a PNG with alpha named 2.jpg
