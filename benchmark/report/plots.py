"""Report figures, drawn with matplotlib's object API on the Agg canvas.

``Figure`` objects are used instead of ``pyplot`` so that building a report neither needs a display
nor changes the global backend of the process that imports this module.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
from matplotlib import colormaps
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from benchmark.files import atomic_write_bytes, stable_hash
from benchmark.paper_grid import PAPER_ROWS
from benchmark.records.frame import row_label, row_order
from benchmark.report import paper
from benchmark.report.formatting import fraction_label
from benchmark.report.sections import Section
from benchmark.report.statistics import (
    FRONTIER_FRACTIONS,
    MEASURES,
    USUAL_BUDGET,
    table2_runs,
    table2_stats,
    table3_stats,
)

DPI = 110


def _row_color(order: int, label: str) -> tuple[float, ...]:
    """Stable colour per row across all figures: tab10 for the paper's ten rows, tab20 by label beyond."""
    if order < len(PAPER_ROWS):
        return colormaps["tab10"](order)
    return colormaps["tab20"](int(stable_hash(label, 8), 16) % 20)


def _save(figure: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)  # constrained layout already fits the labels
    atomic_write_bytes(path, buffer.getvalue())


def _grid(panels: int, title: str, panel_size: tuple[float, float] = (4.6, 3.4)) -> tuple[Figure, list[Axes]]:
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    # A single panel still needs room for the two-line title.
    width = max(panel_size[0] * columns, 7.0)
    figure = Figure(figsize=(width, panel_size[1] * rows + 0.8), layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).ravel())
    for unused in axes[panels:]:
        unused.set_visible(False)
    figure.suptitle(title)
    return figure, axes[:panels]


def history_frame(section: Section) -> pd.DataFrame:
    """Per Table 2 run and fine-tuning epoch: row, fraction, seed, epoch, test accuracy."""
    counted = set(table2_runs(section.runs)["run_id"])
    rows = [
        {
            "row_order": row_order(record["method"], record["arch"]),
            "row": row_label(record["method_info"], record["arch"]),
            "method": record["method"],
            "fraction": round(float(record["fraction"]), 6),
            "seed": record["seed"],
            "epoch": entry["epoch"],
            "accuracy": entry["accuracy"],
        }
        for record in section.records
        if record["run_id"] in counted
        for entry in record["history"]
    ]
    return pd.DataFrame(rows, columns=["row_order", "row", "method", "fraction", "seed", "epoch", "accuracy"])


def _curves(axes: Axes, history: pd.DataFrame, band: bool) -> None:
    for (order, label), group in history.groupby(["row_order", "row"]):
        by_epoch = group.groupby("epoch")["accuracy"].agg(["mean", "std"])
        seeds = group["seed"].nunique()
        color = _row_color(order, label)
        axes.plot(by_epoch.index, by_epoch["mean"], color=color, marker="o", markersize=3, label=f"{label} (n={seeds})")
        if band:
            spread = by_epoch["std"].fillna(0.0)
            axes.fill_between(
                by_epoch.index, by_epoch["mean"] - spread, by_epoch["mean"] + spread, color=color, alpha=0.2, linewidth=0
            )
    axes.set_xlabel("fine-tuning epoch")
    axes.set_ylabel("test accuracy")
    axes.grid(alpha=0.3)


def plot_mim_curves(section: Section, path: Path) -> bool:
    """Paper Fig. 4 style: RGMIM vs MAE test accuracy per epoch, one panel per fraction, mean ± std band."""
    history = history_frame(section)
    history = history[history["method"].isin(["rgmim", "mae"])]
    if history.empty:
        return False
    fractions = sorted(history["fraction"].unique())
    figure, axes = _grid(
        len(fractions), f"Test accuracy vs fine-tuning epoch, RGMIM vs MAE\nmean ± std over seeds · {section.title}"
    )
    for ax, fraction in zip(axes, fractions):
        _curves(ax, history[history["fraction"] == fraction], band=True)
        ax.set_title(f"{fraction_label(fraction)} of training labels")
        ax.legend(fontsize="small")
    _save(figure, path)
    return True


def plot_all_curves(section: Section, path: Path) -> bool:
    """Every method's mean test accuracy per epoch, one panel per fraction, one shared legend."""
    history = history_frame(section)
    if history.empty:
        return False
    fractions = sorted(history["fraction"].unique())
    figure, axes = _grid(len(fractions), f"Test accuracy vs fine-tuning epoch, all methods\nmean over seeds · {section.title}")
    for ax, fraction in zip(axes, fractions):
        _curves(ax, history[history["fraction"] == fraction], band=False)
        ax.set_title(f"{fraction_label(fraction)} of training labels")
    entries: dict[str, Artist] = {}
    for ax in axes:  # one entry per method, even for a method missing from some panels
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label.rsplit(" (n=", 1)[0], handle)
    figure.legend(list(entries.values()), list(entries), loc="outside right upper", title="method")
    _save(figure, path)
    return True


def _panels(title: str, beside_paper: bool) -> tuple[Figure, Axes, Optional[Axes]]:
    """Our panel, and the paper's beside it when the section shares the paper's label space."""
    figure = Figure(figsize=(12, 4.6) if beside_paper else (6.5, 4.6), layout="constrained")
    ours, theirs = figure.subplots(1, 2) if beside_paper else (figure.subplots(), None)
    figure.suptitle(title)
    return figure, ours, theirs


