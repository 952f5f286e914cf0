"""Lung regions for region-guided masking: where each image's lung mask comes from, and how good it is.

RGMIM masks lung patches first, so it needs a region per image (§3.1). ``data.mask_source`` picks it:

  gt         the dataset's own (expert) masks; ``data.mask_dir`` swaps in the user's own masks, paired by name
  classical  an unsupervised lung-field segmenter (numpy/scipy, no weights, a few ms an image on a CPU):
             darkness inside the body, fused with a position prior that is first aligned to the image
  prior      one region for every image: the pixels that are lung in at least half of the training pool's
             masks, or the built-in template's median lung field when the pool has none
  sam        Segment Anything (§5; optional package, a checkpoint the user supplies) prompted with one box
             per lung from the classical segmenter
  none       no region: every ``has_mask`` is False and RGMIM's masking is MAE's random masking

Derived masks are computed from the cached working-size images (never decoded again) and cached once per
source beside the image cache (``cache.ensure_mask_cache``). An empty mask counts as no region.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from benchmark.config import DataConfig, stable_hash
from benchmark.data.cache import CacheEntry, ensure_mask_cache
from benchmark.data.layouts import IMAGE_SUFFIXES, SHOWN_NAMES, read_mask, resize_mask
from benchmark.data.source import DataError, Source

MASK_SOURCES = ("gt", "classical", "prior", "sam", "none")
SAM_MODELS = ("vit_b", "vit_l", "vit_h")
SEGMENTER_VERSION = "1"  # bump whenever the classical segmenter's output changes: it names cached masks
SAM_PROMPT_VERSION = "1"  # the same for the SAM prompting below
CHUNK = 512  # images per step when averaging or scoring masks: bounded memory at any dataset size


# ---------------------------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class Regions:
    """The lung region of every image of a dataset, from one source."""

    masks: np.ndarray  # (N, S, S) uint8 {0, 1}, read-only (a memmap or a broadcast view)
    has_mask: np.ndarray  # (N,) bool; False: no region, RGMIM masks this image randomly
    label: str  # gt | mask-dir | classical | prior | sam | none
    detail: str  # one line on where the masks came from


def region_label(mask_source: str, mask_dir: Optional[str]) -> str:
    """The name a run's region goes by in reports: the user's own masks are not the dataset's gt."""
    return "mask-dir" if mask_source == "gt" and mask_dir is not None else mask_source


def check_mask_options(data_cfg: DataConfig) -> None:
    """Fail before any work on options that do not fit the source (they would change run ids for nothing)
    and on a missing SAM package, checkpoint or mask folder."""
    if data_cfg.mask_source not in MASK_SOURCES:
        raise DataError(f"data.mask_source={data_cfg.mask_source!r}: expected one of {', '.join(MASK_SOURCES)}")
    if data_cfg.mask_dir is not None and data_cfg.mask_source != "gt":
        raise DataError(f"--mask-dir replaces the dataset's own masks, so it goes with --mask-source gt, not "
                        f"{data_cfg.mask_source}; drop one of them")
    if data_cfg.sam_checkpoint is not None and data_cfg.mask_source != "sam":
        raise DataError(f"--sam-checkpoint is only used by --mask-source sam (got {data_cfg.mask_source}); "
                        f"drop it or add --mask-source sam")
    if data_cfg.sam_model not in SAM_MODELS:
        raise DataError(f"data.sam_model={data_cfg.sam_model!r}: expected one of {', '.join(SAM_MODELS)}")
    if data_cfg.mask_source == "sam":  # before any image is decoded
        check_sam_available(data_cfg.sam_checkpoint, data_cfg.sam_model)
    if data_cfg.mask_dir is not None:
        _check_mask_dir(Path(data_cfg.mask_dir).expanduser())


def own_mask_policy(data_cfg: DataConfig) -> str:
    """``missing_masks`` for opening the dataset: training on another region needs no dataset mask, so the
    default "error" relaxes to "allow" (the same images, hence the same fingerprint and split)."""
    trains_on_own = data_cfg.mask_source == "gt" and data_cfg.mask_dir is None
    if trains_on_own or data_cfg.missing_masks != "error":
        return data_cfg.missing_masks
    return "allow"


