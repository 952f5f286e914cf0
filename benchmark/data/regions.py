"""Lung regions for region-guided masking: where each image's lung mask comes from, and how good it is.

RGMIM masks lung patches first, so it needs a region per image (§3.1). ``region.source`` picks it:

  gt         the dataset's own (expert) masks; ``region.mask_dir`` swaps in the user's own masks, paired by name
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

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.config import MASK_SOURCES, DataConfig, RegionConfig
from benchmark.data.cache import CacheEntry, ensure_mask_cache
from benchmark.data.fingerprint import DigestCache
from benchmark.data.layouts import read_mask
from benchmark.data.source import resize_mask
from benchmark.data.mask_dir import check_mask_dir, check_pairs, pair_mask_files
from benchmark.data.sam import SAM_MODELS, SAM_PROMPT_VERSION, SamSegmenter, check_sam_available
from benchmark.data.segmenter import SEGMENTER_VERSION, population_field, segment_lungs
from benchmark.data.source import Source
from benchmark.errors import DataError
from benchmark.files import stable_hash


def lung_patch_grid(masks: torch.Tensor, patch_size: int, min_overlap: float) -> torch.Tensor:
    """(B, H, W) or (B, 1, H, W) {0, 1} lung masks -> (B, n) bool, row-major over the patch grid: the patches
    of which more than ``min_overlap`` of the pixels are lung (0: any lung pixel, §3.1). Training, ``data
    info``, ``data preview`` and the mask scores all count lung patches with this one rule."""
    if masks.dim() == 3:
        masks = masks[:, None]
    return (F.avg_pool2d(masks.float(), patch_size) > min_overlap).flatten(1)


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


def check_mask_options(region: RegionConfig) -> None:
    """Fail before any work on options that do not fit the source (they would change run ids for nothing)
    and on a missing SAM package, checkpoint or mask folder."""
    if region.source not in MASK_SOURCES:
        raise DataError(f"region.source={region.source!r}: expected one of {', '.join(MASK_SOURCES)}")
    if region.mask_dir is not None and region.source != "gt":
        raise DataError(
            f"--mask-dir replaces the dataset's own masks, so it goes with --mask-source gt, not "
            f"{region.source}; drop one of them"
        )
    if region.sam_checkpoint is not None and region.source != "sam":
        raise DataError(
            f"--sam-checkpoint is only used by --mask-source sam (got {region.source}); drop it or add --mask-source sam"
        )
    if region.sam_model not in SAM_MODELS:
        raise DataError(f"region.sam_model={region.sam_model!r}: expected one of {', '.join(SAM_MODELS)}")
    if region.source == "sam":  # before any image is decoded
        check_sam_available(region.sam_checkpoint, region.sam_model)
    if region.mask_dir is not None:
        check_mask_dir(Path(region.mask_dir).expanduser())


def own_mask_policy(data_cfg: DataConfig, region: RegionConfig) -> str:
    """``missing_masks`` for opening the dataset: training on another region needs no dataset mask, so the
    default "error" relaxes to "allow" (the same images, hence the same fingerprint and split)."""
    trains_on_own = region.source == "gt" and region.mask_dir is None
    if trains_on_own or data_cfg.missing_masks != "error":
        return data_cfg.missing_masks
    return "allow"


def resolve_regions(
    region: RegionConfig, missing_masks: str, source: Source, entry: CacheEntry, is_train: np.ndarray, progress: bool = True
) -> Regions:
    """The regions of ``region.source`` for the images of ``entry``, computed and cached if needed.
    The caller has run ``check_mask_options``."""
    keys = [item.key for item in source.items]
    count, size = entry.images.shape[0], entry.images.shape[-1]
    chosen = region.source
    digests = entry.directory.parent / "digests"  # fingerprint.DigestCache's store, beside the image caches
    if chosen == "gt" and region.mask_dir is None:
        return Regions(entry.masks, entry.has_mask, "gt", f"the {source.name} dataset's own masks")
    if chosen == "none":
        empty = np.zeros((size, size), np.uint8)
        return Regions(
            _same_for_all(empty, count), np.zeros(count, bool), "none", "no region: RGMIM masks every image randomly"
        )
    if chosen == "prior":
        field, detail = population_field(entry.masks, entry.has_mask, np.flatnonzero(is_train))
        return Regions(_same_for_all(field, count), np.full(count, bool(field.any())), "prior", detail)

    if chosen == "gt":  # with region.mask_dir
        mask_dir = Path(region.mask_dir).expanduser()
        plan = _mask_dir_plan(mask_dir, keys, is_train, missing_masks, size, digests)
    elif chosen == "classical":
        plan = _classical_plan(entry.images)
    else:
        plan = _sam_plan(region.sam_checkpoint, region.sam_model, entry.images, digests)
    metadata = {"mask_source": chosen, "dataset": source.name, **plan.metadata}
    cached = ensure_mask_cache(entry.directory, plan.tag, keys, size, plan.compute, progress, metadata, plan.forkable)
    return Regions(cached.masks, cached.has_mask, region_label(chosen, region.mask_dir), plan.detail)


@dataclass(frozen=True)
class _Plan:
    """How to compute one derived source's masks, and the tag naming their cache folder."""

    tag: str  # changes whenever the masks could: algorithm version, checkpoint or mask files
    compute: Callable[[int], Optional[np.ndarray]]  # image index -> uint8 {0, 1} mask or None
    detail: str
    metadata: dict[str, Any]
    forkable: bool  # compute uses no torch, so forked workers share the images (cache.parallel_map)


