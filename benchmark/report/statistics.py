"""The statistics behind the tables: which runs count, mean ± std over seeds, paired t confidence intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from benchmark.report import paper
from benchmark.report.formatting import hardware_label
from benchmark.report.sections import EXPERT_REGION, MINUEND, SUBTRAHEND, Section, ordered_sources


def expert_region(runs: pd.DataFrame) -> pd.Series:
    """Rows that are not region-guided or were guided by the dataset's own masks, as in the paper."""
    sources = runs["mask_source"] if "mask_source" in runs else pd.Series(EXPERT_REGION, index=runs.index)
    return ~runs["region_guided"].astype(bool) | sources.eq(EXPERT_REGION)


def table2_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that count in Table 2: every non-MIM run, MIM runs only at the paper's default mask ratio, and
    RGMIM only guided by the dataset's own masks (other sources have their own table)."""
    default_ratio = np.isclose(runs["mask_ratio"].astype(float), paper.DEFAULT_MASK_RATIO)
    return runs[(runs["mask_ratio"].isna() | default_ratio) & expert_region(runs)]


def summarize(runs: pd.DataFrame, by: list[str], value: str = "accuracy") -> pd.DataFrame:
    """Mean, sample standard deviation (ddof=1, NaN for one seed) and count of ``value`` per group."""
    return runs.groupby(by, dropna=False)[value].agg(mean="mean", std="std", n="count").reset_index()


def _mark_best(stats: pd.DataFrame, column: str) -> pd.Series:
    """Best mean per ``column`` value, compared at display precision so ties on screen are all bold."""
    shown = stats["mean"].round(3)
    return shown == shown.groupby(stats[column]).transform("max")


def _no_paper_value(*_) -> None:
    return None


def table2_stats(runs: pd.DataFrame, value: str = "accuracy", beside_paper: bool = True) -> pd.DataFrame:
    """Per (row, fraction): mean, std, n over seeds of ``value``, bold flag, and, for the fine-tuning accuracy
    the paper reports (when ``beside_paper``), its value and ours − paper (probes have no paper value)."""
    counted = table2_runs(runs).dropna(subset=[value])
    stats = summarize(counted, ["row_order", "row", "method", "arch", "fraction"], value)
    paper_accuracy = paper.table2_accuracy if value == "accuracy" and beside_paper else _no_paper_value
    return _beside_paper(stats, "fraction", paper_accuracy, best_within="fraction")


def table3_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that count in Table 3: MIM runs with 100 % of the labels, RGMIM guided by the dataset's own masks."""
    return runs[runs["mask_ratio"].notna() & np.isclose(runs["fraction"], 1.0) & expert_region(runs)]


def table3_stats(runs: pd.DataFrame, beside_paper: bool = True) -> pd.DataFrame:
    """Per (MIM row, mask ratio) with 100 % of the labels: mean, std, n, bold flag, and (when
    ``beside_paper``) the paper's value and ours − paper."""
    stats = summarize(table3_runs(runs), ["row_order", "row", "method", "arch", "mask_ratio"])
    paper_accuracy = paper.table3_accuracy if beside_paper else _no_paper_value
    return _beside_paper(stats, "mask_ratio", paper_accuracy, best_within="row")


def _beside_paper(stats: pd.DataFrame, setting: str, paper_accuracy, best_within: str) -> pd.DataFrame:
    """Add the paper's value for each (method, arch, setting), ours − paper, and the bold flag."""
    stats["paper"] = pd.Series(
        [paper_accuracy(m, a, x) for m, a, x in zip(stats["method"], stats["arch"], stats[setting])],
        index=stats.index,
        dtype=float,
    )
    stats["delta"] = stats["mean"] - stats["paper"]
    stats["best"] = _mark_best(stats, best_within)
    return stats


def mask_source_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of region-guided methods (RGMIM) at the paper's default mask ratio, every mask source."""
    default_ratio = np.isclose(runs["mask_ratio"].astype(float), paper.DEFAULT_MASK_RATIO)
    return runs[runs["region_guided"].astype(bool) & default_ratio]


