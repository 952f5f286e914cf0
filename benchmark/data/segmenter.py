"""The classical lung-field segmenter and the lung-field template it starts from (no weights, numpy/scipy).

Darkness inside the body, fused with a position prior that is first aligned to the image; the prior is the
built-in median lung field, blurred by how much lungs move between radiographs.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

CHUNK = 512  # images per step when averaging masks: bounded memory at any dataset size
SEGMENTER_VERSION = "1"  # bump whenever the segmenter's output changes: it names cached masks

# The median lung fields (pixels that are lung in at least half of the expert masks), as outlines in image
# fractions (x right, y down), traced on the smoothed mean of the 19 expert masks of tests/data (COVID-19
# Radiography and COVID-QU-Ex, resized to square). The image's left lung is the patient's right.
LUNG_FIELD_OUTLINES = (
    (
        (0.22, 0.68),
        (0.18, 0.67),
        (0.17, 0.60),
        (0.20, 0.34),
        (0.28, 0.16),
        (0.33, 0.11),
        (0.38, 0.10),
        (0.42, 0.14),
        (0.43, 0.22),
        (0.37, 0.55),
        (0.32, 0.64),
    ),
    (
        (0.81, 0.70),
        (0.79, 0.69),
        (0.76, 0.66),
        (0.71, 0.50),
        (0.62, 0.30),
        (0.60, 0.20),
        (0.64, 0.15),
        (0.71, 0.17),
        (0.77, 0.28),
        (0.84, 0.61),
        (0.83, 0.66),
    ),
)
# image widths: blurring the median field by this much gives the position prior, as wide as lungs vary in
# position and size between radiographs (best of 0.04-0.10 for the segmenter on the real samples)
TEMPLATE_SPREAD = 0.08


def template_field(size: int) -> np.ndarray:
    """(size, size) bool: the built-in median lung field."""
    canvas = Image.new("L", (size, size))
    draw = ImageDraw.Draw(canvas)
    for outline in LUNG_FIELD_OUTLINES:
        draw.polygon([(x * size, y * size) for x, y in outline], fill=1)
    return np.asarray(canvas, bool)


def template_probability(size: int) -> np.ndarray:
    """(size, size) float in [0, 1]: where lungs usually are, the classical segmenter's position prior."""
    return ndimage.gaussian_filter(template_field(size).astype(float), TEMPLATE_SPREAD * size)


def population_field(masks: np.ndarray, has_mask: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, str]:
    """Pixels that are lung in at least half of the pool's masks (the population-average field), or the
    built-in template when no image of the pool has a mask; with a line saying which."""
    size = masks.shape[-1]
    with_mask = pool[has_mask[pool]]
    if len(with_mask) == 0:
        return template_field(size), "the built-in median lung field (the training pool has no masks)"
    total = np.zeros((size, size))
    for start in range(0, len(with_mask), CHUNK):
        total += np.asarray(masks[with_mask[start : start + CHUNK]], float).sum(axis=0)
    return total / len(with_mask) >= 0.5, f"the median lung field of {len(with_mask)} training-pool masks"


SEGMENTER_SIZE = 64  # px: lungs span ~25 px at this size, enough for a patch grid; ~3 ms an image
STRETCH_PERCENTILES = (1.0, 99.0)  # intensity stretch that ignores burnt-in text and dead pixels
SMOOTHING_PX = 0.7  # noise and rib texture, at SEGMENTER_SIZE
OUTSIDE_AIR_LEVEL = 0.1  # stretched intensity of air around the body; the real samples' lungs sit above it
DARK_SHARE = 0.5  # body pixels darker than this quantile count as evidence for lung (lungs: 30-40 % of body)
RANK_WEIGHT = 2.0  # weight of global darkness (a rank in [0, 1]) against the prior's log-odds
CONTRAST_SCALE = 0.2  # image widths: the neighbourhood a pixel is darker than, to reach the dimmer bases
CONTRAST_WEIGHT = 0.6  # weight of local darkness, in standard deviations, against the prior's log-odds
PRIOR_FLOOR = 0.02  # log-odds floor -3.9 outweighs any darkness (~3 at most): no lung far from the field
ALIGN_STRENGTH = 0.5  # how far the prior moves toward the first segmentation (0: fixed, 1: all the way)
ALIGN_MAX_SCALE = 1.4  # zoomed or small chests: the prior may grow or shrink this much per lung
CLOSING_RADIUS_PX = 2  # closes rib shadows and small opacities on a lung's edge, at SEGMENTER_SIZE


