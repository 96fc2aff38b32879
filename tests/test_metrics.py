"""Confusion matrix, derived scores, f-score and per-case Dice against values worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.metrics import ConfusionMatrix, case_dice, confusion_matrix, f_score, predict_labels, scores_from_confusion


def test_confusion_matrix_by_hand():
    target = torch.tensor([[0, 0, 1, 1, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 0, 2]])
    # rows = label, columns = prediction; the last pixel (label 255, predicted 2) is left out
    #   label 0 -> predicted 0, 1;  label 1 -> predicted 1, 1;  label 2 -> predicted 0
    expected = torch.tensor([[1, 1, 0],
                             [0, 2, 0],
                             [1, 0, 0]])
    torch.testing.assert_close(confusion_matrix(pred, target, 3), expected)


def test_confusion_matrix_rejects_label_out_of_range():
    with pytest.raises(ValueError, match="num_classes=3"):
        confusion_matrix(torch.tensor([0, 1, 2]), torch.tensor([0, 3, 255]), 3)


def test_confusion_matrix_accumulates_batches():
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (4, 5, 6), generator=generator)
    targets[targets == 3] = 255  # 3 classes plus ignored pixels
    preds = torch.randint(0, 3, (4, 5, 6), generator=generator)
    accumulated = ConfusionMatrix(3)
    assert accumulated.compute().tolist() == [[0] * 3] * 3
    accumulated.update(preds[:2], targets[:2])
    accumulated.update(preds[2:], targets[2:])
    whole = confusion_matrix(preds, targets, 3).numpy()
    result = accumulated.compute()
    assert result.dtype == np.int64
    np.testing.assert_array_equal(result, whole)
    assert result.sum() == int((targets != 255).sum())


def test_scores_from_confusion_by_hand():
    matrix = np.array([[5, 1, 0],
                       [2, 3, 1],
                       [0, 1, 4]])
    # class 0: TP 5, FN 0+1 = 1, FP 2+0 = 2 -> IoU 5/8 = 0.625, PA 5/6 = 0.833333, precision 5/7 = 0.714286,
    #          Dice 10/13 = 0.769231
    # class 1: TP 3, FN 2+1 = 3, FP 1+1 = 2 -> IoU 3/8 = 0.375, PA 3/6 = 0.5, precision 3/5 = 0.6, Dice 6/11 = 0.545455
    # class 2: TP 4, FN 0+1 = 1, FP 0+1 = 1 -> IoU 4/6 = 0.666667, PA 4/5 = 0.8, precision 0.8, Dice 8/10 = 0.8
    scores = scores_from_confusion(matrix)
    assert scores["class_names"] == ["class_0", "class_1", "class_2"]
    assert scores["confusion_matrix"] == matrix.tolist()
    assert scores["iou"] == pytest.approx([0.625, 0.375, 0.666667], abs=1e-6)
    assert scores["pa"] == pytest.approx([0.833333, 0.5, 0.8], abs=1e-6)
    assert scores["precision"] == pytest.approx([0.714286, 0.6, 0.8], abs=1e-6)
    assert scores["dice"] == pytest.approx([0.769231, 0.545455, 0.8], abs=1e-6)
    # mIoU = (0.625 + 0.375 + 0.666667) / 3 = 0.555556; mPA = (0.833333 + 0.5 + 0.8) / 3 = 0.711111
    # mDice = (0.769231 + 0.545455 + 0.8) / 3 = 0.704895; pixel accuracy = (5 + 3 + 4) / 17 = 0.705882
    assert scores["miou"] == pytest.approx(0.555556, abs=1e-6)
    assert scores["mpa"] == pytest.approx(0.711111, abs=1e-6)
    assert scores["mdice"] == pytest.approx(0.704895, abs=1e-6)
    assert scores["pixel_accuracy"] == pytest.approx(0.705882, abs=1e-6)
    assert scores["absent_classes"] == []
    assert scores["pixels"] == 17


def test_scores_absent_and_prediction_only_classes():
    matrix = np.array([[3, 0, 1, 0],
                       [1, 2, 0, 0],
                       [0, 0, 0, 0],
                       [0, 0, 0, 0]])
    # bg: TP 3, FN 1, FP 1 -> IoU 3/5 = 0.6, PA 3/4 = 0.75
    # a:  TP 2, FN 1, FP 0 -> IoU 2/3, PA 2/3
    # b:  never labelled, predicted once (FP 1) -> IoU 0, PA 0/0 undefined, precision 0, Dice 0
    # c:  neither labelled nor predicted -> no score anywhere, absent
    scores = scores_from_confusion(matrix, ["bg", "a", "b", "c"])
    assert scores["iou"][:3] == pytest.approx([0.6, 2 / 3, 0.0])
    assert scores["iou"][3] is None
    assert scores["pa"][:2] == pytest.approx([0.75, 2 / 3])
    assert scores["pa"][2:] == [None, None]
    assert scores["precision"][2] == 0.0 and scores["dice"][2] == 0.0
    assert scores["precision"][3] is None and scores["dice"][3] is None
    assert scores["absent_classes"] == ["c"]
    # mIoU over bg, a, b: (0.6 + 0.666667 + 0) / 3 = 0.422222; mPA over the defined bg, a: (0.75 + 0.666667) / 2
    assert scores["miou"] == pytest.approx(0.422222, abs=1e-6)
    assert scores["mpa"] == pytest.approx(0.708333, abs=1e-6)
    # pixel accuracy = (3 + 2) / 7 = 0.714286
    assert scores["pixel_accuracy"] == pytest.approx(0.714286, abs=1e-6)


def test_scores_of_an_empty_matrix():
    scores = scores_from_confusion(np.zeros((2, 2), dtype=np.int64))
    assert scores["miou"] is None and scores["pixel_accuracy"] is None
    assert scores["absent_classes"] == ["class_0", "class_1"]


def test_predict_labels():
    single = torch.tensor([[[[-0.5, 0.0, 3.0]]]])  # (1, 1, 1, 3): foreground where logit > 0
    assert predict_labels(single).tolist() == [[[0, 0, 1]]]
    multi = torch.tensor([[[[0.1, 2.0]], [[0.3, -1.0]], [[0.2, 1.0]]]])  # (1, 3, 1, 2)
    assert predict_labels(multi).tolist() == [[[1, 0]]]


def test_f_score_by_hand():
    # logits whose argmax is (0, 1, 1, 1, 0); labels (0, 0, 1, 1, 255) -- the last pixel is ignored
    logits = torch.tensor([[[[3.0, -1.0, 0.0, -2.0, 1.0]], [[0.0, 1.0, 2.0, 0.0, 0.0]]]])
    target = torch.tensor([[[0, 0, 1, 1, 255]]])
    # matrix [[1, 1], [0, 2]]: class 0 TP 1, FN 1, FP 0; class 1 TP 2, FN 0, FP 1
    # beta 1: F_0 = 2 / (2 + 1 + 0) = 0.666667, F_1 = 4 / (4 + 0 + 1) = 0.8, mean 0.733333 (smooth 1e-5 adds ~1e-6)
    assert float(f_score(logits, target)) == pytest.approx(0.733334, abs=1e-6)
    # beta 2 (b2 = 4): F_0 = 5 / (5 + 4 + 0) = 0.555556, F_1 = 10 / (10 + 0 + 1) = 0.909091, mean 0.732323
    assert float(f_score(logits, target, beta=2.0)) == pytest.approx(0.732323, abs=1e-6)


def test_f_score_single_channel_uses_two_classes():
    # C = 1: prediction logit > 0 gives (0, 1, 1, 1), the same hard predictions as above
    logits = torch.tensor([[[[-1.0, 2.0, 0.5, 3.0]]]])
    target = torch.tensor([[[0, 0, 1, 1]]])
    assert float(f_score(logits, target)) == pytest.approx(0.733334, abs=1e-6)


def test_case_dice_by_hand():
    pred = np.array([[1, 1, 0, 0]])
    target = np.array([[1, 0, 1, 0]])
    # |P| = 2, |T| = 2, |P & T| = 1 -> 2 * 1 / (2 + 2) = 0.5
    assert case_dice(pred, target) == pytest.approx(0.5)
    # class 0 of the same case: P = {2, 3}, T = {1, 3}, overlap {3} -> 0.5
    assert case_dice(pred, target, foreground=0) == pytest.approx(0.5)


def test_case_dice_excludes_ignored_pixels():
    pred = np.array([[1, 1, 0, 1]])
    target = np.array([[1, 0, 1, 255]])
    # the predicted foreground at the ignored pixel is dropped: |P| = 2, |T| = 2, overlap 1 -> 0.5 (not 2/5)
    assert case_dice(pred, target) == pytest.approx(0.5)


def test_case_dice_both_empty_returns_empty_argument():
    pred = np.array([[0, 0, 1]])
    target = np.array([[0, 0, 255]])  # the only predicted foreground lies on an ignored pixel
    assert case_dice(pred, target) is None
    assert case_dice(pred, target, empty=1.0) == 1.0


def test_accumulated_matrix_rejects_out_of_range_labels_when_computed():
    accumulated = ConfusionMatrix(2)
    accumulated.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 255]))
    accumulated.update(torch.tensor([0, 0]), torch.tensor([7, 1]))  # 7 is no class: counted, reported later
    with pytest.raises(ValueError, match="1 label pixels are not below num_classes=2"):
        accumulated.compute()


def test_f_score_stays_on_the_device_as_a_tensor():
    score = f_score(torch.tensor([[[[2.0, -1.0]], [[0.0, 3.0]]]]), torch.tensor([[[0, 1]]]))
    assert isinstance(score, torch.Tensor) and score.dim() == 0
    assert float(score) == pytest.approx(1.0)
