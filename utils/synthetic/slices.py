"""Embedded default dataset: deterministic synthetic abdominal CT slices with liver labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from utils.data.folders import images_dir, labels_dir, write_class_names
from utils.errors import UserError
from utils.io.files import save_image

CLASS_NAMES = ["background", "liver"]
STEM_PREFIX = "synth_"
MIN_SIZE = 32
# Below this many slices a progress bar is only noise.
PROGRESS_MIN_COUNT = 50

Window = tuple[slice, slice]
FULL_FRAME: Window = (slice(None), slice(None))


def _harmonics(rng: np.random.Generator, count: int, strength: float) -> np.ndarray:
    """Rows (order, amplitude, phase) of a Fourier perturbation of a blob's radius."""
    orders = np.arange(2, 2 + count, dtype=np.float32)
    # Higher orders get smaller amplitudes so outlines stay smooth, not star-shaped.
    amplitudes = rng.uniform(0.0, strength, count) / orders ** 0.8
    phases = rng.uniform(0.0, 2 * np.pi, count)
    return np.stack([orders, amplitudes, phases], axis=1).astype(np.float32)


class _Canvas:
    """A float image and its label being painted, in coordinates [-1, 1] with y pointing down."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        """Start from air everywhere."""
        self.size = size
        self.rng = rng
        self.image = np.zeros((size, size), np.float32)
        self.label = np.zeros((size, size), np.uint8)
        # Set once the body is drawn: nothing painted afterwards may leave the patient.
        self.inside = np.ones((size, size), bool)
        centres = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        self.x = centres[None, :]
        self.y = centres[:, None]

    def field(self, cells: int) -> np.ndarray:
        """Smooth noise (about unit scale) with `cells` random values across, at any image size."""
        grid = self.rng.standard_normal((cells, cells)).astype(np.float32)
        resized = Image.fromarray(grid).resize((self.size, self.size), Image.Resampling.BICUBIC)
        return np.asarray(resized, dtype=np.float32)

    def blob(self, cx: float, cy: float, rx: float, ry: float, angle: float,
             harmonics: np.ndarray | None = None) -> tuple[Window, np.ndarray]:
        """Normalised radius (< 1 inside) of a rotated, Fourier-lobed ellipse over its bounding window."""
        extra = 0.0 if harmonics is None else float(harmonics[:, 1].sum())
        reach = max(rx, ry) * (1 + extra)
        # Only the bounding window is computed: full-frame maps for every structure would dominate the cost.
        lo = np.floor((np.array([cy, cx]) - reach + 1) / 2 * self.size).astype(int).clip(0, self.size)
        hi = np.ceil((np.array([cy, cx]) + reach + 1) / 2 * self.size).astype(int).clip(0, self.size)
        window = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
        dx = self.x[:, window[1]] - cx
        dy = self.y[window[0], :] - cy
        cos, sin = np.cos(angle), np.sin(angle)
        u = (dx * cos + dy * sin) / rx
        v = (dy * cos - dx * sin) / ry
        radius = np.sqrt(u * u + v * v)
        if harmonics is not None:
            theta = np.arctan2(v, u)
            bound = 1 + sum(a * np.cos(k * theta + p) for k, a, p in harmonics)
            radius = radius / bound
        return window, radius

    def paint(self, window: Window, mask: np.ndarray, value: float | np.ndarray, liver: bool = False) -> None:
        """Set the masked pixels of `window` to `value` (scalar or full-frame map) and their class."""
        mask = mask & self.inside[window]
        target = self.image[window]
        target[mask] = value[window][mask] if isinstance(value, np.ndarray) else value
        self.label[window][mask] = int(liver)


class _Body:
    """The patient's frame: u across (image left = patient's right), v from front (-1) to back (+1)."""

    def __init__(self, canvas: _Canvas, cx: float, cy: float, a: float, b: float, angle: float) -> None:
        """Place the body ellipse on the canvas."""
        self.canvas, self.cx, self.cy, self.a, self.b, self.angle = canvas, cx, cy, a, b, angle

    def organ(self, u: float, v: float, ru: float, rv: float, angle: float = 0.0,
              harmonics: np.ndarray | None = None) -> tuple[Window, np.ndarray]:
        """A blob placed and sized in body coordinates."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        x = self.cx + self.a * u * cos - self.b * v * sin
        y = self.cy + self.a * u * sin + self.b * v * cos
        return self.canvas.blob(x, y, ru * self.a, rv * self.b, angle + self.angle, harmonics)


