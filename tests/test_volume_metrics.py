"""Tests for utils/volumes/metrics.py: hand-computed distances, empty rules, summaries, and MONAI agreement."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from utils.errors import UserError
from utils.volumes.metrics import EMPTY_RULES, class_scores, summarize, surface_distances, volume_scores


def point(shape: tuple[int, ...], *coords: int) -> np.ndarray:
    """A bool array with one True voxel."""
    mask = np.zeros(shape, bool)
    mask[coords] = True
    return mask


def box(shape: tuple[int, ...], *ranges: tuple[int, int]) -> np.ndarray:
    """A bool array with one True box, ranges given as (start, stop) per axis."""
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in ranges)] = True
    return mask


def blob(shape: tuple[int, ...], seed: int, count: int = 4) -> np.ndarray:
    """A union of random ellipsoids (some cut by the array border), the same for the same seed."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=float)
    mask = np.zeros(shape, bool)
    for _ in range(count):
        centre = rng.uniform(0, 1, len(shape)) * np.array(shape)
        radii = rng.uniform(0.1, 0.3, len(shape)) * np.array(shape)
        mask |= sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
    return mask


ANISO = (0.7, 0.7, 2.5)


@pytest.mark.parametrize("offset, expected", [
    ((2, 0, 0), 1.4), ((0, 3, 0), 2.1), ((0, 0, 3), 7.5), ((1, 2, 3), math.sqrt(0.7 ** 2 + 1.4 ** 2 + 7.5 ** 2)),
])
def test_single_voxels_at_known_offset(offset: tuple[int, int, int], expected: float) -> None:
    shape = (10, 10, 10)
    a = point(shape, 4, 4, 4)
    b = point(shape, *(4 + o for o in offset))
    to_b, to_a = surface_distances(a, b, ANISO)
    np.testing.assert_allclose(to_b, [expected])
    np.testing.assert_allclose(to_a, [expected])
    scores = class_scores(a, b, ANISO)
    assert scores["hd95"] == pytest.approx(expected) and scores["assd"] == pytest.approx(expected)
    assert scores["dice"] == 0.0 and scores["intersection"] == 0


def test_concentric_boxes_with_faces_two_mm_apart() -> None:
    # Spacing (1, 1, 2) with offsets of 2, 2 and 1 voxels puts every face of the outer box 2 mm out.
    spacing = (1.0, 1.0, 2.0)
    shape = (20, 20, 12)
    inner_lo, inner_hi = np.array([5, 5, 4]), np.array([14, 14, 7])  # inclusive voxel corners
    outer_lo, outer_hi = inner_lo - [2, 2, 1], inner_hi + [2, 2, 1]
    inner = box(shape, *zip(inner_lo, inner_hi + 1))
    outer = box(shape, *zip(outer_lo, outer_hi + 1))
    to_outer, to_inner = surface_distances(inner, outer, spacing)
    # Every outer surface voxel has one coordinate on an outer face, 2 mm beyond the inner box along
    # that axis, and each inner surface voxel faces such a voxel straight on: all distances are 2 mm.
    np.testing.assert_allclose(to_outer, 2.0)
    assert len(to_outer) == inner.sum() - box(shape, *zip(inner_lo + 1, inner_hi)).sum()
    # Outer -> inner: the nearest inner surface point is the voxel clamped into the inner box.
    outer_surface = np.argwhere(outer & ~box(shape, *zip(outer_lo + 1, outer_hi)))
    excess = (outer_surface - np.clip(outer_surface, inner_lo, inner_hi)) * spacing
    expected_to_inner = np.sqrt((excess ** 2).sum(axis=1))
    np.testing.assert_allclose(np.sort(to_inner), np.sort(expected_to_inner))
    assert to_inner.min() == 2.0 and to_inner.max() == pytest.approx(math.sqrt(12.0))  # face, corner
    scores = class_scores(inner, outer, spacing)
    assert scores["hd95"] == pytest.approx(np.percentile(expected_to_inner, 95))
    assert scores["assd"] == pytest.approx(np.concatenate([to_outer, expected_to_inner]).mean())


