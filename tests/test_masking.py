"""Region-guided and random masking: exact counts, lung-first rule, uniformity within groups."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from benchmark.data.regions import lung_patch_grid
from methods.masking import random_masking, region_guided_masking, visible_count


def valid_from_counts(counts: list[int], num_patches: int = 64) -> torch.Tensor:
    valid = torch.zeros(len(counts), num_patches, dtype=torch.bool)
    for row, count in enumerate(counts):
        valid[row, torch.randperm(num_patches)[:count]] = True
    return valid


@pytest.mark.parametrize("mask_ratio", [0.15, 0.3, 0.45, 0.6, 0.75, 0.9])
def test_visible_count_is_exact_for_every_image(mask_ratio):
    torch.manual_seed(0)
    valid = valid_from_counts([0, 5, 20, 40, 63, 64])
    for masking in (random_masking, region_guided_masking):
        visible, masked = masking(valid, mask_ratio)
        assert visible.shape == (6, visible_count(64, mask_ratio))
        assert masked.shape == (6, 64 - visible_count(64, mask_ratio))
        union = torch.cat([visible, masked], dim=1).sort(dim=1).values
        assert torch.equal(union, torch.arange(64).expand(6, -1))  # a partition of the patches


def test_mae_rounding_matches_the_paper_grid():
    assert [visible_count(196, r) for r in (0.15, 0.30, 0.45, 0.60, 0.75, 0.90)] == [166, 137, 107, 78, 49, 19]


def test_every_valid_patch_is_masked_when_fewer_than_m():
    torch.manual_seed(1)
    valid = valid_from_counts([1, 10, 30, 48])  # m = 48 at ratio 0.75 on 64 patches
    visible, masked = region_guided_masking(valid, 0.75)
    assert not torch.gather(valid, 1, visible).any()
    assert torch.equal(torch.gather(valid, 1, masked).sum(dim=1), valid.sum(dim=1))


def test_exactly_m_valid_patches_are_masked_when_at_least_m():
    torch.manual_seed(2)
    valid = valid_from_counts([49, 55, 64])
    visible, masked = region_guided_masking(valid, 0.75)
    assert torch.gather(valid, 1, masked).all()  # all 48 masked patches are lung patches
    assert torch.equal(torch.gather(valid, 1, visible).sum(dim=1), valid.sum(dim=1) - 48)


def test_empty_mask_behaves_as_random_masking():
    valid = torch.zeros(4, 64, dtype=torch.bool)
    torch.manual_seed(3)
    guided = region_guided_masking(valid, 0.75)
    torch.manual_seed(3)
    plain = random_masking(valid, 0.75)
    assert all(torch.equal(a, b) for a, b in zip(guided, plain))


def test_choice_within_each_group_is_uniform():
    """Chi-square over many draws: each valid patch is masked equally often, so is each invalid one."""
    torch.manual_seed(4)
    valid = torch.zeros(1, 64, dtype=torch.bool)
    valid[0, :20] = True  # 20 valid < m = 48: all valid masked, 28 of the 44 invalid masked at random
    trials = valid.expand(4000, -1)
    _, masked = region_guided_masking(trials, 0.75)
    counts = torch.bincount(masked.flatten(), minlength=64).numpy()
    assert (counts[:20] == 4000).all()
    assert chisquare(counts[20:]).pvalue > 0.001
    valid[0, :] = False
    valid[0, :56] = True  # 56 valid >= m: 48 of the 56 chosen uniformly, invalid ones never masked
    _, masked = region_guided_masking(valid.expand(4000, -1), 0.75)
    counts = torch.bincount(masked.flatten(), minlength=64).numpy()
    assert (counts[56:] == 0).all()
    assert chisquare(counts[:56]).pvalue > 0.001


def test_random_masking_ignores_the_lung():
    torch.manual_seed(5)
    valid = torch.zeros(3000, 64, dtype=torch.bool)
    valid[:, :16] = True
    _, masked = random_masking(valid, 0.75)
    share_valid = torch.gather(valid, 1, masked).float().mean().item()
    assert share_valid == pytest.approx(16 / 64, abs=0.01)


def test_lung_patches_are_any_overlap_or_more_than_min_overlap():
    masks = torch.zeros(1, 1, 32, 32)
    masks[0, 0, 0, 0] = 1  # a single lung pixel makes its patch valid
    masks[0, 0, 20:, 20:] = 1
    valid = lung_patch_grid(masks, 16, 0.0)
    assert valid.tolist() == [[True, False, False, True]]
    assert lung_patch_grid(masks, 16, 0.5).tolist() == [[False, False, False, True]]
    assert np.isclose(lung_patch_grid(torch.zeros(2, 1, 32, 32), 16, 0.0).sum().item(), 0)


def test_training_and_the_data_commands_count_the_same_lung_patches():
    """With region.min_overlap > 0, `data info` / `data preview` / the mask scores (PatchGrid) and the masked
    autoencoder's masking see exactly the same lung patches."""
    from benchmark.data.commands import PatchGrid
    from benchmark.runner import configure
    from methods.mim import MaskedAutoencoder

    config, _ = configure("smoke", ["region.min_overlap=0.4"])
    size, patch = config.data.image_size, config.vit.patch_size
    generator = torch.Generator().manual_seed(0)
    masks = (torch.rand(3, size, size, generator=generator) < torch.linspace(0, 1, size)).to(torch.uint8)
    seen = {}

    def recording_masking(valid, mask_ratio):
        seen["valid"] = valid.clone()
        return random_masking(valid, mask_ratio)

    model = MaskedAutoencoder(config, config.method("mae"), recording_masking)
    model([torch.zeros(3, 3, size, size)], masks[:, None].float())
    from_commands = PatchGrid.of(config).lung_patches(masks.numpy()).reshape(3, -1)
    assert np.array_equal(seen["valid"].numpy(), from_commands)
    assert 0 < from_commands.sum() < from_commands.size  # the threshold separates partly covered patches
    assert not np.array_equal(from_commands, PatchGrid(patch, 0.0).lung_patches(masks.numpy()).reshape(3, -1))
