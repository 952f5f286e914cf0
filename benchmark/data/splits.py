"""The train/test split, nested label fractions (pure arithmetic) and the split file that records them.

Split: per class, a seeded permutation; the first round((1 - test_fraction) * n_c) images train (halves
round up), the rest test, unless the dataset has an official split. Label fractions: N_f = floor(f * N_train)
shared among classes by largest remainders (at least one per class), taken as prefixes of a second seeded
permutation per class, so every subset contains every smaller one.
"""

from __future__ import annotations

import functools
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from benchmark.files import atomic_write_text
from benchmark.paper_grid import PAPER_FRACTIONS
from benchmark.data.source import Source
from benchmark.errors import DataError

SPLIT_COLUMNS = ("image", "class", "split", "min_fraction", "rank")
HEADER_PREFIX = "# rgmim-bench split file: "
_SPLIT_STREAM, _FRACTION_STREAM = 0, 1  # independent random streams per (seed, purpose, class)


def exact(value: float) -> Fraction:
    """The decimal the user wrote (0.29, not 0.28999...), so that floor(f * N) is never off by one."""
    return Fraction(repr(float(value)))


def check_fraction(fraction: float) -> Fraction:
    if not isinstance(fraction, (int, float)) or not math.isfinite(fraction) or not 0 < fraction <= 1:
        raise DataError(f"label fraction {fraction!r}: expected a number in (0, 1], e.g. 0.01 for 1 %")
    return exact(fraction)


def train_count(class_size: int, test_fraction: float) -> int:
    """round((1 - test_fraction) * n_c), halves up: 16,933 of the Radiography release's 21,165 at 0.2."""
    return math.floor((1 - exact(test_fraction)) * class_size + Fraction(1, 2))


def fraction_total(fraction: float, pool_size: int) -> int:
    return math.floor(check_fraction(fraction) * pool_size)


