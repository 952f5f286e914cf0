"""Split and label-fraction arithmetic (pure), split files, and the full-size Radiography numbers."""

from __future__ import annotations

import dataclasses
import io
import math
import shutil
import time

import numpy as np
import pytest
from conftest import prepare_data
from PIL import Image

from benchmark.data.layouts import open_source
from benchmark.errors import DataError
from benchmark.data.splits import (
    PAPER_FRACTIONS,
    allocation_table,
    fraction_counts,
    fraction_ranks,
    hamilton_counts,
    load_or_create_split,
    read_split_file,
    split_pool,
    subset_indices,
    train_count,
)

RELEASE = {"COVID": 3616, "Lung_Opacity": 6012, "Normal": 10192, "Viral Pneumonia": 1345}
PAPER_TRAIN = (2893, 4810, 8154, 1076)
PAPER_SUBSETS = {
    0.01: (29, 48, 81, 11),
    0.05: (144, 240, 408, 54),
    0.10: (289, 481, 815, 108),
    0.50: (1446, 2405, 4077, 538),
    1.0: PAPER_TRAIN,
}
PAPER_TOTALS = (169, 846, 1693, 8466, 16933)


def test_train_count_gives_the_paper_split():
    assert tuple(train_count(n, 0.2) for n in RELEASE.values()) == PAPER_TRAIN
    assert train_count(5, 0.3) == 4  # 3.5 rounds up, exactly


def test_paper_fraction_counts():
    for fraction, expected in PAPER_SUBSETS.items():
        assert tuple(fraction_counts(fraction, PAPER_TRAIN)) == expected
    assert tuple(sum(PAPER_SUBSETS[f]) for f in PAPER_FRACTIONS) == PAPER_TOTALS


def test_counts_stay_monotone_where_largest_remainders_hit_the_alabama_paradox():
    class_counts = (19, 60, 43, 58, 49)
    plain = [hamilton_counts(total, class_counts) for total in range(sum(class_counts) + 1)]
    assert any(np.any(np.less(plain[t + 1], plain[t])) for t in range(len(plain) - 1))  # the paradox exists
    table = allocation_table(class_counts)
    assert (np.diff(table, axis=0) >= 0).all()
    totals = np.arange(len(class_counts), sum(class_counts) + 1)
    assert (table.sum(axis=1)[len(class_counts) :] == totals).all()
    assert (table >= 1).all() and (table <= class_counts).all()
    assert (table[-1] == class_counts).all()


def test_at_least_one_image_per_class():
    assert tuple(fraction_counts(0.001, (500, 20, 3))) == (1, 1, 1)
    assert tuple(fraction_counts(0.01, (1000, 1000, 1000, 2))) == (10, 10, 9, 1)


@pytest.mark.parametrize("fraction", [0, -0.1, 1.01, math.nan, math.inf, "0.5"])
def test_fraction_outside_zero_one_is_rejected(fraction):
    with pytest.raises(DataError, match=r"expected a number in \(0, 1\]"):
        fraction_counts(fraction, PAPER_TRAIN)


def test_subsets_are_nested_stratified_and_seeded():
    labels = np.repeat(np.arange(3), (400, 250, 50))
    is_train = split_pool(labels, [None] * len(labels), 3, 0.2, seed=7)
    assert np.bincount(labels[is_train]).tolist() == [320, 200, 40]
    ranks = fraction_ranks(labels, is_train, 3, seed=7)
    previous = np.array([], np.int64)
    for fraction in (0.01, 0.03, 0.05, 0.10, 0.37, 0.50, 1.0):
        subset = subset_indices(fraction, labels, ranks, 3)
        assert set(previous) <= set(subset) and is_train[subset].all()
        assert len(subset) == max(math.floor(fraction * 560), 3)
        previous = subset
    assert np.array_equal(split_pool(labels, [None] * len(labels), 3, 0.2, seed=7), is_train)
    assert not np.array_equal(split_pool(labels, [None] * len(labels), 3, 0.2, seed=8), is_train)


