"""Images -> labels, probabilities and uncertainty maps from any predictor, as the scripts write and the API returns.

predict.py, get_miou_prediction.py and utils/api.py call these functions, so their answers agree. The
uncertainty maps describe the model, so they come from the averaged probabilities before post-processing; the
labels (and the probabilities returned with them) are after --keep-largest.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from utils.errors import UserError
from utils.infer.postprocess import KeepLargest, keep_largest, move_removed_to_background
from utils.infer.predictor import Predictor
from utils.infer.uncertainty import DISAGREEMENT, ENTROPY, CaseUncertainty, normalised_entropy, save_uncertainty_png
from utils.runtime.forward import PREDICT_BATCH


@dataclass
class Segmentation:
    """One image's (H x W) or volume's (slices x H x W) prediction; the maps only when uncertainty was asked for.

    labels: uint8 class ids; probabilities: (K, ...) float32 whose argmax is the labels; entropy: normalised
    predictive entropy in [0, 1]; disagreement: the ensemble members' normalised mutual information (None for
    one model).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    entropy: np.ndarray | None = None
    disagreement: np.ndarray | None = None

    def case(self, name: str) -> CaseUncertainty:
        """The case's uncertainty numbers (U, mean entropy, mean disagreement)."""
        if self.entropy is None:
            raise UserError("no uncertainty was computed for this prediction; ask for it (uncertainty=True, or "
                            "--save-uncertainty)")
        return CaseUncertainty.of(name, self.labels, self.entropy, self.disagreement)

    def slice(self, index: int) -> Segmentation:
        """Slice `index` of a volume's Segmentation, as a 2-D one."""
        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[index]
        return Segmentation(self.labels[index], self.probabilities[:, index], pick(self.entropy),
                            pick(self.disagreement))

    def maps(self) -> dict[str, np.ndarray]:
        """'entropy' (and 'disagreement' for an ensemble) -> map, the names the files are called by."""
        found = {ENTROPY: self.entropy, DISAGREEMENT: self.disagreement}
        return {kind: values for kind, values in found.items() if values is not None}

    def save_uncertainty_pngs(self, folder: Path, stem: str) -> None:
        """<stem>_entropy.png (and <stem>_disagreement.png) in `folder`: 16-bit grey, round(u * 65535)."""
        for kind, values in self.maps().items():
            save_uncertainty_png(folder / f"{stem}_{kind}.png", values)


def uncertainty_names(stem: str, ensemble: bool) -> list[str]:
    """The uncertainty maps' name stems of one case: <stem>_entropy (and <stem>_disagreement)."""
    return [f"{stem}_{kind}" for kind in ((ENTROPY, DISAGREEMENT) if ensemble else (ENTROPY,))]


def finish_labels(probabilities: np.ndarray, num_classes: int, largest: int | KeepLargest | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Label map of (K, *spatial) probabilities, optionally keeping each class's (or some classes') largest components.

    A removed component's probability moves to background, so the returned probabilities' argmax is the labels.
    """
    labels = torch.from_numpy(probabilities).argmax(dim=0).to(torch.uint8).numpy()
    if not largest:
        return labels, probabilities
    rule = largest if isinstance(largest, KeepLargest) else KeepLargest(largest)
    cleaned, removed = keep_largest(labels, max(num_classes, 2), rule.count, rule.classes)
    return cleaned, move_removed_to_background(probabilities, labels, removed)


def finish(probabilities: np.ndarray, num_classes: int, largest: int | KeepLargest | None = None, uncertainty: bool = False,
           disagreement: np.ndarray | None = None) -> Segmentation:
    """Labels (and the entropy, when asked) of raw (K, *spatial) probabilities, 2-D or 3-D alike."""
    entropy = normalised_entropy(probabilities) if uncertainty else None
    labels, probabilities = finish_labels(probabilities, num_classes, largest)
    return Segmentation(labels, probabilities, entropy, disagreement if uncertainty else None)


def raw_batch(predictor: Predictor, images: Sequence[np.ndarray], uncertainty: bool = False
              ) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(class probabilities, disagreement map or None) per image at its size, before post-processing."""
    if not uncertainty:  # single models and ensembles alike skip the members' entropies
        return [(prob.numpy(), None) for prob in predictor.probability_batch(images)]
    return [(prob.numpy(), None if spread is None else spread.numpy())
            for prob, spread in predictor.probabilities_with_disagreement(images)]


def segment_images(predictor: Predictor, images: Sequence[np.ndarray], largest: int | KeepLargest | None = None,
                   uncertainty: bool = False) -> list[Segmentation]:
    """One Segmentation per H x W x C uint8 model input, at the image's size."""
    return [finish(prob, predictor.num_classes, largest, uncertainty, spread)
            for prob, spread in raw_batch(predictor, images, uncertainty)]


def segment_files(predictor: Predictor, paths: Iterable[str | os.PathLike], batch_size: int = PREDICT_BATCH,
                  uncertainty: bool = False) -> Iterator[tuple[Path, np.ndarray, np.ndarray | None]]:
    """(path, raw class probabilities, disagreement map or None) per image file, `batch_size` images per pass."""
    for batch in predictor.read_batches([Path(path) for path in paths], batch_size):
        for (path, _), (prob, spread) in zip(batch, raw_batch(predictor, [image for _, image in batch], uncertainty)):
            yield path, prob, spread
