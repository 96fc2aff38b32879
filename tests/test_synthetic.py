"""Tests for the synthetic abdominal CT generator (the embedded default dataset)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from utils.cli import run_main
from utils.data.folders import images_dir, labels_dir, read_class_names
from utils.errors import UserError
from utils.synthetic.__main__ import main
from utils.synthetic.slices import CLASS_NAMES, make_slice, write_dataset

SIZE = 64


def test_slice_shapes_dtypes_and_label_values() -> None:
    """Image and label are HxW uint8; the label holds only background and liver."""
    image, label = make_slice(0, size=SIZE)
    assert image.shape == (SIZE, SIZE) and label.shape == (SIZE, SIZE)
    assert image.dtype == np.uint8 and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 1}


def test_same_index_is_bit_identical() -> None:
    """Generating a slice twice gives identical arrays."""
    first, second = make_slice(3, size=SIZE, seed=7), make_slice(3, size=SIZE, seed=7)
    assert np.array_equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])


def test_slice_does_not_depend_on_generation_order() -> None:
    """Index 5 alone equals index 5 made after indices 0-4."""
    alone = make_slice(5, size=SIZE)
    for index in range(5):
        make_slice(index, size=SIZE)
    after = make_slice(5, size=SIZE)
    assert np.array_equal(alone[0], after[0])
    assert np.array_equal(alone[1], after[1])


def test_different_seeds_and_indices_differ() -> None:
    """Another seed or another index gives another slice."""
    base = make_slice(0, size=SIZE, seed=0)[0]
    assert not np.array_equal(base, make_slice(0, size=SIZE, seed=1)[0])
    assert not np.array_equal(base, make_slice(1, size=SIZE, seed=0)[0])


def test_liver_fraction_presence_and_side() -> None:
    """Liver covers a sane share of most slices and lies on the image's left (patient's right)."""
    labels = [make_slice(index, size=SIZE)[1] for index in range(20)]
    fractions = np.array([label.mean() for label in labels])
    assert 0.05 <= fractions.mean() <= 0.35
    assert (fractions > 0).mean() >= 0.8
    centres = [np.nonzero(label)[1].mean() for label in labels if label.any()]
    assert np.mean(centres) < SIZE / 2 * 0.85


def test_body_is_brighter_than_air() -> None:
    """The image centre (body) is much brighter than the corners (air)."""
    image = make_slice(2, size=128)[0].astype(float)
    corners = np.concatenate([image[:8, :8].ravel(), image[:8, -8:].ravel(),
                              image[-8:, :8].ravel(), image[-8:, -8:].ravel()])
    centre = image[48:80, 48:80]
    assert corners.mean() < 20
    assert centre.mean() > corners.mean() + 40


def test_liver_intensity_is_plausible() -> None:
    """Liver pixels sit in soft-tissue range, well above air and below bone."""
    image, label = make_slice(1, size=128)
    liver = image[label == 1].astype(float)
    assert liver.size > 0
    assert 90 < np.median(liver) < 200


def test_512_slice_works() -> None:
    """The default size is generated with a non-empty body."""
    image, label = make_slice(0)
    assert image.shape == (512, 512) and label.shape == (512, 512)
    assert image.max() > 200


def test_invalid_arguments_are_user_errors() -> None:
    """Negative index or a too-small size is refused with a message."""
    with pytest.raises(UserError, match="index"):
        make_slice(-1, size=SIZE)
    with pytest.raises(UserError, match="size"):
        make_slice(0, size=8)


def test_write_dataset_round_trip(tmp_path) -> None:
    """Files on disk pair by stem and read back equal to make_slice; classes.txt names the classes."""
    root = write_dataset(tmp_path / "synth", count=3, size=SIZE, seed=4)
    images = sorted(path.name for path in images_dir(root).iterdir())
    labels = sorted(path.name for path in labels_dir(root).iterdir())
    assert images == labels == ["synth_0000.png", "synth_0001.png", "synth_0002.png"]
    for index, name in enumerate(images):
        image, label = make_slice(index, size=SIZE, seed=4)
        with Image.open(images_dir(root) / name) as saved_image, Image.open(labels_dir(root) / name) as saved_label:
            assert saved_image.mode == "L" and saved_label.mode == "L"
            assert np.array_equal(np.asarray(saved_image), image)
            assert np.array_equal(np.asarray(saved_label), label)
    assert read_class_names(root) == CLASS_NAMES == ["background", "liver"]
    assert (root / "classes.txt").read_text(encoding="utf-8") == "background\nliver\n"
    assert not (root / "ImageSets").exists()


def test_write_dataset_refuses_then_overwrites(tmp_path) -> None:
    """A filled folder is refused; overwrite replaces it and drops stale slices of a larger run."""
    root = tmp_path / "synth"
    write_dataset(root, count=3, size=SIZE)
    with pytest.raises(UserError, match="overwrite"):
        write_dataset(root, count=2, size=SIZE)
    write_dataset(root, count=2, size=SIZE, seed=1, overwrite=True)
    assert sorted(path.name for path in images_dir(root).iterdir()) == ["synth_0000.png", "synth_0001.png"]
    assert sorted(path.name for path in labels_dir(root).iterdir()) == ["synth_0000.png", "synth_0001.png"]
    with Image.open(images_dir(root) / "synth_0000.png") as saved:
        assert np.array_equal(np.asarray(saved), make_slice(0, size=SIZE, seed=1)[0])


def test_cli_writes_then_refuses_with_exit_2(tmp_path, capsys) -> None:
    """The CLI writes a dataset (exit 0), then refuses a second run without --overwrite (exit 2)."""
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--count", "2", "--size", str(SIZE)]
    assert run_main(main, argv) == 0
    assert len(list(images_dir(out).iterdir())) == 2
    capsys.readouterr()
    assert run_main(main, argv) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(argv + ["--overwrite"]) == 0


def test_cli_help_states_defaults(capsys) -> None:
    """Every option's help shows its default."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for default in ("datasets/SynthLiver", "400", "512", "(default: 0)"):
        assert default in text
