"""One run end to end: resolve -> data -> pretrain (or reuse) -> fine-tune + evaluate -> record.

Under torchrun every rank executes this; rank 0 alone prints the config and writes the record.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmark.config import Config, ConfigError, describe, settings_read_by, stable_hash, to_dict
from benchmark.data.cache import resolve_cache_root
from benchmark.data.prepare import prepare
from benchmark.data.splits import check_fraction
from benchmark.engine import distributed
from benchmark.engine.finetune import finetune
from benchmark.engine.pretrain import pretrained_encoder
from benchmark.engine.runtime import code_version, hardware, resolve_device
from benchmark.records import SCHEMA_VERSION, read_record, write_record
from methods import METHODS
from methods.backbones import build_encoder, load_imagenet_encoder
from methods.base import Method

RESULT_NEUTRAL_KEYS = {"cache_dir", "num_workers"}  # where files live and how they load, not what they hold
SPEED_ONLY_KEYS = ("device", "compile", "channels_last", "cpu_onednn_linear")  # where and how a step computes


def resolve_method(name: str, arch: str | None) -> tuple[Method, str]:
    if name not in METHODS:
        raise ConfigError(f"--method {name!r}: expected one of {', '.join(METHODS)}")
    method = METHODS[name]
    arch = arch or method.archs[0]
    if arch not in method.archs:
        raise ConfigError(f"--arch {arch!r}: {name} runs on {', '.join(method.archs)}")
    return method, arch


def run_id(method: Method, arch: str, fraction: float, config: Config) -> str:
    """Deterministic id from the resolved config (paths to caches and the device left out)."""
    settings = settings_read_by(config, arch, method.recipe)
    settings["data"] = {k: v for k, v in settings["data"].items() if k not in RESULT_NEUTRAL_KEYS}
    for key in SPEED_ONLY_KEYS:
        settings.pop(key)
    digest = stable_hash({"method": method.name, "arch": arch, "fraction": fraction, "config": settings})
    return f"{method.name}-{arch}-f{fraction:g}-s{config.seed}-{digest}"


def pretrain_only(method_name: str, config: Config, progress: bool = True) -> dict:
    """Pretrain (or find cached) the encoder a method needs; sweeps run this once per encoder."""
    method, _ = resolve_method(method_name, None)
    if method.build_pretrainer is None:
        raise ConfigError(f"--method {method_name}: has no pretraining stage")
    data = prepare(config.data, progress=progress)
    return pretrained_encoder(method, config, data, resolve_device(config), resolve_cache_root(config.data),
                              progress).summary


def record_path(results: Path, identifier: str) -> Path:
    return results / "runs" / f"{identifier}.json"


def execute(method_name: str, fraction: float, config: Config, results: Path, arch: str | None = None,
            force: bool = False, progress: bool = True) -> dict:
    """Run one (method, arch, fraction, seed) and return its record; reuse a finished one unless force."""
    method, arch = resolve_method(method_name, arch)
    check_fraction(fraction)
    if method.init == "imagenet":  # fail before any work when the weights file is missing
        from methods.backbones import weights_path
        weights_path(config, arch)
    identifier = run_id(method, arch, fraction, config)
    destination = record_path(results, identifier)
    if destination.exists() and not force:
        record = read_record(destination)
        print(f"[run] {identifier}: finished record exists, reusing it ({destination}); --force reruns", flush=True)
        return record

    started_at = datetime.now(timezone.utc).isoformat()
    device = resolve_device(config)
    ranks = distributed.current()
    if ranks.is_main:
        print(describe(config), file=sys.stderr)
    data = prepare(config.data, progress=progress)
    root = resolve_cache_root(config.data)

    pretrain_summary = None
    if method.build_pretrainer is not None:
        pretrained = pretrained_encoder(method, config, data, device, root, progress)
        encoder = build_encoder(config, arch, drop_path=config.finetune.drop_path if arch == "vit" else 0.0)
        encoder.load_state_dict(pretrained.state)
        pretrain_summary = pretrained.summary
    elif method.init == "imagenet":
        encoder = load_imagenet_encoder(config, arch, drop_path=config.finetune.drop_path)
    else:
        torch.manual_seed(config.seed)
        encoder = build_encoder(config, arch, drop_path=config.finetune.drop_path if arch == "vit" else 0.0)

    checkpoint = root / "finetune" / f"{identifier}.pt"
    outcome = finetune(encoder, config, data, fraction, device, checkpoint, progress, label=identifier)
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": identifier,
        "method": method.name, "arch": arch, "fraction": fraction, "seed": config.seed,
        "mask_ratio": config.pretrain.mask_ratio if method.uses_mask_ratio else None,
        "profile": config.profile,
        "dataset": {**data.describe(), "train_pool": int(len(data.train_idx)), "test": int(len(data.test_idx)),
                    "finetune_subset": outcome["summary"]["subset_size"]},
        "config": to_dict(config),
        "metrics": outcome["metrics"],
        "history": outcome["history"],
        "pretrain": pretrain_summary,
        "finetune": outcome["summary"],
        "hardware": {**hardware(device), "processes": ranks.world},
        "code_version": code_version(),
        "started_at": started_at,
        "finished_at": datetime.now(timezone.utc).isoformat(),
    }
    if ranks.is_main:
        write_record(destination, record)
        checkpoint.unlink(missing_ok=True)
        print(summary_line(record, destination), flush=True)
    return record


def summary_line(record: dict, path: Path) -> str:
    pretrain = record["pretrain"]
    source = "none" if pretrain is None else ("reused " if pretrain.get("reused") else "trained ") + pretrain["cache_key"]
    return (f"[run] {record['run_id']}: accuracy {record['metrics']['accuracy']:.4f}, "
            f"macro-F1 {record['metrics']['macro_f1']:.4f} on {record['dataset']['test']} test images "
            f"after {record['finetune']['epochs']} epochs on {record['dataset']['finetune_subset']} labels; "
            f"pretrained encoder: {source}; record {path}")
