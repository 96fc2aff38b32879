"""Joint image + label (+ loss-weight map) augmentation presets built on torchvision.transforms.v2.

Geometric steps move image, label and weight map together (image bilinear, label and weight nearest);
pixels that come from outside the image get image 0, label 255 (ignore) and weight 0. Photometric steps
then change the image only. Outputs keep the input dtypes and spatial size. All randomness comes from
torch's global RNG, which the dataset seeds per sample (utils.data.sampler.SeededSampler), so runs repeat.

Presets (scale-crop = resize by a factor s drawn uniformly, then random-crop or pad back to the input size;
ColorJitter factors are drawn uniformly from [1 - x, 1 + x]; noise sigma is drawn uniformly from
[0, 0.03 * 255] and applied with probability 0.3):
- none:    no augmentation (build_augmentation returns None).
- light:   horizontal flip p=0.5; scale-crop s in [0.75, 1.25]; brightness and contrast +-0.1.
- medical: horizontal flip p=0.5; affine rotation in [-15, 15] degrees with scale in [0.85, 1.15];
           brightness and contrast +-0.2; gamma in [0.7, 1.5]; Gaussian noise.
- em:      horizontal and vertical flips p=0.5 each; rotation by k * 90 degrees (k uniform in 0..3) plus a
           small angle in [-10, 10] degrees, combined in one resampling with an elastic deformation
           (v2.ElasticTransform's displacement field) with alpha uniform in [100, 300] and sigma uniform in
           [10, 15]; brightness +-0.1; Gaussian noise.
           (Meant for square tiles: on non-square inputs a 90-degree turn crops and fills the corners.)
- photo:   scale-crop s in [0.5, 2.0]; horizontal flip p=0.5; brightness, contrast and saturation +-0.2
           (saturation leaves single-channel images unchanged).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from utils.io.labels import IGNORE_INDEX

PRESETS: tuple[str, ...] = ("none", "light", "medical", "em", "photo")

FILL = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
_BILINEAR = v2.InterpolationMode.BILINEAR
_NEAREST_EXACT = v2.InterpolationMode.NEAREST_EXACT
_NOISE_SIGMA = 0.03 * 255

Sample = tuple[torch.Tensor, ...]
Step = Callable[[Sample], Sample]


def _uniform(low: float, high: float) -> float:
    """A float drawn uniformly from [low, high) with torch's global RNG."""
    return low + (high - low) * torch.rand(()).item()


def _fill_for(tensor: torch.Tensor) -> int:
    """Fill value for pixels from outside the image: ignore for masks, black for images."""
    return FILL[tv_tensors.Mask] if isinstance(tensor, tv_tensors.Mask) else FILL[tv_tensors.Image]


class _ScaleCrop:
    """Resize by a random factor, then random-crop or pad (with FILL) back to the input size."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def __call__(self, sample: Sample) -> Sample:
        height, width = sample[0].shape[-2:]
        scale = _uniform(self.low, self.high)
        size = [max(1, round(height * scale)), max(1, round(width * scale))]
        # Masks need NEAREST_EXACT: v2's default NEAREST for masks samples half a source pixel off the
        # bilinear image grid, which shifts the mask against the image when downscaling.
        resized = tuple(F.resize(t, size, interpolation=_NEAREST_EXACT if isinstance(t, tv_tensors.Mask)
                                 else _BILINEAR, antialias=True) for t in sample)
        return v2.RandomCrop((height, width), pad_if_needed=True, fill=FILL)(resized)


class _RotateElastic:
    """Rotation (small angle plus k * 90 degrees) and v2.ElasticTransform's deformation in one resampling."""

    def __init__(self, max_degrees: float, alpha: tuple[float, float], sigma: tuple[float, float]) -> None:
        self.max_degrees, self.alpha, self.sigma = max_degrees, alpha, sigma

    def __call__(self, sample: Sample) -> Sample:
        height, width = sample[0].shape[-2:]
        angle = math.radians(_uniform(-self.max_degrees, self.max_degrees) + 90.0 * torch.randint(4, ()).item())
        alpha, sigma = _uniform(*self.alpha), _uniform(*self.sigma)
        # v2.ElasticTransform's field: uniform noise in [-1, 1], Gaussian-blurred, times alpha / size. The blur
        # runs in the frequency domain (circular boundary) because v2's spatial 8-sigma kernel takes about a
        # second on a 512x512 tile and fails outright on tiles smaller than the kernel.
        device = sample[0].device
        noise = torch.rand(2, height, width, device=device) * 2 - 1
        freq_sq = torch.fft.fftfreq(height, device=device)[:, None] ** 2 + \
            torch.fft.rfftfreq(width, device=device)[None, :] ** 2
        smooth = torch.fft.irfft2(torch.fft.rfft2(noise) * torch.exp(-2 * math.pi ** 2 * sigma ** 2 * freq_sq),
                                 s=(height, width))
        # Rotation about the centre as a pixel offset; one resampling instead of two keeps thin membranes sharp.
        y, x = torch.meshgrid(torch.arange(height, device=device) - (height - 1) / 2,
                              torch.arange(width, device=device) - (width - 1) / 2, indexing="ij")
        cos, sin = math.cos(angle), math.sin(angle)
        shift_x, shift_y = cos * x - sin * y - x, sin * x + cos * y - y
        # F.elastic wants 1 x H x W x 2 offsets in normalised [-1, 1] grid units, (x, y) last.
        displacement = torch.stack([(2 * shift_x + alpha * smooth[0]) / width,
                                    (2 * shift_y + alpha * smooth[1]) / height], -1).unsqueeze(0)
        return tuple(F.elastic(t, displacement, interpolation=_BILINEAR, fill=_fill_for(t)) for t in sample)


