"""The decoded-image cache: reuse, concurrent preparers, interrupted builds, where it lives."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import prepare_data

import benchmark.data.cache as cache_module
from benchmark.config import DataConfig
from benchmark.data.cache import COMPLETE_MARKER, ensure_cache, entry_directory, resolve_cache_root
from benchmark.data.layouts import open_source
from benchmark.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _entries(cache_root: Path) -> list[str]:
    return sorted(path.name for path in cache_root.iterdir() if path.is_dir() and path.name not in ("splits", "digests"))


def test_cache_is_built_once_then_reused(radiography_root, data_config):
    config = data_config(radiography_root)
    first = prepare_data(config)
    assert first.images.shape == (len(first.keys), 64, 64) and first.images.dtype == np.uint8
    assert isinstance(first.images, np.memmap) and set(np.unique(first.masks)) == {0, 1}
    assert first.has_mask.all() and (first.cache_dir / COMPLETE_MARKER).exists()
    marker_time = (first.cache_dir / COMPLETE_MARKER).stat().st_mtime_ns
    second = prepare_data(config)
    assert (second.cache_dir / COMPLETE_MARKER).stat().st_mtime_ns == marker_time
    assert np.array_equal(second.images, first.images) and np.array_equal(second.masks, first.masks)
    described = second.describe()
    assert described["sizes"]["test"]["Viral Pneumonia"] == 2 and described["fractions"]["1"]["COVID"] == 3


PREPARER = """
import sys, time
from pathlib import Path
from benchmark.config import DataConfig
from benchmark.data.cache import ensure_cache
from benchmark.data.layouts import open_source

root, cache, go = sys.argv[1:]
source = open_source(DataConfig(root=root))
fingerprint = source.fingerprint()
while not Path(go).exists():  # start together, like two cluster jobs
    time.sleep(0.005)
print(ensure_cache(source, fingerprint, 256, Path(cache), progress=False).built)
"""


def test_two_processes_preparing_the_same_cache(radiography_root, tmp_path):
    go = tmp_path / "go"
    command = [sys.executable, "-c", PREPARER, str(radiography_root), str(tmp_path / "shared"), str(go)]
    together = [
        subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    time.sleep(0.5)
    go.touch()
    outputs = [process.communicate(timeout=120) for process in together]
    assert [process.returncode for process in together] == [0, 0], outputs
    assert sorted(stdout.strip() for stdout, _ in outputs) == ["False", "True"]  # one built, one reused

    source = open_source(DataConfig(root=str(radiography_root)))
    alone = ensure_cache(source, source.fingerprint(), 256, tmp_path / "alone", progress=False)
    [shared_entry] = _entries(tmp_path / "shared")  # no temporary folder left behind
    assert shared_entry == alone.directory.name
    for name in ("images.npy", "masks.npy", "has_mask.npy", "keys.json", COMPLETE_MARKER):
        shared_bytes = (tmp_path / "shared" / shared_entry / name).read_bytes()
        assert shared_bytes == (alone.directory / name).read_bytes()


@pytest.fixture
def in_workers(monkeypatch):
    """Every build decodes (and segments) in worker processes, however few its images (the samples are small)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("decoding in workers needs 2 CPUs")
    monkeypatch.setattr(cache_module, "PARALLEL_MIN_ITEMS", 0)


def test_parallel_map_runs_a_closure_in_forked_workers_and_keeps_the_order():
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("workers need 2 CPUs")
    offset = 7  # a closure: nothing but indices and results crosses to the workers
    count = cache_module.PARALLEL_MIN_ITEMS
    results = list(cache_module.parallel_map(lambda index: (index + offset, os.getpid()), count))
    assert [value for value, _ in results] == list(range(offset, count + offset))
    assert os.getpid() not in {pid for _, pid in results}
    alone = list(cache_module.parallel_map(lambda index: os.getpid(), count, fork=False))
    assert set(alone) == {os.getpid()}


