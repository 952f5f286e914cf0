"""The masked autoencoder shared by MAE and RGMIM; they differ only in the masking function (§4.1).

Encoder and decoder are lightly's masked-ViT modules over a timm ViT, composed as lightly's MAE
example does (protocol §1). Loss: paper Eq. 5, the mean squared error over the masked patches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Literal, Optional

import torch
from lightly.models import utils
from lightly.models.modules import MaskedVisionTransformerDecoderTIMM, MaskedVisionTransformerTIMM
from lightly.transforms import MAETransform
from timm.optim import param_groups_weight_decay
from torch import nn

from benchmark.config import Config
from benchmark.data.views import view_from_lightly
from methods.backbones import build_vit
from methods.base import AdamWRecipe, Pretrainer
from methods.masking import patch_validity

Masking = Callable[[torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class MIMSettings(AdamWRecipe):
    """What MAE and RGMIM read, each from its own section (``--set rgmim.mask_ratio=0.5``)."""

    PROFILES: ClassVar[dict[str, dict]] = {
        # choice (protocol §9): T1's rule at batch 64 gives lr 3.75e-5, which left the encoder near its
        # initialisation after 250 steps; blr 3e-3 gives 7.5e-4, inside MAE's own range, and learns
        "cpu": dict(blr=3e-3, warmup_epochs=1.0, decoder_dim=128, decoder_depth=2, decoder_heads=4),
        "smoke": dict(blr=3e-3, warmup_epochs=0.5, decoder_dim=32, decoder_depth=1, decoder_heads=2),
    }

    mask_ratio: float = 0.75  # T1: sigma = 75 %
    norm_pix_loss: bool = False  # protocol §1: Eq. 5 compares original pixels
    min_scale: float = 0.2  # protocol §1: RandomResizedCrop(scale=(0.2, 1.0)) (MAE main_pretrain.py)
    decoder_dim: int = 512  # §4.1: decoder D = 512
    decoder_depth: int = 8  # §4.1: decoder L = 8
    decoder_heads: int = 16  # §4.1: decoder heads = 16
    pos_embed: Literal["sincos", "learn"] = "sincos"  # protocol §1: Table 1 is MAE's, hence fixed sin-cos

    def checks(self) -> list[tuple[bool, str, str]]:
        return [*super().checks(), (0.0 < self.mask_ratio < 1.0, "mask_ratio", "a number in (0, 1)")]


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, norm_pix: bool) -> torch.Tensor:
    """Eq. 5: ||Y_M - X_M||^2 / (m * T^2 * C), averaged over the batch."""
    if norm_pix:  # MAE's --norm_pix_loss option (off by default, protocol §1)
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    return ((pred - target) ** 2).mean()


class MaskedAutoencoder(Pretrainer):
    arch = "vit"

    # RGMIM masks by the lung masks; MAE only logs how many lung patches it hides (diagnostics: its
    # identity leaves the region section out, as its weights do not depend on it)
    uses_masks = True

    def __init__(self, config: Config, settings: MIMSettings, masking: Masking):
        super().__init__()
        self.masking = masking
        self.mask_ratio = settings.mask_ratio
        self.norm_pix_loss = settings.norm_pix_loss
        self.min_overlap = config.region.min_overlap
        # protocol §1: MAE's RandomResizedCrop(scale=(min_scale, 1)) + flip, as lightly's MAETransform
        self.view_specs = (view_from_lightly(MAETransform, min_scale=settings.min_scale),)
        vit = build_vit(config)
        self.backbone = MaskedVisionTransformerTIMM(vit=vit, pos_embed_initialization=settings.pos_embed)
        # The encoder sees only visible patches, so its mask token never gets a gradient; frozen, DDP need
        # not search the graph for unused parameters every step (the decoder's mask token is the one used).
        self.backbone.mask_token.requires_grad_(False)
        self.num_patches = vit.patch_embed.num_patches
        self.decoder_embed = nn.Linear(vit.embed_dim, settings.decoder_dim)
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=self.num_patches,
            embed_dim=settings.decoder_dim,
            depth=settings.decoder_depth,
            num_heads=settings.decoder_heads,
        )
        self.patch_size = config.vit.patch_size
        self.prediction_head = nn.Linear(settings.decoder_dim, self.patch_size**2 * 3)

    def encoder(self) -> nn.Module:
        return self.backbone.vit

    def param_groups(self, weight_decay: float) -> list[dict]:
        # MAE main_pretrain.py: no decay for biases, norms and the (fixed or learned) tokens.
        tokens = [
            name for name, _ in self.named_parameters() if name.split(".")[-1] in ("pos_embed", "cls_token", "mask_token")
        ]
        return param_groups_weight_decay(self, weight_decay, no_weight_decay_list=tokens)

    def forward(self, views: list[torch.Tensor], masks: Optional[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        images = views[0]
        batch = images.shape[0]
        if masks is not None:
            valid = patch_validity(masks, self.patch_size, self.min_overlap)
        else:
            valid = torch.zeros(batch, self.num_patches, dtype=torch.bool, device=images.device)
        visible, masked = self.masking(valid, self.mask_ratio)
        zeros = torch.zeros(batch, 1, dtype=visible.dtype, device=visible.device)
        idx_keep = torch.cat([zeros, visible + 1], dim=1)  # index 0 is the cls token, always kept
        idx_mask = masked + 1

        tokens = self.backbone.encode(images, idx_keep=idx_keep)
        tokens = self.decoder_embed(tokens)
        sequence = utils.repeat_token(self.decoder.mask_token, (batch, self.decoder.sequence_length))
        sequence = utils.set_at_index(sequence, idx_keep, tokens.type_as(sequence))
        decoded = self.decoder(sequence)
        prediction = self.prediction_head(utils.get_at_index(decoded, idx_mask))
        target = utils.get_at_index(utils.patchify(images, self.patch_size), masked)
        loss = reconstruction_loss(prediction.float(), target.float(), self.norm_pix_loss)
        return loss, masking_stats(valid, visible, masked)


def masking_stats(valid: torch.Tensor, visible: torch.Tensor, masked: torch.Tensor) -> dict:
    """Per-batch means: valid patches per image, share of masked that are valid, share of valid left visible."""
    valid_count = valid.sum(dim=1).float()
    masked_valid = torch.gather(valid, 1, masked).sum(dim=1).float()
    visible_valid = torch.gather(valid, 1, visible).sum(dim=1).float()
    has_valid = valid_count > 0
    visible_share = torch.where(has_valid, visible_valid / valid_count.clamp(min=1), torch.zeros_like(valid_count))
    return {
        "mean_valid_patches": valid_count.mean(),
        "masked_valid_fraction": (masked_valid / masked.shape[1]).mean(),
        "visible_valid_fraction": visible_share.sum() / has_valid.sum().clamp(min=1),
    }
