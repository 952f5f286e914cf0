"""SimSiam (Chen & He, CVPR 2021): Siamese prediction with a stop-gradient, no momentum target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from lightly.transforms import SimSiamTransform
from torch import nn

from benchmark.config import Config
from benchmark.data.views import view_from_lightly
from methods.backbones import build_resnet, feature_dim
from methods.base import Method, Pretrainer, SGDRecipe


@dataclass
class SimSiamSettings(SGDRecipe):
    PROFILES: ClassVar[dict[str, dict]] = {
        "cpu": dict(projection_dim=512, predictor_hidden=128),  # choice: SimSiam's 4:1 bottleneck, scaled
        "smoke": dict(projection_dim=64, predictor_hidden=16),
    }

    projection_dim: int = 2048  # protocol §4: SimSiam projector output
    predictor_hidden: int = 512  # protocol §4: SimSiam predictor bottleneck


class SimSiam(Pretrainer):
    arch = "resnet"

    def __init__(self, config: Config, settings: SimSiamSettings):
        super().__init__()
        self.backbone = build_resnet(config)
        dim = settings.projection_dim
        self.projection_head = SimSiamProjectionHead(feature_dim(self.backbone), dim, dim)
        self.prediction_head = SimSiamPredictionHead(dim, settings.predictor_hidden, dim)
        self.criterion = NegativeCosineSimilarity()
        view = view_from_lightly(SimSiamTransform)
        self.view_specs = (view, view)

    def encoder(self) -> nn.Module:
        return self.backbone

    def param_groups(self, weight_decay: float) -> list[dict]:
        # protocol §4 (official fix_pred_lr): the predictor keeps a constant learning rate.
        encoder_params = [*self.backbone.parameters(), *self.projection_head.parameters()]
        return [
            {"params": encoder_params, "weight_decay": weight_decay},
            {"params": list(self.prediction_head.parameters()), "weight_decay": weight_decay, "fixed_lr": True},
        ]

    def forward(self, views: list[torch.Tensor], masks: Optional[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        z1, z2 = (self.projection_head(self.backbone(v)) for v in views)
        p1, p2 = self.prediction_head(z1), self.prediction_head(z2)
        return 0.5 * (self.criterion(p1, z2.detach()) + self.criterion(p2, z1.detach())), {}


METHOD = Method(
    name="simsiam",
    display="SimSiam",
    archs=("resnet",),
    pretext="Siamese prediction with stop-gradient",
    reference="Chen & He, Exploring Simple Siamese Representation Learning, CVPR 2021 (paper ref. [21])",
    build_pretrainer=SimSiam,
    settings=SimSiamSettings,
)
