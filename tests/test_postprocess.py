"""Connected-component cleaning and probability post-processing against hand-built arrays."""
from __future__ import annotations

import numpy as np
import pytest

from utils.errors import UserError
from utils.infer.postprocess import (
    keep_largest,
    move_removed_to_background,
    probabilities_for_saving,
    save_probabilities_npz,
)


def blobs_2d() -> np.ndarray:
    """Class 1: a 16-pixel square, then blobs of 3, 2 and 1 pixels, each separated by background."""
    return np.array([
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 0, 0, 1, 0, 0],
        [0, 1, 1, 1, 1, 0, 0, 1, 0, 0],
        [0, 1, 1, 1, 1, 0, 0, 1, 0, 0],
        [0, 1, 1, 1, 1, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ], dtype=np.uint8)


def test_top1_keeps_only_the_big_blob():
    labels = blobs_2d()
    expected = labels.copy()
    expected[1:4, 7] = 0   # 3-pixel column
    expected[6, 1:3] = 0   # 2-pixel pair
    expected[6, 8] = 0     # single pixel
    cleaned, removed = keep_largest(labels, num_classes=2, top_k=1)
    np.testing.assert_array_equal(cleaned, expected)
    np.testing.assert_array_equal(removed, labels != expected)
    assert cleaned.dtype == labels.dtype and removed.dtype == bool
    assert labels[1, 7] == 1  # input untouched


def test_top2_keeps_big_and_second_largest():
    labels = blobs_2d()
    expected_removed = np.zeros_like(labels, dtype=bool)
    expected_removed[6, 1:3] = True
    expected_removed[6, 8] = True
    cleaned, removed = keep_largest(labels, num_classes=2, top_k=2)
    np.testing.assert_array_equal(removed, expected_removed)
    np.testing.assert_array_equal(cleaned, np.where(expected_removed, 0, labels))
    assert (cleaned[1:4, 7] == 1).all() and (cleaned[1:5, 1:5] == 1).all()


