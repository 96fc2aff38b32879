"""Augmentation presets: image, label and weight stay aligned, sizes/dtypes hold, fills, determinism, helpers."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as nnf
from torchvision.transforms.v2 import functional as F

from utils.data.augment import PRESETS, Augmentation, _RotateElastic, augment_batch, build_augmentation

ACTIVE = [name for name in PRESETS if name != "none"]
CODES = torch.tensor([40.0, 120.0, 200.0])  # image grey level of classes 0, 1, 2


def block_label(height: int, width: int, block: int, seed: int, ignore: bool = True) -> torch.Tensor:
    """Random class blocks 0..2 (and some 255 blocks) drawn from a private generator."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.randint(0, 3, (-(-height // block), -(-width // block)), generator=gen)
    if ignore:
        grid[torch.rand(grid.shape, generator=gen) < 0.1] = 255
    return grid.repeat_interleave(block, 0).repeat_interleave(block, 1)[:height, :width].to(torch.uint8)


def encode(label: torch.Tensor, channels: int) -> torch.Tensor:
    """An image whose grey level names the class; in RGB the G channel is inverted to catch channel mix-ups."""
    grey = torch.where(label == 255, 0.0, CODES[label.long().clamp(max=2)])
    planes = [grey, 240.0 - grey, grey][:channels] if channels == 3 else [grey]
    return torch.stack(planes).to(torch.uint8)


def decode(image: torch.Tensor) -> torch.Tensor:
    """Class id each pixel's grey level is closest to."""
    return (image[0].float()[..., None] - CODES).abs().argmin(-1)


