"""MAE (He et al., CVPR 2022): masked image modeling with uniform random masking."""

from methods.base import Method
from methods.masking import random_masking
from methods.mim import MaskedAutoencoder, MIMSettings

METHOD = Method(
    name="mae",
    display="MAE",
    archs=("vit",),
    pretext="masked image modeling, random masking",
    reference="He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022 (paper ref. [10])",
    build_pretrainer=lambda config, settings: MaskedAutoencoder(config, settings, random_masking),
    settings=MIMSettings,
)