def resolve_regions(data_cfg: DataConfig, source: Source, entry: CacheEntry, is_train: np.ndarray,
                    progress: bool = True) -> Regions:
    """The regions of ``data.mask_source`` for the images of ``entry``, computed and cached if needed.
    The caller has run ``check_mask_options``."""
    keys = [item.key for item in source.items]
    count, size = entry.images.shape[0], entry.images.shape[-1]
    chosen = data_cfg.mask_source
    if chosen == "gt" and data_cfg.mask_dir is None:
        return Regions(entry.masks, entry.has_mask, "gt", f"the {source.name} dataset's own masks")
    if chosen == "none":
        empty = np.zeros((size, size), np.uint8)
        return Regions(_same_for_all(empty, count), np.zeros(count, bool), "none",
                       "no region: RGMIM masks every image randomly")
    if chosen == "prior":
        field, detail = population_field(entry.masks, entry.has_mask, np.flatnonzero(is_train))
        return Regions(_same_for_all(field, count), np.full(count, bool(field.any())), "prior", detail)

    if chosen == "gt":  # with data.mask_dir
        mask_dir = Path(data_cfg.mask_dir).expanduser()
        plan = _mask_dir_plan(mask_dir, keys, is_train, data_cfg.missing_masks, size)
    elif chosen == "classical":
        plan = _classical_plan(entry.images)
    else:
        plan = _sam_plan(data_cfg.sam_checkpoint, data_cfg.sam_model, entry.images)
    metadata = {"mask_source": chosen, "dataset": source.name, **plan.metadata}
    cached = ensure_mask_cache(entry.directory, plan.tag, keys, size, plan.compute, progress, metadata)
    return Regions(cached.masks, cached.has_mask, region_label(chosen, data_cfg.mask_dir), plan.detail)


@dataclass(frozen=True)
class _Plan:
    """How to compute one derived source's masks, and the tag naming their cache folder."""

    tag: str  # changes whenever the masks could: algorithm version, checkpoint or mask files
    compute: Callable[[int], Optional[np.ndarray]]  # image index -> uint8 {0, 1} mask or None
    detail: str
    metadata: dict[str, Any]


def _mask_dir_plan(mask_dir: Path, keys: list[str], is_train: np.ndarray, policy: str, size: int) -> _Plan:
    pairs = pair_mask_files(keys, mask_dir)
    check_pairs(keys, is_train, pairs, policy, mask_dir)

    def compute(index: int) -> Optional[np.ndarray]:
        path = pairs[index]
        return None if path is None else resize_mask(read_mask(path), size)

    files = [[key, None if path is None else _stat_text(path)] for key, path in zip(keys, pairs)]
    tag = f"dir-{stable_hash(files, 12)}"
    return _Plan(tag, compute, f"your masks in {mask_dir}, paired by file name", {"mask_dir": str(mask_dir)})


def _classical_plan(images: np.ndarray) -> _Plan:
    def compute(index: int) -> np.ndarray:
        return segment_lungs(np.asarray(images[index]))

    return _Plan(f"classical-v{SEGMENTER_VERSION}", compute,
                 "the classical lung-field segmenter (image darkness fused with an aligned position prior)", {})


def _sam_plan(checkpoint_option: Optional[str], model: str, images: np.ndarray) -> _Plan:
    checkpoint = check_sam_available(checkpoint_option, model)
    load = lru_cache(maxsize=None)(lambda: SamSegmenter(checkpoint, model))  # loaded only if a mask is missing

    def compute(index: int) -> np.ndarray:
        return load()(np.asarray(images[index]))

    # the prompts come from the classical segmenter, so its version is part of the tag too
    tag = f"sam-{model}-{stable_hash(_stat_text(checkpoint), 12)}-v{SAM_PROMPT_VERSION}.{SEGMENTER_VERSION}"
    return _Plan(tag, compute, f"Segment Anything ({model}, {checkpoint.name}) prompted with classical lung boxes",
                 {"sam_checkpoint": str(checkpoint), "sam_model": model})


def _same_for_all(mask: np.ndarray, count: int) -> np.ndarray:
    """One region shared by every image, without storing it N times (read-only)."""
    return np.broadcast_to(mask.astype(np.uint8), (count, *mask.shape))


