"""Synthetic abdominal CT volumes in Hounsfield units with liver and tumour labels, as NIfTI (Decathlon layout).

World coordinates are RAS+ millimetres (x toward the patient's right, y anterior, z superior). Each
volume's anatomy is a set of 3-D shapes in those coordinates, drawn from (seed, index) alone; the voxel
grid (LPS-ordered as dcm2niix writes DICOM series, slightly rotated about z) samples them, so a volume
at another size or slice count shows the same patient.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from utils.errors import UserError
from utils.io.files import write_json
from utils.synthetic.anatomy import (
    COVERAGE_MM,
    FIELD_OF_VIEW_MM,
    Grid,
    Patient,
    Region,
    ellipsoid,
    patient_affine,
    tube,
)
from utils.volumes.geometry import save_nifti

CLASS_NAMES = ["background", "liver", "tumour"]
CASE_PREFIX = "synthct_"
MIN_SIZE, MAX_SIZE = 32, 1024
MIN_SLICES, MAX_SLICES = 16, 1024
MAX_COUNT = 1000  # case names have three digits
HU_MIN, HU_MAX = -1024, 3071


def _paint_body(grid: Grid, p: Patient, texture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Table, skin, fat, muscle wall, lungs, diaphragm and visceral fat; returns the cavity and abdomen masks."""
    full = (slice(None),) * 3
    x, y, z = grid.coords(full)
    table = -p.b_back * 1.12 - 4 + x * x / 2000
    grid.paint(full, (y < table) & (y > table - 20), -700.0)
    grid.paint(full, (y < table) & (y > table - 6), 100.0)
    depth = p.depth(x, y, z)
    fat_end, cavity_start = p.wall(x, y, z)
    grid.paint(full, depth > 0, p.hu["muscle"] - 10)
    grid.paint(full, depth > p.skin, p.hu["fat"] + 6 * texture)
    grid.paint(full, depth > fat_end, p.hu["muscle"] + 4 * texture)
    cavity = depth > cavity_start
    grid.paint(full, cavity, p.hu["visceral_fat"] + 8 * texture)
    dome = p.diaphragm(x, y)
    lung = cavity & (z > dome)
    grid.paint(full, lung, p.hu["lung"] + 25 * texture)
    grid.paint(full, lung & (texture > 2.2), 20.0)  # pulmonary vessels
    grid.paint(full, cavity & (z <= dome) & (z > dome - 5), p.hu["muscle"])
    return cavity, cavity & (z <= dome - 5)


def _paint_bowel(grid: Grid, p: Patient, abdomen: np.ndarray, texture: np.ndarray) -> None:
    """Small-bowel loops (wall, fluid contents, gas) and the ascending and descending colon."""
    reach = (p.a, max(p.b_front, p.b_back), p.liver_top)
    region = grid.around((0, 0, (p.liver_top - COVERAGE_MM / 2) / 2), reach)
    x, y, z = grid.coords(region)
    room = abdomen[region] & (z < p.liver_top - 40) & (y > p.spine_y - 10)
    # Loops cut across are the blobs of a smooth field above a level, each with a wall; gas rises to the front.
    loops = p.bowel_field(x, y, z)
    lumen = room & (loops > p.bowel_level)
    grid.paint(region, room & (loops > p.bowel_level - 0.3), p.hu["muscle"])
    grid.paint(region, lumen, p.hu["bowel"] + 10 * texture[region])
    grid.paint(region, lumen & (p.gas_field(x, y, z) + y / 150 > 1.5), p.hu["gas"])
    for cx, cy, radius in p.colon:
        region = grid.around((cx, cy, 0), (radius + 2, radius + 2, COVERAGE_MM))
        x, y, z = grid.coords(region)
        distance = np.hypot(x - cx, y - cy) + 0 * z
        inside = abdomen[region] & (z < p.liver_bottom + 30)
        grid.paint(region, inside & (distance < radius), p.hu["muscle"])
        grid.paint(region, inside & (distance < radius - 3),
                   np.where(p.gas_field(x + 40, y, z) > -0.2, p.hu["gas"], p.hu["bowel"] - 20 + 30 * texture[region]))


