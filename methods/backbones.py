"""Encoders shared by all methods: timm ViTs and torchvision ResNets, with offline weight loading.

Nothing is ever downloaded: ImageNet weights come from a local file given by the user (protocol §7).
"""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
import torchvision
from torch import nn

from benchmark.config import Config
from benchmark.errors import ConfigError


def build_vit(config: Config, drop_path: float = 0.0) -> nn.Module:
    """A timm ViT whose forward returns GAP(LN(z_L)) features (Eq. 4), no classifier head."""
    return timm.create_model(config.vit.name, **_vit_kwargs(config, drop_path))


def _vit_kwargs(config: Config, drop_path: float) -> dict:
    kwargs = dict(
        pretrained=False,
        num_classes=0,
        img_size=config.data.image_size,
        patch_size=config.vit.patch_size,
        drop_path_rate=drop_path,
        global_pool="avg",
        # protocol §8: fc_norm=False keeps `norm` before pooling (Eq. 4); True gives MAE's LN(GAP).
        fc_norm=config.vit.pool == "gap_then_ln",
    )
    if config.vit.depth is not None:
        kwargs["depth"] = config.vit.depth
    return kwargs


def build_resnet(config: Config) -> nn.Module:
    """A torchvision ResNet whose forward returns the global-average-pooled feature."""
    model = getattr(torchvision.models, config.resnet.name)(weights=None)
    model.fc = nn.Identity()
    return model


def feature_dim(encoder: nn.Module) -> int:
    if hasattr(encoder, "num_features"):  # timm
        return int(encoder.num_features)
    return int(encoder.layer4[-1].conv1.in_channels)  # torchvision ResNet: channels out of layer4


def build_encoder(config: Config, arch: str, drop_path: float = 0.0) -> nn.Module:
    if arch == "vit":
        return build_vit(config, drop_path)
    if arch == "resnet":
        return build_resnet(config)
    raise ConfigError(f"--arch {arch!r}: expected vit or resnet")


def weights_path(config: Config, arch: str) -> Path:
    """The local ImageNet file for this arch; a clear error when it is not set or does not exist."""
    option = f"{arch}.weights"
    value = config.family(arch).weights
    if not value:
        raise ConfigError(
            f"ImageNet weights for the {arch} encoder are required but not set: pass --weights PATH "
            f"or --set {option}=PATH (a local .pth/.safetensors file; nothing is downloaded)"
        )
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{option}: weights file {path} does not exist (expected a local "
            f"{'timm ' if arch == 'vit' else ''}{config.family(arch).name} checkpoint)"
        )
    return path


def load_imagenet_encoder(config: Config, arch: str, drop_path: float = 0.0) -> nn.Module:
    """An encoder initialised from the local ImageNet file (never a hub download)."""
    path = weights_path(config, arch)
    if arch == "vit":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # timm gives the `file` overlay priority over hub/url and resamples pos_embed to our size.
        return timm.create_model(
            config.vit.name,
            **{**_vit_kwargs(config, drop_path), "pretrained": True},
            pretrained_cfg_overlay=dict(file=str(path)),
        )
    model = build_resnet(config)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the ImageNet classifier
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"resnet.weights {path}: not a {config.resnet.name} state dict (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model