def test_box_shifted_by_one_slice_along_the_coarse_axis() -> None:
    # A 3x3x4 box and the same box one slice (2.5 mm) further along z. Each has 34 surface voxels (the
    # centre voxels of its two inner slices are interior). A -> B: the 8-voxel rings of z=3,4,5 and
    # z=5's centre lie in B (0 mm, but B's z=5 centre is interior: 0.7 mm to its ring), and A's bottom
    # slice is 2.5 mm below B's; B -> A mirrors it. So each direction is 24 x 0, 1 x 0.7, 9 x 2.5.
    shape = (7, 7, 10)
    a = box(shape, (2, 5), (2, 5), (2, 6))
    b = box(shape, (2, 5), (2, 5), (3, 7))
    expected = np.array([0.0] * 24 + [0.7] + [2.5] * 9)
    for directed in surface_distances(a, b, ANISO):
        np.testing.assert_allclose(np.sort(directed), expected)
    scores = class_scores(a, b, ANISO)
    assert scores["hd95"] == pytest.approx(2.5)  # linear percentile at rank 0.95 * 33 = 31.35: both 2.5
    assert scores["assd"] == pytest.approx(23.2 / 34)
    assert scores["dice"] == pytest.approx(2 * 27 / 72) and scores["iou"] == pytest.approx(27 / 45)


def test_concentric_spheres_are_d_apart_within_one_voxel() -> None:
    # Surface voxel centres of a voxelised ball of radius R lie at radius (R - s_max, R]: inside, with a
    # face-neighbour at most s_max (the largest spacing) away outside. So every distance between the
    # two surfaces is > d - s_max, and HD95 / ASSD are d within s_max of discretisation error.
    spacing, r, d = (0.8, 0.8, 1.5), 10.0, 3.0
    shape = (40, 40, 22)
    centre = (np.array(shape) - 1) / 2
    radius = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(np.indices(shape), centre, spacing)))
    inner, outer = radius <= r, radius <= r + d
    to_outer, to_inner = surface_distances(inner, outer, spacing)
    s_max = max(spacing)
    assert min(to_outer.min(), to_inner.min()) > d - s_max
    scores = class_scores(inner, outer, spacing)
    assert abs(scores["hd95"] - d) <= s_max and abs(scores["assd"] - d) <= s_max


def test_surface_at_the_array_border() -> None:
    # Outside the array is background: a 3x3x3 box on the x=0 border keeps its x=0 face as surface, so
    # only its centre is interior (26 surface voxels; 25 if the border counted as foreground).
    to_self, _ = surface_distances(box((8, 8, 8), (0, 3), (2, 5), (2, 5)), box((8, 8, 8), (0, 3), (2, 5), (2, 5)),
                                   (1.0, 1.0, 1.0))
    assert len(to_self) == 26 and not to_self.any()
    full = np.ones((5, 5, 5), bool)
    to_inner, to_full = surface_distances(full, box((5, 5, 5), (1, 4), (1, 4), (1, 4)), (1.0, 1.0, 1.0))
    assert len(to_inner) == 125 - 27 and len(to_full) == 27 - 1


def test_two_dimensional_arrays() -> None:
    spacing = (0.5, 1.2)
    scores = class_scores(point((10, 10), 2, 3), point((10, 10), 5, 7), spacing)
    assert scores["hd95"] == pytest.approx(math.hypot(1.5, 4.8))
    assert scores["assd"] == pytest.approx(math.hypot(1.5, 4.8))
    # A 3x3 square inside a 5x5 one. Inner ring (8 pixels): the top and bottom rows are 0.5 mm from the
    # outer ring, the two middle-row pixels are nearer the outer ring two rows away (1.0 mm) than one
    # column away (1.2 mm). Outer ring (16): 6 pixels 0.5 mm and 6 pixels 1.2 mm straight in, 4 corners
    # hypot(0.5, 1.2) from the inner corners.
    inner, outer = box((9, 9), (3, 6), (3, 6)), box((9, 9), (2, 7), (2, 7))
    to_outer, to_inner = surface_distances(inner, outer, spacing)
    np.testing.assert_allclose(np.sort(to_outer), [0.5] * 6 + [1.0] * 2)
    np.testing.assert_allclose(np.sort(to_inner), [0.5] * 6 + [1.2] * 6 + [math.hypot(0.5, 1.2)] * 4)
    assert class_scores(inner, outer, spacing)["dice"] == pytest.approx(2 * 9 / 34)


def test_hd95_is_the_linear_percentile_of_each_direction() -> None:
    # A row of 19 pixels, and the same row plus one stray pixel 4 rows (4.8 mm) away. Row -> row+stray:
    # 19 zeros. Back: 19 zeros and 4.8, whose 95th percentile at rank 0.95 * 19 = 18.05 interpolates
    # to 0.05 * 4.8 = 0.24 (the "nearest" or "lower" methods would give 0, "higher" 4.8).
    spacing = (1.2, 0.5)
    row = box((12, 20), (5, 6), (0, 19))
    with_stray = row | point((12, 20), 9, 10)
    for pred, label in ((with_stray, row), (row, with_stray)):
        scores = class_scores(pred, label, spacing)
        assert scores["hd95"] == pytest.approx(0.24) and scores["assd"] == pytest.approx(4.8 / 39)