def _paint_organ(grid: Grid, abdomen: np.ndarray, organ, value: float | np.ndarray,
                 texture: np.ndarray) -> tuple[Region, np.ndarray]:
    """An ellipsoidal organ clipped to the abdomen, with texture; returns its region and mask."""
    centre, semi, angle = organ
    region = grid.around(centre, (max(semi[:2]), max(semi[:2]), semi[2]))
    inside = (ellipsoid(*grid.coords(region), centre, semi, angle) < 1) & abdomen[region]
    grid.paint(region, inside, value + 4 * texture[region])
    return region, inside


def _paint_liver(grid: Grid, p: Patient, abdomen: np.ndarray, texture: np.ndarray) -> None:
    """Liver (class 1) with hypodense unenhanced vessels that stay liver."""
    reach = [(np.array(centre) - 1.4 * np.array(semi), np.array(centre) + 1.4 * np.array(semi))
             for centre, semi, _angle in p.lobes]
    region = grid.region(np.min([lo for lo, _ in reach], axis=0), np.max([hi for _, hi in reach], axis=0))
    x, y, z = grid.coords(region)
    liver = p.liver_shape(x, y, z) & abdomen[region]
    grid.paint(region, liver, p.hu["liver"] + 5 * texture[region], cls=1)
    for start, end, radius in p.vessels:
        region = grid.region(np.minimum(start, end) - radius, np.maximum(start, end) + radius)
        distance, along = tube(*grid.coords(region), start, end)
        vessel = (distance < radius * (1 - 0.5 * along)) & (grid.label[region] == 1)
        grid.paint(region, vessel, p.hu["liver_vessel"] + 3 * texture[region], cls=None)


def _paint_organs(grid: Grid, p: Patient, cavity: np.ndarray, abdomen: np.ndarray, texture: np.ndarray) -> None:
    """Gallbladder, stomach, spleen, pancreas, kidneys, heart, great vessels, muscles and skeleton."""
    if p.gallbladder is not None:
        _paint_organ(grid, abdomen, p.gallbladder, p.hu["fluid"], texture)
    region, inside = _paint_organ(grid, abdomen, p.stomach, p.hu["bowel"], texture)
    centre, semi, _angle = p.stomach
    x, y, z = grid.coords(region)
    lumen = inside & (ellipsoid(x, y, z, centre, np.array(semi) - 4, p.stomach[2]) < 1)
    grid.paint(region, inside & ~lumen, p.hu["muscle"])
    grid.paint(region, lumen & (y > centre[1] + semi[1] * p.stomach_gas), p.hu["gas"])
    _paint_organ(grid, abdomen, p.spleen, p.hu["spleen"], texture)
    start, end, radius = p.pancreas
    region = grid.region(np.minimum(start, end) - radius, np.maximum(start, end) + radius)
    distance, _ = tube(*grid.coords(region), start, end)
    grid.paint(region, (distance < radius) & abdomen[region], p.hu["pancreas"] + 6 * texture[region])
    for organ in p.kidneys:
        region, inside = _paint_organ(grid, abdomen, organ, p.hu["kidney"], texture)
        (cx, cy, cz), semi, angle = organ
        sinus = ((cx - np.sign(cx) * 0.5 * semi[0], cy + 0.2 * semi[1], cz), np.array(semi) * [0.4, 0.35, 0.5], angle)
        grid.paint(region, inside & (ellipsoid(*grid.coords(region), *sinus) < 1), p.hu["visceral_fat"])
    centre, semi = p.heart
    region = grid.around(centre, semi)
    x, y, z = grid.coords(region)
    heart = ellipsoid(x, y, z, centre, semi)
    above = z > p.diaphragm(x, y)
    grid.paint(region, (heart < 1) & above & cavity[region], p.hu["visceral_fat"])
    grid.paint(region, (heart < 0.9) & above & cavity[region], p.hu["blood"] + 4 * texture[region])
    _paint_back(grid, p, texture)


