"""Several predictors as one: each member's class probabilities at the image's own size, averaged.

Members may differ in input size, input mode (letterbox or tiles) and file type (.pt or .onnx): each prepares
the image its own way and returns probabilities at the image's size, where they are averaged. They must agree on
what the probabilities mean and on what they read: classes, input channels, normalisation and preprocessing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from utils.errors import UserError
from utils.infer.predictor import Predictor
from utils.infer.uncertainty import mutual_information

CROSSVAL_FILE = "crossval.json"  # makes a folder a cross-validation's: its folds' checkpoints (utils/infer/members.py)
SHARED = ("model_name", "num_classes", "in_channels", "class_names", "input_size", "normalization", "preprocessing",
          "intensity", "flip_tta", "tiles", "overlap", "device", "amp_dtype")


def _preprocessing(member: Predictor) -> dict[str, Any]:
    """The member's recorded input scaling and 2.5-D context, with the defaults filled in."""
    recorded = member.preprocessing or {}
    return {"intensity": recorded.get("intensity"), "context": int(recorded.get("context") or 0)}


def _input_mode(member: Predictor) -> str:
    return "tiles of the training size" if member.tiles else "letterbox"


def check_agreement(members: Sequence[Predictor], same_input: bool = False) -> None:
    """Raise UserError naming the first member that differs from the first one in what must be shared.

    Always: class count and names, input channels, normalisation, preprocessing (intensity scaling, 2.5-D
    context). With `same_input` (one exported graph): input size and input mode too.
    """
    checks = [("classes", lambda m: m.num_classes), ("class names", lambda m: list(m.class_names)),
              ("input channels", lambda m: m.in_channels), ("normalisation", lambda m: m.normalization),
              ("preprocessing", _preprocessing)]
    if same_input:
        checks += [("input size", lambda m: m.input_size), ("input mode", _input_mode)]
    first = members[0]
    for member in members[1:]:
        for what, value in checks:
            if value(member) != value(first):
                raise UserError(f"ensemble members disagree: {member.checkpoint_path} has {what} {value(member)}, "
                                f"but the first member {first.checkpoint_path} has {value(first)}; combine models "
                                f"trained on the same classes and data")


class EnsemblePredictor(Predictor):
    """Predictors whose class probabilities are averaged at each image's own size (the Predictor interface).

    Each member applies its own preparation (letterbox or tiles, input size) and flip TTA; the attributes that
    describe inputs and outputs are the first member's, which the others share (check_agreement).
    """

    def __init__(self, members: Sequence[Predictor], name: str, source: Path | None = None) -> None:
        if not members:
            raise UserError("an ensemble needs at least one model")
        check_agreement(members)
        self.members = list(members)
        self.name = name
        for attribute in SHARED:
            setattr(self, attribute, getattr(members[0], attribute))
        self.checkpoint_path = Path(source) if source is not None else members[0].checkpoint_path

    @property
    def checkpoint_paths(self) -> list[Path]:
        """Every member's model file, in order."""
        return [path for member in self.members for path in member.checkpoint_paths]

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Mean class probabilities (N, K, S, S) of a uint8 batch at one size, as every member prepares it."""
        return torch.stack([member.probabilities(images).float().cpu() for member in self.members]).mean(dim=0)

    def probability_batch(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Mean class probabilities (K x H x W float32, CPU) at each image's original size."""
        return [mean for mean, _ in self._combine(images, disagreement=False)]

    def probabilities_with_disagreement(self, images: Sequence[np.ndarray]
                                        ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(mean class probabilities, the members' disagreement map; None for one member) per image."""
        return self._combine(images, disagreement=len(self.members) > 1)

    def _combine(self, images: Sequence[np.ndarray], disagreement: bool
                 ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        outputs = [member.probability_batch(images) for member in self.members]
        combined = []
        for index in range(len(images)):
            stacked = torch.stack([output[index].float() for output in outputs])
            # The mutual information needs every member's own entropy, so it is computed here, per image.
            spread = torch.from_numpy(mutual_information(stacked.numpy())) if disagreement else None
            combined.append((stacked.mean(dim=0), spread))
        return combined