def test_dice_and_iou_by_hand() -> None:
    shape = (6, 6, 6)
    pred = box(shape, (1, 2), (1, 5), (1, 2))  # 4 voxels
    label = box(shape, (1, 2), (2, 5), (1, 3))  # 6 voxels, 3 of them in pred
    scores = class_scores(pred, label, ANISO)
    assert (scores["pred_voxels"], scores["label_voxels"], scores["intersection"]) == (4, 6, 3)
    assert scores["dice"] == pytest.approx(0.6) and scores["iou"] == pytest.approx(3 / 7)


def test_distances_equal_the_dense_edt_definition() -> None:
    # The definition: distance_transform_edt(~surface_B, sampling)[surface_A] on the whole array.
    spacing = (0.8, 0.7, 2.5)
    a, b = blob((30, 34, 18), 11), blob((30, 34, 18), 12)
    surface = lambda m: m & ~ndimage.binary_erosion(m, border_value=0)  # noqa: E731
    to_b, to_a = surface_distances(a, b, spacing)
    for directed, source, target in ((to_b, a, b), (to_a, b, a)):
        dense = ndimage.distance_transform_edt(~surface(target), sampling=spacing)[surface(source)]
        np.testing.assert_allclose(np.sort(directed), np.sort(dense))


def test_volume_scores_per_class_and_ignore_index() -> None:
    shape = (8, 8, 8)
    label = np.zeros(shape, np.uint8)
    label[1:4, 1:4, 1:4] = 1
    label[5:7, 5:7, 5:7] = 2
    label[:, :, 7] = 255
    pred = label.copy()
    pred[pred == 255] = 0
    clean = volume_scores(pred, label, 3, ANISO)
    assert set(clean) == {1, 2} and clean[1]["dice"] == 1.0 and clean[2]["hd95"] == 0.0
    # A prediction inside the ignored slice changes nothing; outside it, it counts.
    pred[2, 2, 7] = 1
    assert volume_scores(pred, label, 3, ANISO) == clean
    pred[2, 2, 6] = 1
    assert volume_scores(pred, label, 3, ANISO)[1]["pred_voxels"] == 28
    # A class whose label voxels are all ignored and never predicted elsewhere is "both empty".
    label[5:7, 5:7, 5:7] = 255
    assert volume_scores(pred, label, 3, ANISO)[2]["dice"] is None


def test_empty_rules() -> None:
    shape, spacing = (10, 20, 30), (0.5, 1.0, 2.0)
    empty, some = np.zeros(shape, bool), point(shape, 3, 3, 3)
    assert class_scores(empty, empty, spacing) == {"dice": None, "iou": None, "hd95": None, "assd": None,
                                                   "pred_voxels": 0, "label_voxels": 0, "intersection": 0}
    diagonal = math.sqrt(5.0 ** 2 + 20.0 ** 2 + 60.0 ** 2)
    for pred, label in ((empty, some), (some, empty)):
        scores = class_scores(pred, label, spacing)
        assert scores["dice"] == 0.0 and scores["iou"] == 0.0
        assert scores["hd95"] == pytest.approx(diagonal) and scores["assd"] == pytest.approx(diagonal)
    from_empty, to_empty = surface_distances(empty, some, spacing)
    assert from_empty.size == 0 and to_empty.tolist() == [math.inf]
    assert {"both_empty", "one_empty", "ignored_voxels", "global_dice"} <= set(EMPTY_RULES)


def test_summarize_by_hand() -> None:
    def row(dice, iou, hd95, assd, pred_voxels, label_voxels, intersection):  # noqa: ANN001, ANN202
        return {"dice": dice, "iou": iou, "hd95": hd95, "assd": assd,
                "pred_voxels": pred_voxels, "label_voxels": label_voxels, "intersection": intersection}
    volumes = [
        {1: row(0.8, 0.6, 2.0, 1.0, 10, 10, 8), 2: row(None, None, None, None, 0, 0, 0)},
        {1: row(0.5, 0.3, 6.0, 3.0, 20, 40, 15), 2: row(0.0, 0.0, 50.0, 50.0, 5, 0, 0)},
        {1: row(0.2, 0.1, 10.0, 2.0, 5, 5, 1), 2: row(None, None, None, None, 0, 0, 0)},
    ]
    summary = summarize(volumes, 3)
    assert summary[1]["dice"] == {"mean": pytest.approx(0.5), "median": 0.5, "count": 3}
    assert summary[1]["hd95"] == {"mean": pytest.approx(6.0), "median": 6.0, "count": 3}
    assert summary[1]["assd"]["median"] == 2.0
    assert summary[1]["global_dice"] == pytest.approx(2 * 24 / 90)
    assert summary[1]["both_empty"] == 0 and summary[1]["volumes"] == 3
    assert summary[2]["dice"] == {"mean": 0.0, "median": 0.0, "count": 1}
    assert summary[2]["global_dice"] == 0.0 and summary[2]["both_empty"] == 2
    assert summarize([volumes[0]], 3)[2]["global_dice"] is None
    assert summarize([volumes[0]], 3)[2]["hd95"] == {"mean": None, "median": None, "count": 0}


