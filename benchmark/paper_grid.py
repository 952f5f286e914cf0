"""The paper's experimental grid: label fractions, Table 2's rows and Table 3's mask ratios (§4.1, §4.2).

Data every layer may read: the splits make these fractions' nested subsets, sweeps run this grid, and
the report lays its tables out by it. The paper's numbers themselves are in ``report/paper.py``.
"""

PAPER_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.50, 1.0)  # Table 2's columns: 1, 5, 10, 50, 100 %

# Table 2's rows in its order, keyed (method, encoder family) as run records are, with the paper's labels
TABLE2_ROWS: dict[tuple[str, str], str] = {
    ("rgmim", "vit"): "RGMIM",
    ("mae", "vit"): "MAE",
    ("skd", "resnet"): "SKD",
    ("cross", "resnet"): "Cross",
    ("byol", "resnet"): "BYOL",
    ("simsiam", "resnet"): "SimSiam",
    ("transfer", "vit"): "Transfer (ViT)",
    ("transfer", "resnet"): "Transfer (ResNet)",
    ("scratch", "vit"): "Scratch (ViT)",
    ("scratch", "resnet"): "Scratch (ResNet)",
}
PAPER_ROWS: tuple[tuple[str, str], ...] = tuple(TABLE2_ROWS)

TABLE3_MASK_RATIOS: tuple[float, ...] = (0.15, 0.30, 0.45, 0.60, 0.75, 0.90)  # Table 3's rows
DEFAULT_MASK_RATIO = 0.75  # T1: sigma; Table 2 is reported at this ratio
