"""The same bytes are the same dataset wherever they lie: copies and moves keep fingerprint, split, cache and
run ids; one changed pixel or a renamed class folder makes another dataset."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.config import RegionConfig
from benchmark.data.prepare import identify
from benchmark.engine.identity import run_id
from benchmark.runner import configure
from conftest import prepare_data
from methods import METHODS


def dataset_folder(root: Path) -> Path:
    return root / "COVID-19_Radiography_Dataset"


def identity_of(root: Path, data_config) -> tuple[str, str, str, str]:
    found = identify(data_config(root), RegionConfig())
    config, _ = configure("smoke", [f"data.root={root}"])
    return (found.fingerprint, str(found.split_file), found.split_digest, run_id(METHODS["rgmim"], "vit", 0.05, config, found))


def test_copies_and_moves_are_the_same_dataset(radiography_root, data_config, tmp_path):
    original = identity_of(radiography_root, data_config)
    first = prepare_data(data_config(radiography_root))
    preserved = tmp_path / "copy-preserved"
    shutil.copytree(radiography_root, preserved)  # keeps modification times
    fresh = tmp_path / "copy-fresh"
    subprocess.run(["cp", "-r", str(radiography_root), str(fresh)], check=True)  # new modification times
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(preserved), str(moved))
    for root in (fresh, moved):
        assert identity_of(root, data_config) == original
        again = prepare_data(data_config(root))
        assert again.cache_dir == first.cache_dir and again.split_file == first.split_file
    # the original's split file is accepted for the copy: its rows are the same dataset's
    assert prepare_data(data_config(fresh, split_file=str(first.split_file))).split_digest == first.split_digest


def test_one_pixel_or_renamed_files_are_another_dataset(radiography_root, data_config, tmp_path):
    original = identify(data_config(radiography_root), RegionConfig()).fingerprint
    for kind in ("images", "masks"):
        changed = tmp_path / f"changed-{kind}"
        shutil.copytree(radiography_root, changed)
        path = sorted((dataset_folder(changed) / "Normal" / kind).iterdir())[0]
        pixels = np.array(Image.open(path))
        pixels.flat[0] = 255 - pixels.flat[0] if kind == "images" else (0 if pixels.flat[0] else 255)
        Image.fromarray(pixels).save(path)
        assert identify(data_config(changed), RegionConfig()).fingerprint != original, kind
    renamed = tmp_path / "renamed"
    shutil.copytree(radiography_root, renamed)
    folder = dataset_folder(renamed) / "Normal" / "images"
    for path in folder.iterdir():  # the same bytes under other names
        path.rename(folder / f"renamed-{path.name}")
    (dataset_folder(renamed) / "Normal" / "masks").rename(dataset_folder(renamed) / "Normal" / "old-masks")
    (dataset_folder(renamed) / "Normal" / "masks").mkdir()
    for path in (dataset_folder(renamed) / "Normal" / "old-masks").iterdir():
        path.rename(dataset_folder(renamed) / "Normal" / "masks" / f"renamed-{path.name}")
    (dataset_folder(renamed) / "Normal" / "old-masks").rmdir()
    assert identify(data_config(renamed), RegionConfig()).fingerprint != original


def test_a_renamed_class_folder_changes_the_fingerprint(tmp_path, data_config):
    from conftest import QU_EX_SAMPLE

    copy = tmp_path / "qu-ex"
    shutil.copytree(QU_EX_SAMPLE, copy)
    options = dict(dataset="folder", masks_dir="lung masks")
    original = identify(data_config(copy / "Val", **options), RegionConfig()).fingerprint
    (copy / "Val" / "Normal").rename(copy / "Val" / "Healthy")
    renamed = identify(data_config(copy / "Val", **options), RegionConfig()).fingerprint
    assert renamed != original
