"""The flat table of records (one row per run) that the report, runs.csv and the sweep estimates read."""

from __future__ import annotations

from typing import Any

import pandas as pd

from benchmark.config import PROBE_METRICS, PROBES

from benchmark.paper_grid import PAPER_ROWS

ARCH_NAMES = {"vit": "ViT", "resnet": "ResNet"}


def row_label(info: dict[str, Any], arch: str) -> str:
    """Display name of a Table 2 row: "RGMIM", "BYOL", "Transfer (ViT)", "BYOL (ViT)" off the method's backbone.

    Only a method with a single backbone, run on it, leaves the backbone unnamed (``info``: method_facts).
    """
    return info["display"] if info["archs"] == [arch] else f"{info['display']} ({ARCH_NAMES[arch]})"


def row_order(method: str, arch: str) -> int:
    """Sort key: the paper's rows in its order; every other row after them (then sorted by its label)."""
    return PAPER_ROWS.index((method, arch)) if (method, arch) in PAPER_ROWS else len(PAPER_ROWS)


def _record_row(record: dict) -> dict[str, Any]:
    method, arch = record["method"], record["arch"]
    metrics, dataset, hardware = record["metrics"], record["dataset"], record["hardware"]
    pretrain = record["pretrain"] or {}
    row: dict[str, Any] = {
        "run_id": record["run_id"],
        "method": method,
        "arch": arch,
        "row": row_label(record["method_info"], arch),
        "region_guided": record["method_info"]["region_guided"],
        "row_order": row_order(method, arch),
        # Rounded so that 0.1 written by different code paths groups as one fraction.
        "fraction": round(float(record["fraction"]), 6),
        "seed": record["seed"],
        "mask_ratio": None if record["mask_ratio"] is None else round(float(record["mask_ratio"]), 6),
        "profile": record["profile"],
        "dataset": dataset["name"],
        "fingerprint": dataset["fingerprint"],
        "train_pool": dataset["train_pool"],
        "test_size": dataset["test"],
        "finetune_subset": dataset["finetune_subset"],
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "macro_auroc": metrics["macro_auroc"],
        "best_epoch_accuracy": metrics["best_epoch_accuracy"],
        **{f"{name}_{key}": (record.get("probes") or {}).get(name, {}).get(key) for name in PROBES for key in PROBE_METRICS},
    }
    row.update({f"recall_{cls}": value for cls, value in metrics["per_class_recall"].items()})
    row.update({f"auroc_{cls}": value for cls, value in metrics["auroc"].items()})
    row.update(
        {
            "pretrain_cache_key": pretrain.get("cache_key"),
            "pretrain_reused": pretrain.get("reused"),
            "pretrain_epochs": pretrain.get("epochs"),
            "pretrain_wall_time_s": pretrain.get("wall_time_s"),
            "pretrain_images_per_s": pretrain.get("images_per_s"),
            "pretrain_other_cpu_share": pretrain.get("other_cpu_share"),
            "finetune_epochs": record["finetune"]["epochs"],
            "finetune_wall_time_s": record["finetune"]["wall_time_s"],
            "finetune_images_per_s": record["finetune"]["images_per_s"],
            "finetune_other_cpu_share": record["finetune"].get("other_cpu_share"),
            "device": hardware["device"],
            "gpu": hardware["gpu"],
            "cpu": hardware.get("cpu"),  # absent from records written before the CPU model was recorded
            "cpu_count": hardware["cpu_count"],
            "torch": hardware["torch"],
            "commit": record["code_version"]["commit"],
            "dirty": record["code_version"]["dirty"],
            "started_at": record["started_at"],
            "finished_at": record["finished_at"],
        }
    )
    return row


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run with flattened columns, sorted by dataset, profile, paper row order, fraction, seed."""
    frame = pd.DataFrame([_record_row(record) for record in records])
    if frame.empty:
        return frame
    frame["mask_ratio"] = frame["mask_ratio"].astype(float)
    sort_keys = ["dataset", "fingerprint", "profile", "row_order", "fraction", "mask_ratio", "seed", "run_id"]
    return frame.sort_values(sort_keys, na_position="first").reset_index(drop=True)