def has_other_mask_sources(runs: pd.DataFrame) -> bool:
    """Region-guided runs at the default mask ratio with another region than the dataset's own masks exist."""
    return bool((~expert_region(mask_source_runs(runs))).any())


def mask_source_stats(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (region-guided row, mask source, fraction): mean, std, n over seeds of accuracy and a bold flag."""
    stats = summarize(mask_source_runs(runs), ["row_order", "row", "mask_source", "fraction"])
    stats["best"] = _mark_best(stats, "fraction")
    return stats


NO_REGION = "none"  # RGMIM without a region: its masking is then MAE's random masking


def mask_source_differences(runs: pd.DataFrame) -> pd.DataFrame:
    """Per region-guided row and fraction, paired by seed: each mask source − ``none`` (what its region adds)
    and each source other than the dataset's own masks − ``gt`` (what it gives up against the expert masks).

    Columns: row_order, row, comparison ("classical − none"), fraction, pairs, mean, ci_low, ci_high.
    """
    chosen = mask_source_runs(runs)
    frames = []
    for (row_order, row), group in chosen.groupby(["row_order", "row"]):
        by_source = {
            source: of_source.set_index(["fraction", "seed"])["accuracy"].dropna()
            for source, of_source in group.groupby("mask_source")
        }
        sources = [source for source in ordered_sources(by_source) if source != NO_REGION]
        comparisons = [(source, NO_REGION) for source in sources] + [
            (source, EXPERT_REGION) for source in sources if source != EXPERT_REGION
        ]
        for minuend, subtrahend in comparisons:
            if subtrahend not in by_source:
                continue
            pairs = paired_by_seed(by_source[minuend], by_source[subtrahend], "fraction")
            rows = [level for level in pairs if level["pairs"]]  # no seed in common: no row, the cell reads "—"
            if rows:
                frames.append(pd.DataFrame(rows).assign(row_order=row_order, row=row, comparison=f"{minuend} − {subtrahend}"))
    columns = ["row_order", "row", "comparison", "fraction", "pairs", "mean", "ci_low", "ci_high"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def paired_mean_ci(differences: ArrayLike, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean paired difference: with the 2–5 seeds a benchmark affords, a
    percentile bootstrap only spans the observed values and claims far more certainty than there is."""
    values = np.asarray(differences, dtype=float)
    if np.ptp(values) < 1e-12:  # every seed agrees (up to float rounding): no spread to widen the interval
        return float(values.mean()), float(values.mean())
    interval = stats.ttest_1samp(values, 0.0).confidence_interval(level)
    return float(interval.low), float(interval.high)


PAIRED_SETTINGS = {  # what a paired difference varies: the runs it pairs and the paper's value per setting
    "fraction": (table2_runs, paper.table2_accuracy),
    "mask_ratio": (table3_runs, paper.table3_accuracy),
}


def paired_differences(
    runs: pd.DataFrame,
    minuend: tuple[str, str] = MINUEND,
    subtrahend: tuple[str, str] = SUBTRAHEND,
    value: str = "accuracy",
    beside_paper: bool = True,
    setting: str = "fraction",
) -> pd.DataFrame:
    """Per ``setting`` (label fraction on Table 2 runs, or mask ratio on Table 3 runs): ``value`` of
    ``minuend`` − ``subtrahend`` paired by seed, and the paper's difference when ``beside_paper`` and the value
    is the fine-tuning accuracy the paper reports.

    Columns: ``setting``, pairs, mean, ci_low, ci_high (NaN with fewer than 2 pairs), paper.
    Empty when either method has no runs that count.
    """
    counted, paper_accuracy = PAIRED_SETTINGS[setting]
    chosen_runs = counted(runs)

    def value_by_seed(method: str, arch: str) -> pd.Series:
        chosen = chosen_runs[(chosen_runs["method"] == method) & (chosen_runs["arch"] == arch)]
        return chosen.set_index([setting, "seed"])[value].dropna()

    first, second = value_by_seed(*minuend), value_by_seed(*subtrahend)
    if first.empty or second.empty:
        return pd.DataFrame(columns=[setting, "pairs", "mean", "ci_low", "ci_high", "paper"])
    rows = paired_by_seed(first, second, setting)
    for row in rows:
        paper_first, paper_second = (
            (paper_accuracy(*minuend, row[setting]), paper_accuracy(*subtrahend, row[setting]))
            if value == "accuracy" and beside_paper
            else (None, None)  # the paper reports fine-tuning only, and on its own label space
        )
        row["paper"] = math.nan if paper_first is None or paper_second is None else paper_first - paper_second
    return pd.DataFrame(rows)


def paired_by_seed(first: pd.Series, second: pd.Series, setting: str) -> list[dict]:
    """Per level of ``setting`` in either series (both indexed by (setting, seed)): first − second over the seeds
    both ran, its mean and paired t-interval (NaN with fewer than 2 pairs) and the number of pairs."""
    differences = (first - second).dropna()  # index alignment pairs by (setting, seed)
    rows = []
    for level in sorted(set(first.index.get_level_values(0)) | set(second.index.get_level_values(0))):
        values = differences[differences.index.get_level_values(0) == level].to_numpy()
        enough = len(values) >= 2
        low, high = paired_mean_ci(values) if enough else (math.nan, math.nan)
        rows.append(
            {
                setting: level,
                "pairs": len(values),
                "mean": values.mean() if enough else math.nan,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return rows


RANDOM_INIT = "scratch"  # the baseline every other row of its encoder family is paired against
MEASURES = {"accuracy": "fine-tuned", "knn_accuracy": "kNN", "linear_accuracy": "linear probe"}


def versus_random_init(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (row, measure, fraction): the row's value − Scratch on the same encoder, paired by seed, with its
    t-interval; rows are every Table 2 row with a Scratch row of its encoder in the section."""
    table2 = table2_runs(runs)
    rows = table2[["row_order", "row", "method", "arch"]].drop_duplicates().sort_values("row_order")
    frames = []
    for row in rows.itertuples():
        if row.method == RANDOM_INIT or not ((table2["method"] == RANDOM_INIT) & (table2["arch"] == row.arch)).any():
            continue
        for value, measure in MEASURES.items():
            differences = paired_differences(runs, (row.method, row.arch), (RANDOM_INIT, row.arch), value)
            if not differences.empty:
                frames.append(differences.drop(columns="paper").assign(row_order=row.row_order, row=row.row, measure=measure))
    columns = ["row_order", "row", "measure", "fraction", "pairs", "mean", "ci_low", "ci_high"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


FRONTIER_FRACTIONS = (0.1, 1.0)  # choice: a low-label and the full-label column
USUAL_BUDGET = "usual"  # the label of a family's most common protocol


def budget_frontier(sections: list[Section]) -> pd.DataFrame:
    """Per (row, fraction, budget), one budget per protocol variant of a family: the mean of each measure and of
    the minutes one seed of the cell cost (its encoder's pretraining plus its fine-tuning), over the seeds that
    every budget of that row ran, so budgets are compared on the same seeds; ``seeds`` counts them."""
    frames = []
    for section in sections:
        runs = table2_runs(section.runs)
        runs = runs[runs["fraction"].isin(FRONTIER_FRACTIONS)]
        minutes = (runs["pretrain_wall_time_s"].fillna(0.0) + runs["finetune_wall_time_s"]) / 60
        frames.append(runs.assign(minutes=minutes, budget=", ".join(section.variant) or USUAL_BUDGET))
    runs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if runs.empty:
        return runs
    cell = ["row_order", "row", "fraction"]
    budgets_of_cell = runs.groupby(cell)["budget"].transform("nunique")
    budgets_of_seed = runs.groupby([*cell, "seed"])["budget"].transform("nunique")
    shared = runs[budgets_of_seed == budgets_of_cell]
    shared = shared.assign(hardware=[hardware_label(run) for _, run in shared.iterrows()]).groupby([*cell, "budget"])
    frame = (
        shared[["minutes", *MEASURES]]
        .mean()
        .assign(
            seeds=shared["seed"].nunique(),
            hardware=shared["hardware"].agg(lambda labels: "; ".join(sorted(set(labels)))),  # minutes differ by machine
        )
    )
    return frame.reset_index()
