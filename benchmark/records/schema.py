"""What a run record must hold: the schema, checked before every write and after every read."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from benchmark.config import PROBES


SCHEMA_VERSION = 2  # 2: method_info, method-owned config sections, content fingerprints
# a timed part's other_cpu_share above which its wall time reads high
CONTENDED_SHARE = 0.10  # choice: others taking a tenth of the CPUs already slow a 2-thread OpenMP step visibly

ARCHS = ("vit", "resnet")


def method_facts(method: Any) -> dict[str, Any]:
    """What the report needs to know of a registry entry, stored in each record (the report reads records
    only, never the registry: a report builds without torch, and records of retired methods still show)."""
    return {
        "display": method.display,
        "archs": list(method.archs),
        "pretrains": method.build_pretrainer is not None,
        "region_guided": method.region_guided,
        "uses_mask_ratio": method.uses_mask_ratio,
        "init": method.init,
    }


# Top-level keys and, for sections, the keys each must hold. ``pretrain`` is null without a pretraining stage.
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "schema_version": (),
    "run_id": (),
    "method": (),
    "arch": (),
    "fraction": (),
    "seed": (),
    "mask_ratio": (),
    "profile": (),
    "method_info": ("display", "archs", "pretrains", "region_guided", "uses_mask_ratio", "init"),
    "dataset": ("name", "fingerprint", "classes", "train_pool", "test", "finetune_subset"),
    "config": (),
    "metrics": ("accuracy", "macro_f1", "per_class_recall", "auroc", "macro_auroc", "confusion", "best_epoch_accuracy"),
    "history": (),
    "pretrain": ("cache_key", "reused", "wall_time_s", "images_per_s", "epochs", "loss_history"),
    "finetune": ("wall_time_s", "images_per_s", "epochs"),
    "hardware": ("device", "gpu", "torch", "cpu_count", "hostname"),
    "code_version": ("commit", "dirty"),
    "started_at": (),
    "finished_at": (),
}
HISTORY_KEYS = ("epoch", "train_loss", "accuracy", "macro_f1", "lr")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_probability(value: Any) -> bool:
    return _is_number(value) and 0.0 <= value <= 1.0


def _non_finite_paths(value: Any, path: str) -> list[str]:
    """Where NaN or infinity hides in nested data (JSON has no such values; undefined is null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _non_finite_paths(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in _non_finite_paths(item, f"{path}[{index}]")]
    return []


def _missing_keys(record: dict) -> list[str]:
    problems = []
    for key, nested in REQUIRED_KEYS.items():
        if key not in record:
            problems.append(f"missing key {key!r}")
            continue
        section = record[key]
        if not nested or (key == "pretrain" and section is None):
            continue
        if not isinstance(section, dict):
            problems.append(f"{key} must be an object, got {type(section).__name__}")
            continue
        problems.extend(f"missing key '{key}.{name}'" for name in nested if name not in section)
    return problems


def _check_class_map(values: Any, classes: list[str], name: str) -> list[str]:
    if not isinstance(values, dict):
        return [f"metrics.{name} must be an object keyed by class name"]
    problems = []
    if set(values) != set(classes):
        problems.append(f"metrics.{name} classes {sorted(values)} differ from dataset.classes {sorted(classes)}")
    problems.extend(
        f"metrics.{name}.{cls} must be a number in [0, 1] or null"
        for cls, value in values.items()
        if value is not None and not _is_probability(value)
    )
    return problems


def _check_timestamp(value: Any, key: str) -> list[str]:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return [f"{key} must be an ISO 8601 timestamp, got {value!r}"]
    return []


def validate_record(record: Any) -> list[str]:
    """Every problem that makes ``record`` unusable, as readable sentences; empty if it is fine."""
    if not isinstance(record, dict):
        return [f"a record must be a JSON object, got {type(record).__name__}"]
    problems = _missing_keys(record)
    if problems:
        return problems  # the checks below assume the structure is there
    problems.extend(
        f"{path} is NaN or infinite; write null for an undefined value" for path in _non_finite_paths(record, "record")
    )

    if record["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema_version {record['schema_version']!r} is not supported (this code reads {SCHEMA_VERSION})")
    if not isinstance(record["run_id"], str) or not record["run_id"]:
        problems.append("run_id must be a non-empty string")
    method, arch, info = record["method"], record["arch"], record["method_info"]
    if not isinstance(method, str) or not method:
        problems.append("method must be a non-empty string")
    if not isinstance(info["display"], str) or not isinstance(info["archs"], list) or arch not in info["archs"]:
        problems.append(f"method_info must name a display string and the archs the method runs on, {arch!r} among them")
    if arch not in ARCHS:
        problems.append(f"arch {arch!r} is not one of {', '.join(ARCHS)}")
    if not (_is_number(record["fraction"]) and 0.0 < record["fraction"] <= 1.0):
        problems.append(f"fraction must be a number in (0, 1], got {record['fraction']!r}")
    if not isinstance(record["seed"], int) or isinstance(record["seed"], bool):
        problems.append(f"seed must be an integer, got {record['seed']!r}")
    mask_ratio = record["mask_ratio"]
    if info["uses_mask_ratio"] and not (_is_number(mask_ratio) and 0.0 < mask_ratio < 1.0):
        problems.append(f"mask_ratio must be a number in (0, 1) for {method}, got {mask_ratio!r}")
    if not info["uses_mask_ratio"] and mask_ratio is not None:
        problems.append(f"mask_ratio must be null for {method} (not a masked-image-modeling method)")
    if not isinstance(record["profile"], str) or not record["profile"]:
        problems.append("profile must be a non-empty string")
    if not isinstance(record["config"], dict):
        problems.append("config must be an object")

    dataset = record["dataset"]
    classes = dataset["classes"]
    if not isinstance(dataset["name"], str) or not isinstance(dataset["fingerprint"], str):
        problems.append("dataset.name and dataset.fingerprint must be strings")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        problems.append("dataset.classes must be a non-empty list of class names")
        classes = []

    metrics = record["metrics"]
    for name in ("accuracy", "macro_f1", "best_epoch_accuracy"):
        if not _is_probability(metrics[name]):
            problems.append(f"metrics.{name} must be a number in [0, 1], got {metrics[name]!r}")
    if metrics["macro_auroc"] is not None and not _is_probability(metrics["macro_auroc"]):
        problems.append(f"metrics.macro_auroc must be a number in [0, 1] or null, got {metrics['macro_auroc']!r}")
    problems.extend(_check_class_map(metrics["per_class_recall"], classes, "per_class_recall"))
    problems.extend(_check_class_map(metrics["auroc"], classes, "auroc"))
    confusion = metrics["confusion"]
    if not (
        isinstance(confusion, list)
        and len(confusion) == len(classes)
        and all(
            isinstance(row, list) and len(row) == len(classes) and all(isinstance(n, int) and n >= 0 for n in row)
            for row in confusion
        )
    ):
        problems.append(f"metrics.confusion must be a {len(classes)} x {len(classes)} matrix of counts")

    history = record["history"]
    if not isinstance(history, list):
        problems.append("history must be a list of per-epoch objects")
    else:
        for index, entry in enumerate(history):
            if not isinstance(entry, dict) or any(key not in entry for key in HISTORY_KEYS):
                problems.append(f"history[{index}] must be an object with keys {', '.join(HISTORY_KEYS)}")
            elif not _is_probability(entry["accuracy"]) or not isinstance(entry["epoch"], int):
                problems.append(f"history[{index}] needs an integer epoch and an accuracy in [0, 1]")

    pretrain = record["pretrain"]
    if not info["pretrains"] and pretrain is not None:
        problems.append(f"pretrain must be null for {method} (it has no self-supervised pretraining)")
    if info["pretrains"] and pretrain is None:
        problems.append(f"pretrain must be an object for {method}")
    for name, section in (("pretrain", pretrain), ("finetune", record["finetune"])):
        if isinstance(section, dict):
            problems.extend(
                f"{name}.{key} must be a non-negative number, got {section[key]!r}"
                for key in ("wall_time_s", "images_per_s", "epochs")
                if not (_is_number(section[key]) and section[key] >= 0)
            )
    probes = record.get("probes")  # null when probing was off
    if probes is not None:
        if not isinstance(probes, dict) or not all(isinstance(probes.get(name), dict) for name in PROBES):
            problems.append(f"probes must be null or an object with {' and '.join(PROBES)}")
        else:
            problems.extend(
                f"probes.{name}.accuracy must be a number in [0, 1], got {probes[name].get('accuracy')!r}"
                for name in PROBES
                if not _is_probability(probes[name].get("accuracy"))
            )
    if not isinstance(record["hardware"], dict):
        problems.append("hardware must be an object")
    problems.extend(_check_timestamp(record["started_at"], "started_at"))
    problems.extend(_check_timestamp(record["finished_at"], "finished_at"))
    return problems