def _paint_back(grid: Grid, p: Patient, texture: np.ndarray) -> None:
    """Aorta, IVC, psoas and paraspinal muscles, vertebrae with discs, and ribs."""
    full = (slice(None),) * 3
    x, y, z = grid.coords(full)
    ax, ay, ar = p.aorta
    grid.paint(full, np.hypot(x - ax, y - ay) + 0 * z < ar, p.hu["blood"] + 3 * texture)
    ix, iy, ia, ib = p.ivc
    grid.paint(full, (((x - ix) / ia) ** 2 + ((y - iy) / ib) ** 2 < 1) & (z < p.liver_top + 5),
               p.hu["blood"] + 3 * texture)
    px, ptop, pa, pb = p.psoas
    grow = np.sqrt(np.clip((ptop - z) / 100, 0, 1))
    for side in (1, -1):
        psoas = ((x - side * px) / (pa * grow + 1e-3)) ** 2 + ((y - p.spine_y - 4) / (pb * grow + 1e-3)) ** 2 < 1
        grid.paint(full, psoas, p.hu["muscle"] + 4 * texture)
    arch = p.spine_y - p.vertebra
    sx, sa, sb = p.paraspinal
    depth = p.depth(x, y, z)
    for side in (1, -1):
        muscle = (((x - side * sx) / sa) ** 2 + ((y - arch + 28) / sb) ** 2 < 1) & (depth > p.skin + p.fat * 0.5)
        grid.paint(full, muscle, p.hu["muscle"] + 4 * texture)
    body = ((x / (p.vertebra * 1.15)) ** 2 + ((y - p.spine_y) / p.vertebra) ** 2) + 0 * z
    disc = ((z - p.disc_phase) % p.disc_period) < p.disc
    grid.paint(full, body < 1, np.where(disc, p.hu["disc"], p.hu["bone"]))
    grid.paint(full, (body < 0.72) & ~disc, p.hu["marrow"] + 30 * texture)
    # Arch and spinous process in every slice; transverse processes only away from the discs.
    mid_vertebra = np.abs((z - p.disc_phase - p.disc / 2) % p.disc_period - p.disc_period / 2) < p.disc_period / 4
    processes = ((((x / 7) ** 2 + ((y - arch + 22) / 16) ** 2) < 1)
                 | ((((np.abs(x) - 24) / 15) ** 2 + ((y - arch + 4) / 4) ** 2 < 1) & mid_vertebra)
                 | ((x / 14) ** 2 + ((y - arch + 6) / 8) ** 2 < 1)) & (depth > p.skin + 3)
    grid.paint(full, processes, p.hu["bone"] * 0.8 + 40 * texture)
    grid.paint(full, (x / 8) ** 2 + ((y - arch + 7) / 7) ** 2 + 0 * z < 1, p.hu["fluid"])  # spinal canal
    # Ribs: bands just inside the wall that descend (slope mm/rad) as they wind from the spine to the front.
    fat_end, cavity_start = p.wall(x, y, z)
    shell = (depth > cavity_start - 7) & (depth < cavity_start + 1)
    phi = np.abs(np.arctan2(x, -(y - arch)))
    for height, slope, reach in p.ribs:
        rib = shell & (np.abs(z - (height - slope * phi)) < 5) & (phi > 0.35) & (phi < reach)
        grid.paint(full, rib, np.where(phi > reach - 0.5, 120.0, p.hu["bone"] * 0.75 + 30 * texture))


def _paint_tumours(grid: Grid, p: Patient, texture: np.ndarray) -> None:
    """Hypodense lesions (class 2), only where the voxel is still liver."""
    for centre, semi, contrast in p.tumours:
        region = grid.around(centre, semi)
        x, y, z = grid.coords(region)
        lesion = (ellipsoid(x, y, z, centre, semi) < 1 + 0.1 * p.liver_field(x * 3, y * 3, z * 3)) \
            & (grid.label[region] == 1)
        grid.paint(region, lesion, p.hu["liver"] - contrast + 6 * texture[region], cls=2)


