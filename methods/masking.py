"""Patch masking for MIM: MAE's random masking and RGMIM's region-guided masking (docs/protocol.md §1, §2).

Both keep u = int(n · (1 − σ)) patches (MAE's rounding) by an argsort of per-patch noise; RGMIM only
adds 1 to the noise of valid (lung) patches, so they sort after every invalid patch. Hence: valid
patches are masked first, all of them when there are at most m = n − u; the visible count is always
u; an empty mask is plain random masking; and choices within each group are uniform.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark.distributed import batch_uniform


def visible_count(num_patches: int, mask_ratio: float) -> int:
    return int(num_patches * (1 - mask_ratio))  # models_mae.py random_masking: len_keep


def mask_by_noise(noise: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n) noise -> (visible, masked) patch indices, keeping the lowest-noise patches."""
    order = torch.argsort(noise, dim=1)
    keep = visible_count(noise.shape[1], mask_ratio)
    return order[:, :keep], order[:, keep:]


def random_masking(valid: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE: uniform random masking; the lung region is ignored."""
    return mask_by_noise(batch_uniform(valid.shape, valid.device), mask_ratio)


def region_guided_masking(valid: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RGMIM §3.1: mask valid lung patches first (protocol §2's batch-friendly exact rule)."""
    noise = batch_uniform(valid.shape, valid.device) + valid.float()
    return mask_by_noise(noise, mask_ratio)


def patch_validity(masks: torch.Tensor, patch_size: int, min_overlap: float = 0.0) -> torch.Tensor:
    """(B, 1, H, W) {0, 1} lung masks -> (B, n) bool: the patch overlaps the lung (§3.1)."""
    coverage = F.avg_pool2d(masks.float(), patch_size)
    return coverage.flatten(1) > min_overlap
