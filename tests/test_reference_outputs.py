"""Each model's logits for a fixed seed and input, against reference values stored in tests/data.

A change to any layer (an up-sampling's align_corners, a padding, the order of concatenation, an initialisation)
changes these numbers. When a change is deliberate, regenerate the file and commit it with the change:

    .venv/bin/python tests/test_reference_outputs.py

(the same as calling `regenerate()`), then check the diff of tests/data/model_reference_outputs.json is expected.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nets import MODEL_NAMES, build_model  # noqa: E402

REFERENCE = Path(__file__).resolve().parent / "data" / "model_reference_outputs.json"
NUM_CLASSES, IN_CHANNELS, SIZE = 2, 3, 32
WEIGHT_SEED, INPUT_SEED = 0, 1
CORNER, CENTRE = (slice(0, 4), slice(0, 4)), (slice(14, 18), slice(14, 18))
# CPU fp32 convolutions differ between machines (vector width, thread count) only in the last bits.
RTOL, ATOL = 1e-4, 1e-5


def reference_logits(name: str) -> torch.Tensor:
    """Logits (1, NUM_CLASSES, SIZE, SIZE) of model `name` built with WEIGHT_SEED, in eval mode, on a seeded input."""
    torch.manual_seed(WEIGHT_SEED)
    model = build_model(name, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS).eval()
    inputs = torch.randn(1, IN_CHANNELS, SIZE, SIZE, generator=torch.Generator().manual_seed(INPUT_SEED))
    with torch.no_grad():
        return model(inputs).double()


def summary(logits: torch.Tensor) -> dict[str, list]:
    """A few KB that pin the logits down: two 4x4 windows per class, and per-class mean, std and mean |x|."""
    per_class = logits[0].flatten(1)
    return {
        "shape": list(logits.shape),
        "corner": logits[0][(slice(None), *CORNER)].tolist(),
        "centre": logits[0][(slice(None), *CENTRE)].tolist(),
        "mean": per_class.mean(1).tolist(),
        "std": per_class.std(1).tolist(),
        "mean_abs": per_class.abs().mean(1).tolist(),
    }


def regenerate(path: Path = REFERENCE) -> None:
    """Write the reference file from the current models; run only when a change to the outputs is intended."""
    payload = {"num_classes": NUM_CLASSES, "in_channels": IN_CHANNELS, "size": SIZE, "weight_seed": WEIGHT_SEED,
               "input_seed": INPUT_SEED, "torch": torch.__version__,
               "models": {name: summary(reference_logits(name)) for name in MODEL_NAMES}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def test_the_reference_file_covers_every_model(reference: dict) -> None:
    assert sorted(reference["models"]) == sorted(MODEL_NAMES)
    assert (reference["num_classes"], reference["in_channels"], reference["size"]) == (NUM_CLASSES, IN_CHANNELS,
                                                                                         SIZE)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_logits_match_the_stored_reference(reference: dict, name: str) -> None:
    expected = reference["models"][name]
    actual = summary(reference_logits(name))
    assert actual["shape"] == expected["shape"]
    for key in ("corner", "centre", "mean", "std", "mean_abs"):
        torch.testing.assert_close(torch.tensor(actual[key], dtype=torch.float64),
                                   torch.tensor(expected[key], dtype=torch.float64), rtol=RTOL, atol=ATOL,
                                   msg=lambda text, key=key: f"{name} {key}: {text}")


def test_the_reference_is_not_trivial(reference: dict) -> None:
    """Constant or zero logits would match any model that also outputs constants."""
    for name, values in reference["models"].items():
        assert min(values["std"]) > 100 * ATOL, name
        assert len({round(v, 6) for row in values["corner"][0] for v in row}) > 8, name


if __name__ == "__main__":
    regenerate()
    print(f"wrote {REFERENCE}")