def interior(label: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood has one label (bilinear image and nearest mask agree there)."""
    x = label.float()[None, None]
    same = (nnf.max_pool2d(x, 3, 1, 1) == -nnf.max_pool2d(-x, 3, 1, 1))[0, 0]
    same[[0, -1], :] = same[:, [0, -1]] = False  # the frame's outer neighbours are unknown
    return same


def agreement(image: torch.Tensor, label: torch.Tensor) -> float:
    """Fraction of valid interior pixels where the image still encodes the label."""
    keep = interior(label) & (label != 255)
    assert keep.sum() > 50
    return (decode(image)[keep] == label[keep].long()).float().mean().item()


def geometric_only(name: str) -> Augmentation:
    return Augmentation(build_augmentation(name).geometric, ())


def test_none_and_unknown_presets():
    assert build_augmentation("none") is None
    with pytest.raises(ValueError) as info:
        build_augmentation("heavy")
    for name in PRESETS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ACTIVE)
@pytest.mark.parametrize("channels", [1, 3])
def test_sizes_and_dtypes_are_kept(name, channels):
    aug = build_augmentation(name)
    torch.manual_seed(0)
    for height, width in [(40, 56), (33, 47), (16, 16)]:
        label = block_label(height, width, 4, seed=height)
        image = encode(label, channels)
        out_image, out_label, out_weight = aug(image, label, torch.rand(height, width))
        assert out_image.shape == (channels, height, width) and out_image.dtype == torch.uint8
        assert out_label.shape == (height, width) and out_label.dtype == torch.uint8
        assert out_weight.shape == (height, width) and out_weight.dtype == torch.float32
        assert type(out_image) is torch.Tensor and type(out_label) is torch.Tensor
        assert aug(image, label)[2] is None


@pytest.mark.parametrize("name", ACTIVE)
@pytest.mark.parametrize("channels", [1, 3])
def test_image_and_label_stay_aligned(name, channels):
    aug = geometric_only(name)
    label = block_label(48, 64, 6, seed=1)
    image = encode(label, channels)
    for seed in range(6):
        torch.manual_seed(seed)
        out_image, out_label, _ = aug(image, label)
        assert agreement(out_image, out_label) > 0.97
        if channels == 3:
            # G = 240 - R holds everywhere except where the fill (0 in every channel) bleeds in.
            keep = interior(out_label) & (out_label != 255)
            torch.testing.assert_close(out_image[1][keep].float(), 240 - out_image[0][keep].float(),
                                       atol=1, rtol=0, msg="channels moved differently")


def test_alignment_check_catches_a_misaligned_mask():
    label = block_label(48, 64, 6, seed=1)
    image = encode(label, 1)
    assert agreement(F.horizontal_flip(image), F.horizontal_flip(label)) > 0.99
    assert agreement(F.horizontal_flip(image), label) < 0.7


def l_shape(size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    label = torch.zeros(size, size, dtype=torch.uint8)
    label[8:40, 10:20] = 1  # upright bar
    label[30:40, 10:38] = 1  # foot pointing right
    image = torch.where(label == 1, 200, 60).to(torch.uint8)[None]
    return image, label


def l_iou(image: torch.Tensor, label: torch.Tensor) -> float:
    valid = label != 255
    pred, true = (image[0] > 130) & valid, (label == 1) & valid
    return ((pred & true).sum() / (pred | true).sum()).item()


@pytest.mark.parametrize("name", ACTIVE)
def test_asymmetric_shape_turns_with_its_mask(name):
    aug = geometric_only(name)
    image, label = l_shape()
    for seed in range(8):
        torch.manual_seed(seed)
        out_image, out_label, _ = aug(image, label)
        assert l_iou(out_image, out_label) > 0.9, f"seed {seed}"


def test_l_shape_check_catches_opposite_rotation_shift_and_transpose():
    image, label = l_shape()
    assert l_iou(F.rotate(image, 10.0), F.rotate(label[None], 10.0)[0]) > 0.99
    assert l_iou(F.rotate(image, 5.0), F.rotate(label[None], -5.0)[0]) < 0.8
    assert l_iou(F.rotate(image, 90.0), F.rotate(label[None], -90.0)[0]) < 0.3
    assert l_iou(image, label.roll((1, 1), (0, 1))) < 0.85
    assert l_iou(image, label.T) < 0.3


def test_em_rotation_is_exact_for_right_angles():
    # With no small angle and no deformation the single resampling must reproduce torch.rot90 exactly.
    image, label = l_shape()
    step = _RotateElastic(0.0, alpha=(0.0, 0.0), sigma=(10.0, 10.0))
    turns = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out_image, out_label = Augmentation([step], ())(image, label)[:2]
        matches = [k for k in range(4) if torch.equal(out_image, image.rot90(k, (1, 2)))
                   and torch.equal(out_label, label.rot90(k))]
        assert len(matches) == 1
        turns.update(matches)
    assert turns == {0, 1, 2, 3}


@pytest.mark.parametrize("name", ACTIVE)
def test_weight_follows_label_and_photometry_leaves_both_alone(name):
    aug, geo = build_augmentation(name), geometric_only(name)
    label = block_label(40, 56, 5, seed=2)
    image = encode(label, 3)
    weight = torch.where(label == 255, 7.0, label.float() * 1.5 + 0.25)
    for seed in range(5):
        torch.manual_seed(seed)
        _, out_label, out_weight = aug(image, label, weight)
        valid = out_label != 255
        torch.testing.assert_close(out_weight[valid], out_label[valid].float() * 1.5 + 0.25, rtol=0, atol=0)
        assert (out_weight[~valid] == 0).all()
        # Geometry draws its random numbers first, so the same seed gives the same geometry without photometry.
        torch.manual_seed(seed)
        _, geo_label, geo_weight = geo(image, label, weight)
        assert torch.equal(out_label, geo_label) and torch.equal(out_weight, geo_weight)


@pytest.mark.parametrize("name", ["medical", "em"])
def test_rotation_fills_image_black_and_label_ignore(name):
    aug = geometric_only(name)
    label = block_label(48, 48, 6, seed=3, ignore=False)
    image = encode(label, 1)  # every input pixel is >= 40, so 0 can only come from outside
    filled = 0
    for seed in range(6):
        torch.manual_seed(seed)
        out_image, out_label, _ = aug(image, label)
        inner = interior(out_label)
        filled += int(((out_label == 255) & inner).sum())
        assert (out_image[0][(out_label == 255) & inner] == 0).all()
        assert (out_label[(out_image[0] == 0) & inner] == 255).all()
    assert filled > 0


@pytest.mark.parametrize("name", ACTIVE)
def test_same_seed_same_output_other_seed_differs(name):
    aug = build_augmentation(name)
    label = block_label(40, 40, 5, seed=4)
    image = encode(label, 3)

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return [torch.cat([out.flatten().float() for out in aug(image, label, label.float())]) for _ in range(3)]

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not any(torch.equal(a, b) for a, b in zip(first, other))


def test_noise_clamps_instead_of_wrapping():
    photometric = Augmentation((), build_augmentation("medical").photometric)
    label = torch.zeros(24, 24, dtype=torch.uint8)
    image = torch.full((1, 24, 24), 255, dtype=torch.uint8)
    torch.manual_seed(0)
    noisy = 0
    for _ in range(30):
        out_image = photometric(image, label)[0]
        noisy += int(out_image.unique().numel() > 1)
        # Darkest legitimate value: brightness 0.8, gamma 1.5 -> 255 * 0.8 ** 1.5 = 182, minus a few sigma of
        # noise; a uint8 wrap-around of 255 + noise would land near 0.
        assert out_image.min() >= 100
    assert noisy > 0


@pytest.mark.parametrize("name", ACTIVE)
def test_batch_augmentation_equals_per_sample_augmentation_with_the_same_seeds(name):
    augmentation = build_augmentation(name)
    labels = torch.stack([block_label(40, 40, 5, seed) for seed in range(3)])
    images = torch.stack([encode(label, 3) for label in labels])
    weights = torch.rand(labels.shape, generator=torch.Generator().manual_seed(9))
    seeds = torch.tensor([11, 12, 2**62 - 1])
    out_images, out_labels, out_weights = augment_batch(augmentation, images, labels, weights, seeds)
    assert out_images.shape == images.shape and out_labels.shape == labels.shape
    for index, seed in enumerate(seeds.tolist()):
        torch.manual_seed(seed)
        image, label, weight = augmentation(images[index], labels[index], weights[index])
        assert torch.equal(out_images[index], image) and torch.equal(out_labels[index], label)
        assert torch.equal(out_weights[index], weight)
    assert not torch.equal(out_images[0], out_images[1])  # each sample draws its own parameters