def segment_lungs(image: np.ndarray) -> np.ndarray:
    """Unsupervised lung fields of a chest radiograph: uint8 {0, 1} at the image's (square) size.

    Plain thresholds fail on opacified lungs, which are as bright as soft tissue; here darkness is only
    evidence, added to the log-odds of a position prior, so a consolidated lung inside the usual lung
    field stays lung. The prior is aligned once to the first result (zoomed or small chests), then fused
    again. Air outside the body (dark, reaching the border) is never lung.
    """
    size = image.shape[-1]
    intensity = _normalised(image)
    outside = _outside_air(intensity)
    if outside.all():  # blank or unreadable image: no region rather than a guess
        return np.zeros((size, size), np.uint8)
    darkness = _darkness_evidence(intensity, outside)
    prior = template_probability(SEGMENTER_SIZE)
    first = _fuse(prior, darkness)
    lungs = _fuse(_aligned_prior(prior, first), darkness)
    resized = Image.fromarray(lungs.astype(np.uint8) * 255).resize((size, size), Image.Resampling.BILINEAR)
    return (np.asarray(resized) > 127).astype(np.uint8)


def _normalised(image: np.ndarray) -> np.ndarray:
    small = Image.fromarray(image).resize((SEGMENTER_SIZE, SEGMENTER_SIZE), Image.Resampling.BILINEAR)
    values = np.asarray(small, float)
    low, high = np.percentile(values, STRETCH_PERCENTILES)
    if high <= low:
        return np.zeros_like(values)
    return ndimage.gaussian_filter(np.clip((values - low) / (high - low), 0.0, 1.0), SMOOTHING_PX)


def _outside_air(intensity: np.ndarray) -> np.ndarray:
    """Dark pixels connected to the left, right or top border (the bottom is abdomen or cut-off lung)."""
    dark = intensity < OUTSIDE_AIR_LEVEL
    seeds = np.zeros_like(dark)
    seeds[:, 0] = seeds[:, -1] = seeds[0, :] = True
    return ndimage.binary_propagation(seeds & dark, mask=dark)


def _darkness_evidence(intensity: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """Log-odds contribution of darkness: global rank among body pixels plus local contrast; -inf outside."""
    body = np.sort(intensity[~outside])
    rank = np.searchsorted(body, intensity) / body.size
    brightened = np.where(outside, 1.0, intensity)  # outside air must not make its neighbours look bright
    contrast = brightened - ndimage.gaussian_filter(brightened, CONTRAST_SCALE * SEGMENTER_SIZE)
    spread = contrast[~outside].std() or 1.0
    evidence = RANK_WEIGHT * (DARK_SHARE - rank) - CONTRAST_WEIGHT * contrast / spread
    return np.where(outside, -np.inf, evidence)


def _fuse(prior: np.ndarray, darkness: np.ndarray) -> np.ndarray:
    """Lung where prior log-odds plus darkness is positive; the largest piece per side, closed and filled."""
    clipped = np.clip(prior, PRIOR_FLOOR, 1.0 - PRIOR_FLOOR)
    lungs = ndimage.binary_opening(np.log(clipped / (1.0 - clipped)) + darkness > 0)
    lungs = _largest_per_side(lungs)
    radius = CLOSING_RADIUS_PX
    disk = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius
    padded = np.pad(lungs, radius + 1)  # closing must not glue a lung to the image border
    closed = ndimage.binary_closing(padded, structure=disk)[radius + 1 : -radius - 1, radius + 1 : -radius - 1]
    return ndimage.binary_fill_holes(closed)


def sides(size: int) -> tuple[np.ndarray, np.ndarray]:
    left = np.zeros((size, size), bool)
    left[:, : size // 2] = True
    return left, ~left


def _largest_per_side(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    kept = np.zeros_like(mask)
    for side in sides(mask.shape[0]):
        if count == 0 or not (mask & side).any():
            continue
        areas = ndimage.sum(mask & side, labels, range(1, count + 1))
        kept |= (labels == 1 + int(np.argmax(areas))) & side
    return kept


def _aligned_prior(prior: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """Per side, the prior shifted and scaled part of the way toward the centroid and spread of ``lungs``."""
    aligned = np.zeros_like(prior)
    for side in sides(prior.shape[0]):
        core, found = _moments(side & (prior > 0.5)), _moments(side & lungs)
        if core is None or found is None:
            aligned = np.maximum(aligned, prior * side)
            continue
        scale = np.clip((found[2:] / core[2:]) ** ALIGN_STRENGTH, 1 / ALIGN_MAX_SCALE, ALIGN_MAX_SCALE)
        shift = (found[:2] - core[:2]) * ALIGN_STRENGTH
        rows, columns = np.mgrid[0 : prior.shape[0], 0 : prior.shape[1]].astype(float)
        source_rows = (rows - core[0] - shift[0]) / scale[0] + core[0]
        source_columns = (columns - core[1] - shift[1]) / scale[1] + core[1]
        moved = ndimage.map_coordinates(prior * side, [source_rows, source_columns], order=1, mode="constant")
        aligned = np.maximum(aligned, moved * side)
    return aligned


def _moments(mask: np.ndarray) -> Optional[np.ndarray]:
    """(row centre, column centre, row spread, column spread), or None for a region too small to measure."""
    rows, columns = np.nonzero(mask)
    if len(rows) < 5:
        return None
    return np.array([rows.mean(), columns.mean(), max(rows.std(), 0.5), max(columns.std(), 0.5)])
