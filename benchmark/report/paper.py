"""The paper's published numbers as data (RGMIM, Tables 2 and 3), checked against the paper text.

Rows are keyed by (method, arch) as in run records; accuracies are four-class test accuracy.
"""

from __future__ import annotations

import math
from typing import Optional

from benchmark.paper_grid import DEFAULT_MASK_RATIO, PAPER_FRACTIONS, TABLE3_MASK_RATIOS

__all__ = [
    "DEFAULT_MASK_RATIO",
    "PAPER_FRACTIONS",
    "PAPER_CLASSES",
    "PAPER_DATASET",
    "PAPER_PROFILE",
    "TABLE2",
    "TABLE3",
    "TABLE3_MASK_RATIOS",
    "table2_accuracy",
    "table3_accuracy",
]

# §4.1: the paper's data are the 21,165-image, four-class COVID-19 Radiography Database (cited as [49]).
PAPER_DATASET = "covid-radiography"
# §4.1: its four classes; a dataset with another label space has no like-for-like paper value at all
PAPER_CLASSES = ("COVID", "Lung_Opacity", "Normal", "Viral_Pneumonia")
PAPER_PROFILE = "paper"
TABLE2: dict[tuple[str, str], tuple[float, ...]] = {
    ("rgmim", "vit"): (0.771, 0.893, 0.919, 0.957, 0.962),
    ("mae", "vit"): (0.754, 0.875, 0.903, 0.948, 0.956),
    ("skd", "resnet"): (0.742, 0.812, 0.896, 0.947, 0.957),
    ("cross", "resnet"): (0.747, 0.795, 0.817, 0.934, 0.953),
    ("byol", "resnet"): (0.683, 0.754, 0.790, 0.933, 0.954),
    ("simsiam", "resnet"): (0.623, 0.700, 0.781, 0.929, 0.949),
    ("transfer", "vit"): (0.689, 0.861, 0.893, 0.940, 0.953),
    ("transfer", "resnet"): (0.539, 0.619, 0.665, 0.913, 0.936),
    ("scratch", "vit"): (0.413, 0.580, 0.645, 0.810, 0.848),
    ("scratch", "resnet"): (0.284, 0.496, 0.532, 0.619, 0.774),
}

# Table 3: accuracy with 100 % of the training set for fine-tuning, per masking ratio.
TABLE3: dict[tuple[str, str], tuple[float, ...]] = {
    ("rgmim", "vit"): (0.949, 0.953, 0.955, 0.958, 0.962, 0.957),
    ("mae", "vit"): (0.936, 0.942, 0.947, 0.951, 0.956, 0.953),
}


def _lookup(keys: tuple[float, ...], values: tuple[float, ...], key: float) -> Optional[float]:
    for candidate, value in zip(keys, values):
        if math.isclose(candidate, key, abs_tol=1e-9):
            return value
    return None


def table2_accuracy(method: str, arch: str, fraction: float) -> Optional[float]:
    """The paper's Table 2 accuracy for this row and label fraction, or None if the paper has none."""
    values = TABLE2.get((method, arch))
    return None if values is None else _lookup(PAPER_FRACTIONS, values, fraction)


def table3_accuracy(method: str, arch: str, mask_ratio: float) -> Optional[float]:
    """The paper's Table 3 accuracy (100 % fine-tuning) for this row and mask ratio, or None."""
    values = TABLE3.get((method, arch))
    return None if values is None else _lookup(TABLE3_MASK_RATIOS, values, mask_ratio)
