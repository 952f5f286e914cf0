"""One run end to end: resolve -> data -> pretrain (or reuse) -> fine-tune + evaluate -> record.

Under torchrun every rank executes this; rank 0 alone prints the config and writes the record.
"""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

from benchmark import distributed
from benchmark.config import Config, build_config, describe_changes, to_dict
from benchmark.data.cache import resolve_cache_root
from benchmark.data.prepare import DatasetIdentity, PreparedData, check_split_usable, identify, prepare
from benchmark.data.splits import check_fraction
from benchmark.engine.finetune import finetune
from benchmark.engine.identity import encoder_key, run_id
from benchmark.engine.probes import cached_features, probe
from benchmark.engine.scalars import ScalarLog
from benchmark.engine.scalars import check_available as check_tensorboard
from benchmark.engine.pretrain import check_pretraining_batch, pretrained_encoder
from benchmark.engine.runtime import code_version, hardware, resolve_device
from benchmark.errors import ConfigError, RecordError
from benchmark.files import ensure_writable
from benchmark.records.schema import CONTENDED_SHARE, SCHEMA_VERSION, method_facts
from benchmark.records.frame import row_label
from benchmark.records.store import read_record, record_path, write_record, scan_records
from methods import METHODS
from methods.backbones import build_encoder, check_weights_file, load_imagenet_encoder
from methods.base import Method


def configure(profile: str = "auto", overrides: tuple[str, ...] | list[str] = ()) -> tuple[Config, str]:
    """``config.build_config`` with a section for every registered method that has settings of its own."""
    settings = {name: method.settings for name, method in METHODS.items() if method.settings is not None}
    return build_config(profile, overrides, settings)


# Shortcut options and the config field each one sets; --set overrides are applied after them.
SHORTCUTS = {
    "dataset": "data.dataset",
    "data_root": "data.root",
    "cache_dir": "data.cache_dir",
    "missing_masks": "data.missing_masks",
    "split_file": "data.split_file",
    "seed": "seed",
    "mask_source": "region.source",
    "mask_dir": "region.mask_dir",
    "sam_checkpoint": "region.sam_checkpoint",
    "tensorboard": "runtime.tensorboard",
}


def config_from_options(options: dict) -> Config:
    """The resolved config from command-line option values: --profile, the shortcut options, the method's
    --mask-ratio and --weights, then every --set (applied last). Sweep jobs rerun this from stored values."""
    # .get: not every command has every shortcut, and options stored by older sweeps lack new ones
    assignments = [f"{key}={options[option]}" for option, key in SHORTCUTS.items() if options.get(option) is not None]
    if options.get("mask_ratio") is not None:
        assignments.append(f"{options['method']}.mask_ratio={options['mask_ratio']}")
    if options.get("weights") is not None:
        arch = options.get("arch") or resolve_method(options["method"], None)[1]
        assignments.append(f"{arch}.weights={options['weights']}")
    config, why = configure(options.get("profile", "auto"), assignments + list(options.get("overrides", [])))
    print(f"[benchmark] {why}", file=sys.stderr)
    return config


def resolve_method(name: str, arch: str | None) -> tuple[Method, str]:
    if name not in METHODS:
        raise ConfigError(f"--method {name!r}: expected one of {', '.join(METHODS)}")
    method = METHODS[name]
    arch = arch or method.archs[0]
    if arch not in method.archs:
        raise ConfigError(f"--arch {arch!r}: {name} runs on {', '.join(method.archs)}")
    return method, arch


def pretrain_only(method_name: str, config: Config, progress: bool = True) -> dict:
    """Pretrain (or find cached) the encoder a method needs; sweeps run this once per encoder."""
    method, _ = resolve_method(method_name, None)
    if method.build_pretrainer is None:
        raise ConfigError(f"--method {method_name}: has no pretraining stage")
    data = prepare(config.data, config.region, progress=progress)
    return pretrained_encoder(method, config, data, resolve_device(config), resolve_cache_root(config.data), progress).summary


def check_before_work(method: Method, arch: str, config: Config) -> DatasetIdentity:
    """Everything that can be checked before an image is decoded or a step is taken; the dataset's identity."""
    if method.init == "imagenet":  # the weights file is missing or does not fit
        check_weights_file(config, arch)
    found = identify(config.data, config.region)
    check_split_usable(found.source, found.is_train, found.split_file)
    if method.build_pretrainer is not None:
        check_pretraining_batch(config.pretrain.batch_size, int(found.is_train.sum()))
    return found


