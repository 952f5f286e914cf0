"""Sections and tables computed with pandas from run records, rendered as Markdown.

Every number in the report comes from here, computed from the records; nothing is typed in by hand
except the paper's published values (``paper.py``).
"""

from __future__ import annotations

import math

import pandas as pd

from benchmark.paper_grid import TABLE2_ROWS
from benchmark.records.schema import CONTENDED_SHARE
from benchmark.report.formatting import (
    count,
    format_duration,
    format_stat,
    fraction_label,
    hardware_label,
    signed,
    to_markdown,
    with_paper,
)
from benchmark.report.sections import MISSING, ordered_sources
from benchmark.report.statistics import MEASURES, table2_runs


def _with_cells(stats: pd.DataFrame) -> pd.DataFrame:
    """Adds the display text of each stats row: mean ± std (n), bold if best, paper value and Δ."""
    return stats.assign(
        cell=[with_paper(format_stat(row.mean, row.std, row.n, row.best), row.paper, row.delta) for row in stats.itertuples()]
    )


def table2_markdown(stats: pd.DataFrame) -> str:
    """Rows in the paper's order, one column per label fraction."""
    grid = _with_cells(stats).pivot(index=["row_order", "row"], columns="fraction", values="cell").sort_index()
    grid = grid.reindex(columns=sorted(grid.columns)).fillna(MISSING)
    grid.columns = [fraction_label(f) for f in grid.columns]
    return to_markdown(grid.reset_index(level="row_order", drop=True).rename_axis("Method").reset_index())


def missing_paper_rows(runs: pd.DataFrame) -> list[str]:
    """Labels of the paper's Table 2 rows that have no run in this section, in the paper's order."""
    present = set(zip(table2_runs(runs)["method"], table2_runs(runs)["arch"]))
    return [label for row, label in TABLE2_ROWS.items() if row not in present]


def mask_ratio_label(ratio: float) -> str:
    return f"{ratio:.2f}"


def table3_markdown(stats: pd.DataFrame) -> str:
    """One row per mask ratio, one column per MIM method."""
    grid = _with_cells(stats).pivot(index="mask_ratio", columns=["row_order", "row"], values="cell").sort_index()
    grid = grid.reindex(columns=sorted(grid.columns)).fillna(MISSING)
    grid.columns = [label for _, label in grid.columns]
    grid.index = [mask_ratio_label(ratio) for ratio in grid.index]
    return to_markdown(grid.rename_axis("Mask ratio").reset_index())


def mask_source_markdown(stats: pd.DataFrame) -> str:
    """One row per (method, mask source), methods in table order and gt first, one column per label fraction."""
    cells = stats.assign(cell=[format_stat(row.mean, row.std, row.n, row.best) for row in stats.itertuples()])
    grid = cells.pivot(index=["row_order", "row", "mask_source"], columns="fraction", values="cell")
    order = {source: rank for rank, source in enumerate(ordered_sources(stats["mask_source"]))}
    grid = grid.sort_index(key=lambda level: level.map(order) if level.name == "mask_source" else level)
    grid = grid.reindex(columns=sorted(grid.columns)).fillna(MISSING)
    grid.columns = [fraction_label(f) for f in grid.columns]
    grid = grid.droplevel("row_order").rename_axis(["Method", "Mask source"]).reset_index()
    return to_markdown(grid)


SETTING_LABELS = {"fraction": ("Fraction", fraction_label), "mask_ratio": ("Mask ratio", mask_ratio_label)}


def paired_markdown(differences: pd.DataFrame, setting: str = "fraction") -> str:
    def mean_text(row) -> str:
        return "n/a" if math.isnan(row.mean) else signed(row.mean)

    def interval_text(row) -> str:
        return "n/a" if math.isnan(row.ci_low) else f"[{signed(row.ci_low)}, {signed(row.ci_high)}]"

    table = pd.DataFrame(
        {
            SETTING_LABELS[setting][0]: [SETTING_LABELS[setting][1](level) for level in differences[setting]],
            "Pairs (seeds)": differences["pairs"].astype(int).astype(str),
            "Mean difference": [mean_text(row) for row in differences.itertuples()],
            "95 % CI (paired t)": [interval_text(row) for row in differences.itertuples()],
            "Paper": [MISSING if math.isnan(p) else signed(p) for p in differences["paper"]],
        }
    )
    return to_markdown(table)


