"""Data loading: every bad input is refused before training with a message naming the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_pair, write_split
from utils.data.dataset import SegmentationDataset, read_split
from utils.data.letterbox import letterbox
from utils.errors import UserError


def dataset(root: Path, split: str = "train", num_classes: int = 2, in_channels: int = 1, size: int = 32):
    return SegmentationDataset(root, split, num_classes, in_channels, size)


def test_valid_sample_is_letterboxed_uint8(square_dataset: Path) -> None:
    data = dataset(square_dataset, size=48)
    item = data[0]
    assert item["image"].shape == (1, 48, 48) and str(item["image"].dtype) == "torch.uint8"
    label = item["label"].numpy()
    assert set(np.unique(label)) == {0, 1}
    expected = np.asarray(Image.open(square_dataset / "Labels" / "img_0.png").resize((48, 48), Image.NEAREST))
    assert (label == expected).all()


def test_letterbox_pads_with_ignore() -> None:
    image = np.full((10, 20, 3), 7, dtype=np.uint8)
    label = np.ones((10, 20), dtype=np.uint8)
    boxed, boxed_label, _ = letterbox(image, label, 40)
    assert boxed.shape == (40, 40, 3) and boxed_label.shape == (40, 40)
    assert (boxed_label[:20] == 1).all() and (boxed_label[20:] == 255).all()
    assert (boxed[:20] == 7).all() and (boxed[20:] == 0).all()


def test_label_value_out_of_range_names_file_and_values(square_dataset: Path) -> None:
    label = np.zeros((32, 32), dtype=np.uint8)
    label[:4] = 7
    Image.fromarray(label).save(square_dataset / "Labels" / "img_2.png")
    with pytest.raises(UserError) as error:
        dataset(square_dataset)
    message = str(error.value)
    assert "img_2.png" in message and "[7]" in message and "num_classes=2" in message


def test_zero_255_masks_are_caught(tmp_path: Path) -> None:
    for index in range(3):
        label = np.zeros((32, 32), dtype=np.uint8)
        label[8:20, 8:20] = 255
        write_pair(tmp_path, f"s{index}", np.zeros((32, 32), dtype=np.uint8), label)
    write_split(tmp_path, "train", ["s0", "s1", "s2"])
    with pytest.raises(UserError, match="only the values 0 and 255.*--threshold 127"):
        dataset(tmp_path)


def test_every_bad_file_is_listed_in_one_message(square_dataset: Path) -> None:
    (square_dataset / "Images" / "img_0.png").write_bytes(b"")
    (square_dataset / "Images" / "img_1.png").write_bytes(b"garbage")
    Image.fromarray(np.zeros((30, 32), dtype=np.uint8)).save(square_dataset / "Labels" / "img_2.png")
    Image.fromarray((np.zeros((32, 32, 3)) + [0, 50, 0]).astype(np.uint8)).save(
        square_dataset / "Images" / "img_3.png")
    with pytest.raises(UserError) as error:
        dataset(square_dataset, in_channels=1)
    message = str(error.value)
    assert message.startswith("4 problem(s)")
    assert "img_0.png: empty file" in message
    assert "img_1.png: cannot read image" in message
    assert "img_2.png: label is 32x30" in message
    assert "img_3.png: colour image, but the model takes 1 (grey) channel" in message


def test_grey_image_feeds_a_three_channel_model(square_dataset: Path) -> None:
    item = dataset(square_dataset, in_channels=3)[0]
    assert item["image"].shape == (3, 32, 32)
    assert (item["image"][0] == item["image"][2]).all()


@pytest.mark.parametrize("entry", ["../outside", "/etc/passwd", "a/../../b"])
def test_split_entries_may_not_leave_the_dataset(square_dataset: Path, entry: str) -> None:
    write_split(square_dataset, "bad", ["img_0", entry])
    with pytest.raises(UserError, match="leave the dataset folder"):
        read_split(square_dataset, "bad")


def test_missing_file_and_empty_split(square_dataset: Path) -> None:
    write_split(square_dataset, "ghost", ["img_0", "nope"])
    with pytest.raises(UserError, match=r"nope\.\*: image listed in the split but missing"):
        dataset(square_dataset, split="ghost")
    write_split(square_dataset, "empty", [])
    with pytest.raises(UserError, match="split 'empty' is empty"):
        dataset(square_dataset, split="empty")
    with pytest.raises(UserError, match="(?s)split file not found.*png2txt.py"):
        dataset(square_dataset, split="test")


def test_palette_and_one_bit_labels_read_as_class_ids(tmp_path: Path) -> None:
    ids = np.zeros((32, 32), dtype=np.uint8)
    ids[4:12, 4:12] = 1
    palette = Image.fromarray(ids, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    write_pair(tmp_path, "p", np.zeros((32, 32), dtype=np.uint8), ids)
    palette.save(tmp_path / "Labels" / "p.png")
    write_pair(tmp_path, "b", np.zeros((32, 32), dtype=np.uint8), ids)
    Image.fromarray(ids.astype(bool)).convert("1").save(tmp_path / "Labels" / "b.png")
    write_split(tmp_path, "train", ["p", "b"])
    data = dataset(tmp_path)
    for index in range(2):
        assert (data[index]["label"].numpy() == ids).all()