def _draw_body(canvas: _Canvas, rng: np.random.Generator) -> tuple[_Body, float, np.ndarray]:
    """Skin, subcutaneous fat, muscle wall and fatty cavity; returns the body, cavity bound and cavity mask."""
    body = _Body(canvas, cx=rng.uniform(-0.05, 0.05), cy=rng.uniform(-0.02, 0.08),
                 a=rng.uniform(0.74, 0.92), b=rng.uniform(0.56, 0.72), angle=rng.uniform(-0.08, 0.08))
    window, radius = body.organ(0, 0, 1, 1, 0, _harmonics(rng, 3, 0.06))
    skin = rng.uniform(0.01, 0.02)
    fat = skin + rng.uniform(0.03, 0.13)
    cavity = fat + rng.uniform(0.04, 0.07)
    fat_value = rng.uniform(30, 50) + 4 * canvas.field(24)
    canvas.paint(window, radius < 1, rng.uniform(105, 130))
    canvas.inside = np.zeros_like(canvas.inside)
    canvas.inside[window] = radius < 1
    canvas.paint(window, radius < 1 - skin, fat_value)
    canvas.paint(window, radius < 1 - fat, rng.uniform(115, 135) + 3 * canvas.field(32))
    canvas.paint(window, radius < 1 - cavity, fat_value + 8)
    cavity_mask = np.zeros_like(canvas.inside)
    cavity_mask[window] = radius < 1 - cavity
    return body, 1 - cavity, cavity_mask


def _draw_bowel(canvas: _Canvas, rng: np.random.Generator, cavity: np.ndarray) -> None:
    """Loops of bowel: mottled contents with gas bubbles and an enhancing wall, winding through the cavity."""
    # Zero crossings of smooth noise wind like bowel loops; a band around them is a tube.
    distance = np.abs(canvas.field(int(rng.integers(5, 9))))
    width = rng.uniform(0.35, 0.6)
    lumen = cavity & (distance < width * 0.75)
    canvas.paint(FULL_FRAME, cavity & (distance < width), rng.uniform(125, 160))
    canvas.paint(FULL_FRAME, lumen, rng.uniform(90, 130) + 12 * canvas.field(40))
    canvas.paint(FULL_FRAME, lumen & (canvas.field(30) > rng.uniform(0.6, 1.2)), rng.uniform(0, 20))


def _draw_liver(canvas: _Canvas, body: _Body, rng: np.random.Generator, cavity: np.ndarray) -> None:
    """Liver (class 1) on the patient's right: lobed main mass, optional left lobe, vessels, lesions."""
    draw = rng.random()
    if draw < 0.05:  # slices below the liver
        return
    scale = rng.uniform(0.35, 0.65) if draw < 0.17 else rng.uniform(0.8, 1.15)
    parts = [body.organ(rng.uniform(-0.55, -0.33), rng.uniform(-0.2, 0.1) + 0.15 * (1 - scale),
                        scale * rng.uniform(0.42, 0.6), scale * rng.uniform(0.45, 0.75),
                        rng.uniform(-0.6, 0.6), _harmonics(rng, 5, 0.35))]
    if scale > 0.7 and rng.random() < 0.6:
        parts.append(body.organ(rng.uniform(-0.15, 0.1), rng.uniform(-0.5, -0.3),
                                rng.uniform(0.2, 0.35), rng.uniform(0.1, 0.2),
                                rng.uniform(-0.4, 0.3), _harmonics(rng, 3, 0.2)))
    mask = np.zeros_like(cavity)
    for window, radius in parts:
        mask[window] |= radius < 1
    mask &= cavity
    base = rng.uniform(128, 172)
    canvas.paint(FULL_FRAME, mask, base + rng.uniform(3, 8) * canvas.field(12) + 3 * canvas.field(48), liver=True)
    # Vessels and lesions stay liver, as in clinical liver masks; the gallbladder does not.
    inner = np.flatnonzero(mask)
    if inner.size == 0:
        return
    vessels = int(rng.integers(1, 6))
    lesions = int(rng.integers(1, 4)) if rng.random() < 0.25 else 0
    for number in range(vessels + lesions):
        row, col = divmod(int(inner[rng.integers(inner.size)]), canvas.size)
        cx, cy = (col + 0.5) / canvas.size * 2 - 1, (row + 0.5) / canvas.size * 2 - 1
        if number < vessels:
            window, radius = canvas.blob(cx, cy, rng.uniform(0.015, 0.05), rng.uniform(0.01, 0.02),
                                         rng.uniform(0, np.pi))
            value = base + rng.choice([-1, 1]) * rng.uniform(15, 40)
        else:
            extent = rng.uniform(0.015, 0.06)
            window, radius = canvas.blob(cx, cy, extent, extent * rng.uniform(0.7, 1.0), 0.0,
                                         _harmonics(rng, 2, 0.15))
            value = base - rng.uniform(25, 60)
        canvas.paint(window, (radius < 1) & mask[window], value, liver=True)
    if scale > 0.7 and rng.random() < 0.3:
        window, radius = body.organ(rng.uniform(-0.25, -0.1), rng.uniform(-0.15, 0.1),
                                    rng.uniform(0.06, 0.11), rng.uniform(0.05, 0.09), rng.uniform(0, np.pi))
        canvas.paint(window, (radius < 1) & cavity[window], rng.uniform(95, 115))


