"""Images beyond 8 bits: reading at stored depth, scaling to 8 bits, and the pairs importer's --window/--percentile."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import import_dataset
from utils.data.folders import images_dir, labels_dir
from utils.errors import UserError
from utils.importers import import_isbi2012, import_pairs
from utils.io.images import file_is_wide, image_to_array, is_wide, load_model_input, open_image, read_array, to_uint8
from utils.io.intensity import Intensity

RNG = np.random.default_rng(7)
PAGES, H, W = 3, 10, 12


def reference(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """The documented rule, written out: below low -> 0, above high -> 255, else round(255 (x - low) / (high - low))."""
    x = values.astype(np.float64)
    exact = 255.0 * (x - low) / (high - low)
    inside = (x >= low) & (x <= high)
    # Keep the test well posed: no value may sit on a rounding tie, where float order could flip the result.
    assert not np.any(inside & (np.abs(exact - np.floor(exact) - 0.5) < 1e-6))
    return np.where(x < low, 0, np.where(x > high, 255, np.round(exact))).astype(np.uint8)


def ct_stack() -> np.ndarray:
    """A uint16 stack spread over the abdomen window [-160, 240] and beyond, with no rounding ties in it."""
    values = RNG.integers(0, 400, (PAGES, H, W)).astype(np.uint16)
    values[(values % 80) == 40] += 1  # x = 40, 120, 200 would land exactly on .5 in the 400,40 window
    values[0, 0, :3] = (0, 300, 399)
    return values


def mask_stack() -> np.ndarray:
    """A 0/255 uint8 mask stack."""
    return (RNG.integers(0, 2, (PAGES, H, W)) * 255).astype(np.uint8)


def write_tiff(path: Path, stack: np.ndarray, compression: str) -> None:
    """A multi-page TIFF: deflate by tifffile, other codecs by Pillow's libtiff (tifffile cannot write them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if compression == "deflate":
        tifffile.imwrite(path, stack, photometric="minisblack", compression="zlib", predictor=True)
    else:
        pages = [Image.fromarray(page) for page in stack]
        pages[0].save(path, save_all=True, append_images=pages[1:], compression=compression)


def png_pixels(path: Path) -> np.ndarray:
    """The pixels of a written PNG."""
    with Image.open(path) as image:
        return np.array(image)


def report(out: Path) -> dict:
    """The import report."""
    return json.loads((out / "import_report.json").read_text())