def test_equal_sizes_first_in_scan_order_wins():
    labels = np.array([[0, 0, 0, 1],
                       [1, 0, 0, 1],
                       [1, 0, 1, 0]], dtype=np.int64)
    # Components of size 2 at (0,3)-(1,3) [first in scan order] and (1,0)-(2,0), and a single pixel.
    cleaned, removed = keep_largest(labels, num_classes=2)
    np.testing.assert_array_equal(cleaned, [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(removed, [[0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 1, 0]])


def test_classes_are_cleaned_independently():
    labels = np.array([
        [1, 1, 1, 0, 2, 2],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 2],
        [1, 0, 2, 2, 2, 0],
    ], dtype=np.uint8)
    # Class 1: 6-pixel block kept, (3,0) removed. Class 2: the 3-pixel row is class 2's largest and stays
    # although smaller than class 1's block; the 2-pixel pair and the single (2,5) go. (2,5)-(3,4) is
    # diagonal only, so it does not join the row.
    expected = labels.copy()
    expected[3, 0] = 0
    expected[0, 4:6] = 0
    expected[2, 5] = 0
    cleaned, removed = keep_largest(labels, num_classes=3)
    np.testing.assert_array_equal(cleaned, expected)
    np.testing.assert_array_equal(removed, labels != expected)


def test_3d_face_connectivity_through_slices_but_not_diagonals():
    # Connectivity is 6 face neighbours in 3-D: z-neighbours join, edge or corner contact does not.
    labels = np.zeros((3, 6, 6), dtype=np.uint8)
    labels[0, 0:2, 0:2] = 1   # A, 4 voxels
    labels[1, 0:2, 0:2] = 1   # B, 4 voxels, on top of A: A+B is one 8-voxel component
    labels[0, 5, 0:5] = 1     # C, 5 voxels: larger than A or B alone, smaller than A+B
    labels[1, 2, 2] = 1       # edge-diagonal to B's (1, 1, 1)
    labels[2, 0, 2] = 1       # corner-diagonal to B's (1, 1, 1)
    cleaned, removed = keep_largest(labels, num_classes=2)
    expected = np.zeros_like(labels)
    expected[0:2, 0:2, 0:2] = 1
    np.testing.assert_array_equal(cleaned, expected)
    np.testing.assert_array_equal(removed, labels != expected)
    cleaned2, _ = keep_largest(labels, num_classes=2, top_k=2)
    expected[0, 5, 0:5] = 1
    np.testing.assert_array_equal(cleaned2, expected)


def test_ignore_is_untouched_and_does_not_bridge():
    labels = np.array([[1, 1, 255, 1, 0, 1],
                       [1, 1, 255, 0, 0, 0]], dtype=np.uint8)
    cleaned, removed = keep_largest(labels, num_classes=2)
    np.testing.assert_array_equal(cleaned, [[1, 1, 255, 0, 0, 0], [1, 1, 255, 0, 0, 0]])
    np.testing.assert_array_equal(removed, [[0, 0, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0]])


@pytest.mark.parametrize("top_k", [0, -1, 1.5])
def test_bad_top_k_is_refused(top_k):
    with pytest.raises(UserError, match="top_k"):
        keep_largest(blobs_2d(), num_classes=2, top_k=top_k)


def test_out_of_range_class_is_refused():
    labels = blobs_2d()
    labels[0, 0] = 7
    with pytest.raises(UserError, match="class id 7"):
        keep_largest(labels, num_classes=3)


def test_move_removed_two_classes_by_hand():
    p1 = np.array([[0.9, 0.8, 0.3, 0.6, 0.1]])
    probabilities = np.stack([1 - p1, p1])
    labels = np.argmax(probabilities, axis=0)          # [[1, 1, 0, 1, 0]]
    cleaned, removed = keep_largest(labels, num_classes=2)
    np.testing.assert_array_equal(removed, [[0, 0, 0, 1, 0]])
    before = probabilities.copy()
    moved = move_removed_to_background(probabilities, labels, removed)
    np.testing.assert_array_equal(probabilities, before)   # input not modified
    expected = probabilities.copy()
    expected[:, 0, 3] = [1.0, 0.0]                          # 0.4 + 0.6 to background
    np.testing.assert_allclose(moved, expected, atol=1e-12)
    np.testing.assert_array_equal(np.argmax(moved, axis=0), cleaned)


def test_move_removed_three_classes_close_runner_up_and_tie():
    probabilities = np.zeros((3, 2, 6))
    # Row 0 labels [2, 2, 2, 0, 2, 0]; (0, 4) is a lone class-2 voxel with class 1 close behind.
    probabilities[:, 0, :] = np.array([[0.1, 0.2, 0.1, 0.8, 0.05, 0.9],
                                       [0.1, 0.1, 0.3, 0.1, 0.47, 0.05],
                                       [0.8, 0.7, 0.6, 0.1, 0.48, 0.05]])
    # Row 1 labels [1, 1, 0, 1, 0, 0]; (1, 3) is a lone class-1 voxel tied with class 2 and p0 = 0.
    probabilities[:, 1, :] = np.array([[0.2, 0.1, 0.6, 0.0, 0.7, 0.9],
                                       [0.7, 0.8, 0.2, 0.5, 0.2, 0.05],
                                       [0.1, 0.1, 0.2, 0.5, 0.1, 0.05]])
    labels = np.argmax(probabilities, axis=0)
    np.testing.assert_array_equal(labels, [[2, 2, 2, 0, 2, 0], [1, 1, 0, 1, 0, 0]])
    cleaned, removed = keep_largest(labels, num_classes=3)
    np.testing.assert_array_equal(np.argwhere(removed), [[0, 4], [1, 3]])
    moved = move_removed_to_background(probabilities, labels, removed)
    np.testing.assert_allclose(moved[:, 0, 4], [0.53, 0.47, 0.0], atol=1e-12)
    np.testing.assert_allclose(moved[:, 1, 3], [0.5, 0.0, 0.5], atol=1e-12)
    np.testing.assert_array_equal(np.argmax(moved, axis=0), cleaned)
    untouched = ~removed
    np.testing.assert_array_equal(moved[:, untouched], probabilities[:, untouched])


def test_move_removed_refuses_labels_that_are_not_the_argmax():
    probabilities = np.array([[[0.2, 0.1]], [[0.3, 0.1]], [[0.5, 0.8]]])
    labels = np.array([[1, 2]])
    with pytest.raises(UserError, match="argmax"):
        move_removed_to_background(probabilities, labels, np.array([[True, False]]))


def test_float16_tie_is_broken_by_one_ulp():
    probabilities = np.array([[0.50001, 0.49999],
                              [0.49999, 0.50001]], dtype=np.float32)   # (K=2, W=2)
    labels = np.array([0, 1])
    naive = probabilities.astype(np.float16)
    assert naive[0, 1] == naive[1, 1] == 0.5 and np.argmax(naive[:, 1]) == 0   # the tie this must fix
    saved = probabilities_for_saving(probabilities, labels)
    assert saved.dtype == np.float16
    np.testing.assert_array_equal(np.argmax(saved, axis=0), labels)
    ulp = np.spacing(np.float16(0.5))
    assert saved[1, 1] == np.float16(0.5) + ulp
    change = np.abs(saved.astype(np.float64) - probabilities.astype(np.float64))
    assert change.max() <= ulp
    np.testing.assert_array_equal(saved[:, 0], naive[:, 0])


def test_float16_random_softmax_maps_keep_argmax():
    rng = np.random.default_rng(0)
    # Nearly equal logits make many float16 ties, so the fix is exercised, not just passed through.
    logits = rng.normal(0.0, 2e-3, size=(3, 64, 64)).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)
    labels = np.argmax(probabilities, axis=0)
    naive = probabilities.astype(np.float16)
    assert (np.argmax(naive, axis=0) != labels).sum() > 100
    saved = probabilities_for_saving(probabilities, labels)
    np.testing.assert_array_equal(np.argmax(saved, axis=0), labels)
    changed = saved != naive
    steps = saved[changed].astype(np.float64) - naive[changed].astype(np.float64)
    np.testing.assert_array_equal(steps, np.spacing(naive[changed]).astype(np.float64))


def test_float16_refuses_ignore_and_disagreeing_labels():
    probabilities = np.array([[0.9, 0.2], [0.1, 0.8]], dtype=np.float32)
    with pytest.raises(UserError, match="255"):
        probabilities_for_saving(probabilities, np.array([0, 255]))
    with pytest.raises(UserError, match="argmax"):
        probabilities_for_saving(probabilities, np.array([1, 1]))


def test_save_probabilities_npz_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(3), size=(8, 9)).transpose(2, 0, 1).astype(np.float16)
    path = tmp_path / "out" / "case_01.npz"
    save_probabilities_npz(path, probabilities, ["background", "liver", "tumour"])
    with np.load(path) as data:
        assert data["probabilities"].dtype == np.float16
        np.testing.assert_array_equal(data["probabilities"], probabilities)
        assert data["class_names"].tolist() == ["background", "liver", "tumour"]
    assert [p.name for p in path.parent.iterdir()] == ["case_01.npz"]   # no temporary left behind
    with pytest.raises(UserError, match="class name"):
        save_probabilities_npz(path, probabilities, ["background", "liver"])
