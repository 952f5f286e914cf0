"""Cross (Li et al., IJCARS 2023): cross-view Siamese SSL started from ImageNet weights.

RECONSTRUCTION (protocol §6): BYOL's cross-view loss, with online and target backbones initialised from
a local ImageNet-supervised ResNet file; that initialisation is the only difference from BYOL.
"""

from benchmark.config import Config
from methods.backbones import load_imagenet_encoder
from methods.base import Method
from methods.byol import BYOL, BYOLSettings


def build(config: Config, settings: BYOLSettings) -> BYOL:
    return BYOL(config, settings, backbone=load_imagenet_encoder(config, "resnet"))


METHOD = Method(
    name="cross",
    display="Cross",
    archs=("resnet",),
    pretext="cross-view Siamese SSL from ImageNet weights (reconstructed)",
    reference="Li et al., COVID-19 detection based on self-supervised transfer learning, IJCARS 2023 (paper ref. [48])",
    build_pretrainer=build,
    settings=BYOLSettings,
    init="imagenet",
)
