"""The embedded synthetic chest X-ray dataset ("phantom"): procedural radiographs with lung masks.

Every image is rendered from (index, seed) with numpy, scipy and Pillow only; nothing is shipped or
downloaded. Image formation follows attenuation: anatomy is painted into a 2-D "thickness" map
(soft tissue, air-filled lungs as negative thickness, heart, mediastinum, spine, ribs, clavicles,
vessels), blurred, and shown as 1 - exp(-k * thickness) with gamma, window and noise.

The four classes differ only inside the lung fields. Lesions are painted into their own thickness
layer, blurred, and multiplied by the binary lung mask before they join the anatomy, so no class
signal reaches a pixel outside the mask. Anatomy, exposure, noise and the clutter outside the lungs
(markers, ECG electrodes, a tube, borders) come from random streams that never see the label, so
they are shared by all classes. ``shortcut=True`` adds a class-dependent mark in a corner, to study
when region guidance matters.

Coordinates: x and y run from -1 to 1 across the image (y down); anatomy is defined in a patient
frame that a random pose (rotation, scale, shift) maps onto the image. The patient's left is on the
image right, as in a PA radiograph.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from benchmark.data.source import Item, resize_image, resize_mask
from benchmark.errors import DataError

CLASSES = ("COVID", "Lung_Opacity", "Normal", "Viral_Pneumonia")
GENERATOR_VERSION = "3"  # bump when output changes; part of the fingerprint

COVID, LUNG_OPACITY, NORMAL, VIRAL_PNEUMONIA = range(len(CLASSES))

# Peak lesion thickness per class as a (low, high) severity range, in the units of the thickness
# map (soft tissue ~1 at the body centre; the lungs remove 45-92 % of it). Calibrated with
# tests/test_phantom.py (default seed, 256 px cached at 64 px): logistic regression scores 0.69 on
# the images and 0.275 with the lungs blanked (chance 0.25), and 0.44 when trained on 80 images (the
# cpu profile's 5 % subset). 1.5x the first calibration (0.635 / 0.25 / 0.365): at that strength every
# network stayed at chance with 5 % of the labels, so the low-label columns could not rank methods.
SEVERITY = {
    COVID: (0.30, 0.675),
    LUNG_OPACITY: (0.525, 0.975),
    NORMAL: (0.0, 0.0),
    VIRAL_PNEUMONIA: (0.45, 0.90),
}

SUPERSAMPLE = 2  # bones, vessels and metal are drawn at 2x and averaged down: anti-aliased edges
REFERENCE_SIZE = 256  # the blur is specified in pixels at this size and scaled with the image

# Attenuation and display.
ATTENUATION = (1.3, 1.9)  # k in 1 - exp(-k t): exposure / beam quality
GAMMA = (1.0, 1.5)  # detector and processing curve
WINDOW_LOW = (0.0, 0.06)  # display black level
WINDOW_HIGH = (0.92, 1.0)  # display white level
NOISE_SIGMA = (0.008, 0.025)  # quantum noise, in display units
BLUR_SIGMA_PX = (0.6, 1.2)  # detector unsharpness at the reference size

# Pose: the whole patient frame is rotated, scaled and shifted in the image.
POSE_ROTATION_DEG = 3.0  # patients are positioned roughly upright
POSE_SCALE = (0.95, 1.04)  # distance to the detector; capped so the lungs stay inside the image
POSE_SHIFT = 0.04  # off-centre positioning

# Body habitus.
BODY_HALF_WIDTH = (0.86, 1.12)  # thin to broad torso; > 1 runs off the image edges
SOFT_TISSUE = (0.85, 1.2)  # thin to obese: soft-tissue thickness at the body centre
SHOULDER_Y = (-1.0, -0.8)  # where the torso narrows into the neck: at or just above the top edge
NECK_HALF_WIDTH = (0.22, 0.32)  # slim to thick neck between the dark upper corners

# Lungs: two superellipses with boundary noise, placed by an affine transform.
LUNG_SPAN = (0.58, 0.76)  # outer edge to outer edge, as a fraction of the image width
MEDIASTINAL_GAP = (0.12, 0.20)  # space between the lungs, in frame units (image width = 2)
LUNG_TOP = (-0.78, -0.64)  # apex height
LUNG_BOTTOM = (0.36, 0.56)  # costophrenic angle height
LUNG_SIZE_JITTER = 0.06  # per-lung relative change of width and height
LUNG_ROTATION_DEG = 4.0  # per-lung tilt
LUNG_SHEAR = 0.08  # per-lung shear
LUNG_APEX_EXPONENT = (2.0, 2.6)  # superellipse exponent of the upper half: a rounded apex
LUNG_BASE_EXPONENT = (3.5, 5.0)  # lower half: boxy, widest near the base, sharp costophrenic angles
LUNG_APEX_TAPER = (0.35, 0.55)  # lungs narrow towards the apex
LUNG_DOME = (0.10, 0.22)  # diaphragm dome bulging up into the base, in lung half-heights
LUNG_MEDIAL_RISE = (0.05, 0.15)  # the cardiophrenic end of the base sits higher than the lateral angle
LUNG_BOUNDARY_NOISE = 0.035  # amplitude of each low-frequency boundary harmonic
LUNG_AIR = (0.45, 0.92)  # depth of inspiration: the fraction of soft tissue the lungs replace
RIGHT_DIAPHRAGM_RAISE = 0.04  # the liver lifts the right hemidiaphragm
RETROCARDIAC_AIR = 0.3  # part of the lung air still seen through the heart, which displaces the rest

# Heart and mediastinum, in the patient frame.
HEART_CENTRE_X = (0.10, 0.20)  # towards the patient's left
HEART_CENTRE_Y = (0.18, 0.30)  # resting on the diaphragm
HEART_HALF_WIDTH = (0.30, 0.38)  # cardiothoracic ratio about 0.45 to 0.55
HEART_HALF_HEIGHT = (0.20, 0.27)  # a wider-than-tall silhouette, as on PA films
HEART_TILT_DEG = (10.0, 30.0)  # the apex points down and to the patient's left
MEDIASTINUM_HALF_WIDTH = (0.13, 0.19)  # the white central column, about a fifth of the chest
MEDIASTINUM_DENSITY = 0.35  # sternum and great vessels: brighter than the chest wall
SPINE_HALF_WIDTH = 0.075  # vertebral bodies, seen through the mediastinum
SPINE_DENSITY = 0.22  # faint behind the heart, clear in the neck and abdomen
VERTEBRA_PERIOD = 0.11  # vertebral body plus disc, in frame units
TRACHEA_AIR = 0.22  # a dark column over the bright mediastinum
CARINA_Y = (-0.36, -0.24)  # where the trachea ends, level with the aortic knob
HILUM_DENSITY = 0.18  # pulmonary arteries at the hila: a visible but soft density

# Bones drawn as polylines.
RIBS_PER_SIDE = 10  # posterior ribs visible above the diaphragm on a good inspiration
RIB_WIDTH = (0.040, 0.050)  # frame units
BONE_DENSITY = 0.16  # posterior rib and clavicle cortex
ANTERIOR_RIB_DENSITY = 0.06  # anterior ribs are fainter (thinner bone, costal cartilage)
CLAVICLE_WIDTH = 0.07  # clavicles are thicker than ribs

# Vessels branching from the hila.
VESSEL_TRUNKS = (3, 5)  # trunks per hilum
VESSEL_GENERATIONS = 3  # branchings after the trunk
VESSEL_DENSITY = 0.12  # lung markings: visible, fainter than ribs
PARENCHYMA_TEXTURE = 0.06  # class-independent lung texture, as a fraction of the lung air

# Abdomen below the diaphragm.
ABDOMEN_UNEVENNESS = 0.10  # bowel content and organs make the upper abdomen patchy
GAS_BUBBLES = (1, 4)  # stomach bubble and colonic gas
GAS_DENSITY = 0.25  # gas is darker than soft tissue but less dark than lung

# Clutter outside the lungs (class-independent).
# Burned-in annotations as seen on real films.
MARKER_TEXTS = ("L", "R", "AP", "PA", "PORTABLE", "SUPINE", "ERECT")
MARKER_SLOTS = ((0.03, 0.02), (0.60, 0.02), (0.03, 0.84), (0.55, 0.84))  # top-left corners of the
# places technologists use, along the top and bottom edges away from the lungs; one marker per slot
ECG_ELECTRODES = (0, 4)  # monitored patients carry several, many films none
ECG_RADIUS = (0.03, 0.045)  # electrode rings of 1-1.5 cm on a 35 cm film
METAL_DENSITY = 0.9  # metal and radio-opaque lines are nearly white
TUBE_PROBABILITY = 0.4  # share of (portable, ICU-like) films with a tube in place
BORDER_PROBABILITY = 0.25  # per edge: collimator or scanner border
BORDER_WIDTH = (0.01, 0.06)  # fraction of the image

# Shortcut: per class a corner and a shape, both outside the lungs.
SHORTCUT_CORNERS = ((-1, -1), (1, -1), (-1, 1), (1, 1))  # (x, y) sign per class
SHORTCUT_SHAPES = ("square", "disc", "triangle", "cross")  # per class
SHORTCUT_INSET = (0.10, 0.16)  # distance of the mark's centre from the edges, frame units
SHORTCUT_RADIUS = 0.05  # about 6 px at 256: still 1-2 px after caching at 64

# Lesion geometry, in lung-local coordinates (s: centre 0, lateral edge 1; t: apex -1, base 1).
COVID_BLOBS = (3, 7)  # multifocal ground-glass patches
COVID_BILATERAL = 0.75  # probability that the blobs are spread over both lungs
COVID_BLOB_SIGMA = (0.06, 0.12)  # patches of a few centimetres
OPACITY_RADIUS = (0.07, 0.15)  # a segmental to sub-lobar consolidation
OPACITY_BRONCHOGRAM = 0.5  # probability of air-bronchogram holes
VIRAL_HILAR_SIGMA = (0.13, 0.20)  # perihilar: spreads from the hila, spares the periphery
VIRAL_MESH_CELLS = 48  # reticulation period at any size: about 5 px at 256
VIRAL_MESH_WIDTH = 0.3  # half-width of the mesh lines in noise standard deviations: a fine net
VIRAL_HAZE = 0.15  # interstitial haze under the net, as a fraction of the peak


def label_of(index: int, seed: int) -> int:
    """Class of an item without rendering it: each block of four indices is a shuffled 0..3."""
    block_rng = np.random.default_rng([seed, index // 4, 0x1ABE1])
    return int(block_rng.permutation(len(CLASSES))[index % 4])


def generate(
    index: int, seed: int, size: int = 256, shortcut: bool = False, lesion_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, int]:
    """(image uint8 (size, size), lung mask uint8 {0, 1} (size, size), label).

    Deterministic in (index, seed, size, shortcut, lesion_scale). ``lesion_scale`` multiplies the
    class lesions only; 0 renders the same patient without disease.
    """
    if size < 16:
        raise DataError(f"phantom size must be >= 16 pixels, got {size}")
    if index < 0 or seed < 0:
        raise DataError(f"phantom index and seed must be >= 0, got index {index}, seed {seed}")
    label = label_of(index, seed)
    # Separate streams: anatomy, clutter and noise draws never depend on the label or the lesion.
    anatomy_rng, lesion_rng, clutter_rng, noise_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence([seed, index]).spawn(4)
    )
    frame = _Frame(size, anatomy_rng)
    thickness, lungs, mask = _anatomy(frame, anatomy_rng)
    blur_px = anatomy_rng.uniform(*BLUR_SIGMA_PX) * size / REFERENCE_SIZE
    thickness = ndimage.gaussian_filter(thickness, blur_px, truncate=3.0)

    lesion = _lesion(label, frame, lungs, lesion_rng)
    if label != NORMAL and lesion_scale != 0:
        # Blur first, then mask: the multiplication is what keeps the signal inside the lungs.
        blurred_lesion = ndimage.gaussian_filter(lesion, blur_px, truncate=3.0)
        thickness += blurred_lesion * mask * np.float32(lesion_scale)

    thickness += _metal_clutter(frame, mask, clutter_rng) * (1 - mask)
    image = _expose(thickness, anatomy_rng, noise_rng)
    image = _burn_in(image, mask, label if shortcut else None, size, clutter_rng)
    return image, mask.astype(np.uint8), label


class PhantomSource:
    """The phantom as a ``benchmark.data.source.Source``: rendered on demand at ``native_size``."""

    name = "phantom"
    classes = CLASSES

    def __init__(self, count: int = 2000, seed: int = 0, native_size: int = 256, shortcut: bool = False):
        if count < 1:
            raise DataError(f"phantom count must be >= 1, got {count}")
        if native_size < 16:
            raise DataError(f"phantom native size must be >= 16 pixels, got {native_size}")
        if seed < 0:
            raise DataError(f"phantom seed must be >= 0, got {seed}")
        self.count = count
        self.seed = seed
        self.native_size = native_size
        self.shortcut = shortcut
        self.items = [Item(key=f"phantom/{i:06d}", label=label_of(i, seed), has_mask=True) for i in range(count)]

    def load(self, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.count:
            raise DataError(f"phantom index {index} out of range 0..{self.count - 1}")
        image, mask, _ = generate(index, self.seed, self.native_size, self.shortcut)
        return resize_image(image, size), resize_mask(mask, size)

    def fingerprint(self) -> str:
        parameters = (GENERATOR_VERSION, self.count, self.seed, self.native_size, self.shortcut)
        identity = "phantom|" + "|".join(str(value) for value in parameters)
        return hashlib.sha256(identity.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Geometry helpers


def _affine(rotation_deg: float = 0.0, scale=(1.0, 1.0), shear: float = 0.0, shift=(0.0, 0.0)) -> np.ndarray:
    """3x3 matrix: scale, then shear, then rotate, then shift."""
    angle = np.deg2rad(rotation_deg)
    cos, sin = np.cos(angle), np.sin(angle)
    rotate = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
    shear_matrix = np.array([[1, shear, 0], [0, 1, 0], [0, 0, 1]])
    scale_matrix = np.diag([scale[0], scale[1], 1.0])
    shift_matrix = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]])
    return shift_matrix @ rotate @ shear_matrix @ scale_matrix


def _apply(matrix: np.ndarray, points) -> np.ndarray:
    """Transform (n, 2) points."""
    return np.asarray(points, dtype=np.float64) @ matrix[:2, :2].T + matrix[:2, 2]


def _super_gaussian(z: np.ndarray, power: int) -> np.ndarray:
    """exp(-z^power), a flat-topped band, for even power by repeated squaring (np.power is slow)."""
    z2 = z * z
    zp = z2
    for _ in range(power // 2 - 1):
        zp = zp * z2
    return np.exp(-zp)


@lru_cache(maxsize=8)
def _axis(size: int) -> np.ndarray:
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    axis.setflags(write=False)
    return axis


class _Frame:
    """Pixel grid, the random pose, and conversions from the patient frame to pixels."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size = size
        self.axis = _axis(size)
        scale = rng.uniform(*POSE_SCALE)
        self.pose = _affine(
            rng.uniform(-POSE_ROTATION_DEG, POSE_ROTATION_DEG),
            (scale, scale),
            0.0,
            rng.uniform(-POSE_SHIFT, POSE_SHIFT, 2),
        )
        self.canvas_scale = scale * size * SUPERSAMPLE / 2  # canvas pixels per patient-frame unit
        self.x, self.y = self.coordinates_in(self.pose)  # patient-frame coordinates of every pixel

    def coordinates_in(self, to_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates of every pixel in the frame that ``to_image`` maps onto the image."""
        inverse = np.linalg.inv(to_image).astype(np.float32)
        u, v = self.axis[None, :], self.axis[:, None]
        return (inverse[0, 0] * u + inverse[0, 1] * v + inverse[0, 2], inverse[1, 0] * u + inverse[1, 1] * v + inverse[1, 2])

    def to_canvas(self, patient_points) -> np.ndarray:
        """Patient-frame points as (n, 2) pixel positions on the supersampled canvas."""
        return (_apply(self.pose, patient_points) + 1) * (self.size * SUPERSAMPLE / 2)

    def new_canvas(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        canvas = Image.new("L", (self.size * SUPERSAMPLE,) * 2, 0)
        return canvas, ImageDraw.Draw(canvas)

    def read_canvas(self, canvas: Image.Image) -> np.ndarray:
        """Average the supersampled canvas down to the image grid, as float32 in [0, 1]."""
        return np.asarray(canvas.reduce(SUPERSAMPLE), dtype=np.float32) * np.float32(1 / 255)


def _stroke(draw: ImageDraw.ImageDraw, points: np.ndarray, width: float, fill: int) -> None:
    """A thick polyline (canvas pixels) as one polygon: smooth joints at a fraction of line+joint cost."""
    tangent = np.gradient(points, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal *= (width / 2) / np.linalg.norm(normal, axis=1, keepdims=True)
    outline = np.concatenate([points + normal, (points - normal)[::-1]])
    draw.polygon([tuple(p) for p in outline], fill=fill)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean noise of about unit variance with features about size / cells pixels wide."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))


def _gaussian_blob(frame: _Frame, centre, sigma_x: float, sigma_y: float) -> np.ndarray:
    """Axis-aligned Gaussian in image coordinates, built as an outer product (cheap)."""
    gx = np.exp(-0.5 * ((frame.axis - np.float32(centre[0])) / np.float32(sigma_x)) ** 2)
    gy = np.exp(-0.5 * ((frame.axis - np.float32(centre[1])) / np.float32(sigma_y)) ** 2)
    return np.outer(gy, gx)


# ----------------------------------------------------------------------------------------------
# Anatomy


class _Lung:
    """One lung with local coordinates s (centre 0, lateral edge 1) and t (apex -1, base 1)."""

    def __init__(self, side: int, frame: _Frame, rng: np.random.Generator, span: float, gap: float, top: float, bottom: float):
        self.side = side  # -1: patient right (image left), +1: patient left (image right)
        if side < 0:
            bottom -= RIGHT_DIAPHRAGM_RAISE
        half_width = (span - gap / 2) / 2 * (1 + rng.uniform(-LUNG_SIZE_JITTER, LUNG_SIZE_JITTER))
        half_height = (bottom - top) / 2 * (1 + rng.uniform(-LUNG_SIZE_JITTER, LUNG_SIZE_JITTER))
        centre = (side * (span + gap / 2) / 2, (top + bottom) / 2)
        # A negative x scale mirrors the right lung, so that s > 0 is lateral for both.
        self.to_patient = _affine(
            rng.uniform(-LUNG_ROTATION_DEG, LUNG_ROTATION_DEG),
            (side * half_width, half_height),
            rng.uniform(-LUNG_SHEAR, LUNG_SHEAR),
            centre,
        )
        self.to_image = frame.pose @ self.to_patient
        apex_exponent = np.float32(rng.uniform(*LUNG_APEX_EXPONENT))
        base_exponent = np.float32(rng.uniform(*LUNG_BASE_EXPONENT))
        taper = rng.uniform(*LUNG_APEX_TAPER)
        dome = rng.uniform(*LUNG_DOME)
        medial_rise = rng.uniform(*LUNG_MEDIAL_RISE)
        harmonics = [
            (k, rng.uniform(-LUNG_BOUNDARY_NOISE, LUNG_BOUNDARY_NOISE), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4, 5)
        ]

        s, t = frame.coordinates_in(self.to_image)
        # Clipping far-away pixels keeps them outside and the powers below cheap.
        s, t = np.clip(s, -1.5, 1.5), np.clip(t, -1.5, 1.5)
        width = 1 - taper * ((1 - np.clip(t, -1, 1)) / 2) ** 2
        s_inner = np.clip(s, -1, 1)
        # Below the middle, t is stretched so that the base follows the concave diaphragm.
        base_height = 1 - dome * (1 - s_inner * s_inner) - medial_rise * (1 - s_inner) / 2
        base = np.where(t > 0, t / base_height, t)
        s_scaled = s / width
        angle = np.arctan2(base, s_scaled)
        radius = 1 + sum(a * np.cos(k * angle + phase) for k, a, phase in harmonics)
        exponent = np.where(t > 0, base_exponent, apex_exponent)
        level = (np.abs(s_scaled) ** exponent + np.abs(base) ** exponent) / radius**exponent
        self.inside = level < 1
        # Dome-shaped depth: deepest in the middle, steep at the pleura like a real lung.
        self.depth = np.sqrt(np.clip(1 - level, 0, 1))

    def to_image_points(self, local_points) -> np.ndarray:
        return _apply(self.to_image, local_points)


def _anatomy(frame: _Frame, rng: np.random.Generator):
    """Thickness map of the patient, the two lungs, and the binary lung mask (float32)."""
    x, y, size = frame.x, frame.y, frame.size

    # Torso: a cylinder-like soft-tissue profile that narrows above the shoulders into the neck.
    body_half_width = rng.uniform(*BODY_HALF_WIDTH)
    neck = rng.uniform(*NECK_HALF_WIDTH)
    shoulder_y = rng.uniform(*SHOULDER_Y)
    shoulders = 1 / (1 + np.exp(-(y - shoulder_y) / 0.06))  # a slope about 0.06 tall
    half_width = neck + (body_half_width - neck) * shoulders
    soft_tissue = np.float32(rng.uniform(*SOFT_TISSUE))
    thickness = np.sqrt(np.clip(1 - (x / half_width) ** 2, 0, 1)) * soft_tissue

    span = rng.uniform(*LUNG_SPAN)
    gap = rng.uniform(*MEDIASTINAL_GAP)
    top = rng.uniform(*LUNG_TOP)
    bottom = rng.uniform(*LUNG_BOTTOM)
    lungs = [_Lung(side, frame, rng, span, gap, top, bottom) for side in (-1, 1)]

    heart_to_patient = _affine(
        rng.uniform(*HEART_TILT_DEG),
        (rng.uniform(*HEART_HALF_WIDTH), rng.uniform(*HEART_HALF_HEIGHT)),
        0.0,
        (rng.uniform(*HEART_CENTRE_X), rng.uniform(*HEART_CENTRE_Y)),
    )
    hx, hy = frame.coordinates_in(frame.pose @ heart_to_patient)
    in_heart = hx * hx + hy * hy < 1

    # The lung mask excludes the heart shadow, as in manual chest X-ray segmentations.
    mask = ((lungs[0].inside | lungs[1].inside) & ~in_heart).astype(np.float32)
    lung_depth = np.maximum(lungs[0].depth, lungs[1].depth)
    texture = _smooth_noise(rng, size, 24) * np.float32(PARENCHYMA_TEXTURE)  # blotches ~10 px at 256
    air = lung_depth * (np.float32(rng.uniform(*LUNG_AIR)) + texture) * soft_tissue
    air *= 1 - np.float32(1 - RETROCARDIAC_AIR) * in_heart
    thickness -= air

    # Mediastinum: a flat-topped central band, slightly to the patient's left, plus the aortic knob.
    mediastinum = _super_gaussian((x - 0.02) / np.float32(rng.uniform(*MEDIASTINUM_HALF_WIDTH)), 4)
    aortic_knob = _super_gaussian(np.sqrt((x - 0.15) ** 2 + (y + 0.36) ** 2) / np.float32(0.08), 2)
    thickness += (mediastinum + 0.5 * aortic_knob) * np.float32(MEDIASTINUM_DENSITY)

    # Spine: vertebral bodies separated by disc spaces 30 % less dense.
    vertebra_phase = np.float32(np.pi / VERTEBRA_PERIOD) * y + np.float32(rng.uniform(0, np.pi))
    vertebrae = 0.7 + 0.3 * np.cos(vertebra_phase) ** 2
    spine = _super_gaussian(x / np.float32(SPINE_HALF_WIDTH), 6)
    thickness += spine * vertebrae * np.float32(SPINE_DENSITY)

    # Trachea: a 0.07 wide air column, slightly tilted, ending at the carina.
    carina = rng.uniform(*CARINA_Y)
    trachea_column = _super_gaussian((x - 0.02 * (y - carina)) / np.float32(0.035), 4)
    trachea = trachea_column / (1 + np.exp(np.minimum((y - carina) / 0.02, 30)))  # capped: no overflow
    thickness -= trachea * np.float32(TRACHEA_AIR)

    # Hila: just lateral to the mediastinum, a little above mid-lung; taller than wide.
    hila = [np.array([lung.side * (gap / 2 + 0.08), rng.uniform(-0.18, -0.06)]) for lung in lungs]
    for hilum in hila:
        centre = _apply(frame.pose, [hilum])[0]
        thickness += _gaussian_blob(frame, centre, 0.05, 0.09) * np.float32(HILUM_DENSITY)
    thickness += _bones(frame, rng, span, top, bottom)
    thickness += _vessels(frame, rng, hila) * lung_depth * np.float32(VESSEL_DENSITY)

    # Abdomen: organ-sized unevenness and bowel gas below the diaphragm.
    below = 1 / (1 + np.exp(np.minimum(-(y - bottom) / 0.05, 30)))
    thickness += below * _smooth_noise(rng, size, 6) * np.float32(ABDOMEN_UNEVENNESS)
    gas = np.zeros((size, size), np.float32)
    for _ in range(rng.integers(GAS_BUBBLES[0], GAS_BUBBLES[1] + 1)):
        centre = _apply(frame.pose, [[rng.uniform(-0.6, 0.7), rng.uniform(bottom + 0.12, 1.0)]])[0]
        gas += _gaussian_blob(frame, centre, rng.uniform(0.04, 0.1), rng.uniform(0.03, 0.07))
    thickness -= gas * (1 - mask) * np.float32(GAS_DENSITY)
    return thickness.astype(np.float32), lungs, mask


def _bones(frame: _Frame, rng: np.random.Generator, span: float, top: float, bottom: float) -> np.ndarray:
    """Curved posterior ribs, fainter anterior ribs and clavicles, drawn at 2x as polygons."""
    posterior, draw_posterior = frame.new_canvas()
    anterior, draw_anterior = frame.new_canvas()
    rib_width = rng.uniform(*RIB_WIDTH) * frame.canvas_scale
    spacing = (bottom - top + 0.12) / (RIBS_PER_SIDE - 0.5)
    u = np.linspace(0, 1, 14)[:, None]
    for side in (-1, 1):
        for k in range(RIBS_PER_SIDE):
            start_y = top - 0.04 + k * spacing + rng.normal(0, 0.01)
            # Upper ribs are short tight arcs; lower ribs reach the chest wall beyond the lung.
            reach = (span + 0.10) * (0.45 + 0.55 * min(1.0, (k + 1) / 4) ** 0.5)
            # Posterior rib: rises from the spine in an arch and turns down at the chest wall.
            lateral = 0.05 + reach * u
            height = start_y - reach * 0.16 * np.sin(np.pi * 0.8 * u) + reach * 0.30 * u**3
            points = frame.to_canvas(np.hstack([side * lateral, height]))
            _stroke(draw_posterior, points, rib_width, 255)
            _stroke(draw_posterior, points, rib_width * 0.5, 150)  # bright cortex, lighter marrow
            # Anterior rib: from the chest wall down and inwards; it ends where the (invisible)
            # costal cartilage begins.
            end_x, end_y = side * lateral[-1, 0], height[-1, 0]
            inner_x = side * rng.uniform(0.22, 0.34)
            anterior_points = np.hstack([end_x + (inner_x - end_x) * u**0.8, end_y + (0.10 + 0.25 * reach) * np.sqrt(u)])
            _stroke(draw_anterior, frame.to_canvas(anterior_points), rib_width, 255)
        # Clavicle: a gentle S from the sternal notch, up and out over the apex to the shoulder.
        c = np.linspace(0, 1, 12)[:, None]
        notch_y = top + 0.24 + rng.normal(0, 0.03)
        clavicle = np.hstack([side * (0.09 + (span + 0.02) * c), notch_y - 0.26 * c + 0.04 * np.sin(2 * np.pi * c)])
        points = frame.to_canvas(clavicle)
        _stroke(draw_posterior, points, CLAVICLE_WIDTH * frame.canvas_scale, 255)
        _stroke(draw_posterior, points, CLAVICLE_WIDTH * frame.canvas_scale * 0.5, 190)
    return frame.read_canvas(posterior) * np.float32(BONE_DENSITY) + frame.read_canvas(anterior) * np.float32(
        ANTERIOR_RIB_DENSITY
    )


def _vessels(frame: _Frame, rng: np.random.Generator, hila) -> np.ndarray:
    """Branching vessel trees from each hilum, thinning towards the periphery."""
    canvas, draw = frame.new_canvas()
    for hilum in hila:
        side = np.sign(hilum[0])
        trunks = rng.integers(VESSEL_TRUNKS[0], VESSEL_TRUNKS[1] + 1)
        # Fan the trunks from up-and-out to down-and-out (angles from the lateral direction, y down).
        for angle in np.linspace(-75, 70, trunks) + rng.normal(0, 8, trunks):
            branches = [(hilum, np.deg2rad(angle), 0.17, 0.03, 0)]
            while branches:
                start, theta, length, width, generation = branches.pop()
                end = start + length * np.array([side * np.cos(theta), np.sin(theta)])
                segment = frame.to_canvas([start, end])
                draw.line([tuple(p) for p in segment], fill=255, width=max(1, round(width * frame.canvas_scale)))
                if generation < VESSEL_GENERATIONS:
                    # Two children per branch, turned 15-35 degrees, shorter and thinner.
                    for turn in (-1, 1):
                        child_theta = theta + turn * rng.uniform(0.25, 0.6)
                        branches.append((end, child_theta, length * 0.75, width * 0.65, generation + 1))
    return frame.read_canvas(canvas)


# ----------------------------------------------------------------------------------------------
# Lesions: the class signal, in thickness units, before masking


def _lesion(label: int, frame: _Frame, lungs, rng: np.random.Generator) -> np.ndarray:
    """The class's lesion thickness over the whole grid; the caller blurs it and masks it to the lungs."""
    size = frame.size
    severity = np.float32(rng.uniform(*SEVERITY[label]))
    lesion = np.zeros((size, size), np.float32)
    if label == COVID:
        count = rng.integers(COVID_BLOBS[0], COVID_BLOBS[1] + 1)
        bilateral = rng.random() < COVID_BILATERAL
        first = rng.integers(2)
        for i in range(count):
            lung = lungs[(first + i) % 2] if bilateral else lungs[first]
            # Peripheral lower zone: the lateral part of the lung, below its middle.
            centre = lung.to_image_points([[rng.uniform(0.35, 0.85), rng.uniform(0.0, 0.75)]])[0]
            sigma = rng.uniform(*COVID_BLOB_SIGMA)
            weight = rng.uniform(0.6, 1.0)
            lesion += weight * _gaussian_blob(frame, centre, sigma * rng.uniform(0.8, 1.25), sigma)
        lesion *= 0.8 + 0.2 * _smooth_noise(rng, size, 20)  # hazy ground glass, slightly patchy
    elif label == LUNG_OPACITY:
        lung = lungs[rng.integers(2)]
        centre = lung.to_image_points([[rng.uniform(-0.5, 0.7), rng.uniform(-0.5, 0.7)]])[0]
        radius_x = rng.uniform(*OPACITY_RADIUS)
        radius_y = radius_x * rng.uniform(0.7, 1.4)
        distance = ((frame.axis[None, :] - np.float32(centre[0])) / np.float32(radius_x)) ** 2 + (
            (frame.axis[:, None] - np.float32(centre[1])) / np.float32(radius_y)
        ) ** 2
        distance += 0.35 * _smooth_noise(rng, size, 24)  # lobulated outline
        edge = np.float32(3.0 / (size * radius_x))  # a sharp border, about 1.5 px wide
        region = np.clip((1 - distance) / edge + 0.5, 0, 1)
        fill = 0.85 + 0.15 * _smooth_noise(rng, size, size // 4)  # noisy consolidation
        if rng.random() < OPACITY_BRONCHOGRAM:
            fill *= 1 - 0.7 * _bronchogram(frame, centre, radius_x, rng)
        lesion = region * fill
    elif label == VIRAL_PNEUMONIA:
        # Perihilar envelope in both lungs times a reticular mesh (zero crossings of band-limited noise).
        for lung in lungs:
            centre = lung.to_image_points([[-0.45, -0.05]])[0]
            sigma = rng.uniform(*VIRAL_HILAR_SIGMA)
            lesion += _gaussian_blob(frame, centre, sigma, sigma * 1.3)
        mesh = np.exp(-((_smooth_noise(rng, size, VIRAL_MESH_CELLS) / np.float32(VIRAL_MESH_WIDTH)) ** 2))
        lesion *= VIRAL_HAZE + (1 - VIRAL_HAZE) * mesh
    return lesion * severity


def _bronchogram(frame: _Frame, centre, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A few thin branching air-filled bronchi crossing the consolidation (image coordinates)."""
    canvas, draw = frame.new_canvas()
    scale = frame.size * SUPERSAMPLE / 2
    for _ in range(rng.integers(1, 3)):
        theta = rng.uniform(0, 2 * np.pi)
        start = np.asarray(centre) - 0.8 * radius * np.array([np.cos(theta), np.sin(theta)])
        end = np.asarray(centre) + 0.6 * radius * np.array([np.cos(theta), np.sin(theta)])
        branch = end + 0.4 * radius * np.array([np.cos(theta + 0.6), np.sin(theta + 0.6)])
        draw.line(
            [tuple((p + 1) * scale) for p in (start, end, branch)], fill=255, width=max(1, round(0.012 * scale)), joint="curve"
        )
    return frame.read_canvas(canvas)


# ----------------------------------------------------------------------------------------------
# Clutter, exposure and burned-in marks


def _metal_clutter(frame: _Frame, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ECG electrodes and a tube: radio-opaque, class-independent, kept off the lungs."""
    canvas, draw = frame.new_canvas()
    scale = frame.size * SUPERSAMPLE / 2
    for _ in range(rng.integers(ECG_ELECTRODES[0], ECG_ELECTRODES[1] + 1)):
        radius = rng.uniform(*ECG_RADIUS)
        for _attempt in range(8):  # resample until it lands off the lungs
            centre = rng.uniform(-0.9, 0.9, 2)
            col, row = ((centre + 1) * frame.size / 2).astype(int)
            reach = int(radius * frame.size / 2) + 2
            if not mask[max(0, row - reach) : row + reach, max(0, col - reach) : col + reach].any():
                left, top = (centre - radius + 1) * scale
                right, bottom = (centre + radius + 1) * scale
                draw.ellipse([left, top, right, bottom], fill=110, outline=255, width=max(1, round(radius * scale * 0.3)))
                break
    if rng.random() < TUBE_PROBABILITY:
        # A feeding tube down the midline, behind the mediastinum.
        v = np.linspace(-1.1, 0.9, 16)
        path = np.stack([0.03 * np.sin(3 * v + rng.uniform(0, 6)) + rng.uniform(-0.03, 0.03), v], axis=1)
        draw.line([tuple(p) for p in frame.to_canvas(path)], fill=255, width=max(1, round(0.014 * frame.canvas_scale)))
    return frame.read_canvas(canvas) * np.float32(METAL_DENSITY)


def _expose(thickness: np.ndarray, anatomy_rng: np.random.Generator, noise_rng: np.random.Generator) -> np.ndarray:
    """Attenuation -> detector curve -> window -> noise, as a float image of about [0, 1]."""
    attenuation = np.float32(anatomy_rng.uniform(*ATTENUATION))
    gamma = np.float32(anatomy_rng.uniform(*GAMMA))
    low, high = np.float32(anatomy_rng.uniform(*WINDOW_LOW)), np.float32(anatomy_rng.uniform(*WINDOW_HIGH))
    noise_sigma = np.float32(anatomy_rng.uniform(*NOISE_SIGMA))
    intensity = (1 - np.exp(-attenuation * np.maximum(thickness, 0))) ** gamma
    intensity = low + (high - low) * intensity
    intensity += noise_rng.standard_normal(thickness.shape, dtype=np.float32) * noise_sigma
    return intensity


@lru_cache(maxsize=32)
def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, pixels))


def _burn_in(intensity: np.ndarray, mask: np.ndarray, shortcut_label, size: int, rng: np.random.Generator) -> np.ndarray:
    """Quantise, then add borders, side markers and the optional shortcut; lung pixels stay untouched."""
    image = np.clip(intensity * 255 + 0.5, 0, 255).astype(np.uint8)
    lungs = image.copy()
    border_value = 0 if rng.random() < 0.5 else 255
    for edge in range(4):
        if rng.random() < BORDER_PROBABILITY:
            width = max(1, int(rng.uniform(*BORDER_WIDTH) * size))
            rotated = np.rot90(image, edge)  # a view: writing its left columns writes edge ``edge``
            rotated[:, :width] = border_value
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    texts = rng.choice(MARKER_TEXTS, rng.integers(1, 4), replace=False)
    for text, slot in zip(texts, rng.permutation(len(MARKER_SLOTS))):
        font = _font(int(size * rng.uniform(0.04, 0.07)))
        column, row = np.array(MARKER_SLOTS[slot]) + rng.uniform(0, 0.08, 2)
        draw.text((column * size, row * size), str(text), fill=int(rng.uniform(200, 256)), font=font)
    if shortcut_label is not None:
        _draw_shortcut(draw, shortcut_label, size, rng)
    return np.where(mask > 0, lungs, np.asarray(picture))


def _draw_shortcut(draw: ImageDraw.ImageDraw, label: int, size: int, rng: np.random.Generator) -> None:
    """A white mark whose corner and shape both give away the class."""
    inset = rng.uniform(*SHORTCUT_INSET, 2)
    cx, cy = (np.array(SHORTCUT_CORNERS[label]) * (1 - inset) + 1) * size / 2
    r = SHORTCUT_RADIUS * size / 2
    shape = SHORTCUT_SHAPES[label]
    if shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=255)
    else:
        bar = max(1, round(r / 2))
        draw.line([(cx - r, cy), (cx + r, cy)], fill=255, width=bar)
        draw.line([(cx, cy - r), (cx, cy + r)], fill=255, width=bar)
