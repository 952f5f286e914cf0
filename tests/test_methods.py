"""Method internals: Eq. 5, BYOL's momentum update, the SKD target, offline ImageNet weights."""

from dataclasses import replace

import pytest
import timm
import torch
import torchvision

from benchmark.runner import configure
from benchmark.errors import ConfigError
from methods import METHODS
from methods.backbones import load_imagenet_encoder
from methods.mim import MaskedAutoencoder, MIMSettings, reconstruction_loss
from methods.skd import ensembled_target


def smoke_config(**overrides):
    config, _ = configure("smoke", [f"{k}={v}" for k, v in overrides.items()])
    return config


def test_reconstruction_loss_is_eq5_on_a_hand_built_example():
    prediction = torch.zeros(1, 2, 3)
    target = torch.tensor([[[1.0, 2.0, 2.0], [0.0, 0.0, 3.0]]])
    # Eq. 5: ||Y_M - X_M||^2 / (m * T^2 * C) with m = 2 masked patches of 3 values each
    assert reconstruction_loss(prediction, target, norm_pix=False).item() == pytest.approx((1 + 4 + 4 + 9) / 6)


def test_mim_loss_targets_exactly_the_masked_patches():
    config = smoke_config()
    masked_ids = torch.tensor([[0, 5, 10], [3, 7, 15]])

    def fixed_masking(valid, ratio):
        everything = torch.arange(valid.shape[1]).expand(valid.shape[0], -1)
        keep = torch.stack([row[~torch.isin(row, m)] for row, m in zip(everything, masked_ids)])
        return keep, masked_ids

    torch.manual_seed(0)
    model = MaskedAutoencoder(config, config.method("mae"), fixed_masking)
    torch.nn.init.zeros_(model.prediction_head.weight)
    torch.nn.init.zeros_(model.prediction_head.bias)  # predictions are 0, so the loss is mean(target^2)
    size, patch_size = config.data.image_size, config.vit.patch_size
    images = torch.randn(2, 3, size, size)
    loss, _ = model([images], torch.zeros(2, 1, size, size))
    grid = size // patch_size
    expected = []
    for b in range(2):
        for patch in masked_ids[b].tolist():
            row, col = divmod(patch, grid)
            pixels = images[b, :, row * patch_size : (row + 1) * patch_size, col * patch_size : (col + 1) * patch_size]
            expected.append((pixels**2).mean())
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)


def test_byol_momentum_update_follows_the_cosine_schedule():
    model = METHODS["byol"].pretrainer(smoke_config())
    with torch.no_grad():
        for online, target in zip(model.backbone.parameters(), model.backbone_momentum.parameters()):
            online.fill_(1.0)
            target.fill_(0.0)
    model.after_step(0, 100)  # momentum 0.99 at step 0: target = 0.99 * target + 0.01 * online
    target = next(model.backbone_momentum.parameters())
    assert torch.allclose(target, torch.full_like(target, 0.01))
    assert not any(p.requires_grad for p in model.backbone_momentum.parameters())


def test_skd_target_is_the_closed_form_of_batch_knowledge_propagation():
    torch.manual_seed(0)
    anchors = torch.randn(5, 8)
    values = torch.nn.functional.normalize(anchors, dim=1)
    omega, tau = 0.5, 0.1
    result = ensembled_target(values, anchors, omega, tau)
    affinity = values @ values.T / tau
    affinity.fill_diagonal_(float("-inf"))
    weights = affinity.softmax(dim=1)
    assert torch.allclose(weights.diagonal(), torch.zeros(5))
    series = sum((1 - omega) * omega**k * torch.linalg.matrix_power(weights, k) @ values for k in range(60))
    assert torch.allclose(result, series, atol=1e-5)


