"""What a method is: a registry entry, and (for pretraining methods) a pretrainer module.

The shared engines (benchmark/engine) own the loops, optimizers, schedules, checkpoints and
evaluation; a pretrainer only says which views it needs, how to compute its loss and what to do after
an optimizer step (EMA updates); its registry entry names the optimizer recipe the engine follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch
from torch import nn

from benchmark.config import Config, Recipe
from benchmark.data.views import ViewSpec


class Pretrainer(nn.Module):
    arch: str  # "vit" | "resnet": the encoder exported for fine-tuning
    view_specs: tuple[ViewSpec, ...]  # one view (MIM) or two (Siamese)
    uses_masks: bool = False  # only RGMIM needs the lung masks aligned with its view

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
    name: str
    display: str
    archs: tuple[str, ...]  # encoders this method runs on; the first is the default
    pretext: str
    reference: str
    build_pretrainer: Optional[Callable[[Config], Pretrainer]] = None  # None: no pretraining stage
    recipe: Optional[Recipe] = None  # the pretraining optimizer recipe; None without a pretraining stage
    init: Literal["random", "imagenet"] = "random"  # the encoder's starting weights
    uses_mask_ratio: bool = False  # MIM methods: --mask-ratio applies
    region_guided: bool = False  # pretraining masks by the lung region: results depend on --mask-source

    def __post_init__(self) -> None:
        if (self.build_pretrainer is None) != (self.recipe is None):
            raise ValueError(f"method {self.name}: a pretraining stage needs a recipe, and a recipe a stage")
