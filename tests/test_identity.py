"""Run ids and encoder keys hash exactly what a run reads (benchmark/engine/identity.py).

The sweep tests go through ``sweep --dry-run``, which prints every run id of a grid; the read-tracking tests
build each pretrainer, take one optimizer step and compare the settings its code touched with the ones
its identity includes.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from benchmark.config import identity
from benchmark.data.prepare import prepare
from benchmark.engine.identity import encoder_cache_key
from benchmark.engine.pretrain import build_optimizer, pretrain_views
from benchmark.engine.batches import TensorPool
from benchmark.runner import configure
from conftest import cli_in_process
from methods import METHODS

RUN_ID = re.compile(r"\b([a-z]+-(?:vit|resnet)-f[0-9.]+-s\d+-[0-9a-f]{10})\b")


def dry_run_ids(tmp_path: Path, *overrides: str) -> dict[str, str]:
    """``sweep --grid table2 --dry-run`` at the smoke profile: (method-arch-fraction) -> run id. In-process:
    sixteen interpreter starts cost 3 min on a 2-core Zen 3; tests/test_sweep.py runs the dry run as a subprocess."""
    arguments = [
        "sweep",
        "--grid",
        "table2",
        "--dry-run",
        "--profile",
        "smoke",
        "--results",
        str(tmp_path / "results"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--weights-vit",
        str(tmp_path / "vit.pth"),
        "--weights-resnet",
        str(tmp_path / "resnet.pth"),
        *(item for override in overrides for item in ("--set", override)),
    ]
    done = cli_in_process(*arguments)
    assert done.returncode == 0, done.stderr
    ids = RUN_ID.findall(done.stdout)
    assert len(ids) == 50, done.stdout  # ten rows x five fractions
    return {run.rsplit("-s", 1)[0]: run for run in ids}


def rows_changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {key.rsplit("-f", 1)[0] for key in before if before[key] != after[key]}


@pytest.mark.slow
def test_a_setting_changes_the_ids_of_exactly_the_runs_that_read_it(tmp_path):
    for name in ("vit.pth", "resnet.pth"):
        (tmp_path / name).write_bytes(b"stand-in: never loaded by a dry run")
    base = dry_run_ids(tmp_path)
    expectations = {
        "byol.ema_base=0.996": {"byol-resnet"},  # BYOL-only: nobody else's id moves
        "skd.tau=0.2": {"skd-resnet"},  # SKD-only: BYOL's and SimSiam's ids stay
        "simsiam.predictor_hidden=8": {"simsiam-resnet"},
        "cross.projector_out=16": {"cross-resnet"},
        "mae.mask_ratio=0.6": {"mae-vit"},
        "rgmim.decoder_depth=2": {"rgmim-vit"},
        "region.source=classical": {"rgmim-vit"},  # only region-guided runs read the region
        "region.min_overlap=0.25": {"rgmim-vit"},
        "pretrain.epochs=2": {"rgmim-vit", "mae-vit", "skd-resnet", "cross-resnet", "byol-resnet", "simsiam-resnet"},
        "vit.depth=3": {"rgmim-vit", "mae-vit", "transfer-vit", "scratch-vit"},
        "resnet.name=resnet34": {
            "skd-resnet",
            "cross-resnet",
            "byol-resnet",
            "simsiam-resnet",
            "transfer-resnet",
            "scratch-resnet",
        },
        "finetune.layer_decay=0.75": {"rgmim-vit", "mae-vit", "transfer-vit", "scratch-vit"},  # ViT-only
        "finetune.epochs=2": {key.rsplit("-f", 1)[0] for key in base},
        "finetune.eval_batch_size=8": set(),  # evaluation batching changes no number
        "runtime.compile=true": set(),
    }
    for override, expected in expectations.items():
        assert rows_changed(base, dry_run_ids(tmp_path, override)) == expected, override


def test_weights_files_are_part_of_only_the_imagenet_runs(tmp_path):
    config, _ = configure("smoke", [f"resnet.weights={tmp_path / 'a.pth'}"])
    assert "weights" in identity(config.resnet, "resnet", "imagenet")
    assert "weights" not in identity(config.resnet, "resnet", "random")
    assert "drop_path" not in identity(config.finetune, "resnet") and "drop_path" in identity(config.finetune, "vit")


class Reads:
    """A settings section that remembers which of its fields were read."""

    def __init__(self, section):
        object.__setattr__(self, "_section", section)
        object.__setattr__(self, "read", set())

    @property
    def __class__(self):  # isinstance(proxy, AdamWRecipe) answers for the section (the engine's recipe check)
        return type(self._section)

    def __getattr__(self, name):
        value = getattr(self._section, name)
        if name in {field.name for field in dataclasses.fields(self._section)}:
            self.read.add(name)
        return value


SECTIONS = ("data", "region", "vit", "resnet", "pretrain", "finetune")


@pytest.mark.parametrize(
    "name", [name for name, method in METHODS.items() if method.settings is not None and method.init == "random"]
)
def test_each_method_reads_exactly_its_declared_settings_and_only_identity_sections(name, tmp_path):
    """Build the pretrainer, its optimizer and one training step with every section tracked: the method
    section's reads must equal its declared fields, and every shared field read must be in the identity."""
    method = METHODS[name]
    config, _ = configure("smoke", [f"data.cache_dir={tmp_path / 'cache'}"])
    data = prepare(config.data, config.region, progress=False)
    tracked = {section: Reads(getattr(config, section)) for section in SECTIONS}
    own = Reads(config.method(name))
    for section, proxy in tracked.items():
        object.__setattr__(config, section, proxy)
    config.methods[name] = own
    model = method.pretrainer(config)
    optimizer, _, _ = build_optimizer(model, own, config.pretrain.batch_size)
    pool = TensorPool(data.images, data.masks if model.uses_masks else None, data.labels, data.train_idx, torch.device("cpu"))
    batch = next(pool.batches(8, 0, 0, drop_last=True))
    views, masks = pretrain_views(model, batch, data.image_size)
    loss, _ = model(views, masks)
    loss.backward()
    optimizer.step()
    model.after_step(0, 2)

    declared = {field.name for field in dataclasses.fields(own._section)}
    assert own.read == declared, f"{name} declares {sorted(declared)} but reads {sorted(own.read)}"
    for section, proxy in tracked.items():
        allowed = set(identity(proxy._section, method.archs[0], method.init))
        if section == "region" and not method.region_guided:
            # masked autoencoders read the lung region for masking statistics only (mim.MaskedAutoencoder)
            allowed = set() if not model.uses_masks else {"min_overlap"}
        assert proxy.read <= allowed, f"{name} reads {section}.{sorted(proxy.read - allowed)} outside its identity"


def test_the_encoder_key_ignores_fine_tuning_and_follows_pretraining(tmp_path):
    config, _ = configure("smoke", [f"data.cache_dir={tmp_path / 'cache'}"])
    data = prepare(config.data, config.region, progress=False)
    key = encoder_cache_key(METHODS["byol"], config, data)
    config.finetune.epochs = 7
    assert encoder_cache_key(METHODS["byol"], config, data) == key
    config.method("skd").tau = 0.3
    assert encoder_cache_key(METHODS["byol"], config, data) == key
    config.method("byol").ema_base = 0.9
    assert encoder_cache_key(METHODS["byol"], config, data) != key
