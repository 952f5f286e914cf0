"""MAE (He et al., CVPR 2022): masked image modeling with uniform random masking."""

from benchmark.config import Config
from methods.base import Method
from methods.masking import random_masking
from methods.mim import MaskedAutoencoder


def build(config: Config) -> MaskedAutoencoder:
    return MaskedAutoencoder(config, random_masking)


METHOD = Method(
    name="mae", display="MAE", archs=("vit",),
    pretext="masked image modeling, random masking",
    reference="He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022 (paper ref. [10])",
    build_pretrainer=build, recipe="adamw", uses_mask_ratio=True,
)