def test_decoding_in_workers_writes_what_one_process_writes(radiography_root, data_config, tmp_path, request):
    serial = prepare_data(data_config(radiography_root))  # fewer images than PARALLEL_MIN_ITEMS: this process
    request.getfixturevalue("in_workers")
    parallel = prepare_data(data_config(radiography_root, cache_dir=str(tmp_path / "parallel")))
    assert parallel.keys == serial.keys
    for name in ("images", "masks", "has_mask"):
        assert np.array_equal(getattr(parallel, name), getattr(serial, name)), name


def test_classical_masks_from_workers_equal_one_process(radiography_root, data_config, tmp_path, request):
    serial = prepare_data(data_config(radiography_root), source="classical")
    request.getfixturevalue("in_workers")
    parallel = prepare_data(data_config(radiography_root, cache_dir=str(tmp_path / "parallel")), source="classical")
    assert parallel.masks.any() and np.array_equal(parallel.masks, serial.masks)
    assert np.array_equal(parallel.has_mask, serial.has_mask)


UNGUARDED_SCRIPT = """
import sys
from pathlib import Path
import benchmark.data.cache as cache
from benchmark.data.phantom import PhantomSource
cache.PARALLEL_MIN_ITEMS = 0
source = PhantomSource(count=12)
print(cache.ensure_cache(source, source.fingerprint(), 32, Path(sys.argv[1]), progress=False).images.shape)
"""


def test_workers_do_not_run_the_callers_script_again(tmp_path, request):
    """A user's script without an ``if __name__ == "__main__"`` guard (here: read from stdin) builds a cache."""
    request.getfixturevalue("in_workers")
    done = subprocess.run(
        [sys.executable, "-", str(tmp_path / "cache")], input=UNGUARDED_SCRIPT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["(12,", "32,", "32)"]


@pytest.mark.parametrize("workers", [False, True], ids=["one process", "workers"])
def test_interrupted_build_leaves_no_trusted_cache_and_names_the_file(
    radiography_root, data_config, tmp_path, request, workers
):
    if workers:
        request.getfixturevalue("in_workers")
    broken = radiography_root / "COVID-19_Radiography_Dataset" / "Normal" / "images" / "Normal-3.png"
    intact = broken.read_bytes()
    broken.write_bytes(intact[: len(intact) // 2])  # truncated, as by an interrupted download
    with pytest.raises(DataError, match=r"Normal/images/Normal-3\.png: cannot decode image"):
        prepare_data(data_config(radiography_root))
    assert _entries(tmp_path / "cache") == []  # neither a published entry nor a temporary folder

    broken.write_bytes(intact)
    repaired = prepare_data(data_config(radiography_root))
    assert (repaired.cache_dir / COMPLETE_MARKER).exists() and repaired.images[:].max() > 0


def test_unmarked_or_leftover_folders_are_never_trusted(radiography_root, data_config, tmp_path):
    config = data_config(radiography_root)
    source = open_source(config)
    directory = entry_directory(tmp_path / "cache", source.name, source.fingerprint(), 64)
    directory.mkdir(parents=True)
    (directory / "images.npy").write_bytes(b"half written")  # as if copied in half, without the marker
    killed_build = directory.parent / f".{directory.name}.tmp-killed"
    killed_build.mkdir()
    data = prepare_data(config)
    assert data.cache_dir == directory and (directory / COMPLETE_MARKER).exists()
    assert data.images.shape == (len(source.items), 64, 64) and not killed_build.exists()


@pytest.mark.parametrize("workers", [False, True], ids=["one process", "workers"])
def test_corrupt_mask_is_named(radiography_root, data_config, request, workers):
    if workers:
        request.getfixturevalue("in_workers")
    mask = radiography_root / "COVID-19_Radiography_Dataset" / "COVID" / "masks" / "COVID-2.png"
    mask.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"COVID/masks/COVID-2\.png: cannot decode mask"):
        prepare_data(data_config(radiography_root))


def test_cache_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("RGMIM_CACHE", str(tmp_path / "from-env"))
    assert resolve_cache_root(DataConfig(cache_dir=str(tmp_path / "given"))) == tmp_path / "given"
    assert resolve_cache_root(DataConfig()) == tmp_path / "from-env"
    monkeypatch.delenv("RGMIM_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_cache_root(DataConfig()) == tmp_path / "home" / ".cache" / "rgmim-bench"