def execute(
    method_name: str,
    fraction: float,
    config: Config,
    results: Path,
    arch: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Run one (method, arch, fraction, seed) and return its record; reuse a finished one unless force."""
    method, arch = resolve_method(method_name, arch)
    check_fraction(fraction)
    ensure_writable(Path(results) / "runs", "--results")  # now, not after minutes of training
    check_tensorboard(config.runtime.tensorboard)
    found = check_before_work(method, arch, config)
    identifier = run_id(method, arch, fraction, config, found)
    destination = record_path(results, identifier)
    if destination.exists() and not force:
        return reused_record(destination, results)
    device = resolve_device(config)
    locks = found.cache_root / "finetune"
    locks.mkdir(parents=True, exist_ok=True)
    # two identical runs: the second waits for the first, then reuses its record (as pretraining does)
    with FileLock(str(locks / f"{identifier}.lock")) if distributed.current().is_main else contextlib.nullcontext():
        if not force and distributed.main_decides(destination.exists()):
            return reused_record(destination, results)
        return run_and_record(method, arch, fraction, config, results, destination, found, identifier, device, progress)


def reused_record(destination: Path, results: Path) -> dict:
    try:
        record = read_record(destination)
    except RecordError as error:
        raise RecordError(f"{error}; `--force` reruns the run and replaces it") from None
    print(f"[run] {record['run_id']}: finished record exists, reusing it (--force reruns)", flush=True)
    print(result_summary(record, destination, results), flush=True)
    return record


def starting_encoder(
    method: Method, arch: str, config: Config, data: PreparedData, device: torch.device, root: Path, progress: bool
) -> tuple[nn.Module, dict | None]:
    """The encoder fine-tuning starts from: pretrained (or reused from the cache), ImageNet weights or random;
    with the pretraining summary of the first."""
    drop_path = config.finetune.drop_path if arch == "vit" else 0.0
    if method.build_pretrainer is not None:
        pretrained = pretrained_encoder(method, config, data, device, root, progress)
        encoder = build_encoder(config, arch, drop_path=drop_path)
        encoder.load_state_dict(pretrained.state)
        return encoder, pretrained.summary
    if method.init == "imagenet":
        return load_imagenet_encoder(config, arch, drop_path=drop_path), None
    torch.manual_seed(config.seed)
    return build_encoder(config, arch, drop_path=drop_path), None


def frozen_probes(
    method: Method,
    arch: str,
    config: Config,
    found: DatasetIdentity,
    data: PreparedData,
    encoder: nn.Module,
    device: torch.device,
    fractions: tuple[float, ...],
) -> dict[float, dict]:
    """kNN and linear-probe results of the encoder's frozen features at each fraction; the features are
    extracted once per encoder and dataset (cached under the encoder key) and shared by every fraction."""
    features_file = found.cache_root / "features" / f"{encoder_key(method, arch, config, found)}.npy"
    features, reused = cached_features(encoder, data, config, device, features_file)
    return {
        fraction: {**probe(features, data, data.subset(fraction), config.probe, config.seed), "features_reused": reused}
        for fraction in fractions
    }


def probe_only(
    method_name: str, fractions: tuple[float, ...], config: Config, arch: str | None = None, progress: bool = True
) -> dict:
    """The frozen-feature probes of a method's starting encoder at every fraction, without fine-tuning: what
    ``probe`` prints. Pretraining is reused from (or added to) the cache that runs use."""
    method, arch = resolve_method(method_name, arch)
    for fraction in fractions:
        check_fraction(fraction)
    found = check_before_work(method, arch, config)
    device = resolve_device(config)
    print(f"[probe] config: {describe_changes(config)}", file=sys.stderr)
    data = prepare(config.data, config.region, progress=progress, found=found)
    encoder, pretrain_summary = starting_encoder(method, arch, config, data, device, found.cache_root, progress)
    results = frozen_probes(method, arch, config, found, data, encoder, device, fractions)
    return {
        "method": method.name,
        "arch": arch,
        "seed": config.seed,
        "profile": config.profile,
        "dataset": data.describe(),
        "classes": len(data.classes),
        "test": int(len(data.test_idx)),
        "encoder_key": encoder_key(method, arch, config, found),
        "pretrain": pretrain_summary,
        "probe_settings": to_dict(config)["probe"],
        "fractions": [{"fraction": fraction, **result} for fraction, result in results.items()],
    }


def probe_table(summary: dict) -> str:
    """The probe command's printout: one line per fraction, beside chance."""
    chance = 1 / summary["classes"]
    lines = [
        f"[probe] {summary['method']}-{summary['arch']} seed {summary['seed']}, frozen starting encoder "
        f"{summary['encoder_key']}; {summary['test']} test images, chance {chance:.4f}",
        f"  {'fraction':>8} {'labels':>6}  {'kNN acc':>7} {'macro-F1':>8} {'AUROC':>6}"
        f"  {'linear acc':>10} {'macro-F1':>8} {'AUROC':>6}",
    ]
    for row in summary["fractions"]:
        knn, linear = row["knn"], row["linear"]
        lines.append(
            f"  {row['fraction']:>8g} {row['subset_size']:>6}  {knn['accuracy']:>7.4f} {knn['macro_f1']:>8.4f} "
            f"{knn['macro_auroc']:>6.4f}  {linear['accuracy']:>10.4f} {linear['macro_f1']:>8.4f} {linear['macro_auroc']:>6.4f}"
        )
    return "\n".join(lines)


def run_and_record(
    method: Method,
    arch: str,
    fraction: float,
    config: Config,
    results: Path,
    destination: Path,
    found: DatasetIdentity,
    identifier: str,
    device: torch.device,
    progress: bool,
) -> dict:
    """Pretrain (or reuse), probe, fine-tune and write the record of one run to ``destination``."""
    started_at = datetime.now(timezone.utc).isoformat()
    ranks = distributed.current()
    if ranks.is_main:
        print(f"[run] config: {describe_changes(config)} (the record keeps the whole config)", file=sys.stderr)
    data = prepare(config.data, config.region, progress=progress, found=found)
    root = found.cache_root

    encoder, pretrain_summary = starting_encoder(method, arch, config, data, device, root, progress)
    probes = None
    # the starting encoder, before fine-tuning changes it; rank 0 alone (probing draws no shared randomness)
    if config.probe.enabled and ranks.is_main:
        probes = frozen_probes(method, arch, config, found, data, encoder, device, (fraction,))[fraction]
        scalars = ScalarLog(config.runtime.tensorboard, identifier, ranks.is_main)
        scalars.add({f"probe/{name}_accuracy": probes[name]["accuracy"] for name in ("knn", "linear")}, 0)
        scalars.close()

    checkpoint = root / "finetune" / f"{identifier}.pt"
    outcome = finetune(encoder, config, data, fraction, device, checkpoint, progress, label=identifier)
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": identifier,
        "method": method.name,
        "arch": arch,
        "fraction": fraction,
        "seed": config.seed,
        "mask_ratio": config.method(method.name).mask_ratio if method.uses_mask_ratio else None,
        "method_info": method_facts(method),
        "profile": config.profile,
        "dataset": {
            **data.describe(),
            "train_pool": int(len(data.train_idx)),
            "test": int(len(data.test_idx)),
            "finetune_subset": outcome["summary"]["subset_size"],
        },
        "config": to_dict(config),
        "metrics": outcome["metrics"],
        "history": outcome["history"],
        "probes": probes,
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
        print(result_summary(record, destination, results), flush=True)
    return record


# the baselines a result is shown next to: training from scratch on the same encoder, and MAE (RGMIM's baseline)
BASELINES = (("scratch", None), ("mae", "vit"))


def result_summary(record: dict, path: Path, results: Path) -> str:
    """What a person reads after a run: fine-tuning accuracy against chance, the frozen-feature probes, and the
    Scratch and MAE records of the same dataset, profile, fraction and seed where they exist."""
    metrics, dataset = record["metrics"], record["dataset"]
    classes = len(dataset["classes"])
    lines = [
        f"[run] {record['run_id']}",
        f"  fine-tuned: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} on {dataset['test']} "
        f"test images (chance {1 / classes:.4f}, {classes} classes), {dataset['finetune_subset']} labels, "
        f"{record['finetune']['epochs']} epoch{'s' if record['finetune']['epochs'] != 1 else ''}",
    ]
    probes = record.get("probes")
    if probes is not None:
        lines.append(
            f"  frozen starting encoder: kNN {probes['knn']['accuracy']:.4f}, linear probe {probes['linear']['accuracy']:.4f}"
        )
    beside = []
    for method, arch in BASELINES:
        arch = arch or record["arch"]
        if (method, arch) == (record["method"], record["arch"]):
            continue
        for other in scan_records(Path(results) / "runs").records:
            same = (other["dataset"]["fingerprint"], other["profile"], other["fraction"], other["seed"]) == (
                dataset["fingerprint"],
                record["profile"],
                record["fraction"],
                record["seed"],
            )
            if same and (other["method"], other["arch"]) == (method, arch):
                beside.append(f"{row_label(other['method_info'], arch)} {other['metrics']['accuracy']:.4f}")
                break
    if beside:
        lines.append(f"  same dataset, profile, fraction and seed: {', '.join(beside)}")
    pretrain = record["pretrain"]
    if pretrain is not None:
        lines.append(f"  pretrained encoder: {'reused' if pretrain.get('reused') else 'trained'} {pretrain['cache_key']}")
    timed = {"fine-tuning": record["finetune"].get("other_cpu_share")}
    if pretrain is not None and not pretrain.get("reused"):
        timed["pretraining"] = pretrain.get("other_cpu_share")
    contended = [f"{share * 100:.0f} % during {part}" for part, share in timed.items() if (share or 0) > CONTENDED_SHARE]
    if contended:
        lines.append(
            f"  note: other work took {', '.join(contended)} of the CPUs: its wall times read high "
            "(accuracy is unaffected; run nothing else beside a timed run)"
        )
    lines.append(f"  record: {path}")
    return "\n".join(lines)