def _plot_ours_and_paper(
    stats: pd.DataFrame, x: str, paper_table: dict, paper_x: tuple, ours: Axes, theirs: Optional[Axes]
) -> None:
    """Per row: our mean ± std against `x` on the left panel, the paper's values for that row on the right."""
    for (order, label), group in stats.groupby(["row_order", "row"]):
        color = _row_color(order, label)
        ours.errorbar(group[x], group["mean"], yerr=group["std"].fillna(0.0), color=color, marker="o", capsize=3, label=label)
        row = (group["method"].iloc[0], group["arch"].iloc[0])
        if theirs is not None and row in paper_table:
            theirs.plot(paper_x, paper_table[row], color=color, marker="s", linestyle="--", label=label)


def _paper_settings(section: Section, settings: tuple) -> set:
    return set(settings) if section.beside_paper else set()


def plot_accuracy_vs_fraction(section: Section, path: Path) -> bool:
    """Final test accuracy against label fraction (log x): ours with ±std error bars, the paper's beside."""
    stats = table2_stats(section.runs, beside_paper=section.beside_paper)
    if stats.empty:
        return False
    figure, ours, theirs = _panels(f"Test accuracy vs fraction of training labels\n{section.title}", section.beside_paper)
    _plot_ours_and_paper(stats, "fraction", paper.TABLE2, paper.PAPER_FRACTIONS, ours, theirs)
    fractions = sorted(set(stats["fraction"]) | _paper_settings(section, paper.PAPER_FRACTIONS))
    _label_fraction_axes(ours, fractions, "this benchmark: mean ± std over seeds")
    ours.legend(fontsize="small")
    if theirs is not None:
        _label_fraction_axes(theirs, fractions, "paper, Table 2")
        if theirs.get_legend_handles_labels()[0]:
            theirs.legend(fontsize="small")
    _save(figure, path)
    return True


def _label_fraction_axes(axes: Axes, fractions: list[float], title: str) -> None:
    axes.set_xscale("log")
    axes.set_xticks(fractions, [fraction_label(f) for f in fractions])
    axes.minorticks_off()
    axes.set_xlabel("fraction of training labels (log scale)")
    axes.set_ylabel("test accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)


def plot_accuracy_vs_mask_ratio(section: Section, path: Path) -> bool:
    """RGMIM vs MAE accuracy with 100 % labels against mask ratio; drawn when two or more ratios ran."""
    stats = table3_stats(section.runs, beside_paper=section.beside_paper)
    if stats["mask_ratio"].nunique() < 2:
        return False
    figure, ours, theirs = _panels(
        f"Test accuracy vs mask ratio, 100 % of training labels\n{section.title}", section.beside_paper
    )
    _plot_ours_and_paper(stats, "mask_ratio", paper.TABLE3, paper.TABLE3_MASK_RATIOS, ours, theirs)
    ratios = sorted(set(stats["mask_ratio"]) | _paper_settings(section, paper.TABLE3_MASK_RATIOS))
    for axes, title in ((ours, "this benchmark: mean ± std over seeds"), (theirs, "paper, Table 3")):
        if axes is None:
            continue
        axes.set_xticks(ratios, [f"{r:.2f}" for r in ratios])
        axes.set_xlabel("mask ratio")
        axes.set_ylabel("test accuracy")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    _save(figure, path)
    return True


def plot_budget_frontier(frame: pd.DataFrame, first: Section, path: Path) -> bool:
    """Accuracy against the minutes a cell cost (``statistics.budget_frontier`` of a (dataset, profile) family
    whose first section is ``first``), one point per budget; a row's points joined in order of cost. Drawn
    when the family has two or more budgets."""
    if frame.empty or frame["budget"].nunique() < 2:
        return False
    figure, axes = _grid(
        len(MEASURES),
        "Accuracy vs compute per seed, by budget (on the seeds every budget of a row ran)\n"
        f"{first.dataset} · {first.profile} profile",
    )
    styles = dict(zip(FRONTIER_FRACTIONS, ("--", "-")))
    for ax, (value, title) in zip(axes, MEASURES.items()):
        for (order, label, fraction), group in frame.dropna(subset=[value]).groupby(["row_order", "row", "fraction"]):
            group = group.sort_values("minutes")
            ax.plot(
                group["minutes"],
                group[value],
                color=_row_color(order, label),
                linestyle=styles[fraction],
                marker="o",
                label=f"{label}, {fraction_label(fraction)}",
            )
            for _, point in group.iterrows():
                if point["budget"] != USUAL_BUDGET:
                    ax.annotate(point["budget"], (point["minutes"], point[value]), fontsize="x-small", alpha=0.7)
        ax.set_xlabel("minutes per seed (pretraining + fine-tuning at that fraction)")
        ax.set_ylabel("test accuracy")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize="x-small")
    _save(figure, path)
    return True


# (file-name suffix, caption, plotting function), in the order they appear in the README.
FIGURES: tuple[tuple[str, str, Callable[[Section, Path], bool]], ...] = (
    ("fig4-rgmim-vs-mae", "Test accuracy per fine-tuning epoch, RGMIM vs MAE (paper Fig. 4 style)", plot_mim_curves),
    ("curves-all-methods", "Test accuracy per fine-tuning epoch, all methods", plot_all_curves),
    ("accuracy-vs-fraction", "Test accuracy vs label fraction", plot_accuracy_vs_fraction),
    ("accuracy-vs-mask-ratio", "Test accuracy vs mask ratio (100 % labels)", plot_accuracy_vs_mask_ratio),
)


def draw_figures(section: Section, directory: Path) -> list[tuple[str, Path]]:
    """Draw every figure the section has data for; returns (caption, path) of each file written."""
    written = []
    for suffix, caption, draw in FIGURES:
        path = directory / f"{section.slug}-{suffix}.png"
        if draw(section, path):
            written.append((caption, path))
    return written