def test_official_split_is_used_as_is():
    labels = np.array([0, 0, 1, 1])
    official = ["train", "test", "train", "test"]
    assert split_pool(labels, official, 2, 0.2, seed=0).tolist() == [True, False, True, False]


def test_split_file_is_reused_and_never_mixed_with_a_changed_dataset(radiography_root, data_config):
    config = data_config(radiography_root)
    first = prepare_data(config)
    written = first.split_file.read_text()
    assert written.startswith("# rgmim-bench split file: ") and first.fingerprint in written.splitlines()[0]
    assert written.splitlines()[1] == "image,class,split,min_fraction,rank"
    again = prepare_data(config)
    assert again.split_file == first.split_file and again.split_file.read_text() == written
    assert np.array_equal(again.subset(0.5), first.subset(0.5))

    extra = radiography_root / "COVID-19_Radiography_Dataset" / "Normal"
    for folder in ("images", "masks"):
        (extra / folder / "Normal-99.png").write_bytes((extra / folder / "Normal-1.png").read_bytes())
    changed = prepare_data(config)
    assert changed.fingerprint != first.fingerprint and changed.split_file != first.split_file
    assert first.split_file.read_text() == written  # the old split is left as it was
    with pytest.raises(DataError, match="was written for dataset fingerprint"):
        prepare_data(dataclasses.replace(config, split_file=str(first.split_file)))  # a user-given file of the old data


def test_user_split_file_is_created_then_reused(radiography_root, data_config, tmp_path):
    chosen = tmp_path / "splits" / "mine.csv"
    created = prepare_data(data_config(radiography_root, split_file=str(chosen)))
    reused = prepare_data(data_config(radiography_root, split_seed=5, split_file=str(chosen)))
    assert created.split_file == reused.split_file == chosen
    assert np.array_equal(created.train_idx, reused.train_idx) and reused.split_seed == 0  # the file wins


def _full_release_layout(root):
    """21,165 tiny 8 x 8 PNGs with masks, named like the release: one PNG's bytes written repeatedly."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(buffer, format="PNG")
    png = buffer.getvalue()
    for class_name, count in RELEASE.items():
        for folder in ("images", "masks"):
            target = root / class_name / folder
            target.mkdir(parents=True)
            for number in range(1, count + 1):
                (target / f"{class_name}-{number}.png").write_bytes(png)


@pytest.mark.slow
def test_full_size_radiography_split(tmp_path, data_config):
    started = time.monotonic()
    root = tmp_path / "COVID-19_Radiography_Dataset"
    _full_release_layout(root)
    source = open_source(data_config(root))
    fingerprint = source.fingerprint()
    labels = np.array([item.label for item in source.items])
    _, is_train, ranks = load_or_create_split(source, fingerprint, 0, 0.2, tmp_path / "split.csv")
    assert (is_train.sum(), (~is_train).sum()) == (16933, 4232)
    assert tuple(np.bincount(labels[is_train])) == PAPER_TRAIN
    previous: set[int] = set()
    for fraction, total in zip(PAPER_FRACTIONS, PAPER_TOTALS):
        subset = subset_indices(fraction, labels, ranks, 4)
        assert len(subset) == total
        assert tuple(np.bincount(labels[subset], minlength=4)) == PAPER_SUBSETS[fraction]
        assert previous <= set(subset.tolist())
        previous = set(subset.tolist())

    _, reread_train, reread_ranks = read_split_file(tmp_path / "split.csv", source, fingerprint)
    assert np.array_equal(reread_train, is_train) and np.array_equal(reread_ranks, ranks)
    _, same_train, same_ranks = load_or_create_split(source, fingerprint, 0, 0.2, tmp_path / "same.csv")
    assert np.array_equal(same_train, is_train) and np.array_equal(same_ranks, ranks)
    _, other_train, other_ranks = load_or_create_split(source, fingerprint, 1, 0.2, tmp_path / "other.csv")
    assert not np.array_equal(other_train, is_train) and not np.array_equal(other_ranks, ranks)
    assert tuple(np.bincount(labels[other_train])) == PAPER_TRAIN
    assert time.monotonic() - started < 60
    shutil.rmtree(root)  # 42k files: do not leave them to pytest's retained temp folders