def _draw_organs(canvas: _Canvas, body: _Body, rng: np.random.Generator, cavity: np.ndarray) -> float:
    """Stomach, spleen, pancreas, kidneys, aorta, IVC and back muscles; returns the vertebral body's v position."""
    if rng.random() < 0.7:
        window, radius = body.organ(rng.uniform(0.15, 0.4), rng.uniform(-0.45, -0.2), rng.uniform(0.18, 0.3),
                                    rng.uniform(0.15, 0.28), rng.uniform(-0.5, 0.5), _harmonics(rng, 4, 0.25))
        inside = (radius < 1) & cavity[window]
        canvas.paint(window, inside, rng.uniform(140, 165))
        canvas.paint(window, inside & (radius < 0.85), rng.uniform(85, 125) + 10 * canvas.field(30))
        # Gas floats to the front (top of the image) of a supine patient's stomach.
        rows = np.broadcast_to(np.arange(radius.shape[0])[:, None], radius.shape)
        front = rows < np.quantile(rows[inside], rng.uniform(0.1, 0.4)) if inside.any() else inside
        canvas.paint(window, inside & (radius < 0.85) & front, rng.uniform(0, 15))
    # Spleen and pancreas borrow the liver's brightness so intensity alone cannot separate them.
    liver_like = float(canvas.image[canvas.label == 1].mean()) if (canvas.label == 1).any() else 150.0
    if rng.random() < 0.75:
        window, radius = body.organ(rng.uniform(0.5, 0.68), rng.uniform(0.0, 0.35), rng.uniform(0.12, 0.24),
                                    rng.uniform(0.15, 0.3), rng.uniform(-1.0, 0.2), _harmonics(rng, 3, 0.3))
        canvas.paint(window, (radius < 1) & cavity[window],
                     liver_like + rng.uniform(-25, 20) + 4 * canvas.field(10))
    if rng.random() < 0.45:
        window, radius = body.organ(rng.uniform(0.0, 0.25), rng.uniform(0.05, 0.25), rng.uniform(0.2, 0.32),
                                    rng.uniform(0.05, 0.09), rng.uniform(-0.4, 0.1), _harmonics(rng, 5, 0.3))
        canvas.paint(window, (radius < 1) & cavity[window], liver_like + rng.uniform(-30, 10))
    for side in (-1, 1):
        if rng.random() < 0.6:
            window, radius = body.organ(side * rng.uniform(0.3, 0.42), rng.uniform(0.4, 0.6), rng.uniform(0.1, 0.15),
                                        rng.uniform(0.14, 0.22), side * rng.uniform(-0.6, 0.1), _harmonics(rng, 3, 0.1))
            cortex = rng.uniform(150, 215)
            canvas.paint(window, radius < 1, cortex)
            canvas.paint(window, radius < rng.uniform(0.5, 0.7), cortex - rng.uniform(30, 70))
    spine_v = rng.uniform(0.45, 0.55)
    window, radius = body.organ(rng.uniform(0.03, 0.1), spine_v - rng.uniform(0.18, 0.26),
                                rng.uniform(0.05, 0.075), rng.uniform(0.06, 0.09))
    canvas.paint(window, radius < 1, rng.uniform(170, 235))
    window, radius = body.organ(rng.uniform(-0.16, -0.08), spine_v - rng.uniform(0.2, 0.3),
                                rng.uniform(0.06, 0.09), rng.uniform(0.05, 0.08), rng.uniform(0, np.pi))
    canvas.paint(window, radius < 1, rng.uniform(115, 180))
    for side in (-1, 1):
        window, radius = body.organ(side * rng.uniform(0.14, 0.2), spine_v + 0.3, rng.uniform(0.09, 0.13),
                                    rng.uniform(0.12, 0.17), side * rng.uniform(0, 0.4))
        canvas.paint(window, radius < 1, rng.uniform(115, 135) + 3 * canvas.field(32))
    return spine_v


