"""Run ids and encoder cache keys: a hash of exactly the settings a run reads, and nothing else.

What a run reads: the dataset's content fingerprint and split digest and the image size; the model
settings of its encoder family; fine-tuning and the frozen-feature probes; and, when it pretrains, the
shared pretraining loop, its own method section and (region-guided methods only) the lung-region section.
Paths, the device and the fast paths are not in it (``config.locator`` and ``RuntimeConfig``), nor is the
profile's name: two profiles that resolve to the same settings make the same runs.
``tests/test_identity.py`` checks each method's declared settings against what its code reads.
"""

from __future__ import annotations

from typing import Protocol

from benchmark.config import Config, identity
from benchmark.files import stable_hash
from methods.base import Method


class IdentifiedData(Protocol):
    fingerprint: str
    split_digest: str


def data_identity(config: Config, dataset: IdentifiedData) -> dict:
    return {"fingerprint": dataset.fingerprint, "split": dataset.split_digest, **identity(config.data)}


def shared_settings(method: Method, arch: str, config: Config, dataset: IdentifiedData) -> dict:
    """What every stage of a run reads: the method, its encoder family's model, seed, precision and data."""
    return {
        "method": method.name,
        "arch": arch,
        "seed": config.seed,
        "amp": config.amp,
        "data": data_identity(config, dataset),
        "model": identity(config.family(arch), arch, method.init),
    }


def encoder_settings(method: Method, config: Config, dataset: IdentifiedData) -> dict:
    """What a method's pretraining reads (the same for every label fraction)."""
    return {
        **shared_settings(method, method.archs[0], config, dataset),
        "pretrain": identity(config.pretrain),
        "settings": identity(config.method(method.name)),
        "region": identity(config.region) if method.region_guided else None,
    }


def run_settings(method: Method, arch: str, fraction: float, config: Config, dataset: IdentifiedData) -> dict:
    """What one fine-tuning run reads: its encoder's pretraining (if any), its fraction and fine-tuning."""
    if method.build_pretrainer is not None:
        settings = encoder_settings(method, config, dataset)
    else:
        settings = shared_settings(method, arch, config, dataset)
    return {**settings, "fraction": fraction, "finetune": identity(config.finetune, arch), "probe": identity(config.probe)}


def encoder_key(method: Method, arch: str, config: Config, dataset: IdentifiedData) -> str:
    """The encoder a run starts fine-tuning from: its pretraining's cache key, or its initialisation's."""
    if method.build_pretrainer is not None:
        return encoder_cache_key(method, config, dataset)
    return f"{method.name}-{arch}-{stable_hash(shared_settings(method, arch, config, dataset), 16)}"


def encoder_cache_key(method: Method, config: Config, dataset: IdentifiedData) -> str:
    return f"{method.name}-{stable_hash(encoder_settings(method, config, dataset), 16)}"


def run_id(method: Method, arch: str, fraction: float, config: Config, dataset: IdentifiedData) -> str:
    digest = stable_hash(run_settings(method, arch, fraction, config, dataset))
    return f"{method.name}-{arch}-f{fraction:g}-s{config.seed}-{digest}"