@pytest.mark.parametrize("compression", ["deflate", "tiff_lzw", "packbits", "zstd"])
@pytest.mark.parametrize("option", [["--percentile", "1,99"], ["--window", "400,40"]])
def test_uint16_stack_import_matches_reference(tmp_path: Path, compression: str, option: list[str]) -> None:
    stack, masks = ct_stack(), mask_stack()
    try:
        write_tiff(tmp_path / "img" / "ct.tif", stack, compression)
    except OSError:
        pytest.skip(f"this Pillow's libtiff cannot write {compression}")
    write_tiff(tmp_path / "msk" / "ct.tif", masks, "deflate" if compression == "deflate" else "tiff_lzw")
    out = tmp_path / "out"
    assert import_dataset.main(["pairs", str(tmp_path / "img"), str(tmp_path / "msk"), "--out", str(out),
                                "--threshold", "127", *option]) == 0
    if option[0] == "--percentile":
        low, high = np.percentile(stack.astype(np.float64), [1, 99])  # over the whole stack, like a volume
    else:
        low, high = 40 - 400 / 2, 40 + 400 / 2
    expected = reference(stack, low, high)
    assert 0 < expected.mean() < 255 and len(np.unique(expected)) > 50
    stems = [f"ct_{page:03d}" for page in range(PAGES)]
    assert sorted(path.stem for path in images_dir(out).glob("*.png")) == stems
    for page, stem in enumerate(stems):
        assert np.array_equal(png_pixels(images_dir(out) / f"{stem}.png"), expected[page])
        assert np.array_equal(png_pixels(labels_dir(out) / f"{stem}.png"), masks[page] // 255)
    assert json.loads((out / "groups.json").read_text()) == {stem: "ct" for stem in stems}
    kind = "percentile" if option[0] == "--percentile" else "window"
    assert report(out)["intensity"] == {"kind": kind, "low": float(low) if kind == "window" else 1.0,
                                        "high": float(high) if kind == "window" else 99.0, "name": None}


def test_sixteen_bit_label_stack_with_value_map(tmp_path: Path) -> None:
    stack = ct_stack()
    labels = np.where(mask_stack() > 0, 1000, 0).astype(np.uint16)
    labels[1, 2, 3] = 2000
    write_tiff(tmp_path / "img" / "v.tif", stack, "deflate")
    write_tiff(tmp_path / "msk" / "v.tif", labels, "deflate")
    summary = import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "out", value_map="0:0,1000:1,2000:2",
                           classes=["bg", "a", "b"], window="abdomen")
    assert summary.imported == ["v_000", "v_001", "v_002"]
    assert np.array_equal(png_pixels(labels_dir(tmp_path / "out") / "v_001.png"), labels[1] // 1000)
    assert report(tmp_path / "out")["intensity"]["name"] == "abdomen"


def test_reads_sixteen_bit_png_float_tiff_and_rgb_png_exactly(tmp_path: Path) -> None:
    grey16 = RNG.integers(0, 65536, (H, W)).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as image:
        assert image.mode == "I;16"
    floats = RNG.normal(0, 1000, (H, W)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", floats, compression="zlib")
    rgb = RNG.integers(0, 256, (H, W, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    for name, expected in (("g16.png", grey16), ("f.tif", floats), ("rgb.png", rgb)):
        array = read_array(tmp_path / name)
        assert array.dtype == expected.dtype and np.array_equal(array, expected), name
        assert is_wide(array) == (expected.dtype != np.uint8) == file_is_wide(tmp_path / name)
    assert to_uint8(rgb, None, "rgb.png") is rgb
    stack = ct_stack()
    write_tiff(tmp_path / "s.tif", stack, "deflate")
    assert np.array_equal(read_array(tmp_path / "s.tif"), stack)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_unreadable_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "bad.tif").write_bytes(b"II*\0garbage")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    for name in ("bad.tif", "bad.png", "missing.png"):
        with pytest.raises(UserError, match=name):
            read_array(tmp_path / name)


def test_wide_image_without_scaling_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    Image.fromarray(RNG.integers(0, 65536, (H, W)).astype(np.uint16)).save(tmp_path / "img" / "a.png")
    Image.fromarray(mask_stack()[0]).save(tmp_path / "msk" / "a.png")
    args = ["pairs", str(tmp_path / "img"), str(tmp_path / "msk"), "--out", str(tmp_path / "out"), "--threshold", "1"]
    assert import_dataset.main(args) == 2
    error = capsys.readouterr().err
    assert "a.png" in error and "--window" in error and "--percentile" in error
    # With an 8-bit pair beside it, the wide one is left out and the reason names both options.
    Image.fromarray(mask_stack()[0]).save(tmp_path / "img" / "b.png")
    Image.fromarray(mask_stack()[0]).save(tmp_path / "msk" / "b.png")
    summary = import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "out", level=1)
    assert summary.imported == ["b"]
    assert "--window" in summary.left_out[0].reason and "--percentile" in summary.left_out[0].reason
    assert report(tmp_path / "out")["intensity"] is None
    with pytest.raises(SystemExit) as exit_info:
        import_dataset.main([*args, "--window", "400,40", "--percentile", "1,99"])
    assert exit_info.value.code == 2
    with pytest.raises(UserError, match="--window or --percentile, not both"):
        import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "out2", level=1, window="liver",
                     percentile="1,99")


def test_eight_bit_pairs_unchanged_by_the_options(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(RNG.integers(0, 256, (H, W)).astype(np.uint8)).save(src / "grey.png")
    Image.fromarray(RNG.integers(0, 256, (H, W, 3)).astype(np.uint8)).save(src / "rgb.tif")
    Image.fromarray(RNG.integers(0, 256, (H, W)).astype(np.uint8)).convert("P").save(src / "pal.bmp")
    for stem in ("grey", "rgb", "pal"):
        Image.fromarray(mask_stack()[0]).save(src / f"{stem}_mask.png")
    outs = {}
    for name, extra in {"none": {}, "window": {"window": "liver"}, "percentile": {"percentile": "1,99"}}.items():
        outs[name] = tmp_path / name
        import_pairs(src, src, outs[name], mask_suffix="_mask", level=127, **extra)
    for folder in (images_dir, labels_dir):
        files = sorted(path.name for path in folder(outs["none"]).iterdir())
        assert files == ["grey.png", "pal.png", "rgb.png"]
        for name in files:
            reference_bytes = (folder(outs["none"]) / name).read_bytes()
            assert (folder(outs["window"]) / name).read_bytes() == reference_bytes
            assert (folder(outs["percentile"]) / name).read_bytes() == reference_bytes


def test_isbi_lzw_stack_equals_png_form(tmp_path: Path) -> None:
    volume, labels = RNG.integers(0, 256, (PAGES, H, W)).astype(np.uint8), mask_stack()
    write_tiff(tmp_path / "stack" / "train-volume.tif", volume, "tiff_lzw")
    write_tiff(tmp_path / "stack" / "train-labels.tif", labels, "deflate")
    for i in range(PAGES):
        for folder, data in (("image", volume), ("label", labels)):
            (tmp_path / "train" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(data[i]).save(tmp_path / "train" / folder / f"{i}.png")
    import_isbi2012(tmp_path, tmp_path / "png", form="png")
    import_isbi2012(tmp_path, tmp_path / "tiff", form="tiff")
    for folder in (images_dir, labels_dir):
        for i in range(PAGES):
            name = f"slice_{i:02d}.png"
            assert (folder(tmp_path / "png") / name).read_bytes() == (folder(tmp_path / "tiff") / name).read_bytes()


def test_load_model_input(tmp_path: Path) -> None:
    grey16 = RNG.integers(0, 4000, (H, W)).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    window = Intensity("window", 1000.0, 3000.0)
    array = load_model_input(tmp_path / "g16.png", 3, window)
    assert array.shape == (H, W, 3) and array.dtype == np.uint8
    assert np.array_equal(array[..., 1], reference(grey16, 1000.0, 3000.0))
    assert load_model_input(tmp_path / "g16.png", 1, window).shape == (H, W, 1)
    with pytest.raises(UserError, match="--percentile"):
        load_model_input(tmp_path / "g16.png", 3, None)
    rgb = RNG.integers(0, 256, (H, W, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(load_model_input(tmp_path / "rgb.png", 3, window),
                          image_to_array(open_image(tmp_path / "rgb.png"), 3, tmp_path / "rgb.png"))
    with pytest.raises(UserError, match="in-channels 3"):
        load_model_input(tmp_path / "rgb.png", 1, window)


def test_loader_refusal_points_at_the_pairs_importer(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((H, W), np.uint16)).save(tmp_path / "g16.png")
    with pytest.raises(UserError, match=r"import_dataset\.py pairs .*--window.*--percentile"):
        image_to_array(open_image(tmp_path / "g16.png"), 3, tmp_path / "g16.png")
