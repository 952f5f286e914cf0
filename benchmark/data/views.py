"""Batched augmentation on the training device: image and lung mask share every geometric draw.

The views are the ones lightly's transforms define (their parameters are read from lightly's own
constructor defaults, so they follow the library), executed as batched tensor operations instead of
per-sample PIL calls: the hot path never leaves the device. Inputs are greyscale, so lightly's
saturation, hue and random-greyscale steps are identities here and are skipped. Every random draw goes
through ``batch_uniform``, so a DDP rank draws for its rows exactly what a single process draws.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.distributed import batch_uniform

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # protocol §0: every method normalises with ImageNet statistics
IMAGENET_STD = (0.229, 0.224, 0.225)
LIGHTLY_BLUR_REFERENCE_SIZE = 224  # lightly's blur sigmas are in pixels at 224 px; scaled to our size


@dataclass(frozen=True)
class ViewSpec:
    min_scale: float  # RandomResizedCrop scale=(min_scale, 1)
    hflip_prob: float = 0.5
    jitter_prob: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    blur_prob: float = 0.0
    blur_sigmas: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0


def view_from_lightly(transform_class: type, **overrides) -> ViewSpec:
    """A ViewSpec with the defaults of a lightly view transform (e.g. BYOLView1Transform)."""
    defaults = {name: p.default for name, p in inspect.signature(transform_class).parameters.items()}
    defaults.update(overrides)
    return ViewSpec(
        min_scale=defaults["min_scale"],
        hflip_prob=defaults.get("hf_prob", 0.5),
        jitter_prob=defaults.get("cj_prob", 0.0),
        brightness=defaults.get("cj_bright", 0.0) * defaults.get("cj_strength", 1.0),
        contrast=defaults.get("cj_contrast", 0.0) * defaults.get("cj_strength", 1.0),
        blur_prob=defaults.get("gaussian_blur", 0.0),
        blur_sigmas=tuple(defaults.get("sigmas", (0.1, 2.0))),
        solarize_prob=defaults.get("solarization_prob", 0.0),
    )


def to_unit(batch_uint8: torch.Tensor) -> torch.Tensor:
    """(B, H, W) uint8 -> (B, 1, H, W) float in [0, 1]."""
    return batch_uint8.unsqueeze(1).float().div_(255.0)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1] -> (B, 3, H, W) ImageNet-normalised (greyscale replicated, protocol §0)."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images.expand(-1, 3, -1, -1) - mean) / std


def random_resized_crop(
    images: torch.Tensor,
    masks: torch.Tensor | None,
    size: int,
    min_scale: float,
    hflip_prob: float,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample RandomResizedCrop + horizontal flip; the mask gets the same box, resampled nearest."""
    batch, device = images.shape[0], images.device
    area = batch_uniform((batch,), device, min_scale, 1.0)
    log_ratio = batch_uniform((batch,), device, math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_ratio)
    # Box width/height as fractions of the image; clamped instead of torchvision's 10 retries.
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    center_x = (batch_uniform((batch,), device) * (1 - width) + width / 2) * 2 - 1
    center_y = (batch_uniform((batch,), device) * (1 - height) + height / 2) * 2 - 1
    flip = torch.where(batch_uniform((batch,), device) < hflip_prob, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = center_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = center_y
    grid = F.affine_grid(theta, [batch, 1, size, size], align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out_masks = None
    if masks is not None:
        out_masks = F.grid_sample(masks, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out, out_masks


def color_jitter(images: torch.Tensor, prob: float, brightness: float, contrast: float) -> torch.Tensor:
    """Brightness then contrast, each factor uniform in [1 - s, 1 + s], applied with probability prob."""
    batch = images.shape[0]
    apply = (batch_uniform((batch, 1, 1, 1), images.device) < prob).float()
    bright = 1 + apply * batch_uniform(apply.shape, images.device, -brightness, brightness)
    contr = 1 + apply * batch_uniform(apply.shape, images.device, -contrast, contrast)
    images = (images * bright).clamp(0, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * contr + mean).clamp(0, 1)


def gaussian_blur(images: torch.Tensor, prob: float, sigmas: tuple[float, float]) -> torch.Tensor:
    """Per-sample Gaussian blur (separable, grouped convolution) with probability prob."""
    batch, _, height, width = images.shape
    scale = height / LIGHTLY_BLUR_REFERENCE_SIZE
    sigma = batch_uniform((batch,), images.device, *sigmas) * scale
    radius = max(1, int(math.ceil(3 * sigmas[1] * scale)))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None].clamp(min=1e-3)) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    grouped = images.reshape(1, batch, height, width)
    padded = F.pad(grouped, (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(padded, kernel.view(batch, 1, 1, -1), groups=batch)
    blurred = F.conv2d(blurred, kernel.view(batch, 1, -1, 1), groups=batch).view_as(images)
    apply = batch_uniform((batch, 1, 1, 1), images.device) < prob
    return torch.where(apply, blurred, images)


def solarize(images: torch.Tensor, prob: float, threshold: float = 0.5) -> torch.Tensor:
    apply = batch_uniform((images.shape[0], 1, 1, 1), images.device) < prob
    return torch.where(apply & (images >= threshold), 1 - images, images)


def make_view(
    images: torch.Tensor,
    spec: ViewSpec,
    size: int,
    masks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One augmented view of a (B, 1, H, W) [0, 1] batch -> ImageNet-normalised (B, 3, size, size)."""
    images, masks = random_resized_crop(images, masks, size, spec.min_scale, spec.hflip_prob)
    if spec.jitter_prob > 0:
        images = color_jitter(images, spec.jitter_prob, spec.brightness, spec.contrast)
    if spec.blur_prob > 0:
        images = gaussian_blur(images, spec.blur_prob, spec.blur_sigmas)
    if spec.solarize_prob > 0:
        images = solarize(images, spec.solarize_prob)
    return normalize(images), masks