def _draw_bones(canvas: _Canvas, body: _Body, rng: np.random.Generator, spine_v: float, cavity_bound: float) -> None:
    """Vertebra (body, canal, arch) near the bottom centre and rib sections around the periphery."""
    cortical = rng.uniform(235, 255)
    marrow = rng.uniform(185, 225) + 6 * canvas.field(48)
    shift = rng.uniform(-0.03, 0.03)
    radius_v = rng.uniform(0.14, 0.18)
    window, radius = body.organ(shift, spine_v, radius_v * rng.uniform(0.75, 0.9), radius_v, 0.0,
                                _harmonics(rng, 2, 0.08))
    canvas.paint(window, radius < 1, cortical)
    canvas.paint(window, radius < 0.82, marrow)
    arch_v = spine_v + radius_v + 0.1
    for side in (-1, 1):
        window, radius = body.organ(shift + side * 0.1, arch_v, 0.13, 0.035, side * 0.5)
        canvas.paint(window, radius < 1, cortical)
    window, radius = body.organ(shift, arch_v + 0.12, 0.025, 0.12)
    canvas.paint(window, radius < 1, cortical)
    window, radius = body.organ(shift, arch_v - 0.02, 0.05, 0.06)
    canvas.paint(window, radius < 1, rng.uniform(95, 120))
    for _ in range(int(rng.integers(4, 11))):
        # Keep ribs off the spine (back centre) and the linea alba (front centre).
        phi = rng.uniform(-0.75, 0.75) * np.pi + rng.choice([0.0, np.pi])
        reach = cavity_bound + rng.uniform(0.0, 0.04)
        window, radius = body.organ(reach * np.cos(phi), reach * np.sin(phi), rng.uniform(0.05, 0.11),
                                    rng.uniform(0.025, 0.04), phi + np.pi / 2, _harmonics(rng, 2, 0.1))
        canvas.paint(window, radius < 1, cortical)
        canvas.paint(window, radius < 0.6, cortical - rng.uniform(20, 60))


def _finish(canvas: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Window jitter, scanner blur and Gaussian noise, quantised to uint8."""
    image = canvas.image * rng.uniform(0.9, 1.1) + rng.uniform(-8, 8)
    blurred = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9) * canvas.size / 256))
    noisy = np.asarray(blurred, np.float32) + rng.normal(0, rng.uniform(2, 7), image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def make_slice(index: int, size: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic slice `index` of dataset `seed`: (uint8 image HxW, uint8 label HxW with 1 = liver)."""
    if index < 0 or seed < 0:
        raise UserError(f"index and seed must be >= 0 (got index {index}, seed {seed})")
    if size < MIN_SIZE:
        raise UserError(f"size must be at least {MIN_SIZE} pixels (got {size})")
    # One generator per (seed, index): a slice never depends on which others were made before it.
    rng = np.random.default_rng([seed, index])
    canvas = _Canvas(size, rng)
    body, cavity_bound, cavity = _draw_body(canvas, rng)
    _draw_bowel(canvas, rng, cavity)
    _draw_liver(canvas, body, rng, cavity)
    spine_v = _draw_organs(canvas, body, rng, cavity)
    _draw_bones(canvas, body, rng, spine_v, cavity_bound)
    return _finish(canvas, rng), canvas.label


def write_dataset(out: str | Path, count: int = 400, size: int = 512, seed: int = 0,
                  overwrite: bool = False) -> Path:
    """Write `count` slices as <out>/Images/synth_NNNN.png, <out>/Labels/synth_NNNN.png and classes.txt."""
    if count < 1:
        raise UserError(f"count must be at least 1 (got {count})")
    out = Path(out)
    folders = (images_dir(out), labels_dir(out))
    for folder in folders:
        if not overwrite and folder.is_dir() and any(folder.iterdir()):
            raise UserError(f"{folder} already holds files; pass --overwrite (overwrite=True) to replace them")
    stems = [f"{STEM_PREFIX}{index:04d}" for index in range(count)]
    for index in tqdm(range(count), desc="synthetic slices", unit="slice", disable=count < PROGRESS_MIN_COUNT):
        image, label = make_slice(index, size, seed)
        save_image(folders[0] / f"{stems[index]}.png", image)
        save_image(folders[1] / f"{stems[index]}.png", label)
    # A larger earlier run would otherwise leave unlabelled extras behind after an overwrite.
    keep = set(stems)
    for folder in folders:
        for stale in folder.glob(f"{STEM_PREFIX}*.png"):
            if stale.stem not in keep:
                stale.unlink()
    write_class_names(out, CLASS_NAMES)
    return out