def _stat_text(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


# ---------------------------------------------------------------------------------------------- template

# The median lung fields (pixels that are lung in at least half of the expert masks), as outlines in image
# fractions (x right, y down), traced on the smoothed mean of the 19 expert masks of tests/data (COVID-19
# Radiography and COVID-QU-Ex, resized to square). The image's left lung is the patient's right.
LUNG_FIELD_OUTLINES = (
    ((0.22, 0.68), (0.18, 0.67), (0.17, 0.60), (0.20, 0.34), (0.28, 0.16), (0.33, 0.11), (0.38, 0.10),
     (0.42, 0.14), (0.43, 0.22), (0.37, 0.55), (0.32, 0.64)),
    ((0.81, 0.70), (0.79, 0.69), (0.76, 0.66), (0.71, 0.50), (0.62, 0.30), (0.60, 0.20), (0.64, 0.15),
     (0.71, 0.17), (0.77, 0.28), (0.84, 0.61), (0.83, 0.66)),
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
        total += np.asarray(masks[with_mask[start:start + CHUNK]], float).sum(axis=0)
    return total / len(with_mask) >= 0.5, f"the median lung field of {len(with_mask)} training-pool masks"


# ---------------------------------------------------------------------------------------------- classical

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
    disk = np.hypot(*np.mgrid[-radius:radius + 1, -radius:radius + 1]) <= radius
    padded = np.pad(lungs, radius + 1)  # closing must not glue a lung to the image border
    closed = ndimage.binary_closing(padded, structure=disk)[radius + 1:-radius - 1, radius + 1:-radius - 1]
    return ndimage.binary_fill_holes(closed)


def _sides(size: int) -> tuple[np.ndarray, np.ndarray]:
    left = np.zeros((size, size), bool)
    left[:, : size // 2] = True
    return left, ~left


def _largest_per_side(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    kept = np.zeros_like(mask)
    for side in _sides(mask.shape[0]):
        if count == 0 or not (mask & side).any():
            continue
        areas = ndimage.sum(mask & side, labels, range(1, count + 1))
        kept |= (labels == 1 + int(np.argmax(areas))) & side
    return kept


def _aligned_prior(prior: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """Per side, the prior shifted and scaled part of the way toward the centroid and spread of ``lungs``."""
    aligned = np.zeros_like(prior)
    for side in _sides(prior.shape[0]):
        core, found = _moments(side & (prior > 0.5)), _moments(side & lungs)
        if core is None or found is None:
            aligned = np.maximum(aligned, prior * side)
            continue
        scale = np.clip((found[2:] / core[2:]) ** ALIGN_STRENGTH, 1 / ALIGN_MAX_SCALE, ALIGN_MAX_SCALE)
        shift = (found[:2] - core[:2]) * ALIGN_STRENGTH
        rows, columns = np.mgrid[0:prior.shape[0], 0:prior.shape[1]].astype(float)
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


# ---------------------------------------------------------------------------------------------- mask dir

def pair_mask_files(keys: list[str], mask_dir: Path) -> list[Optional[Path]]:
    """Each image's mask in ``mask_dir``: the file at the image key's relative path (any image extension),
    else the file of the same name anywhere below ``mask_dir``; names compare without case or extension.
    Names shared by two images need the relative path; a name shared by two mask files is an error."""
    _check_mask_dir(mask_dir)
    by_path: dict[str, Path] = {}
    by_name: defaultdict[str, list[Path]] = defaultdict(list)
    for path in sorted(mask_dir.rglob("*")):
        relative = path.relative_to(mask_dir)
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES or \
                any(part.startswith(".") for part in relative.parts):
            continue
        by_path[relative.with_suffix("").as_posix().casefold()] = path
        by_name[path.stem.casefold()].append(path)
    if not by_path:
        raise DataError(f"--mask-dir {mask_dir}: holds no {'/'.join(IMAGE_SUFFIXES)} files; expected one mask "
                        f"per image, named like it")
    image_names = Counter(Path(key).stem.casefold() for key in keys)
    pairs: list[Optional[Path]] = []
    for key in keys:
        name = Path(key).stem.casefold()
        mirrored = by_path.get(Path(key).with_suffix("").as_posix().casefold())
        if mirrored is None and image_names[name] == 1 and len(by_name[name]) > 1:
            found = ", ".join(str(path.relative_to(mask_dir)) for path in by_name[name][:SHOWN_NAMES])
            raise DataError(f"--mask-dir {mask_dir}: several masks are named like image {key} ({found}); "
                            f"expected one, or the image's relative path {Path(key).with_suffix('.png')}")
        named = by_name[name][0] if image_names[name] == 1 and len(by_name[name]) == 1 else None
        pairs.append(mirrored or named)
    return pairs


def _check_mask_dir(mask_dir: Path) -> None:
    if not mask_dir.is_dir():
        raise DataError(f"--mask-dir {mask_dir}: not a folder; expected a folder of mask images named like "
                        f"the dataset's images")


def check_pairs(keys: list[str], is_train: np.ndarray, pairs: list[Optional[Path]], policy: str,
                mask_dir: Path) -> None:
    """Training images need a region unless ``missing_masks`` is "allow"; test images never do."""
    unpaired = [key for key, path, train in zip(keys, pairs, is_train) if path is None and train]
    if not unpaired or policy == "allow":
        return
    names_used = Counter(Path(key).stem.casefold() for key in keys)
    shared = [key for key in unpaired if names_used[Path(key).stem.casefold()] > 1]
    names = ", ".join(unpaired[:SHOWN_NAMES])
    hint = (f" Images sharing a file name ({shared[0]}, ...) need their relative path under the mask folder."
            if shared else "")
    skip = " (--mask-dir cannot drop images: skip is not available here)" if policy == "skip" else ""
    raise DataError(f"--mask-dir {mask_dir}: {len(unpaired)} training images have no mask there (first: "
                    f"{names}); expected a mask file with the image's name.{hint} Use --missing-masks allow to "
                    f"train them without a region{skip}.")


# ---------------------------------------------------------------------------------------------- SAM

SAM_BOX_MARGIN = 0.04  # image widths around each classical lung box: it tends to miss the lung's rim
SAM_PACKAGE_HELP = "pip install segment-anything (the optional extra; it brings no weights)"


def check_sam_available(checkpoint: Optional[str], model: str) -> Path:
    """The checkpoint path, after checking the file and the package exist (nothing is ever downloaded)."""
    if checkpoint is None:
        raise DataError(f"--mask-source sam needs --sam-checkpoint PATH: a Segment Anything {model} checkpoint "
                        f"file you downloaded yourself (e.g. sam_vit_b_01ec64.pth); rgmim-bench never "
                        f"downloads weights")
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise DataError(f"--sam-checkpoint {path}: no such file; expected a Segment Anything {model} "
                        f"checkpoint (.pth) on this machine")
    try:
        import segment_anything  # noqa: F401  (only checked here; SamSegmenter loads it)
    except ImportError:
        raise DataError(f"--mask-source sam needs the optional package segment-anything: "
                        f"{SAM_PACKAGE_HELP}") from None
    return path


class SamSegmenter:
    """Segment Anything prompted with one box per lung: the classical segmenter's lung, widened by a margin
    (the built-in template's field where it found none). Runs on CUDA when available."""

    def __init__(self, checkpoint: Path, model: str):
        import torch
        from segment_anything import SamPredictor, sam_model_registry

        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
            raise DataError(f"--sam-checkpoint {checkpoint}: cannot be read as a PyTorch checkpoint "
                            f"({type(error).__name__}: {str(error)[:200]}); expected a SAM .pth file") from None
        network = sam_model_registry[model]()
        try:
            network.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as error:
            raise DataError(f"--sam-checkpoint {checkpoint}: not a Segment Anything {model} checkpoint "
                            f"({str(error).splitlines()[0][:200]}); set --set data.sam_model=vit_b|vit_l|vit_h "
                            f"to the checkpoint's model") from None
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.predictor = SamPredictor(network.to(device).eval())

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        size = image.shape[-1]
        with torch.inference_mode():
            self.predictor.set_image(np.repeat(image[..., None], 3, axis=-1))  # SAM expects RGB
            lungs = np.zeros((size, size), bool)
            for box in lung_boxes(image):
                masks, _, _ = self.predictor.predict(box=np.asarray(box, float), multimask_output=False)
                inside = np.zeros_like(lungs)
                inside[box[1]:box[3], box[0]:box[2]] = True  # a box prompt means "this lung, not beyond"
                lungs |= masks[0] & inside
        return lungs.astype(np.uint8)


def lung_boxes(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) per lung in pixels, exclusive ends: the classical segmenter's lung per side, or the
    built-in template's field on a side where it found nothing; widened by SAM_BOX_MARGIN."""
    size = image.shape[-1]
    found, template = segment_lungs(image).astype(bool), template_field(size)
    margin = round(SAM_BOX_MARGIN * size)
    boxes = []
    for side in _sides(size):
        region = found & side if (found & side).any() else template & side
        rows, columns = np.nonzero(region)
        boxes.append((max(int(columns.min()) - margin, 0), max(int(rows.min()) - margin, 0),
                      min(int(columns.max()) + 1 + margin, size), min(int(rows.max()) + 1 + margin, size)))
    return boxes


# ---------------------------------------------------------------------------------------------- quality

def lung_patches(masks: np.ndarray, patch_size: int) -> np.ndarray:
    """(..., g, g) bool: patches of the g x g grid that hold any lung pixel (pretrain.min_overlap = 0)."""
    grid = masks.shape[-1] // patch_size
    cropped = masks[..., : grid * patch_size, : grid * patch_size]
    blocks = cropped.reshape(*masks.shape[:-2], grid, patch_size, grid, patch_size)
    return blocks.any(axis=(-3, -1))


def overlap_scores(predicted: np.ndarray, reference: np.ndarray,
                   patch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image of (B, S, S) masks: pixel Dice, pixel IoU and IoU of the patches overlapping the lung
    (RGMIM's valid patches). Two empty masks agree: 1.0."""
    predicted, reference = predicted.astype(bool), reference.astype(bool)

    def ratios(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        axes = tuple(range(1, first.ndim))
        both = (first & second).sum(axis=axes).astype(float)
        either = (first | second).sum(axis=axes).astype(float)
        total = first.sum(axis=axes) + second.sum(axis=axes)
        dice = np.divide(2 * both, total, out=np.ones_like(both), where=total > 0)
        iou = np.divide(both, either, out=np.ones_like(both), where=either > 0)
        return dice, iou

    dice, iou = ratios(predicted, reference)
    _, patch_iou = ratios(lung_patches(predicted, patch_size), lung_patches(reference, patch_size))
    return dice, iou, patch_iou


@dataclass(frozen=True)
class MaskScore:
    index: int  # into the dataset's items
    key: str
    class_name: str
    dice: float
    iou: float
    patch_iou: float


def evaluate_regions(predicted: np.ndarray, reference: np.ndarray, has_reference: np.ndarray,
                     labels: np.ndarray, classes: tuple[str, ...], keys: list[str],
                     patch_size: int) -> list[MaskScore]:
    """Scores of every image that has a reference mask; an image without a predicted region scores as an
    empty prediction (Dice 0 against a non-empty reference)."""
    chosen = np.flatnonzero(has_reference)
    scores = []
    for start in range(0, len(chosen), CHUNK):
        batch = chosen[start:start + CHUNK]
        dice, iou, patch_iou = overlap_scores(np.asarray(predicted[batch]), np.asarray(reference[batch]),
                                              patch_size)
        scores += [MaskScore(int(index), keys[index], classes[labels[index]], float(d), float(i), float(p))
                   for index, d, i, p in zip(batch, dice, iou, patch_iou)]
    return scores


def quality_text(scores: list[MaskScore], classes: tuple[str, ...], grid_text: str, worst: int = 5) -> str:
    """Per class and overall: mean and median of each score; then the ``worst`` images by Dice."""
    metrics = (("Dice", "dice"), ("IoU", "iou"), ("patch IoU", "patch_iou"))
    width = max(len(name) for name in (*classes, "all"))
    heading = f"{'class':<{width}}  {'images':>6}" + "".join(f"  {f'{title} mean':>14} {'median':>7}"
                                                          for title, _ in metrics)
    lines = [f"quality against the dataset's own masks ({len(scores)} images with one; patch IoU on the "
             f"{grid_text}):", heading]
    for name in (*classes, "all"):
        members = [score for score in scores if name in ("all", score.class_name)]
        if not members:
            continue
        cells = "".join(f"  {np.mean([getattr(s, field) for s in members]):>14.3f} "
                        f"{np.median([getattr(s, field) for s in members]):>7.3f}" for _, field in metrics)
        lines.append(f"{name:<{width}}  {len(members):>6}{cells}")
    lines += ["", f"worst {min(worst, len(scores))} by Dice:"]
    for score in sorted(scores, key=lambda s: (s.dice, s.key))[:worst]:
        lines.append(f"  Dice {score.dice:.3f}  IoU {score.iou:.3f}  patch IoU {score.patch_iou:.3f}  "
                     f"{score.class_name}: {score.key}")
    return "\n".join(lines)
