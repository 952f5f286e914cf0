"""BYOL (Grill et al., NeurIPS 2020): an online network predicts a momentum target's projection.

Heads, loss, views and the momentum update are lightly's (protocol §3). SKD and Cross build on this class.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import BYOLView1Transform, BYOLView2Transform
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from benchmark.config import Config
from benchmark.data.views import view_from_lightly
from methods.backbones import build_resnet, feature_dim
from methods.base import Method, Pretrainer, SGDRecipe


@dataclass
class BYOLSettings(SGDRecipe):
    PROFILES: ClassVar[dict[str, dict]] = {
        "cpu": dict(projector_hidden=1024, projector_out=128),  # choice: the cpu ResNet-18's 512 features
        "smoke": dict(projector_hidden=64, projector_out=32),
    }

    projector_hidden: int = 4096  # protocol §3: BYOL projector 2048 -> 4096 -> 256 (BYOL paper, lightly)
    projector_out: int = 256  # protocol §3
    ema_base: float = 0.99  # protocol §3: cosine 0.99 -> 1 (short schedule)


class BYOL(Pretrainer):
    arch = "resnet"

    def __init__(self, config: Config, settings: BYOLSettings, backbone: Optional[nn.Module] = None):
        super().__init__()
        self.backbone = backbone if backbone is not None else build_resnet(config)
        hidden, out = settings.projector_hidden, settings.projector_out
        self.projection_head = BYOLProjectionHead(feature_dim(self.backbone), hidden, out)
        self.prediction_head = BYOLPredictionHead(out, hidden, out)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()
        self.ema_base = settings.ema_base
        self.view_specs = (view_from_lightly(BYOLView1Transform), view_from_lightly(BYOLView2Transform))

    def encoder(self) -> nn.Module:
        return self.backbone

    def forward(self, views: list[torch.Tensor], masks: Optional[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        predictions = [self.prediction_head(self.projection_head(self.backbone(v))) for v in views]
        with torch.no_grad():
            targets = [self.projection_head_momentum(self.backbone_momentum(v)) for v in views]
        return self.loss(predictions, targets), {}

    def loss(self, predictions: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
        """Symmetric cross-view loss: each view's prediction regresses the other view's target."""
        (p1, p2), (z1, z2) = predictions, targets
        return 0.5 * (self.criterion(p1, z2) + self.criterion(p2, z1))

    def after_step(self, step: int, total_steps: int) -> None:
        momentum = cosine_schedule(step, total_steps, self.ema_base, 1.0)  # protocol §3: 0.99 -> 1
        update_momentum(self.backbone, self.backbone_momentum, momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, momentum)


METHOD = Method(
    name="byol",
    display="BYOL",
    archs=("resnet",),
    pretext="Siamese online/momentum-target prediction",
    reference="Grill et al., Bootstrap Your Own Latent, NeurIPS 2020 (paper ref. [20])",
    build_pretrainer=BYOL,
    settings=BYOLSettings,
)