def test_user_errors() -> None:
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(UserError, match="shape"):
        class_scores(a, np.zeros((4, 4, 5), bool), ANISO)
    with pytest.raises(UserError, match="bool"):
        class_scores(a.astype(np.uint8), a, ANISO)
    with pytest.raises(UserError, match="spacing"):
        surface_distances(a, a, (1.0, 1.0))
    with pytest.raises(UserError, match="spacing"):
        class_scores(a, a, (1.0, 0.0, 1.0))
    volume = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(UserError, match="label volume holds class id 7"):
        volume_scores(volume, np.full((4, 4, 4), 7, np.uint8), 3, ANISO)
    with pytest.raises(UserError, match="prediction volume"):
        volume_scores(np.full((4, 4, 4), 3, np.uint8), volume, 3, ANISO)
    with pytest.raises(UserError, match="class 2"):
        summarize([volume_scores(volume, volume, 2, ANISO)], 3)


# Random blob pairs (union of ellipsoids, all touching the array border) with anisotropic spacing,
# and HD95 / ASSD from MONAI 1.6.1: compute_hausdorff_distance(percentile=95, spacing=...) and
# compute_average_surface_distance(symmetric=True, spacing=...), include_background=True on the mask pair.
# MONAI returns float32, hence the 1e-6 relative tolerance.
MONAI_GOLDEN = [
    ((32, 40, 20), (0.8, 0.7, 2.5), 1, 2, 15.52707290649414, 5.119062900543213),
    ((24, 24, 16), (0.6, 0.6, 3.0), 3, 4, 30.77011489868164, 6.091508388519287),
    ((64, 48), (0.5, 1.2), 5, 6, 23.77985191345215, 7.105217456817627),
]


@pytest.mark.parametrize("shape, spacing, seed_pred, seed_label, hd95, assd", MONAI_GOLDEN)
def test_matches_monai_golden_numbers(shape, spacing, seed_pred, seed_label, hd95, assd) -> None:  # noqa: ANN001
    scores = class_scores(blob(shape, seed_pred), blob(shape, seed_label), spacing)
    assert scores["hd95"] == pytest.approx(hd95, rel=1e-6) and scores["assd"] == pytest.approx(assd, rel=1e-6)


def test_matches_monai_live() -> None:
    monai_metrics = pytest.importorskip("monai.metrics")  # requirements-bench.txt only

    def monai_scores(pred: np.ndarray, label: np.ndarray, spacing: tuple[float, ...]) -> tuple[float, float]:
        p, t = (torch.from_numpy(m[None, None].astype(np.float32)) for m in (pred, label))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONAI warns about deprecated arguments and empty masks
            return (monai_metrics.compute_hausdorff_distance(p, t, include_background=True, percentile=95,
                                                             spacing=list(spacing)).item(),
                    monai_metrics.compute_average_surface_distance(p, t, include_background=True, symmetric=True,
                                                                   spacing=list(spacing)).item())

    cases = [(shape, spacing, a, b) for shape, spacing, a, b, _, _ in MONAI_GOLDEN]
    cases += [((20, 26, 12), (1.1, 0.9, 4.0), 20 + i, 40 + i) for i in range(3)]
    for shape, spacing, seed_pred, seed_label in cases:
        pred, label = blob(shape, seed_pred), blob(shape, seed_label)
        scores = class_scores(pred, label, spacing)
        assert (scores["hd95"], scores["assd"]) == pytest.approx(monai_scores(pred, label, spacing), rel=1e-6)
    # Same percentile method: MONAI's float32 torch.quantile is linear too (the hand case of the HD95 test).
    row = box((12, 20), (5, 6), (0, 19))
    assert monai_scores(row | point((12, 20), 9, 10), row, (1.2, 0.5)) == pytest.approx((0.24, 4.8 / 39), abs=1e-5)
    # Where a mask is empty MONAI and we differ on purpose: MONAI gives HD95 nan (torch.quantile of an
    # all-inf set) and ASSD inf for one empty mask, nan and nan for two; we give the diagonal, and None.
    empty, some = np.zeros((5, 5, 5), bool), point((5, 5, 5), 2, 2, 2)
    hd95, assd = monai_scores(empty, some, (1.0, 1.0, 1.0))
    assert math.isnan(hd95) and assd == math.inf
    assert all(math.isnan(v) for v in monai_scores(empty, empty, (1.0, 1.0, 1.0)))
