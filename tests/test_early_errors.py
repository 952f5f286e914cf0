"""Bad input fails before any training, with exit code 2 and a message naming the file or setting (#14 §2)."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import torch
import torchvision

from conftest import QU_EX_SAMPLE, smoke_in_process


def run(tmp_path: Path, *arguments: str) -> SimpleNamespace:
    return smoke_in_process(tmp_path / "cache", *arguments)


def decoded_anything(tmp_path: Path) -> bool:
    return any(path.name.endswith("px") for path in (tmp_path / "cache").glob("*"))


def test_a_results_path_that_is_a_file_fails_before_any_work(tmp_path):
    results = tmp_path / "results"
    results.write_text("not a folder")
    result = run(tmp_path, "--method", "mae", "--fraction", "0.5", "--results", str(results))
    assert result.returncode == 2 and "error: --results" in result.stderr and "cannot write there" in result.stderr
    assert "Traceback" not in result.stderr and not decoded_anything(tmp_path)


def test_weights_files_that_cannot_serve_say_what_they_hold(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights")
    pickled = tmp_path / "model.pth"
    with open(pickled, "wb") as handle:
        pickle.dump({"fc.weight": torch.zeros(2, 2), "epoch": Path("a pickled object")}, handle)
    resnet50 = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), resnet50)
    expectations = {
        text: "not a PyTorch weights file",
        pickled: "holds Python objects besides tensors",
        resnet50: "holds a ResNet with bottleneck blocks [3, 4, 6, 3], but the smoke profile builds resnet18",
    }
    for path, message in expectations.items():
        result = run(
            tmp_path,
            "--method",
            "transfer",
            "--arch",
            "resnet",
            "--fraction",
            "0.5",
            "--results",
            str(tmp_path / "results"),
            "--weights",
            str(path),
        )
        assert result.returncode == 2, result.stderr
        first = result.stderr.strip().splitlines()[-1]
        assert first.startswith(f"error: resnet.weights {path}: ") and message in first, first
        assert "Traceback" not in result.stderr and "size mismatch" not in result.stderr
    assert "--set resnet.name=" in first
    assert not decoded_anything(tmp_path)


def make_dataset(root: Path, per_class: dict[str, int]) -> Path:
    for name, count in per_class.items():
        images = sorted((QU_EX_SAMPLE / "Val" / "Normal" / "images").iterdir())[:count]
        (root / name / "images").mkdir(parents=True)
        (root / name / "masks").mkdir()
        for image in images:
            (root / name / "images" / image.name).write_bytes(image.read_bytes())
            (root / name / "masks" / image.name).write_bytes((image.parent.parent / "lung masks" / image.name).read_bytes())
    return root


def test_datasets_that_cannot_be_compared_on_are_refused_before_decoding(tmp_path):
    cases = {
        "one-each": ({"A": 1, "B": 1}, "leaves no test image"),
        "one-class": ({"A": 3}, "one class (A); expected at least two"),
    }
    for name, (per_class, message) in cases.items():
        root = make_dataset(tmp_path / name, per_class)
        result = run(
            tmp_path,
            "--method",
            "scratch",
            "--fraction",
            "1.0",
            "--results",
            str(tmp_path / "results"),
            "--dataset",
            "folder",
            "--data-root",
            str(root),
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    root = make_dataset(tmp_path / "small", {"A": 3, "B": 3})  # 4 training images, smoke batch 16
    result = run(
        tmp_path,
        "--method",
        "mae",
        "--fraction",
        "1.0",
        "--results",
        str(tmp_path / "results"),
        "--dataset",
        "folder",
        "--data-root",
        str(root),
    )
    assert result.returncode == 2 and "pretrain.batch_size=16 is larger than the training pool (4 images)" in result.stderr
    assert not decoded_anything(tmp_path)
