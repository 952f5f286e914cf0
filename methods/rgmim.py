"""RGMIM (the paper, §3): MAE with region-guided masking of lung patches."""

from benchmark.config import Config
from methods.base import Method
from methods.masking import region_guided_masking
from methods.mim import MaskedAutoencoder


def build(config: Config) -> MaskedAutoencoder:
    return MaskedAutoencoder(config, region_guided_masking)


METHOD = Method(
    name="rgmim", display="RGMIM", archs=("vit",),
    pretext="masked image modeling, lung patches masked first",
    reference="Li et al., RGMIM, arXiv 2211.00313 (this paper)",
    build_pretrainer=build, recipe="adamw", uses_mask_ratio=True, region_guided=True,
)