@pytest.mark.parametrize("variant", ["cosine", "kl"])
def test_skd_loss_adds_a_finite_distillation_term(variant):
    config = smoke_config(**{"skd.variant": variant})
    torch.manual_seed(0)
    model = METHODS["skd"].pretrainer(config)
    size = config.data.image_size
    views = [torch.randn(6, 3, size, size), torch.randn(6, 3, size, size)]
    loss, _ = model(views, None)
    predictions = [model.prediction_head(model.projection_head(model.backbone(v))) for v in views]
    targets = [model.projection_head_momentum(model.backbone_momentum(v)) for v in views]
    byol_only = super(type(model), model).loss(predictions, targets)
    assert torch.isfinite(loss) and not torch.isclose(loss, byol_only)


def test_resnet_weights_load_offline_from_a_local_file(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(reference.state_dict(), path)
    encoder = load_imagenet_encoder(smoke_config(**{"resnet.weights": path}), "resnet")
    assert torch.equal(encoder.conv1.weight, reference.conv1.weight)
    assert isinstance(encoder.fc, torch.nn.Identity)


def test_vit_weights_load_offline_from_a_local_file(tmp_path):
    config = smoke_config()
    reference = timm.create_model(
        config.vit.name,
        pretrained=False,
        depth=config.vit.depth,
        img_size=config.data.image_size,
        patch_size=config.vit.patch_size,
    )
    path = tmp_path / "vit.pth"
    torch.save(reference.state_dict(), path)
    encoder = load_imagenet_encoder(smoke_config(**{"vit.weights": path}), "vit")
    assert torch.equal(encoder.blocks[0].attn.qkv.weight, reference.blocks[0].attn.qkv.weight)
    assert encoder.num_classes == 0  # the 1000-class head is dropped


def test_missing_weights_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(ConfigError, match="nope.pth"):
        load_imagenet_encoder(smoke_config(**{"resnet.weights": missing}), "resnet")
    with pytest.raises(ConfigError, match="--weights"):
        load_imagenet_encoder(smoke_config(), "vit")


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"something.else": torch.zeros(1)}, path)
    with pytest.raises(ConfigError, match="other.pth"):
        load_imagenet_encoder(smoke_config(**{"resnet.weights": path}), "resnet")


def lung_sparing_masking(valid: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The README's example: the opposite of RGMIM, lung patches stay visible and the rest is masked first."""
    from benchmark.distributed import batch_uniform
    from methods.masking import mask_by_noise

    return mask_by_noise(batch_uniform(valid.shape, valid.device) - valid.float(), mask_ratio)


def test_a_masking_function_plugged_into_the_registry_runs_and_reports(tmp_path, monkeypatch):
    """Adding a method is one registry entry: run, record validation and the report need no other edit."""
    from benchmark.report import build_report
    from benchmark.runner import execute
    from methods.base import Method

    monkeypatch.setitem(
        METHODS,
        "lungspare",
        Method(
            name="lungspare",
            display="Lung-sparing MIM",
            archs=("vit",),
            pretext="non-lung patches masked first",
            reference="README example",
            build_pretrainer=lambda config, settings: MaskedAutoencoder(config, settings, lung_sparing_masking),
            settings=MIMSettings,
            region_guided=True,
        ),
    )
    config, _ = configure("smoke", [f"data.cache_dir={tmp_path / 'cache'}"])
    assert config.method("lungspare") == config.method("rgmim")  # its own section, at the profile's sizes
    record = execute("lungspare", 0.5, config, tmp_path / "results", progress=False)
    execute(
        "lungspare", 0.5, replace(config, region=replace(config.region, source="prior")), tmp_path / "results", progress=False
    )
    masking = record["pretrain"]["masking"][0]
    # smoke grid: 16 patches, 4 visible, ~12 lung; every visible patch is a lung patch (RGMIM would show none)
    visible_lung = masking["visible_valid_fraction"] * masking["mean_valid_patches"]
    assert visible_lung == pytest.approx(4, rel=0.1)
    readme = build_report(tmp_path / "results").read_text()
    assert "| Lung-sparing MIM |" in readme
    by_source = readme.split("### RGMIM by lung-mask source")[1].split("###")[0]  # region-guided: it is listed
    assert "| Lung-sparing MIM | gt |" in by_source and "| Lung-sparing MIM | prior |" in by_source
