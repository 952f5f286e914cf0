"""``python -m benchmark data ...`` as a real subprocess, on the real samples and the phantom."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.config import DataConfig, RegionConfig
from benchmark.data.commands import export_dataset
from benchmark.data.prepare import prepare
from benchmark.errors import DataError
from conftest import QU_EX_SAMPLE

REPO = Path(__file__).resolve().parents[1]


def run_data(*arguments: str, cache: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "benchmark", "data", *arguments, "--profile", "smoke", "--cache-dir", str(cache)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_info_prints_split_fractions_and_mask_coverage(tmp_path):
    result = run_data("info", "--data-root", str(QU_EX_SAMPLE), cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "[data] config: profile smoke; set: data.root=" in result.stderr  # what differs from the profile
    lines = result.stdout.splitlines()
    assert "dataset     covid-qu-ex" in lines
    assert [line.split() for line in lines if line.startswith("Non-COVID")] == [
        ["Non-COVID", "3", "2", "1", "1", "1", "1", "3"]
    ]
    assert "lung masks: 9 of 15 images (9 of 9 in the training pool)" in result.stdout
    assert "mean lung fraction 0." in result.stdout
    assert "of 16 (8-px patches, 4x4 grid at 32 px)" in result.stdout


def test_prepare_then_preview_on_the_radiography_sample(radiography_root, tmp_path):
    prepared = run_data("prepare", "--data-root", str(radiography_root), cache=tmp_path / "cache")
    assert prepared.returncode == 0, prepared.stderr
    cache_line, split_line = prepared.stdout.splitlines()[:2]
    assert Path(cache_line.split(maxsplit=1)[1], "COMPLETE").exists()
    assert Path(split_line.split(maxsplit=2)[2]).read_text().startswith("# rgmim-bench split file")

    out = tmp_path / "preview" / "grid.png"
    previewed = run_data(
        "preview", "--data-root", str(radiography_root), "--out", str(out), "--per-class", "2", cache=tmp_path / "cache"
    )
    assert previewed.returncode == 0, previewed.stderr
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > 200 and picture.height > 400


def test_export_makes_the_phantom_a_plain_folder_dataset(tmp_path):
    out = tmp_path / "exported"
    exported = run_data("export", "--set", "data.phantom_count=24", "--out", str(out), cache=tmp_path / "cache")
    assert exported.returncode == 0, exported.stderr
    assert (out / "COVID" / "images").is_dir() and (out / "COVID" / "masks").is_dir()
    images = sorted((out / "Normal" / "images").iterdir())
    assert images and np.asarray(Image.open(images[0])).shape == (32, 32)
    assert set(np.unique(np.asarray(Image.open(out / "Normal" / "masks" / images[0].name)))) == {0, 255}

    phantom = json.loads((out / "export.json").read_text())["exported_from"]
    assert phantom["name"] == "phantom"
    reread = prepare(
        DataConfig(root=str(out), cache_dir=str(tmp_path / "cache"), image_size=64, split_file=str(out / "split.csv")),
        RegionConfig(),
        progress=False,
    ).describe()
    assert reread["name"] == "folder" and reread["classes"] == phantom["classes"]
    assert (reread["sizes"], reread["fractions"]) == (phantom["sizes"], phantom["fractions"])
    with pytest.raises(DataError, match="is not empty"):
        export_dataset(
            prepare(
                DataConfig(root=str(out), cache_dir=str(tmp_path / "cache"), image_size=64, split_file=str(out / "split.csv")),
                RegionConfig(),
                progress=False,
            ),
            out,
            {},
        )


def test_bad_input_exits_with_code_2_and_names_it(tmp_path):
    missing = tmp_path / "no such data"
    result = run_data("info", "--data-root", str(missing), cache=tmp_path / "cache")
    assert result.returncode == 2
    assert f"error: data root {missing} does not exist" in result.stderr
    assert not (tmp_path / "cache").exists()
