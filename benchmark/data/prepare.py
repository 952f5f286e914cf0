"""What the training engines consume: decoded arrays, labels, the split and the nested label subsets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.config import DataConfig
from benchmark.data.cache import ensure_cache, resolve_cache_root
from benchmark.data.layouts import open_source
from benchmark.data.masks import check_mask_options, own_mask_policy, resolve_regions
from benchmark.data.splits import (PAPER_FRACTIONS, class_sizes, fraction_counts, load_or_create_split,
                                   split_file_path, subset_indices)


@dataclass
class PreparedData:
    name: str
    classes: tuple[str, ...]
    fingerprint: str
    image_size: int
    images: np.ndarray  # (N, S, S) uint8 memmap, all items (train pool + test)
    masks: np.ndarray  # (N, S, S) uint8 {0, 1} lung regions of data.mask_source; zeros where has_mask is False
    has_mask: np.ndarray  # (N,) bool; False: no region, RGMIM masks the image randomly
    labels: np.ndarray  # (N,) int64
    keys: list[str]
    train_idx: np.ndarray  # indices of the training pool
    test_idx: np.ndarray
    split_file: Path
    ranks: np.ndarray  # (N,) position in the class's seeded order, -1 for test; defines the subsets
    split_seed: int
    test_fraction: float
    cache_dir: Path
    mask_source: str  # gt | mask-dir | classical | prior | sam | none (masks.region_label)
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
            "sizes": {"train": self.class_counts(self.train_idx), "test": self.class_counts(self.test_idx)},
            "mask_source": self.mask_source,
            "with_mask": {"train": int(self.has_mask[self.train_idx].sum()),
                          "test": int(self.has_mask[self.test_idx].sum())},
            "fractions": {name: dict(zip(self.classes, counts)) for name, counts in fractions.items()},
        }


def prepare(data_cfg: DataConfig, progress: bool = True) -> PreparedData:
    """Open the dataset, reuse or write its split file, reuse or build its decoded cache.

    ``data.split_file``: a user-chosen split file; reused if it exists (it must carry this dataset's
    fingerprint), written there otherwise. Default: a file next to the cache, keyed by
    (fingerprint, split seed, test fraction).

    ``data.mask_source``: the lung regions of another source than the dataset's masks are computed from
    the cached images and cached beside them (``masks.py``); the image cache is shared by all sources.
    """
    check_mask_options(data_cfg)  # before any work, like a bad split file
    source = open_source(dataclasses.replace(data_cfg, missing_masks=own_mask_policy(data_cfg)))
    fingerprint = source.fingerprint()
    cache_root = resolve_cache_root(data_cfg)
    if data_cfg.split_file is not None:
        split_path = Path(data_cfg.split_file).expanduser()
    else:
        split_path = split_file_path(cache_root, source.name, fingerprint, data_cfg.split_seed,
                                     data_cfg.test_fraction)
    # the split first: a mismatching split file fails in a second, not after decoding every image
    header, is_train, ranks = load_or_create_split(source, fingerprint, data_cfg.split_seed,
                                                   data_cfg.test_fraction, split_path)
    metadata = {"dataset": source.name, "classes": list(source.classes), "fingerprint": fingerprint,
                "data_config": dataclasses.asdict(data_cfg)}
    entry = ensure_cache(source, fingerprint, data_cfg.image_size, cache_root, progress, metadata)
    regions = resolve_regions(data_cfg, source, entry, is_train, progress)
    return PreparedData(
        name=source.name,
        classes=tuple(source.classes),
        fingerprint=fingerprint,
        image_size=data_cfg.image_size,
        images=entry.images,
        masks=regions.masks,
        has_mask=regions.has_mask,
        labels=np.array([item.label for item in source.items], np.int64),
        keys=[item.key for item in source.items],
        train_idx=np.flatnonzero(is_train),
        test_idx=np.flatnonzero(~is_train),
        split_file=split_path,
        ranks=ranks,
        split_seed=int(header["split_seed"]),
        test_fraction=float(header["test_fraction"]),
        cache_dir=entry.directory,
        mask_source=regions.label,
        mask_detail=regions.detail,
        reference_masks=entry.masks,
        reference_has_mask=entry.has_mask,
    )
