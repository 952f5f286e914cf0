"""Batched views: the lung mask follows the image through every geometric draw."""

import torch

from benchmark.data.views import ViewSpec, make_view, view_from_lightly
from lightly.transforms import BYOLView1Transform, BYOLView2Transform


def test_mask_follows_the_image_through_crop_and_flip():
    torch.manual_seed(0)
    masks = torch.zeros(64, 1, 64, 64)
    for i in range(64):  # a different off-centre rectangle in each image, so flips show
        top, left = torch.randint(0, 30, (2,)).tolist()
        masks[i, 0, top : top + 20, left : left + 12] = 1
    images = masks.clone()  # the image is the mask: after the view the two must still agree
    spec = ViewSpec(min_scale=0.3, hflip_prob=0.5)
    views, moved = make_view(images, spec, 64, masks)
    recovered = (views[:, :1] * 0.229 + 0.485) > 0.5  # undo the normalisation of channel 0
    agreement = (recovered == moved.bool()).float().mean().item()
    assert agreement > 0.97  # bilinear vs nearest only differ on the boundary
    assert set(moved.unique().tolist()) <= {0.0, 1.0}


def test_view_shapes_and_normalisation():
    images = torch.rand(4, 1, 64, 64)
    views, masks = make_view(images, view_from_lightly(BYOLView1Transform), 64)
    assert views.shape == (4, 3, 64, 64) and masks is None
    assert torch.allclose(views[:, 0] * 0.229 + 0.485, views[:, 1] * 0.224 + 0.456, atol=1e-5)  # grey x3


def test_view_parameters_come_from_lightly_defaults():
    first, second = view_from_lightly(BYOLView1Transform), view_from_lightly(BYOLView2Transform)
    assert (first.blur_prob, first.solarize_prob, first.min_scale) == (1.0, 0.0, 0.08)
    assert (second.blur_prob, second.solarize_prob) == (0.1, 0.2)


def test_strong_views_change_the_image_but_stay_in_range():
    torch.manual_seed(1)
    images = torch.rand(8, 1, 64, 64)
    spec = ViewSpec(
        min_scale=1.0, hflip_prob=0.0, jitter_prob=1.0, brightness=0.4, contrast=0.4, blur_prob=1.0, solarize_prob=1.0
    )
    views, _ = make_view(images, spec, 64)
    unit = views[:, :1] * 0.229 + 0.485
    assert unit.min() >= -1e-5 and unit.max() <= 1 + 1e-5
    assert not torch.allclose(unit, images, atol=1e-2)
