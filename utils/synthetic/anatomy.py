"""A random synthetic patient in millimetres (body, organs, liver lobes, tumours) and the voxel grid it is painted on."""
from __future__ import annotations

import numpy as np

FIELD_OF_VIEW_MM = 380.0  # in-plane field of view: spacing = FIELD_OF_VIEW_MM / size
COVERAGE_MM = 240.0  # scanned length: slice thickness = COVERAGE_MM / slices (5 mm at 48 slices)
AIR = -1000.0  # HU

Region = tuple[slice, slice, slice]


class Field:
    """Smooth random field of about unit variance: a sum of plane waves in world millimetres."""

    def __init__(self, rng: np.random.Generator, waves: int, shortest: float, longest: float) -> None:
        """Draw `waves` random directions, wavelengths in [shortest, longest] mm and phases."""
        directions = rng.standard_normal((waves, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        self.k = (directions * (2 * np.pi / rng.uniform(shortest, longest, (waves, 1)))).astype(np.float32)
        self.phase = rng.uniform(0, 2 * np.pi, waves).astype(np.float32)
        self.scale = np.float32(np.sqrt(2.0 / waves))

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Field value at broadcastable world coordinates."""
        total = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), np.float32)
        for (kx, ky, kz), phase in zip(self.k, self.phase):
            total += np.cos(kx * x + ky * y + (kz * z + phase))
        return total * self.scale


class Grid:
    """Voxel centres in patient millimetres (RAS+, relative to the body centre) and the arrays being painted."""

    def __init__(self, affine: np.ndarray, size: int, slices: int, origin: np.ndarray) -> None:
        """World x, y per (i, j) and z per k: the rotation is about z, so z depends on k alone."""
        if np.any(affine[2, :2]) or np.any(affine[:2, 2]):
            raise ValueError("the grid assumes a rotation about z only")
        i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        self.plane = affine[:2, :2]
        self.shift = affine[:2, 3] - origin[:2]
        self.x = (self.plane[0, 0] * i + self.plane[0, 1] * j + self.shift[0]).astype(np.float32)
        self.y = (self.plane[1, 0] * i + self.plane[1, 1] * j + self.shift[1]).astype(np.float32)
        self.z0, self.dz = affine[2, 3] - origin[2], affine[2, 2]
        self.z = (self.dz * np.arange(slices) + self.z0).astype(np.float32)
        self.shape = (size, size, slices)
        self.hu = np.full(self.shape, AIR, np.float32)
        self.label = np.zeros(self.shape, np.uint8)

    def region(self, lo: tuple[float, float, float], hi: tuple[float, float, float]) -> Region:
        """Voxel index ranges covering the patient box [lo, hi] (mm)."""
        corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]]) - self.shift
        ij = corners @ np.linalg.inv(self.plane).T
        first = np.clip(np.floor(ij.min(axis=0)).astype(int) - 1, 0, self.shape[0])
        last = np.clip(np.ceil(ij.max(axis=0)).astype(int) + 2, 0, self.shape[0])
        k = sorted(((lo[2] - self.z0) / self.dz, (hi[2] - self.z0) / self.dz))
        k0 = int(np.clip(np.floor(k[0]) - 1, 0, self.shape[2]))
        k1 = int(np.clip(np.ceil(k[1]) + 2, 0, self.shape[2]))
        return slice(first[0], last[0]), slice(first[1], last[1]), slice(k0, k1)

    def around(self, centre: tuple[float, float, float], reach: tuple[float, float, float]) -> Region:
        """Voxel index ranges covering a box of half-sizes `reach` around `centre`."""
        return self.region(tuple(c - r for c, r in zip(centre, reach)), tuple(c + r for c, r in zip(centre, reach)))

    def coords(self, region: Region) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable x (n,m,1), y (n,m,1), z (1,1,s) of a region."""
        return (self.x[region[0], region[1], None], self.y[region[0], region[1], None], self.z[None, None, region[2]])

    def paint(self, region: Region, mask: np.ndarray, value: float | np.ndarray, cls: int | None = 0) -> None:
        """Set the masked voxels of `region` to `value` and their class (None keeps the class)."""
        mask = np.broadcast_to(mask, self.hu[region].shape)
        self.hu[region][mask] = value if np.isscalar(value) else np.broadcast_to(value, mask.shape)[mask]
        if cls is not None:
            self.label[region][mask] = cls


def ellipsoid(x: np.ndarray, y: np.ndarray, z: np.ndarray, centre, semi, angle: float = 0.0) -> np.ndarray:
    """Normalised radius (< 1 inside) of an ellipsoid rotated by `angle` about z."""
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = (dx * cos + dy * sin) / semi[0], (dy * cos - dx * sin) / semi[1]
    return np.sqrt(u * u + v * v + (dz / semi[2]) ** 2)


def tube(x: np.ndarray, y: np.ndarray, z: np.ndarray, start, end) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) from the segment start-end and the position along it (0..1)."""
    start, end = np.asarray(start, np.float32), np.asarray(end, np.float32)
    axis = end - start
    along = np.clip(((x - start[0]) * axis[0] + (y - start[1]) * axis[1] + (z - start[2]) * axis[2])
                    / float(axis @ axis), 0, 1)
    distance = np.sqrt((x - start[0] - along * axis[0]) ** 2 + (y - start[1] - along * axis[1]) ** 2
                       + (z - start[2] - along * axis[2]) ** 2)
    return distance, along


class Patient:
    """One patient's anatomy: sizes, positions and intensities drawn from (seed, index), in millimetres."""

    def __init__(self, rng: np.random.Generator) -> None:
        """Draw every shape and intensity; nothing here depends on the voxel grid."""
        u = rng.uniform
        # Scanner and table: body centre in world RAS+, grid rotation about z.
        self.origin = np.array([u(-15, 15), u(-20, 10), u(-250, -50)])
        self.fov_offset = np.array([u(-5, 5), u(-5, 5)])
        self.tilt = np.deg2rad(u(3, 8) * rng.choice([-1.0, 1.0]))
        # Body wall.
        self.a, self.b_front, self.b_back = u(140, 172), u(100, 125), u(92, 112)
        self.body_field, self.fat_field = Field(rng, 6, 150, 400), Field(rng, 6, 80, 200)
        self.skin, self.fat, self.muscle = 2.0, u(8, 30), u(8, 14)
        # Liver: z-range a fraction of the scanned length, top under the right dome of the diaphragm.
        length = u(0.52, 0.66) * COVERAGE_MM
        middle = u(-0.05, 0.05) * COVERAGE_MM
        self.liver_top, self.liver_bottom = middle + length / 2, middle - length / 2
        self.right_dome = (u(45, 75), u(-10, 20))
        self.left_dome = (-u(45, 75), u(-10, 15), self.liver_top - u(8, 20))
        self.dome_radius = u(90, 130)
        xr, yr = u(55, 72), u(-5, 15)
        self.lobes = [  # (centre, semi-axes, angle): right lobe, left lobe, inferior right tip, caudate
            ((xr, yr, middle + 0.12 * length), (u(68, 82), u(72, 90), 0.62 * length), u(-0.3, 0.3)),
            ((u(-30, -10), u(35, 55), self.liver_top - u(0.25, 0.33) * length),
             (u(50, 68), u(24, 34), u(0.2, 0.28) * length), u(-0.4, 0.1)),
            ((xr + u(5, 15), yr - u(0, 20), middle - 0.25 * length), (u(38, 50), u(38, 50), 0.27 * length), 0.0),
            ((u(5, 20), u(-15, 0), middle + 0.1 * length), (u(16, 22), u(14, 18), 0.15 * length), 0.0),
        ]
        self.liver_field, self.liver_bumps = Field(rng, 8, 60, 160), u(0.08, 0.14)
        # Spine and back.
        self.spine_y = -self.b_back + self.fat * 0.6 + u(62, 75)
        self.vertebra = u(16, 20)
        self.disc_period, self.disc_phase, self.disc = u(30, 36), u(0, 36), u(6, 8)
        self.paraspinal = (u(28, 36), u(24, 30), u(18, 23))
        self.psoas = (u(32, 42), self.liver_bottom + u(30, 50), u(20, 26), u(15, 20))
        # Vessels.
        self.aorta = (-u(14, 22), self.spine_y + self.vertebra + u(10, 14), u(10, 13))
        self.ivc = (u(18, 26), self.spine_y + self.vertebra + u(16, 24), u(11, 15), u(8, 11))
        # Other organs: (centre, semi-axes, angle) in mm.
        cavity_side = self.a - self.skin - self.fat - self.muscle
        # Spleen: long axis along the left posterolateral wall, from behind-medial to front-lateral.
        self.spleen = ((-(cavity_side - u(35, 45)), u(-25, -10), self.liver_top - u(0.3, 0.42) * length),
                       (u(20, 27), u(40, 52), u(40, 55)), u(0.5, 0.8))
        self.stomach = ((-u(40, 65), u(15, 40), self.liver_top - u(0.2, 0.3) * length),
                        (u(35, 50), u(30, 42), u(40, 55)), u(-0.5, 0.5))
        self.stomach_gas = u(0.0, 0.5)
        kidney_z = self.liver_bottom + u(5, 25)
        self.kidneys = [((side * u(62, 78), self.spine_y + u(-5, 10), kidney_z + (0 if side > 0 else u(10, 20))),
                         (u(25, 31), u(20, 26), u(48, 56)), side * u(0.3, 0.6)) for side in (1, -1)]
        self.gallbladder = (((xr - u(25, 40), u(25, 45), middle - 0.22 * length), (u(13, 17), u(15, 20), u(28, 36)),
                             u(-0.5, 0.5)) if rng.random() < 0.6 else None)
        pancreas_z = self.liver_bottom + u(0.3, 0.45) * length
        self.pancreas = ((u(10, 25), self.aorta[1] + u(25, 35), pancreas_z),
                         (-u(70, 90), self.aorta[1] + u(5, 15), pancreas_z + u(10, 25)), u(9, 13))
        self.heart = ((-u(20, 35), u(25, 40), self.liver_top + u(35, 50)), (u(60, 75), u(48, 58), u(55, 65)))
        self.colon = [(side * u(70, 95), u(-10, 25), u(14, 22)) for side in (1, -1)]
        self.bowel_field, self.gas_field = Field(rng, 10, 35, 70), Field(rng, 6, 25, 60)
        self.bowel_level = u(-0.1, 0.3)
        # Ribs (posterior height, descent in mm per radian, angular reach from the back) down to the costal margin.
        heights = COVERAGE_MM / 2 + u(40, 70) - np.cumsum(u(25, 30, 12))
        self.ribs = [(height, u(35, 45), min(2.7, 1.2 + 0.03 * (height - self.liver_bottom)))
                     for height in heights if height > self.liver_bottom + u(20, 40)]
        # Hepatic veins (to the IVC at the top) and portal vein branches (from the hilum).
        top = (self.ivc[0], self.ivc[1] + 5, self.liver_top - u(12, 20))
        hilum = (u(15, 30), self.ivc[1] + u(15, 25), middle - u(0.0, 0.1) * length)
        self.vessels = [(top, (xr + u(20, 45), yr + u(20, 45), middle + u(0.0, 0.15) * length), u(3, 5)),
                        (top, (xr + u(10, 40), yr - u(20, 40), middle - u(0.0, 0.15) * length), u(3, 5)),
                        (top, (-u(10, 35), u(35, 55), self.liver_top - u(0.2, 0.3) * length), u(2.5, 4)),
                        (hilum, (xr + u(10, 30), yr + u(-10, 10), middle - u(0.05, 0.2) * length), u(3, 5)),
                        (hilum, (-u(5, 25), u(30, 45), middle + u(0.0, 0.1) * length), u(2.5, 4))]
        # Tumours: centres well inside the right lobe's undeformed ellipsoid, below the dome.
        self.tumours = []
        if rng.random() < 0.8:
            for _ in range(int(rng.integers(1, 4))):
                radius = u(6, 16)
                for _attempt in range(50):
                    centre, semi, _angle = self.lobes[0]
                    point = np.array(centre) + np.array(semi) * rng.uniform(-0.6, 0.6, 3)
                    if self._deep_in_liver(point, radius):
                        self.tumours.append((tuple(point), (radius * u(0.8, 1.2), radius * u(0.8, 1.2), radius),
                                             u(20, 40)))
                        break
        # Intensities (HU).
        self.hu = dict(fat=u(-110, -85), visceral_fat=u(-105, -80), muscle=u(45, 55), liver=u(55, 66),
                       kidney=u(28, 36), blood=u(38, 46), bone=u(750, 1000), marrow=u(400, 480),
                       disc=u(70, 95), lung=u(-870, -820), fluid=u(0, 20), bowel=u(15, 35), gas=u(-950, -880))
        self.hu["spleen"] = self.hu["liver"] - u(8, 18)
        self.hu["liver_vessel"] = self.hu["liver"] - u(8, 15)  # unenhanced blood, blurred by partial volume
        self.hu["pancreas"] = u(35, 45)
        self.noise = u(10, 15)

    def diaphragm(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height (mm) of the diaphragm above (x, y): two domes, the right one higher."""
        (xr, yr), (xl, yl, zl) = self.right_dome, self.left_dome
        right = self.liver_top - ((x - xr) ** 2 + (y - yr) ** 2) / (2 * self.dome_radius)
        left = zl - ((x - xl) ** 2 + (y - yl) ** 2) / (2 * self.dome_radius)
        return np.maximum(right, left)

    def depth(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Distance (mm) inward from the skin along the ray from the body axis (negative outside)."""
        b = np.where(y > 0, self.b_front, self.b_back)
        rho = np.sqrt((x / self.a) ** 2 + (y / b) ** 2) / (1 + 0.04 * self.body_field(x, y, z))
        return np.sqrt(x * x + y * y) * (1 / np.maximum(rho, 1e-3) - 1)

    def wall(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Depths (mm) where the subcutaneous fat ends and where the abdominal cavity begins."""
        fat = self.skin + self.fat * (1 + 0.35 * self.fat_field(x, y, z))
        return fat, fat + self.muscle

    def liver_shape(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Union of the deformed lobes below the diaphragm (before the cavity and other organs clip it)."""
        bumps = 1 + self.liver_bumps * np.clip(self.liver_field(x, y, z), -2.5, 2.5)
        inside = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), bool)
        for centre, semi, angle in self.lobes:
            inside |= ellipsoid(x, y, z, centre, semi, angle) < bumps
        # The kidneys and the space behind them (to the back wall) are retroperitoneal: no liver there.
        for centre, semi, angle in self.kidneys:
            inside &= ellipsoid(x, np.maximum(y, centre[1]), z, centre, np.add(semi, 8), angle) >= 1
        return inside & (z < self.diaphragm(x, y) - 5)

    def _deep_in_liver(self, point: np.ndarray, radius: float) -> bool:
        """Whether a ball around `point` lies in the liver shape, inside the cavity, clear of the IVC."""
        offsets = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
        x, y, z = (point + 1.3 * radius * offsets).T.astype(np.float32)
        clear_of_ivc = np.hypot(x - self.ivc[0], y - self.ivc[1]) > self.ivc[2] + 8
        inside = self.liver_shape(x, y, z) & (self.depth(x, y, z) > self.wall(x, y, z)[1] + 5) & clear_of_ivc
        return bool(inside.all())


def patient_affine(patient: Patient, size: int, slices: int) -> np.ndarray:
    """Voxel -> RAS+ mm: LPS voxel order (columns -sx, -sy, +sz), rotated about z, centred on the scan."""
    spacing = np.diag([-FIELD_OF_VIEW_MM / size, -FIELD_OF_VIEW_MM / size, COVERAGE_MM / slices])
    cos, sin = np.cos(patient.tilt), np.sin(patient.tilt)
    rotation = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ spacing
    centre = np.array([patient.fov_offset[0], patient.fov_offset[1], patient.origin[2]])
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array([size, size, slices]) - 1) / 2)
    # Values a NIfTI header (float32) stores exactly, so a written file reads back the same affine.
    return affine.astype(np.float32).astype(np.float64)