def _mask_dir_plan(mask_dir: Path, keys: list[str], is_train: np.ndarray, policy: str, size: int, digests: Path) -> _Plan:
    pairs = pair_mask_files(keys, mask_dir)
    check_pairs(keys, is_train, pairs, policy, mask_dir)

    def compute(index: int) -> Optional[np.ndarray]:
        path = pairs[index]
        return None if path is None else resize_mask(read_mask(path), size)

    contents = DigestCache(mask_dir, digests)
    files = [
        [key, None if path is None else contents.digest(path.relative_to(mask_dir).as_posix())]
        for key, path in zip(keys, pairs)
    ]
    contents.save()
    tag = f"dir-{stable_hash(files, 12)}"
    return _Plan(tag, compute, f"your masks in {mask_dir}, paired by file name", {"mask_dir": str(mask_dir)}, forkable=True)


def _classical_plan(images: np.ndarray) -> _Plan:
    def compute(index: int) -> np.ndarray:
        return segment_lungs(np.asarray(images[index]))

    return _Plan(
        f"classical-v{SEGMENTER_VERSION}",
        compute,
        "the classical lung-field segmenter (image darkness fused with an aligned position prior)",
        {},
        forkable=True,
    )


def _sam_plan(checkpoint_option: Optional[str], model: str, images: np.ndarray, digests: Path) -> _Plan:
    checkpoint = check_sam_available(checkpoint_option, model)
    load = lru_cache(maxsize=None)(lambda: SamSegmenter(checkpoint, model))  # loaded only if a mask is missing

    def compute(index: int) -> np.ndarray:
        return load()(np.asarray(images[index]))

    # the prompts come from the classical segmenter, so its version is part of the tag too
    tag = f"sam-{model}-{checkpoint_digest(checkpoint, digests)[:12]}-v{SAM_PROMPT_VERSION}.{SEGMENTER_VERSION}"
    return _Plan(
        tag,
        compute,
        f"Segment Anything ({model}, {checkpoint.name}) prompted with classical lung boxes",
        {"sam_checkpoint": str(checkpoint), "sam_model": model},
        forkable=False,  # a torch model: one process, on the run's device
    )


def _same_for_all(mask: np.ndarray, count: int) -> np.ndarray:
    """One region shared by every image, without storing it N times (read-only)."""
    return np.broadcast_to(mask.astype(np.uint8), (count, *mask.shape))


def checkpoint_digest(checkpoint: Path, digests: Path) -> str:
    contents = DigestCache(checkpoint.parent, digests)
    value = contents.digest(checkpoint.name)
    contents.save()
    return value
