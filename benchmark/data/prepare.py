"""What the training engines consume: decoded arrays, labels, the split and the nested label subsets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmark.config import DataConfig, RegionConfig
from benchmark.data.cache import ensure_cache, resolve_cache_root
from benchmark.data.layouts import open_source
from benchmark.data.regions import check_mask_options, own_mask_policy, resolve_regions
from benchmark.data.source import Source
from benchmark.data.splits import class_sizes, fraction_counts, load_or_create_split, split_file_path, subset_indices
from benchmark.paper_grid import PAPER_FRACTIONS
from benchmark.errors import DataError
from benchmark.files import stable_hash


@dataclass(frozen=True)
class DatasetIdentity:
    """A dataset found, fingerprinted by content and split, before any image is decoded."""

    source: Source
    fingerprint: str
    split_file: Path
    split_header: dict[str, Any]
    is_train: np.ndarray  # (N,) bool
    ranks: np.ndarray  # (N,) position in the class's seeded order, -1 for test
    cache_root: Path

    @property
    def split_digest(self) -> str:
        """The split's rows (which image is train or test, and its place in the nested label subsets)."""
        return stable_hash([self.is_train.astype(int).tolist(), self.ranks.tolist()], 16)


def identify(data_cfg: DataConfig, region: RegionConfig) -> DatasetIdentity:
    """Open the dataset, fingerprint its content, reuse or write its split file; decodes nothing.

    ``data.split_file``: a user-chosen split file; reused if it exists (it must carry this dataset's
    fingerprint), written there otherwise. Default: a file next to the cache, keyed by
    (fingerprint, split seed, test fraction).
    """
    check_mask_options(region)  # before any work, like a bad split file
    source = open_source(dataclasses.replace(data_cfg, missing_masks=own_mask_policy(data_cfg, region)))
    fingerprint = source.fingerprint()
    cache_root = resolve_cache_root(data_cfg)
    if data_cfg.split_file is not None:
        split_path = Path(data_cfg.split_file).expanduser()
    else:
        official = all(item.official_split is not None for item in source.items)
        split_path = split_file_path(
            cache_root, source.name, fingerprint, data_cfg.split_seed, data_cfg.test_fraction, official
        )
    # the split first: a mismatching split file fails in a second, not after decoding every image
    header, is_train, ranks = load_or_create_split(source, fingerprint, data_cfg.split_seed, data_cfg.test_fraction, split_path)
    return DatasetIdentity(source, fingerprint, split_path, header, is_train, ranks, cache_root)


def check_split_usable(source: Source, is_train: np.ndarray, split_path: Path) -> None:
    """A run needs two classes, training images of every class and a test set to score on (the data
    commands do not: scoring the masks of a one-class sample is fine)."""
    labels = np.array([item.label for item in source.items])
    if len(source.classes) < 2:
        raise DataError(f"{source.name} dataset: one class ({source.classes[0]}); expected at least two to classify")
    if is_train.all():
        raise DataError(
            f"{source.name} dataset: the split ({split_path}) leaves no test image; expected one at least (a class "
            "of n images keeps round((1 - data.test_fraction) n) for training: 3 images per class at 0.2)"
        )
    empty = [name for label, name in enumerate(source.classes) if not is_train[labels == label].any()]
    if empty:
        raise DataError(f"{source.name} dataset: no training image of class {', '.join(empty)} in the split {split_path}")


@dataclass
class PreparedData:
    name: str
    classes: tuple[str, ...]
    fingerprint: str
    image_size: int
    images: np.ndarray  # (N, S, S) uint8 memmap, all items (train pool + test)
    masks: np.ndarray  # (N, S, S) uint8 {0, 1} lung regions of region.source; zeros where has_mask is False
    has_mask: np.ndarray  # (N,) bool; False: no region, RGMIM masks the image randomly
    labels: np.ndarray  # (N,) int64
    keys: list[str]
    train_idx: np.ndarray  # indices of the training pool
    test_idx: np.ndarray
    split_file: Path
    split_digest: str  # DatasetIdentity.split_digest
    ranks: np.ndarray  # (N,) position in the class's seeded order, -1 for test; defines the subsets
    split_seed: int
    test_fraction: float
    cache_dir: Path
    mask_source: str  # gt | mask-dir | classical | prior | sam | none (regions.region_label)
    mask_detail: str  # where the regions came from, in words
    reference_masks: np.ndarray  # (N, S, S) the dataset's own masks, what the other sources are scored against
    reference_has_mask: np.ndarray  # (N,) bool

    def subset(self, fraction: float) -> np.ndarray:
        """Sorted train indices of the nested label subset (DataError if fraction is not in (0, 1])."""
        return subset_indices(fraction, self.labels, self.ranks, len(self.classes))

    def class_counts(self, indices: np.ndarray) -> dict[str, int]:
        selected = np.zeros(len(self.labels), bool)
        selected[indices] = True
        return dict(zip(self.classes, class_sizes(self.labels, selected, len(self.classes)).tolist()))

    def describe(self) -> dict[str, Any]:
        """Name, fingerprint, classes and sizes per split, class and paper fraction, for run records."""
        train_sizes = class_sizes(self.labels, self.ranks >= 0, len(self.classes))
        fractions = {f"{f:g}": fraction_counts(f, train_sizes).tolist() for f in PAPER_FRACTIONS}
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "classes": list(self.classes),
            "image_size": self.image_size,
            "split_seed": self.split_seed,
            "test_fraction": self.test_fraction,
            "split_file": str(self.split_file),
            "split_digest": self.split_digest,
            "sizes": {"train": self.class_counts(self.train_idx), "test": self.class_counts(self.test_idx)},
            "mask_source": self.mask_source,
            "with_mask": {"train": int(self.has_mask[self.train_idx].sum()), "test": int(self.has_mask[self.test_idx].sum())},
            "fractions": {name: dict(zip(self.classes, counts)) for name, counts in fractions.items()},
        }


def prepare(
    data_cfg: DataConfig, region: RegionConfig, progress: bool = True, found: Optional[DatasetIdentity] = None
) -> PreparedData:
    """``identify`` the dataset (unless ``found`` already is), then reuse or build its decoded cache and
    its lung regions.

    ``region.source``: the lung regions of another source than the dataset's masks are computed from
    the cached images and cached beside them (``regions.py``); the image cache is shared by all sources.
    """
    found = found or identify(data_cfg, region)
    source = found.source
    metadata = {
        "dataset": source.name,
        "classes": list(source.classes),
        "fingerprint": found.fingerprint,
        "data_config": dataclasses.asdict(data_cfg),
    }
    entry = ensure_cache(source, found.fingerprint, data_cfg.image_size, found.cache_root, progress, metadata)
    regions = resolve_regions(region, data_cfg.missing_masks, source, entry, found.is_train, progress)
    return PreparedData(
        name=source.name,
        classes=tuple(source.classes),
        fingerprint=found.fingerprint,
        image_size=data_cfg.image_size,
        images=entry.images,
        masks=regions.masks,
        has_mask=regions.has_mask,
        labels=np.array([item.label for item in source.items], np.int64),
        keys=[item.key for item in source.items],
        train_idx=np.flatnonzero(found.is_train),
        test_idx=np.flatnonzero(~found.is_train),
        split_file=found.split_file,
        split_digest=found.split_digest,
        ranks=found.ranks,
        split_seed=int(found.split_header["split_seed"]),
        test_fraction=float(found.split_header["test_fraction"]),
        cache_dir=entry.directory,
        mask_source=regions.label,
        mask_detail=regions.detail,
        reference_masks=entry.masks,
        reference_has_mask=entry.has_mask,
    )
