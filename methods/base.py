"""What a method is: a registry entry, its settings, and (for pretraining methods) a pretrainer module.

The shared engines (benchmark/engine) own the loops, optimizers, schedules, checkpoints and
evaluation; a pretrainer only says which views it needs, how to compute its loss and what to do after
an optimizer step (EMA updates). A method's settings are a dataclass of its own, one config section named
after the method; their base class, the optimizer recipe, tells the engine which optimizer to build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Literal, Optional

import torch
from torch import nn

from benchmark.config import Config
from benchmark.data.views import ViewSpec


@dataclass
class AdamWRecipe:
    """T1's pretraining optimizer: AdamW, lr = blr * B / 256 (MAE main_pretrain.py), warmup + cosine."""

    PROFILES: ClassVar[dict[str, dict]] = {}  # per profile name: field values that differ from the paper's

    blr: float = 1.5e-4  # T1
    weight_decay: float = 0.05  # T1
    betas: tuple[float, float] = (0.9, 0.95)  # T1 / MAE main_pretrain.py
    warmup_epochs: float = 5.0  # choice (protocol §1): MAE's 40 would equal the whole budget

    def checks(self) -> list[tuple[bool, str, str]]:
        return [(self.blr > 0, "blr", "a positive number")]


@dataclass
class SGDRecipe:
    """The Siamese baselines' optimizer (protocol §3, SimSiam's recipe): SGD, lr = blr * B / 256, cosine, no warmup."""

    PROFILES: ClassVar[dict[str, dict]] = {}

    blr: float = 0.05  # protocol §3
    momentum: float = 0.9  # protocol §3
    weight_decay: float = 1e-4  # protocol §3

    def checks(self) -> list[tuple[bool, str, str]]:
        return [(self.blr > 0, "blr", "a positive number")]


class Pretrainer(nn.Module):
    arch: str  # "vit" | "resnet": the encoder exported for fine-tuning
    view_specs: tuple[ViewSpec, ...]  # one view (MIM) or two (Siamese)
    uses_masks: bool = False  # only masked autoencoders need the lung masks aligned with their view

    def encoder(self) -> nn.Module:
        """The backbone whose weights fine-tuning starts from."""
        raise NotImplementedError

    def forward(self, views: list[torch.Tensor], masks: Optional[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Loss for one batch and per-batch statistics to average per epoch."""
        raise NotImplementedError

    def param_groups(self, weight_decay: float) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": weight_decay}]

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after every optimizer step (momentum encoders update here)."""


@dataclass(frozen=True)
class Method:
    name: str  # registry key; also the name of its config section
    display: str
    archs: tuple[str, ...]  # encoders this method runs on; the first is the default
    pretext: str
    reference: str
    # (config, settings) -> pretrainer; None: no pretraining stage
    build_pretrainer: Optional[Callable[[Config, object], Pretrainer]] = None
    settings: Optional[type] = None  # its settings dataclass (an AdamWRecipe or SGDRecipe); needed to pretrain
    init: Literal["random", "imagenet"] = "random"  # the encoder's starting weights
    region_guided: bool = False  # pretraining masks by the lung region: results depend on the region section

    def __post_init__(self) -> None:
        if (self.build_pretrainer is None) != (self.settings is None):
            raise ValueError(f"method {self.name}: a pretraining stage needs settings, and settings a stage")

    def pretrainer(self, config: Config) -> Pretrainer:
        """This method's pretrainer, built from the config and the method's own section of it."""
        return self.build_pretrainer(config, config.method(self.name))

    @property
    def uses_mask_ratio(self) -> bool:
        """Masked image modeling: records carry the mask ratio, and --mask-ratio applies."""
        return self.settings is not None and "mask_ratio" in self.settings.__dataclass_fields__