def per_class_markdown(runs: pd.DataFrame, classes: list[str]) -> str:
    """Per Table 2 row and fraction: mean over seeds of per-class recall and AUROC, macro AUROC and F1."""
    value_columns = [f"recall_{c}" for c in classes] + [f"auroc_{c}" for c in classes] + ["macro_auroc", "macro_f1"]
    grouped = table2_runs(runs).groupby(["row_order", "row", "fraction"])
    means = grouped[value_columns].mean()
    counts = grouped["accuracy"].count()
    table = pd.DataFrame(
        {
            "Method": means.index.get_level_values("row"),
            "Fraction": [fraction_label(f) for f in means.index.get_level_values("fraction")],
            "n": counts.to_numpy().astype(str),
        }
    )
    headings = [f"recall {c}" for c in classes] + [f"AUROC {c}" for c in classes] + ["macro AUROC", "macro F1"]
    for column, heading in zip(value_columns, headings):
        table[heading] = [MISSING if pd.isna(v) else f"{v:.3f}" for v in means[column]]
    return to_markdown(table)


def cost_markdown(runs: pd.DataFrame) -> str:
    """Per row: what producing it cost, each pretrained encoder counted once however many runs reused it (a
    sweep pretrains in a job of its own, so every run's record may say "reused")."""
    rows = []
    for (_, label), group in runs.groupby(["row_order", "row"]):
        encoders = group.dropna(subset=["pretrain_cache_key"]).drop_duplicates("pretrain_cache_key")
        total = encoders["pretrain_wall_time_s"].sum() + group["finetune_wall_time_s"].sum()
        rows.append(
            {
                "Method": label,
                "Runs": str(len(group)),
                "Encoders pretrained": str(len(encoders)) if len(encoders) else MISSING,
                "Pretraining time / encoder": format_duration(encoders["pretrain_wall_time_s"].mean())
                if len(encoders)
                else MISSING,
                "Pretraining img/s": f"{encoders['pretrain_images_per_s'].mean():.1f}" if len(encoders) else MISSING,
                "Fine-tuning time / run": format_duration(group["finetune_wall_time_s"].mean()),
                "Fine-tuning img/s": f"{group['finetune_images_per_s'].mean():.1f}",
                "Total wall time": format_duration(total),
                "Hardware": "; ".join(sorted({hardware_label(run) for _, run in group.iterrows()})),
            }
        )
    return to_markdown(pd.DataFrame(rows))


def sharing_note(shares: pd.Series) -> str:
    """What the records say of other work on the CPUs while the timed parts ran (``other_cpu_share``)."""
    measured = shares.dropna()
    if measured.empty:
        return "whether other work shared the CPUs was not recorded"
    unrecorded = f" ({len(shares) - len(measured)} not recorded)" if len(measured) < len(shares) else ""
    contended = int((measured > CONTENDED_SHARE).sum())
    if not contended:
        return f"other work took at most {measured.max() * 100:.0f} % of the CPUs{unrecorded}"
    return (
        f"other work took more than {CONTENDED_SHARE * 100:.0f} % of the CPUs during {contended} of "
        f"{len(measured)} timed parts (up to {measured.max() * 100:.0f} %){unrecorded}: this time reads high"
    )


