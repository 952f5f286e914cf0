"""Profiles, typed overrides and method-owned sections."""

import pytest
import torch

from benchmark.errors import ConfigError
from benchmark.runner import configure


def test_profiles_hold_the_paper_and_laptop_sizes():
    paper, _ = configure("paper")
    cpu, _ = configure("cpu")
    assert (paper.vit.name, paper.data.image_size, paper.pretrain.epochs) == ("vit_base_patch16_224", 224, 40)
    assert (paper.method("rgmim").decoder_depth, paper.method("rgmim").decoder_dim) == (8, 512)
    assert paper.method("rgmim").decoder_heads == 16 and paper.method("byol").projector_hidden == 4096
    assert cpu.data.image_size // cpu.vit.patch_size >= 8  # region guidance needs at least an 8 x 8 grid
    assert cpu.resnet.name == "resnet18" and "tiny" in cpu.vit.name
    assert cpu.method("mae") == cpu.method("rgmim") and cpu.method("mae") is not cpu.method("rgmim")


def test_a_method_section_is_set_on_its_own():
    config, _ = configure("smoke", ["rgmim.mask_ratio=0.5", "skd.tau=0.2", "byol.ema_base=0.996"])
    assert config.method("rgmim").mask_ratio == 0.5 and config.method("mae").mask_ratio == 0.75
    assert config.method("skd").tau == 0.2 and config.method("byol").ema_base == 0.996
    assert config.method("skd").ema_base == 0.99  # SKD's BYOL part is SKD's own section


def test_auto_profile_says_what_it_picked():
    config, why = configure("auto")
    expected = "paper" if torch.cuda.is_available() else "cpu"
    assert config.profile == expected and expected in why and "auto" in why


def test_set_overrides_are_type_checked():
    config, _ = configure(
        "smoke",
        ["pretrain.epochs=3", "rgmim.betas=0.8,0.9", "data.root=none", "amp=off", "data.phantom_shortcut=true", "seed=7"],
    )
    assert config.pretrain.epochs == 3 and config.method("rgmim").betas == (0.8, 0.9)
    assert config.data.root is None and config.amp == "off" and config.data.phantom_shortcut and config.seed == 7


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("pretrain.epoch=3", "unknown key 'epoch'"),
        ("pretrian.epochs=3", "unknown section 'pretrian'"),
        ("pretrain.epochs=three", "expected int"),
        ("amp=fp8", "expected one of auto, bf16, off"),
        ("data.phantom_shortcut=maybe", "expected true or false"),
        ("pretrain.epochs", "expected section.key=value"),
        ("rgmim.mask_ratio=1.5", "rgmim.mask_ratio"),
        ("byol.tau=0.2", "unknown key 'tau'"),
        ("model.vit=vit_small", "unknown section 'model'"),
        ("region.min_overlap=1.5", "region.min_overlap"),
    ],
)
def test_bad_overrides_name_the_key_and_the_expectation(assignment, message):
    with pytest.raises(ConfigError, match=message):
        configure("smoke", [assignment])


def test_unknown_profile_is_an_error():
    with pytest.raises(ConfigError, match="--profile 'fast'"):
        configure("fast")