def make_volume(index: int, size: int = 128, slices: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HU int16 array, label uint8 array, 4x4 affine) of synthetic volume `index`, arrays in voxel order (size, size, slices)."""
    _check(size=size, slices=slices, seed=seed, index=index)
    patient = Patient(np.random.default_rng([seed, index]))
    noise_rng = np.random.default_rng([seed, index, size, slices, 1])
    affine = patient_affine(patient, size, slices)
    grid = Grid(affine, size, slices, patient.origin)
    # Fine tissue texture (about unit variance) and scanner noise live on the voxel grid.
    spacing = np.array([FIELD_OF_VIEW_MM / size, FIELD_OF_VIEW_MM / size, COVERAGE_MM / slices])
    texture = ndimage.gaussian_filter(noise_rng.standard_normal(grid.shape, dtype=np.float32), 3.0 / spacing)
    texture /= max(float(texture.std()), 1e-6)
    cavity, abdomen = _paint_body(grid, patient, texture)
    _paint_bowel(grid, patient, abdomen, texture)
    _paint_liver(grid, patient, abdomen, texture)
    _paint_organs(grid, patient, cavity, abdomen, texture)
    _paint_tumours(grid, patient, texture)
    # Scanner: slight blur (partial volume) and Gaussian noise.
    image = ndimage.gaussian_filter(grid.hu, 0.7 / spacing * [1, 1, 0.5] + 0.3)
    image += noise_rng.standard_normal(grid.shape, dtype=np.float32) * np.float32(patient.noise)
    hu = np.clip(np.rint(image), HU_MIN, HU_MAX).astype(np.int16)
    return hu, grid.label, affine


def _check(**values: int) -> None:
    """Refuse out-of-range arguments with one line naming the option."""
    limits = dict(size=(MIN_SIZE, MAX_SIZE), slices=(MIN_SLICES, MAX_SLICES), count=(1, MAX_COUNT),
                  seed=(0, 2 ** 63 - 1), index=(0, 2 ** 63 - 1))
    for name, value in values.items():
        low, high = limits[name]
        if not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise UserError(f"{name} must be an integer from {low} to {high} (got {value!r})")


def write_volumes(out: str | Path, count: int = 12, size: int = 128, slices: int = 48, seed: int = 0,
                  *, overwrite: bool = False) -> list[str]:
    """Write <out>/imagesTr/synthct_NNN_0000.nii.gz and <out>/labelsTr/synthct_NNN.nii.gz (Medical Segmentation Decathlon layout) plus <out>/dataset.json; return the case names."""
    _check(count=count, size=size, slices=slices, seed=seed)
    out = Path(out)
    images, labels = out / "imagesTr", out / "labelsTr"
    for folder in (images, labels):
        if not overwrite and folder.is_dir() and any(folder.iterdir()):
            raise UserError(f"{folder} already holds files; pass --overwrite (overwrite=True) to replace them")
    cases = [f"{CASE_PREFIX}{index:03d}" for index in range(count)]
    for index, case in enumerate(cases):
        hu, label, affine = make_volume(index, size, slices, seed)
        save_nifti(images / f"{case}_0000.nii.gz", hu, affine)
        save_nifti(labels / f"{case}.nii.gz", label, affine)
    # A larger earlier run would otherwise leave extra cases behind after an overwrite.
    for folder, suffix in ((images, "_0000.nii.gz"), (labels, ".nii.gz")):
        for stale in folder.glob(f"{CASE_PREFIX}*.nii.gz"):
            if stale.name[: -len(suffix)] not in cases or not stale.name.endswith(suffix):
                stale.unlink()
    write_json(out / "dataset.json", {
        "name": "SynthCT",
        "description": f"synthetic abdominal CT, {size}x{size}x{slices}, seed {seed} (python -m utils.synthetic --volumes)",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {str(number): name for number, name in enumerate(CLASS_NAMES)},
        "numTraining": count,
        "numTest": 0,
        "training": [{"image": f"./imagesTr/{case}_0000.nii.gz", "label": f"./labelsTr/{case}.nii.gz"}
                     for case in cases],
        "test": [],
    })
    return cases
