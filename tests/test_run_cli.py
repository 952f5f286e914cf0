"""`python -m benchmark run` end to end, through a real subprocess, for every registry entry."""

import json
import math
import subprocess
from pathlib import Path

import pytest
import torch

from benchmark.records.schema import validate_record
from conftest import smoke_in_process, smoke_run, smoke_weights
from methods import METHODS

REGISTRY_ENTRIES = [(name, arch) for name, method in METHODS.items() for arch in method.archs]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """A shared cache (the phantom is generated once) and random stand-ins for ImageNet weight files."""
    root = tmp_path_factory.mktemp("run-cli")
    return {"root": root, "cache": root / "cache", "results": root / "results", "weights": smoke_weights(root)}


def run_cli(workspace: dict, *arguments: str) -> subprocess.CompletedProcess:
    return smoke_run(workspace["cache"], "--results", str(workspace["results"]), *arguments, timeout=600)


def record_of(output: str) -> dict:
    path = output.strip().splitlines()[-1].rsplit("record: ", 1)[1]
    return json.loads(Path(path).read_text())


@pytest.mark.slow
@pytest.mark.parametrize("method, arch", REGISTRY_ENTRIES)
def test_every_registry_entry_runs_end_to_end(workspace, method, arch):
    arguments = ["--method", method, "--arch", arch, "--fraction", "0.5"]
    if METHODS[method].init == "imagenet":
        arguments += ["--weights", str(workspace["weights"][arch])]
    result = run_cli(workspace, *arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    record = record_of(result.stdout)
    assert validate_record(record) == []
    assert (record["method"], record["arch"], record["fraction"]) == (method, arch, 0.5)
    assert all(math.isfinite(epoch["train_loss"]) for epoch in record["history"])
    if METHODS[method].build_pretrainer is None:
        assert record["pretrain"] is None
    else:
        assert all(math.isfinite(loss) for loss in record["pretrain"]["loss_history"])
        assert record["pretrain"]["cache_key"].startswith(method)
    assert record["dataset"]["name"] == "phantom" and record["dataset"]["finetune_subset"] > 0
    # speed figures are only comparable per CPU kind: the record names it, kernel level included
    assert record["hardware"]["cpu"].endswith(torch.backends.cpu.get_cpu_capability())


@pytest.mark.slow
def test_another_fraction_reuses_the_pretrained_encoder_and_same_run_reuses_the_record(workspace):
    first = run_cli(workspace, "--method", "mae", "--fraction", "0.1")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli(workspace, "--method", "mae", "--fraction", "0.2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reusing cached encoder" in second.stdout
    one, two = record_of(first.stdout), record_of(second.stdout)
    assert two["pretrain"]["reused"] is True and two["pretrain"]["cache_key"] == one["pretrain"]["cache_key"]
    again = run_cli(workspace, "--method", "mae", "--fraction", "0.2")
    assert "finished record exists" in again.stdout


def test_missing_weights_fail_before_any_work(workspace, tmp_path):
    result = run_cli(workspace, "--method", "transfer", "--fraction", "0.05", "--weights", str(tmp_path / "missing.pth"))
    assert result.returncode == 2
    assert "missing.pth" in result.stderr and "does not exist" in result.stderr
    assert "decoding" not in result.stderr  # nothing was prepared


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--method", "rgmiim", "--fraction", "0.05"], "--method 'rgmiim'"),
        (["--method", "rgmim", "--fraction", "1.5"], "1.5"),
        (["--method", "rgmim", "--fraction", "0"], "(0, 1]"),
        (["--method", "byol", "--arch", "vit", "--fraction", "0.05"], "--arch 'vit'"),
    ],
)
def test_bad_run_arguments_are_clear_errors(workspace, arguments, message):
    result = smoke_in_process(workspace["cache"], "--results", str(workspace["results"]), *arguments)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
