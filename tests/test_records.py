"""Run records: schema validation, atomic writes, tolerant loading and the flat runs frame.

``make_record`` builds realistic records (real resolved configs, histories, per-class metrics);
test_report.py imports it too.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
import pytest

import methods
from benchmark.config import to_dict
from benchmark.errors import RecordError
from benchmark.paper_grid import PAPER_ROWS, TABLE2_ROWS
from benchmark.records.frame import records_frame, row_label, row_order
from benchmark.records.schema import REQUIRED_KEYS, SCHEMA_VERSION, method_facts, validate_record
from benchmark.records.store import RecordWarning, load_records, read_record, write_record
from benchmark.runner import configure

CLASSES = ["COVID", "Lung_Opacity", "Normal", "Viral_Pneumonia"]
RECALL_OFFSETS = (0.02, -0.02, 0.01, -0.01)  # per-class spread around the accuracy, summing to zero


def make_record(
    method: str,
    arch: str,
    fraction: float,
    seed: int,
    accuracy: Optional[float] = None,
    *,
    mask_ratio: Optional[float] = 0.75,
    dataset: str = "phantom",
    fingerprint: str = "fp-phantom-0001",
    profile: str = "cpu",
    epochs: int = 4,
    reused: bool = False,
    finished_at: str = "2026-11-28T11:00:00+00:00",
    overrides: tuple[str, ...] = (),
    pretrain_s: float = 120.0,
    classes: Sequence[str] = CLASSES,
) -> dict:
    """A schema-valid record; ``accuracy`` defaults to a plausible value from method, fraction and seed."""
    if accuracy is None:
        accuracy = round(0.5 + 0.3 * fraction + 0.02 * len(method) % 0.1 + 0.005 * seed, 4)
    entry = methods.METHODS[method]
    mask_ratio = mask_ratio if entry.uses_mask_ratio else None
    config = to_dict(configure(profile, [f"seed={seed}", f"finetune.epochs={epochs}", *overrides])[0])
    for mim in ("rgmim", "mae"):
        config["methods"][mim]["mask_ratio"] = 0.75 if mask_ratio is None else mask_ratio
    recall = {c: round(min(1.0, max(0.0, accuracy + offset)), 4) for c, offset in zip(classes, RECALL_OFFSETS)}
    per_class = 100
    confusion = [[0] * len(classes) for _ in classes]
    for index, cls in enumerate(classes):
        correct = round(recall[cls] * per_class)
        confusion[index][index] = correct
        confusion[index][(index + 1) % len(classes)] = per_class - correct
    history = [
        {
            "epoch": epoch,
            "train_loss": round(1.4 / epoch, 4),
            "accuracy": round(accuracy - (accuracy - 0.25) * (1 - epoch / epochs) ** 2, 4),
            "macro_f1": round(accuracy - 0.01, 4),
            "lr": 2.5e-4,
        }
        for epoch in range(1, epochs + 1)
    ]
    pretrain = (
        None
        if entry.build_pretrainer is None
        else {
            "cache_key": f"{method}-{arch}-{seed}" + "".join(overrides),
            "reused": reused,
            "wall_time_s": pretrain_s,
            "images_per_s": 210.0,
            "epochs": 10,
            "loss_history": [0.9, 0.7],
            "masking": [{"epoch": 1, "mean_valid_patches": 30.1, "masked_valid_fraction": 0.6, "visible_valid_fraction": 0.0}]
            if entry.uses_mask_ratio
            else None,
        }
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": f"{method}-{arch}-f{fraction}-s{seed}-m{mask_ratio}-{fingerprint[-4:]}-{profile}"
        + "".join(f"-{override}" for override in overrides),
        "method": method,
        "arch": arch,
        "fraction": fraction,
        "seed": seed,
        "mask_ratio": mask_ratio,
        "profile": profile,
        "method_info": method_facts(entry),
        "dataset": {
            "name": dataset,
            "fingerprint": fingerprint,
            "classes": list(classes),
            "image_size": config["data"]["image_size"],
            "train_pool": 1600,
            "mask_source": "gt",
            "test": len(classes) * per_class,
            "finetune_subset": max(4, round(1600 * fraction)),
        },
        "config": config,
        "metrics": {
            "accuracy": accuracy,
            "macro_f1": round(accuracy - 0.01, 4),
            "per_class_recall": recall,
            "auroc": {c: round(min(1.0, accuracy + 0.1), 4) for c in classes},
            "macro_auroc": round(min(1.0, accuracy + 0.1), 4),
            "confusion": confusion,
            "best_epoch_accuracy": accuracy,
        },
        "history": history,
        "probes": {
            "knn": {"accuracy": round(accuracy - 0.1, 4), "macro_f1": 0.5, "macro_auroc": 0.7, "k": 20},
            "linear": {"accuracy": round(accuracy - 0.05, 4), "macro_f1": 0.5, "macro_auroc": 0.7, "steps": 500},
            "subset_size": max(4, round(1600 * fraction)),
            "features_reused": False,
        },
        "pretrain": pretrain,
        "finetune": {"wall_time_s": 60.0 * fraction + 5.0, "images_per_s": 80.0, "epochs": epochs},
        "hardware": {"device": "cpu", "gpu": None, "torch": "2.4.1", "cpu_count": 2, "hostname": "vm"},
        "code_version": {"commit": "abc123", "dirty": True},
        "started_at": "2026-11-28T10:00:00+00:00",
        "finished_at": finished_at,
    }


def test_valid_record_has_no_problems() -> None:
    for method, arch in (("rgmim", "vit"), ("byol", "resnet"), ("transfer", "vit"), ("scratch", "resnet")):
        assert validate_record(make_record(method, arch, 0.05, 0)) == []


@pytest.mark.parametrize("key", sorted(REQUIRED_KEYS))
def test_every_required_key_is_checked(key: str) -> None:
    record = make_record("rgmim", "vit", 0.05, 0)
    del record[key]
    assert any(key in problem for problem in validate_record(record))


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r["metrics"].pop("macro_f1"), "metrics.macro_f1"),
        (lambda r: r.update(schema_version=SCHEMA_VERSION + 1), "schema_version"),
        (lambda r: r.update(method=""), "method"),
        (lambda r: r["method_info"].update(archs=["resnet"]), "method_info"),
        (lambda r: r.update(arch="convnext"), "arch"),
        (lambda r: r.update(fraction=0.0), "fraction"),
        (lambda r: r.update(seed="0"), "seed"),
        (lambda r: r.update(mask_ratio=None), "mask_ratio"),
        (lambda r: r["metrics"].update(accuracy=1.5), "metrics.accuracy"),
        (lambda r: r["metrics"].update(macro_auroc=math.nan), "NaN"),
        (lambda r: r["metrics"]["per_class_recall"].pop("COVID"), "per_class_recall"),
        (lambda r: r["metrics"].update(confusion=[[1, 2], [3, 4]]), "confusion"),
        (lambda r: r["history"][0].pop("accuracy"), "history[0]"),
        (lambda r: r.update(pretrain=None), "pretrain"),
        (lambda r: r["finetune"].update(wall_time_s=-1), "finetune.wall_time_s"),
        (lambda r: r.update(finished_at="yesterday"), "finished_at"),
    ],
)
def test_schema_problems_are_named(mutate, expected: str) -> None:
    record = make_record("rgmim", "vit", 0.05, 0)
    mutate(record)
    problems = validate_record(record)
    assert problems and any(expected in problem for problem in problems), problems


def test_method_specific_rules() -> None:
    byol = make_record("byol", "resnet", 0.05, 0)
    byol["mask_ratio"] = 0.75
    assert any("mask_ratio must be null" in p for p in validate_record(byol))
    transfer = make_record("transfer", "vit", 0.05, 0)
    transfer["pretrain"] = make_record("byol", "resnet", 0.05, 0)["pretrain"]
    assert any("pretrain must be null" in p for p in validate_record(transfer))
    assert validate_record([1, 2]) == ["a record must be a JSON object, got list"]


def test_write_record_is_atomic_and_round_trips(tmp_path: Path) -> None:
    record = make_record("mae", "vit", 0.1, 2)
    path = tmp_path / "runs" / f"{record['run_id']}.json"
    write_record(path, record)
    write_record(path, record)  # overwriting goes through a fresh temporary file too
    assert read_record(path) == json.loads(json.dumps(record))  # tuples in the config come back as lists
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


def test_write_record_refuses_invalid_and_leaves_nothing(tmp_path: Path) -> None:
    record = make_record("mae", "vit", 0.1, 2)
    record["metrics"]["accuracy"] = math.nan
    with pytest.raises(RecordError, match="NaN"):
        write_record(tmp_path / "bad.json", record)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path, monkeypatch) -> None:
    record = make_record("mae", "vit", 0.1, 2)
    path = tmp_path / "run.json"
    write_record(path, record)
    before = path.read_bytes()

    def crash(*_args) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    changed = copy.deepcopy(record)
    changed["metrics"]["accuracy"] = 0.5
    with pytest.raises(OSError, match="disk full"):
        write_record(path, changed)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.json"]


def test_write_record_converts_numpy_values(tmp_path: Path) -> None:
    import numpy as np

    record = make_record("rgmim", "vit", 1.0, 0)
    record["metrics"]["accuracy"] = np.float32(0.75)
    record["metrics"]["confusion"] = np.array(record["metrics"]["confusion"], dtype=np.int64)
    write_record(tmp_path / "run.json", record)
    assert read_record(tmp_path / "run.json")["metrics"]["accuracy"] == 0.75


def test_read_record_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "truncated.json"
    path.write_text(json.dumps(make_record("mae", "vit", 0.1, 0))[:200])
    with pytest.raises(RecordError, match="truncated.json.*not valid JSON"):
        read_record(path)
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(RecordError, match="invalid.json.*missing key 'run_id'"):
        read_record(invalid)


def test_load_records_skips_bad_files_with_a_warning(tmp_path: Path) -> None:
    good = make_record("rgmim", "vit", 0.05, 0)
    write_record(tmp_path / "good.json", good)
    (tmp_path / "corrupt.json").write_bytes(b"\x00\xff not json")
    (tmp_path / "truncated.json").write_text(json.dumps(make_record("mae", "vit", 0.05, 0))[:-40])
    wrong = make_record("mae", "vit", 0.05, 1)
    wrong["metrics"]["accuracy"] = "high"
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    (tmp_path / "notes.txt").write_text("not a record, not a .json")
    with pytest.warns(RecordWarning) as caught:
        records = load_records(tmp_path)
    assert records == [json.loads(json.dumps(good))]
    messages = " ".join(str(w.message) for w in caught)
    for name in ("corrupt.json", "truncated.json", "wrong.json"):
        assert name in messages
    assert load_records(tmp_path / "missing") == []


def test_records_frame_flattens_one_row_per_run() -> None:
    records = [make_record("rgmim", "vit", 0.05, s) for s in (0, 1)] + [make_record("transfer", "resnet", 0.05, 0)]
    frame = records_frame(records)
    assert len(frame) == 3
    for column in (
        "run_id",
        "method",
        "arch",
        "row",
        "fraction",
        "seed",
        "mask_ratio",
        "profile",
        "dataset",
        "fingerprint",
        "accuracy",
        "macro_f1",
        "macro_auroc",
        "recall_COVID",
        "auroc_Normal",
        "pretrain_wall_time_s",
        "finetune_wall_time_s",
        "pretrain_images_per_s",
        "finetune_images_per_s",
        "device",
        "gpu",
    ):
        assert column in frame.columns
    assert list(frame["row"]) == ["RGMIM", "RGMIM", "Transfer (ResNet)"]
    assert pd.isna(frame.loc[2, "mask_ratio"]) and pd.isna(frame.loc[2, "pretrain_wall_time_s"])


def test_row_labels_follow_the_paper() -> None:
    for (method, arch), label in TABLE2_ROWS.items():  # the paper's labels follow from the registry's
        assert row_label(method_facts(methods.METHODS[method]), arch) == label
    assert row_label(method_facts(methods.METHODS["byol"]), "vit") == "BYOL (ViT)"


def test_a_method_added_to_the_registry_needs_no_edit_here(monkeypatch) -> None:
    monkeypatch.setitem(methods.METHODS, "mymim", dataclasses.replace(methods.METHODS["mae"], name="mymim", display="MyMIM"))
    record = make_record("mymim", "vit", 0.05, 0)
    assert validate_record(record) == []
    assert any("mask_ratio must be a number" in p for p in validate_record({**record, "mask_ratio": None}))
    assert row_label(record["method_info"], "vit") == "MyMIM"
    assert row_order("mymim", "vit") >= len(PAPER_ROWS)  # after the paper's rows
    assert records_frame([record])["row"].tolist() == ["MyMIM"]
