"""Profiles, --set overrides with type checking, and the auto profile."""

import pytest
import torch

from benchmark.config import ConfigError, build_config, stable_hash, to_dict


def test_profiles_differ_where_they_should():
    paper, _ = build_config("paper")
    cpu, _ = build_config("cpu")
    assert (paper.model.vit, paper.data.image_size, paper.pretrain.epochs) == ("vit_base_patch16_224", 224, 40)
    assert (paper.model.decoder_depth, paper.model.decoder_dim, paper.model.decoder_heads) == (8, 512, 16)
    assert cpu.data.image_size // cpu.model.patch_size >= 8  # region guidance needs at least an 8 x 8 grid
    assert cpu.model.resnet == "resnet18" and "tiny" in cpu.model.vit


def test_auto_profile_says_what_it_picked():
    config, why = build_config("auto")
    expected = "paper" if torch.cuda.is_available() else "cpu"
    assert config.profile == expected and expected in why and "auto" in why


def test_set_overrides_are_type_checked():
    config, _ = build_config("smoke", ["pretrain.epochs=3", "pretrain.betas=0.8,0.9", "data.root=none",
                                       "amp=off", "data.phantom_shortcut=true", "seed=7"])
    assert config.pretrain.epochs == 3 and config.pretrain.betas == (0.8, 0.9)
    assert config.data.root is None and config.amp == "off" and config.data.phantom_shortcut and config.seed == 7


@pytest.mark.parametrize("assignment, message", [
    ("pretrain.epoch=3", "unknown key 'epoch'"),
    ("pretrian.epochs=3", "unknown section 'pretrian'"),
    ("pretrain.epochs=three", "expected int"),
    ("amp=fp8", "expected one of auto, bf16, off"),
    ("data.phantom_shortcut=maybe", "expected true or false"),
    ("pretrain.epochs", "expected section.key=value"),
    ("pretrain.mask_ratio=1.5", "pretrain.mask_ratio"),
])
def test_bad_overrides_name_the_key_and_the_expectation(assignment, message):
    with pytest.raises(ConfigError, match=message):
        build_config("smoke", [assignment])


def test_unknown_profile_is_an_error():
    with pytest.raises(ConfigError, match="--profile 'fast'"):
        build_config("fast")


def test_hash_is_deterministic_and_sensitive():
    a, _ = build_config("smoke")
    b, _ = build_config("smoke", ["pretrain.epochs=2"])
    assert stable_hash(to_dict(a)) == stable_hash(to_dict(build_config("smoke")[0]))
    assert stable_hash(to_dict(a)) != stable_hash(to_dict(b))


@pytest.mark.parametrize("method_name, arch, unread, read", [
    ("scratch", "resnet", ["model.vit_depth=3", "finetune.drop_path=0.3", "pretrain.blr=0.01"], "model.resnet=resnet34"),
    ("byol", "resnet", ["model.patch_size=4", "pretrain.blr=0.01", "pretrain.mask_ratio=0.5"], "pretrain.ssl_blr=0.1"),
    ("rgmim", "vit", ["model.resnet=resnet34", "pretrain.ssl_blr=0.1", "pretrain.skd_tau=0.2"], "pretrain.blr=0.01"),
    ("scratch", "vit", ["pretrain.epochs=3", "model.projector_out=64"], "finetune.layer_decay=0.75"),
])
def test_run_ids_and_encoder_keys_ignore_settings_the_run_never_reads(method_name, arch, unread, read):
    """Retuning one family (e.g. the ViT recipe) must not orphan the other family's finished runs."""
    from types import SimpleNamespace

    from benchmark.engine.pretrain import encoder_cache_key
    from benchmark.runner import run_id
    from methods import METHODS

    method, data = METHODS[method_name], SimpleNamespace(fingerprint="same-dataset")
    base, _ = build_config("smoke")
    changed, _ = build_config("smoke", unread)
    touched, _ = build_config("smoke", [read])
    assert run_id(method, arch, 0.05, changed) == run_id(method, arch, 0.05, base)
    assert run_id(method, arch, 0.05, touched) != run_id(method, arch, 0.05, base)
    if method.recipe is not None:
        assert encoder_cache_key(method, changed, data) == encoder_cache_key(method, base, data)
        assert encoder_cache_key(method, touched, data) != encoder_cache_key(method, base, data)