def hamilton_counts(total: int, class_counts: Sequence[int]) -> list[int]:
    """Largest-remainder shares of ``total`` images, with quotas (total + 1/2) * n_c / N.

    N_f = floor(f * N) stands for every f in [N_f / N, (N_f + 1) / N); the midpoint quota makes the counts
    a function of N_f alone and reproduces the paper-protocol numbers, e.g. 5 % of the Radiography pool =
    (144, 240, 408, 54). (Quotas N_f * n_c / N would give (145, 240, 407, 54).) Exact integer arithmetic.
    """
    pool = sum(class_counts)
    scaled = [(2 * total + 1) * count for count in class_counts]
    seats = [value // (2 * pool) for value in scaled]
    remainders = [value % (2 * pool) for value in scaled]
    order = sorted(range(len(class_counts)), key=lambda c: (-remainders[c], -class_counts[c], c))
    for c in order[: total - sum(seats)]:
        seats[c] += 1
    return seats


@functools.lru_cache(maxsize=16)
def allocation_table(class_counts: tuple[int, ...]) -> np.ndarray:
    """Per-class counts for every total 0..N (rows), monotone in the total.

    Largest remainders alone can take an image away from a class when the total grows (the Alabama
    paradox), which would break nestedness. So the table grows one image at a time, each time to a class
    that the largest-remainder target has above its current count (there always is one), choosing the
    class furthest below its quota; it equals the target except near paradox points. Every class starts
    with one image: totals below the number of classes still give one per class.
    """
    if min(class_counts) < 1:
        raise ValueError(f"class_counts {class_counts}: every class needs at least one training image")
    pool, num_classes = sum(class_counts), len(class_counts)
    table = np.empty((pool + 1, num_classes), np.int64)
    current = [1] * num_classes
    table[: num_classes + 1] = current
    for total in range(num_classes + 1, pool + 1):
        target = hamilton_counts(total, class_counts)
        behind = [c for c in range(num_classes) if target[c] > current[c]]
        chosen = max(behind, key=lambda c: ((2 * total + 1) * class_counts[c] - 2 * pool * current[c], -c))
        current[chosen] += 1
        table[total] = current
    table.flags.writeable = False
    return table


def fraction_counts(fraction: float, class_counts: Sequence[int]) -> np.ndarray:
    """Training images per class in the label subset of ``fraction`` (of a pool with these class sizes)."""
    total = fraction_total(fraction, sum(class_counts))
    return allocation_table(tuple(int(count) for count in class_counts))[total].copy()


def split_pool(
    labels: np.ndarray, official_splits: Sequence[Optional[str]], num_classes: int, test_fraction: float, seed: int
) -> np.ndarray:
    """Boolean (N,) mask of training-pool items: the official split if every item has one, else per-class
    random with ``train_count`` training images per class."""
    if all(split is not None for split in official_splits):
        return np.array([split == "train" for split in official_splits], bool)
    is_train = np.zeros(len(labels), bool)
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        shuffled = np.random.default_rng([seed, _SPLIT_STREAM, label]).permutation(members)
        is_train[shuffled[: train_count(len(members), test_fraction)]] = True
    return is_train


def fraction_ranks(labels: np.ndarray, is_train: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """(N,) position of each training item in its class's seeded order (-1 for test): a subset with k
    images of a class is the items with rank < k, so subsets are nested by construction."""
    ranks = np.full(len(labels), -1, np.int64)
    for label in range(num_classes):
        members = np.flatnonzero((labels == label) & is_train)
        order = np.random.default_rng([seed, _FRACTION_STREAM, label]).permutation(len(members))
        ranks[members[order]] = np.arange(len(members))
    return ranks


def class_sizes(labels: np.ndarray, selected: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels[selected], minlength=num_classes)


def subset_indices(fraction: float, labels: np.ndarray, ranks: np.ndarray, num_classes: int) -> np.ndarray:
    """Sorted indices of the training items in the label subset of ``fraction``."""
    counts = fraction_counts(fraction, class_sizes(labels, ranks >= 0, num_classes))
    return np.flatnonzero((ranks >= 0) & (ranks < counts[labels]))


def min_fractions(labels: np.ndarray, ranks: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) smallest paper fraction whose subset holds each item; NaN for test items."""
    result = np.full(len(labels), np.nan)
    for fraction in sorted(PAPER_FRACTIONS, reverse=True):
        result[subset_indices(fraction, labels, ranks, num_classes)] = fraction
    return result


def split_file_path(
    cache_root: Path, source_name: str, fingerprint: str, split_seed: int, test_fraction: float, official: bool
) -> Path:
    """Keyed by what decides the split: the official one ignores the test fraction (its seed still orders the
    nested label subsets)."""
    test_part = "official" if official else f"test{test_fraction:g}"
    name = f"{source_name}-{fingerprint[:16]}-seed{split_seed}-{test_part}.csv"
    return cache_root / "splits" / name


def write_split_file(path: Path, source: Source, header: dict[str, Any], is_train: np.ndarray, ranks: np.ndarray) -> None:
    """Atomically (benchmark/files.py): a reader never sees half a file, and two writers of the same
    split write the same bytes."""
    labels = np.array([item.label for item in source.items], np.int64)
    smallest = min_fractions(labels, ranks, len(source.classes))
    table = pd.DataFrame(
        {
            "image": [item.key for item in source.items],
            "class": [source.classes[label] for label in labels],
            "split": np.where(is_train, "train", "test"),
            "min_fraction": [f"{value:g}" if is_train[i] else "" for i, value in enumerate(smallest)],
            "rank": [str(rank) if rank >= 0 else "" for rank in ranks],
        }
    )
    text = HEADER_PREFIX + json.dumps(header, sort_keys=True) + "\n" + table.to_csv(index=False, lineterminator="\n")
    atomic_write_text(path, text)


def read_split_file(path: Path, source: Source, fingerprint: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(header, is_train, ranks) in the source's item order; DataError unless the file was written for
    exactly this dataset (same fingerprint, same images, same classes)."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            first_line = handle.readline()
            header = _parse_header(path, first_line)
            table = pd.read_csv(handle, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"split file {path}: cannot read it ({error})") from None
    if header.get("fingerprint") != fingerprint:
        raise DataError(
            f"split file {path} was written for dataset fingerprint {str(header.get('fingerprint'))[:16]}, "
            f"but the {source.name} data now has {fingerprint[:16]}: files were added, removed or modified "
            f"(copying without keeping file times counts too). Expected a split file of this dataset; "
            f"delete it or point at the data it was made for."
        )
    missing_columns = [column for column in SPLIT_COLUMNS if column not in table.columns]
    if missing_columns:
        raise DataError(f"split file {path}: missing columns {', '.join(missing_columns)}; expected {', '.join(SPLIT_COLUMNS)}")
    index_of = {item.key: index for index, item in enumerate(source.items)}
    unknown = [key for key in table["image"] if key not in index_of]
    if unknown or len(table) != len(index_of) or table["image"].duplicated().any():
        raise DataError(
            f"split file {path}: lists {len(table)} images for {len(index_of)} in the dataset "
            f"(unknown: {', '.join(unknown[:5]) or 'none'}); expected each image exactly once"
        )
    rows = table["image"].map(index_of).to_numpy()
    expected_classes = [source.classes[source.items[row].label] for row in rows]
    if list(table["class"]) != expected_classes or not table["split"].isin(["train", "test"]).all():
        raise DataError(
            f"split file {path}: class or split column disagrees with the dataset; expected "
            f"class names {', '.join(source.classes)} and split train or test"
        )
    is_train = np.zeros(len(rows), bool)
    is_train[rows] = (table["split"] == "train").to_numpy()
    ranks = np.full(len(rows), -1, np.int64)
    try:
        ranks[rows] = [int(rank) if split == "train" else -1 for rank, split in zip(table["rank"], table["split"])]
    except ValueError:
        raise DataError(f"split file {path}: rank must be an integer for every training image") from None
    labels = np.array([item.label for item in source.items], np.int64)
    for label, name in enumerate(source.classes):
        class_ranks = np.sort(ranks[is_train & (labels == label)])
        if not np.array_equal(class_ranks, np.arange(len(class_ranks))) or len(class_ranks) == 0:
            raise DataError(
                f"split file {path}: ranks of class {name!r} are not 0..n-1, or the class has "
                f"no training image; expected one rank per training image"
            )
    return header, is_train, ranks


def load_or_create_split(
    source: Source, fingerprint: str, split_seed: int, test_fraction: float, path: Path
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Reuse the split file at ``path`` (checked against the dataset) or compute and write it."""
    if path.exists():
        return read_split_file(path, source, fingerprint)
    labels = np.array([item.label for item in source.items], np.int64)
    num_classes = len(source.classes)
    is_train = split_pool(labels, [item.official_split for item in source.items], num_classes, test_fraction, split_seed)
    empty = [source.classes[c] for c in range(num_classes) if not (is_train & (labels == c)).any()]
    if empty:
        raise DataError(
            f"{source.name}: no training image left for class {', '.join(empty)} after the "
            f"split; expected at least one per class (add images or lower data.test_fraction)"
        )
    ranks = fraction_ranks(labels, is_train, num_classes, split_seed)
    header = {
        "dataset": source.name,
        "fingerprint": fingerprint,
        "split_seed": split_seed,
        "test_fraction": test_fraction,
        "official_split": all(item.official_split is not None for item in source.items),
    }
    write_split_file(path, source, header, is_train, ranks)
    return header, is_train, ranks


def _parse_header(path: Path, line: str) -> dict[str, Any]:
    if not line.startswith(HEADER_PREFIX):
        raise DataError(
            f"split file {path}: first line is not a '{HEADER_PREFIX.strip()}' header; expected "
            f"a split file written by rgmim-bench (it records the dataset fingerprint)"
        )
    try:
        return json.loads(line[len(HEADER_PREFIX) :])
    except json.JSONDecodeError:
        raise DataError(f"split file {path}: damaged header line; expected JSON after '{HEADER_PREFIX.strip()}'") from None
