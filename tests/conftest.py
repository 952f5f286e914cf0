"""Shared fixtures: the real sample files in tests/data and small trees built from them; the CPU share of each
pytest-xdist worker."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import pytest
import torch

from benchmark.config import DataConfig, RegionConfig
from benchmark.data.prepare import PreparedData, prepare


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker's torch and the CLI processes it starts get an equal share of the CPUs:
    two workers of two threads on two cores spent a third more CPU time than the serial run (measured on a
    2-core Zen 3: user 39 against 29 min)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, len(os.sched_getaffinity(0)) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]):
    """A test marked ``alone`` measures what other processes do with the CPUs: under pytest-xdist it waits for
    the other workers' running tests and holds their next ones off (one flock, taken shared by every other
    test, around setup, call and teardown, so that module fixtures count too)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        return (yield)
    with open(Path(tempfile.gettempdir()) / f"rgmim-bench-tests-{run}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if item.get_closest_marker("alone") else fcntl.LOCK_SH)
        return (yield)


SAMPLES = Path(__file__).parent / "data"
RADIOGRAPHY_SAMPLE = SAMPLES / "covid19-radiography-sample" / "COVID-19_Radiography_Dataset"
QU_EX_SAMPLE = SAMPLES / "covid-qu-ex-sample" / "Infection Segmentation Data"
RGB_STORED = (140, 142, 150, 151, 158, 164)  # Viral Pneumonia-N.png files stored as RGB
COPIES_PER_OTHER_CLASS = 4


@pytest.fixture
def radiography_root(tmp_path: Path) -> Path:
    """A four-class COVID-19 Radiography tree (returned: the folder holding COVID-19_Radiography_Dataset/).

    Viral Pneumonia is the real sample as released; the sample has no other class, so COVID,
    Lung_Opacity and Normal hold renamed copies of a few of its files (real bytes, real names' pattern).
    """
    dataset = tmp_path / "radiography" / "COVID-19_Radiography_Dataset"
    shutil.copytree(RADIOGRAPHY_SAMPLE / "Viral Pneumonia", dataset / "Viral Pneumonia")
    sample_names = sorted(path.name for path in (RADIOGRAPHY_SAMPLE / "Viral Pneumonia" / "images").iterdir())
    for class_name in ("COVID", "Lung_Opacity", "Normal"):
        for folder in ("images", "masks"):
            (dataset / class_name / folder).mkdir(parents=True)
            for number, name in enumerate(sample_names[:COPIES_PER_OTHER_CLASS], start=1):
                shutil.copyfile(
                    RADIOGRAPHY_SAMPLE / "Viral Pneumonia" / folder / name,
                    dataset / class_name / folder / f"{class_name}-{number}.png",
                )
    return dataset.parent


@pytest.fixture
def data_config(tmp_path: Path) -> Callable[..., DataConfig]:
    """DataConfig for a root, with the cache in tmp_path and a small working size."""

    def make(root: Optional[Path], **overrides) -> DataConfig:
        settings = {"cache_dir": str(tmp_path / "cache"), "image_size": 64, **overrides}
        return DataConfig(root=None if root is None else str(root), **settings)

    return make


def prepare_data(data_cfg: DataConfig, **region: object) -> PreparedData:
    """``prepare`` without progress bars, with the lung region's fields given as keywords (source=...)."""
    return prepare(data_cfg, RegionConfig(**region), progress=False)


def smoke_weights(folder: Path) -> dict[str, Path]:
    """Random stand-ins for ImageNet files, at the smoke profile's encoder sizes (named mocks: no real weights
    exist offline), for the code paths that read and check a weights file."""
    import timm
    import torch
    import torchvision

    from benchmark.runner import configure

    config, _ = configure("smoke")
    vit = timm.create_model(
        config.vit.name,
        pretrained=False,
        depth=config.vit.depth,
        img_size=config.data.image_size,
        patch_size=config.vit.patch_size,
    )
    paths = {"vit": folder / "MOCK-vit-imagenet.pth", "resnet": folder / "MOCK-resnet-imagenet.pth"}
    torch.save(vit.state_dict(), paths["vit"])
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), paths["resnet"])
    return paths


REPO = Path(__file__).resolve().parents[1]


def smoke_arguments(cache: Path, command: str) -> list[str]:
    return [command, "--profile", "smoke", "--no-progress", "--cache-dir", str(cache)]


def smoke_run(cache: Path, *arguments: str, command: str = "run", timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m benchmark COMMAND --profile smoke --no-progress --cache-dir CACHE ...`` as a real subprocess."""
    command_line = [sys.executable, "-m", "benchmark", *smoke_arguments(cache, command), *arguments]
    return subprocess.run(command_line, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def cli_in_process(*argv: str) -> SimpleNamespace:
    """``python -m benchmark ARGV`` through ``benchmark.cli.main`` in this process: the same code path without a
    second import of torch, timm and torchvision (9 s per process on a 2-core Zen 3). The ``smoke_run`` tests
    keep the real process and its exit code."""
    from benchmark.cli import main

    printed, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
        try:
            returncode = main(list(argv))
        except SystemExit as exit:  # argparse's usage errors
            returncode = exit.code
    return SimpleNamespace(returncode=returncode, stdout=printed.getvalue(), stderr=errors.getvalue())


def smoke_in_process(cache: Path, *arguments: str, command: str = "run") -> SimpleNamespace:
    """``smoke_run`` in this process (``cli_in_process``), for tests of errors raised before any work."""
    return cli_in_process(*smoke_arguments(cache, command), *arguments)
