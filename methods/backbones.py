"""Encoders shared by all methods: timm ViTs and torchvision ResNets, with offline weight loading.

Nothing is ever downloaded: ImageNet weights come from a local file given by the user (protocol §7).
"""

from __future__ import annotations

import os
import pickle
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


def read_weights(path: Path, option: str) -> dict[str, torch.Tensor]:
    """A plain state dict from a ``.pth``/``.safetensors`` file; never code: the error says what the file is."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises its own error types for a file of another format
            raise ConfigError(f"{option} {path}: not a safetensors file ({str(error)[:120]})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError (objects, or not a pickle), RuntimeError (bad zip), EOFError, ...
        first = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        with open(path, "rb") as handle:
            start = handle.read(2)
        # a zip archive (torch.save) or a raw pickle (b"\x80" + protocol) that weights_only refused holds objects
        if isinstance(error, pickle.UnpicklingError) and (start == b"PK" or start[:1] == b"\x80"):
            raise ConfigError(
                f"{option} {path}: holds Python objects besides tensors (a pickled model or training checkpoint); "
                "rgmim-bench loads plain state dicts only and never runs code from a file: save model.state_dict() "
                "with torch.save and pass that file"
            ) from None
        # torch's own text for a refused pickle suggests turning the protection off: not repeated here
        reason = "its bytes are no torch.save archive" if isinstance(error, pickle.UnpicklingError) else first
        raise ConfigError(
            f"{option} {path}: not a PyTorch weights file ({reason}); expected a state dict saved with torch.save, "
            "or a .safetensors file"
        ) from None
    for wrapper in ("state_dict", "model"):  # common checkpoint layouts around the state dict
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ConfigError(f"{option} {path}: not a state dict (a mapping of parameter names to tensors)")
    return state


def describe_weights(state: dict[str, torch.Tensor]) -> str:
    """What model a state dict looks like, in words, for errors."""
    if "cls_token" in state or any(key.startswith("blocks.") for key in state):
        width = state["cls_token"].shape[-1] if "cls_token" in state else "?"
        blocks = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
        return f"a ViT of width {width} with {blocks} blocks"
    if "fc.weight" in state or "layer1.0.conv1.weight" in state:
        bottleneck = "layer1.0.conv3.weight" in state
        stages = [len({key.split(".")[1] for key in state if key.startswith(f"layer{i}.")}) for i in range(1, 5)]
        return f"a ResNet with {'bottleneck' if bottleneck else 'basic'} blocks {stages}"
    return f"a model with keys like {', '.join(list(state)[:3])}"


def check_weights_file(config: Config, arch: str) -> None:
    """Before any work: the ImageNet file exists, is a plain state dict, and fits the encoder the profile builds."""
    option = f"{arch}.weights"
    path = weights_path(config, arch)
    state = read_weights(path, option)
    expected = build_encoder(config, arch).state_dict()
    resampled = ("pos_embed",)  # timm resamples the position embedding to our grid
    mismatched = [
        key
        for key, tensor in expected.items()
        if key not in resampled and (key not in state or state[key].shape != tensor.shape)
    ]
    if mismatched:
        depth = f", depth {config.vit.depth}" if arch == "vit" and config.vit.depth else ""
        raise ConfigError(
            f"{option} {path}: holds {describe_weights(state)}, but the {config.profile} profile builds "
            f"{config.family(arch).name}{depth} ({len(mismatched)} of {len(expected)} tensors do not fit, e.g. "
            f"{mismatched[0]}); pass the weights of {config.family(arch).name} or set --set {arch}.name= to the "
            "file's model"
        )


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
    state = read_weights(path, "resnet.weights")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the ImageNet classifier
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"resnet.weights {path}: not a {config.resnet.name} state dict (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model