def table2_compute_markdown(runs: pd.DataFrame) -> str:
    """What one seed of Table 2 cost: each encoder's pretraining once (however many runs reused it) plus
    every fine-tuning of that seed's Table 2 runs, and whether other work shared the CPUs meanwhile."""
    lines = []
    for seed, group in table2_runs(runs).groupby("seed"):
        encoders = group.dropna(subset=["pretrain_cache_key"]).drop_duplicates("pretrain_cache_key")
        seconds = encoders["pretrain_wall_time_s"].sum() + group["finetune_wall_time_s"].sum()
        shares = pd.concat([encoders["pretrain_other_cpu_share"], group["finetune_other_cpu_share"]], ignore_index=True)
        lines.append(
            f"- seed {seed}: {format_duration(seconds)} ({count(group['row'].nunique(), 'row')}, "
            f"{count(len(encoders), 'pretraining')}, {count(len(group), 'fine-tuning')}); {sharing_note(shares)}"
        )
    return "\n".join(lines)


def mask_quality_markdown(files: list[dict]) -> str:
    """One row per mask source: images scored and mean (median) pixel Dice, pixel IoU and lung-patch IoU."""
    order = {source: rank for rank, source in enumerate(ordered_sources(f["mask_source"] for f in files))}

    def cell(stats: dict, field: str) -> str:
        return f"{stats[field]['mean']:.3f} ({stats[field]['median']:.3f})"

    rows = [
        {
            "Mask source": f"`{facts['mask_source']}`",
            "Images scored": str(facts["summary"]["all"]["images"]),
            "Dice": cell(facts["summary"]["all"], "dice"),
            "IoU": cell(facts["summary"]["all"], "iou"),
            "Patch IoU": cell(facts["summary"]["all"], "patch_iou"),
        }
        for facts in sorted(files, key=lambda f: order[f["mask_source"]])
        if facts["summary"]["all"]
    ]
    return to_markdown(pd.DataFrame(rows))


def versus_random_init_markdown(differences: pd.DataFrame) -> str:
    """One row per (method, measure), one column per fraction: mean difference [95 % CI] (pairs); **bold**
    where the interval excludes 0."""
    return _paired_grid(differences, "measure", "Measure")


def mask_source_differences_markdown(differences: pd.DataFrame) -> str:
    """One row per (method, pair of mask sources), one column per fraction, as ``versus_random_init_markdown``."""
    return _paired_grid(differences, "comparison", "Difference")


def _paired_grid(differences: pd.DataFrame, label: str, title: str) -> str:
    """Paired differences per (row, ``label``) and fraction, ``label`` values in their first-seen order."""

    def cell(row) -> str:
        if math.isnan(row.ci_low):
            return f"n/a ({int(row.pairs)})"
        text = f"{signed(row.mean)} [{signed(row.ci_low)}, {signed(row.ci_high)}]"
        return f"{f'**{text}**' if row.ci_low > 0 or row.ci_high < 0 else text} (n={int(row.pairs)})"

    labels = {value: rank for rank, value in enumerate(differences[label].drop_duplicates())}
    cells = differences.assign(cell=[cell(row) for row in differences.itertuples()], label_order=differences[label].map(labels))
    grid = cells.pivot(index=["row_order", "row", "label_order", label], columns="fraction", values="cell").sort_index()
    grid = grid.reindex(columns=sorted(grid.columns)).fillna(MISSING)
    grid.columns = [fraction_label(f) for f in grid.columns]
    grid = grid.droplevel(["row_order", "label_order"]).rename_axis(["Method", title]).reset_index()
    return to_markdown(grid)


def budget_frontier_markdown(frontier: pd.DataFrame) -> str:
    """The frontier figure's points as a table: per row and fraction, each budget in order of cost."""
    ordered = frontier.sort_values(["row_order", "fraction", "minutes"])
    table = pd.DataFrame(
        {
            "Method": ordered["row"],
            "Fraction": ordered["fraction"].map(fraction_label),
            "Budget": ordered["budget"],
            "Seeds": ordered["seeds"].astype(int),
            "Minutes per seed": (ordered["minutes"] * 60).map(format_duration),
            **{title: ordered[value].map(lambda v: MISSING if pd.isna(v) else f"{v:.3f}") for value, title in MEASURES.items()},
            "Hardware": ordered["hardware"],
        }
    )
    return to_markdown(table)