class _Gamma:
    """Gamma correction with gamma drawn uniformly from [low, high]."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return F.adjust_gamma(image, _uniform(self.low, self.high))


class _GaussianNoise:
    """With probability p, add Gaussian noise with sigma drawn uniformly from [0, max_sigma] (uint8 scale)."""

    def __init__(self, max_sigma: float, p: float) -> None:
        self.max_sigma, self.p = max_sigma, p

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(()).item() >= self.p:
            return image
        noisy = image.float() + torch.randn(image.shape, device=image.device) * _uniform(0.0, self.max_sigma)
        return noisy.round_().clamp_(0, 255).to(torch.uint8)


class Augmentation:
    """Geometric steps on (image, label[, weight]) jointly, then photometric steps on the image alone."""

    def __init__(self, geometric: Sequence[Step], photometric: Sequence[Callable[[torch.Tensor], torch.Tensor]]
                 ) -> None:
        self.geometric = tuple(geometric)
        self.photometric = tuple(photometric)

    def __call__(self, image: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Augment a uint8 (C, H, W) image, uint8 (H, W) label and optional float32 (H, W) weight map."""
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"image must be uint8 (C, H, W) with C = 1 or 3, got {image.dtype} "
                             f"{tuple(image.shape)}")
        if label.shape != image.shape[-2:] or (weight is not None and weight.shape != label.shape):
            raise ValueError(f"label {tuple(label.shape)} and weight "
                             f"{None if weight is None else tuple(weight.shape)} must be (H, W) of image "
                             f"{tuple(image.shape)}")
        sample: Sample = (tv_tensors.Image(image), tv_tensors.Mask(label))
        if weight is not None:
            sample += (tv_tensors.Mask(weight.to(torch.float32)),)
        for step in self.geometric:
            sample = step(sample)
        out_image = sample[0].as_subclass(torch.Tensor)
        for step in self.photometric:
            out_image = step(out_image)
        out_label = sample[1].as_subclass(torch.Tensor).to(torch.uint8)
        out_weight = None
        if weight is not None:
            # The weight map was filled with the mask fill (255) outside the image; those pixels are
            # ignored, so give them weight 0 rather than a huge one.
            out_weight = sample[2].as_subclass(torch.Tensor).to(torch.float32)
            out_weight = out_weight.masked_fill(out_label == IGNORE_INDEX, 0.0)
        return out_image.to(torch.uint8), out_label, out_weight


def augment_batch(augmentation: Augmentation, images: torch.Tensor, labels: torch.Tensor,
                  weights: torch.Tensor | None, seeds: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Augment a (N, C, H, W) batch where it lies, e.g. on the GPU, sample i seeded with seeds[i].

    Parameters are drawn from the CPU generator as in the data loader, so on the CPU this equals
    augmenting each sample in the loader with the same seed; on CUDA the noise comes from the CUDA
    generator, seeded alike.
    """
    devices = [images.device] if images.device.type == "cuda" else []
    out: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    for index, seed in enumerate(seeds.tolist()):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out.append(augmentation(images[index], labels[index], None if weights is None else weights[index]))
    image_out, label_out, weight_out = zip(*out)
    return (torch.stack(image_out), torch.stack(label_out),
            None if weights is None else torch.stack(weight_out))


def build_augmentation(preset: str) -> Augmentation | None:
    """None for 'none'; an unknown name raises ValueError listing PRESETS."""
    flip_h = v2.RandomHorizontalFlip(0.5)
    if preset == "none":
        return None
    if preset == "light":
        return Augmentation([flip_h, _ScaleCrop(0.75, 1.25)],
                            [v2.ColorJitter(brightness=0.1, contrast=0.1)])
    if preset == "medical":
        return Augmentation([flip_h, v2.RandomAffine(degrees=15, scale=(0.85, 1.15), interpolation=_BILINEAR,
                                                     fill=FILL)],
                            [v2.ColorJitter(brightness=0.2, contrast=0.2), _Gamma(0.7, 1.5),
                             _GaussianNoise(_NOISE_SIGMA, p=0.3)])
    if preset == "em":
        return Augmentation([flip_h, v2.RandomVerticalFlip(0.5),
                             _RotateElastic(10.0, alpha=(100.0, 300.0), sigma=(10.0, 15.0))],
                            [v2.ColorJitter(brightness=0.1), _GaussianNoise(_NOISE_SIGMA, p=0.3)])
    if preset == "photo":
        return Augmentation([_ScaleCrop(0.5, 2.0), flip_h],
                            [v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)])
    raise ValueError(f"unknown augmentation preset '{preset}'; choose one of: {', '.join(PRESETS)}")
