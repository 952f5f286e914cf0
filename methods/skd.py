"""SKD (Li et al., ICASSP 2022): BYOL plus a batch-knowledge-ensembled self-distillation target.

RECONSTRUCTION (protocol §5): the paper's method section is not public. The target is BAKE's closed-form
propagation over the batch affinity of the momentum projections, (1 - w)(I - wW)^-1 z.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from benchmark.config import Config
from benchmark import distributed
from methods.base import Method
from methods.byol import BYOL, BYOLSettings


@dataclass
class SKDSettings(BYOLSettings):
    variant: Literal["cosine", "kl"] = "cosine"  # protocol §5
    weight: float = 1.0  # protocol §5: BAKE --lamda default
    omega: float = 0.5  # protocol §5: BAKE propagation weight
    tau: float = 0.1  # protocol §5: affinity temperature (choice)
    kl_temperature: float = 4.0  # protocol §5: KD temperature of the "kl" variant


def ensembled_target(values: torch.Tensor, anchors: torch.Tensor, omega: float, tau: float) -> torch.Tensor:
    """(1 - w)(I - wW)^-1 values, W = row-softmax of anchor cosine affinities / tau without the diagonal."""
    anchors = F.normalize(anchors.float(), dim=1)
    affinity = anchors @ anchors.T / tau
    affinity.fill_diagonal_(float("-inf"))  # each row spreads over the *other* images
    weights = affinity.softmax(dim=1)
    identity = torch.eye(len(values), device=values.device)
    return torch.linalg.solve(identity - omega * weights, (1 - omega) * values.float())


class SKD(BYOL):
    def __init__(self, config: Config, settings: SKDSettings):
        super().__init__(config, settings)
        self.variant, self.weight = settings.variant, settings.weight
        self.omega, self.tau, self.kd_temperature = settings.omega, settings.tau, settings.kl_temperature

    def loss(self, predictions: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
        with torch.autocast(device_type=predictions[0].device.type, enabled=False):  # solve in float32
            distill = 0.5 * (self.distillation(predictions[0], targets[1]) + self.distillation(predictions[1], targets[0]))
        return super().loss(predictions, targets) + self.weight * distill

    def distillation(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ensembled = batch_ensembled(target, self.variant, self.omega, self.tau, self.kd_temperature)
        if self.variant == "cosine":
            return self.criterion(prediction.float(), ensembled)
        # "kl": BAKE's KD on softened distributions, T^2 * KL(target || student)
        log_student = (prediction.float() / self.kd_temperature).log_softmax(dim=1)
        return self.kd_temperature**2 * F.kl_div(log_student, ensembled, reduction="batchmean")


def batch_ensembled(target: torch.Tensor, variant: str, omega: float, tau: float, kd_temperature: float) -> torch.Tensor:
    """This rank's rows of the ensembled target: unit vectors ("cosine") or softened distributions ("kl").

    BAKE propagates over the whole batch, so under DDP the momentum targets of every rank are gathered
    first; one process and any number of ranks then give every image the same target.
    """
    everyone = distributed.gather_rows(target.detach().float())
    if variant == "cosine":
        ensembled = F.normalize(ensembled_target(F.normalize(everyone, dim=1), everyone, omega, tau), dim=1)
    else:
        ensembled = ensembled_target((everyone / kd_temperature).softmax(dim=1), everyone, omega, tau)
    return distributed.current().rows(ensembled)


METHOD = Method(
    name="skd",
    display="SKD",
    archs=("resnet",),
    pretext="BYOL + batch-knowledge-ensembling self-distillation (reconstructed)",
    reference="Li et al., Self-knowledge distillation based SSL for COVID-19 detection, ICASSP 2022 (paper ref. [47])",
    build_pretrainer=SKD,
    settings=SKDSettings,
)
