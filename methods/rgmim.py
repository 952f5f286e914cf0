"""RGMIM (the paper, §3): MAE with region-guided masking of lung patches."""

from methods.base import Method
from methods.masking import region_guided_masking
from methods.mim import MaskedAutoencoder, MIMSettings

METHOD = Method(
    name="rgmim",
    display="RGMIM",
    archs=("vit",),
    pretext="masked image modeling, lung patches masked first",
    reference="Li et al., RGMIM, arXiv 2211.00313 (this paper)",
    build_pretrainer=lambda config, settings: MaskedAutoencoder(config, settings, region_guided_masking),
    settings=MIMSettings,
    region_guided=True,
)
