"""What every dataset provides: an indexable source of (image, lung mask or None, label).

A source knows nothing about splits, fractions or caching; those live in ``splits.py`` and
``cache.py`` and work the same for the phantom and for real files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Item:
    key: str  # stable identity: a path relative to the data root, or "phantom/000123"
    label: int  # index into the source's class names
    has_mask: bool  # False: "no region" for this image (RGMIM falls back to random masking)
    official_split: Optional[str] = None  # "train" | "test" where the dataset defines its own split


class Source(Protocol):
    name: str  # phantom | covid-radiography | covid-qu-ex | folder
    classes: tuple[str, ...]  # fixed class order; labels index into it
    items: list[Item]

    def load(self, index: int, size: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Image as uint8 (size, size) greyscale and lung mask as uint8 {0, 1} (size, size) or None."""

    def fingerprint(self) -> str:
        """Changes whenever the items or their content could have changed."""


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 greyscale to (size, size) for the decoded cache, the same for every dataset: the area average when
    shrinking (no aliasing of ribs and noise), bicubic when enlarging; non-square images are stretched, like
    their masks."""
    if image.shape == (size, size):
        return image
    method = Image.Resampling.BOX if size < max(image.shape) else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(image).resize((size, size), method))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest neighbour keeps the mask binary: uint8 {0, 1}."""
    mask = mask.astype(np.uint8, copy=False)
    if mask.shape == (size, size):
        return mask
    return np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))
