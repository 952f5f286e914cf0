"""Sections and tables computed with pandas from run records, rendered as Markdown.

Every number in the report comes from here, computed from the records; nothing is typed in by hand
except the paper's published values (``paper.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from benchmark.paper_grid import TABLE2_ROWS
from benchmark.records import records_frame, row_label
from benchmark.report import paper

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed so the report is reproducible byte for byte
MINUEND = ("rgmim", "vit")  # the paired comparison: RGMIM - MAE, both on ViT
SUBTRAHEND = ("mae", "vit")
MISSING = "—"
EXPERT_REGION = "gt"  # the paper's RGMIM: the dataset's own expert masks; the only region in Tables 2 and 3
# display order of the "RGMIM by lung-mask source" rows (masks.region_label); unknown ones follow
MASK_SOURCE_ORDER = ("gt", "mask-dir", "classical", "prior", "sam", "none")


# ---------------------------------------------------------------------------------------------- sections

@dataclass
class Section:
    """The runs of one (dataset, fingerprint, profile) group: never mixed with another group's numbers."""

    dataset: str
    fingerprint: str
    profile: str
    records: list[dict]  # the latest run of each (method, arch, fraction, seed, mask ratio, RGMIM's mask source)
    runs: pd.DataFrame  # records_frame(records) with a mask_source column
    superseded: int  # older runs of a condition that a newer run replaced

    @property
    def slug(self) -> str:
        """File-name and anchor safe id, unique per group (fingerprints may share a prefix, so hash them)."""
        readable = re.sub(r"[^a-z0-9]+", "-", f"{self.dataset}-{self.profile}".lower()).strip("-")
        return f"{readable}-{hashlib.sha256(self.fingerprint.encode()).hexdigest()[:8]}"

    @property
    def title(self) -> str:
        return f"{self.dataset} · {self.profile} profile"

    @property
    def comparable_to_paper(self) -> bool:
        return self.dataset == paper.PAPER_DATASET and self.profile == paper.PAPER_PROFILE

    @property
    def classes(self) -> list[str]:
        return list(self.records[0]["dataset"]["classes"])


def _finished_at(record: dict) -> datetime:
    moment = datetime.fromisoformat(record["finished_at"])
    # Naive timestamps are taken as UTC so they can be ordered against aware ones.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def mask_source_of(record: dict) -> str:
    """Where the run's lung region came from (data regions.region_label, as the run recorded it)."""
    return record["dataset"]["mask_source"]


def with_mask_source(frame: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """``frame`` (records_frame of ``records``) with each run's mask source as a column."""
    if frame.empty:
        return frame
    return frame.assign(mask_source=frame["run_id"].map({r["run_id"]: mask_source_of(r) for r in records}))


def _condition(record: dict) -> tuple:
    mask_ratio = record["mask_ratio"]
    # only for region-guided methods does the mask source change the result; elsewhere a rerun is the same run
    region = mask_source_of(record) if record["method_info"]["region_guided"] else None
    return (record["method"], record["arch"], round(float(record["fraction"]), 6), record["seed"],
            None if mask_ratio is None else round(float(mask_ratio), 6), region)


def _latest_per_condition(records: list[dict]) -> list[dict]:
    """A rerun of the same condition replaces the older run instead of counting as another seed."""
    latest: dict[tuple, dict] = {}
    for record in sorted(records, key=_finished_at):
        latest[_condition(record)] = record
    return list(latest.values())


def group_sections(records: list[dict]) -> list[Section]:
    """One section per (dataset name, fingerprint, profile); paper-comparable sections first."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        key = (record["dataset"]["name"], record["dataset"]["fingerprint"], record["profile"])
        groups.setdefault(key, []).append(record)
    sections = []
    for (dataset, fingerprint, profile), group in groups.items():
        kept = _latest_per_condition(group)
        runs = with_mask_source(records_frame(kept), kept)
        sections.append(Section(dataset, fingerprint, profile, kept, runs, len(group) - len(kept)))
    return sorted(sections, key=lambda s: (not s.comparable_to_paper, s.dataset, s.profile, s.fingerprint))


# ---------------------------------------------------------------------------------------------- formatting

def fraction_label(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def signed(value: float) -> str:
    """A difference with an explicit sign and a typographic minus."""
    return f"{value:+.3f}".replace("-", "−")


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return MISSING
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def format_stat(mean: float, std: float, n: int, bold: bool = False) -> str:
    """ "mean ± std (n=seeds)"; the ± part is left out for a single seed, where std is undefined."""
    text = f"{mean:.3f}" if n < 2 else f"{mean:.3f} ± {std:.3f}"
    return f"{f'**{text}**' if bold else text} (n={n})"


def with_paper(cell: str, paper_value: float, delta: float) -> str:
    if math.isnan(paper_value):
        return cell
    return f"{cell}<br>paper {paper_value:.3f} · Δ {signed(delta)}"


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub pipe table of a frame of strings (pandas' own needs the optional ``tabulate``)."""
    def escape(value: object) -> str:
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(escape(c) for c in frame.columns) + " |"
    rule = "|" + "|".join(" --- " for _ in frame.columns) + "|"
    body = ["| " + " | ".join(escape(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


# ---------------------------------------------------------------------------------------------- statistics

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


def table2_stats(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (row, fraction): mean, std, n over seeds, bold flag, the paper's value and ours − paper."""
    stats = summarize(table2_runs(runs), ["row_order", "row", "method", "arch", "fraction"])
    return _beside_paper(stats, "fraction", paper.table2_accuracy, best_within="fraction")


def table3_stats(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (MIM row, mask ratio) with 100 % of the labels: mean, std, n, bold flag, paper and ours − paper."""
    full = runs[runs["mask_ratio"].notna() & np.isclose(runs["fraction"], 1.0) & expert_region(runs)]
    stats = summarize(full, ["row_order", "row", "method", "arch", "mask_ratio"])
    return _beside_paper(stats, "mask_ratio", paper.table3_accuracy, best_within="row")


def _beside_paper(stats: pd.DataFrame, setting: str, paper_accuracy, best_within: str) -> pd.DataFrame:
    """Add the paper's value for each (method, arch, setting), ours − paper, and the bold flag."""
    stats["paper"] = pd.Series([paper_accuracy(m, a, x)
                                for m, a, x in zip(stats["method"], stats["arch"], stats[setting])],
                               index=stats.index, dtype=float)
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


def bootstrap_mean_ci(values: ArrayLike, *, resamples: int = BOOTSTRAP_RESAMPLES,
                      rng_seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(rng_seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[picks].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def paired_differences(runs: pd.DataFrame, minuend: tuple[str, str] = MINUEND,
                       subtrahend: tuple[str, str] = SUBTRAHEND) -> pd.DataFrame:
    """Per fraction: accuracy of ``minuend`` − ``subtrahend`` paired by seed (Table 2 runs).

    Columns: fraction, pairs, mean, ci_low, ci_high (NaN with fewer than 2 pairs), paper.
    Empty when either method has no Table 2 runs.
    """
    table2 = table2_runs(runs)

    def accuracy_by_seed(method: str, arch: str) -> pd.Series:
        chosen = table2[(table2["method"] == method) & (table2["arch"] == arch)]
        return chosen.set_index(["fraction", "seed"])["accuracy"]

    first, second = accuracy_by_seed(*minuend), accuracy_by_seed(*subtrahend)
    if first.empty or second.empty:
        return pd.DataFrame(columns=["fraction", "pairs", "mean", "ci_low", "ci_high", "paper"])
    differences = (first - second).dropna()  # index alignment pairs by (fraction, seed)
    rows = []
    for fraction in sorted(set(first.index.get_level_values(0)) | set(second.index.get_level_values(0))):
        values = differences[differences.index.get_level_values(0) == fraction].to_numpy()
        enough = len(values) >= 2
        low, high = bootstrap_mean_ci(values) if enough else (math.nan, math.nan)
        paper_first, paper_second = paper.table2_accuracy(*minuend, fraction), paper.table2_accuracy(*subtrahend, fraction)
        rows.append({
            "fraction": fraction, "pairs": len(values), "mean": values.mean() if enough else math.nan,
            "ci_low": low, "ci_high": high,
            "paper": math.nan if paper_first is None or paper_second is None else paper_first - paper_second,
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- tables

def _with_cells(stats: pd.DataFrame) -> pd.DataFrame:
    """Adds the display text of each stats row: mean ± std (n), bold if best, paper value and Δ."""
    return stats.assign(cell=[with_paper(format_stat(row.mean, row.std, row.n, row.best), row.paper, row.delta)
                              for row in stats.itertuples()])


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


def table3_markdown(stats: pd.DataFrame) -> str:
    """One row per mask ratio, one column per MIM method."""
    grid = _with_cells(stats).pivot(index="mask_ratio", columns=["row_order", "row"], values="cell").sort_index()
    grid = grid.reindex(columns=sorted(grid.columns)).fillna(MISSING)
    grid.columns = [label for _, label in grid.columns]
    grid.index = [f"{ratio:.2f}" for ratio in grid.index]
    return to_markdown(grid.rename_axis("Mask ratio").reset_index())


def mask_source_markdown(stats: pd.DataFrame) -> str:
    """One row per (method, mask source), methods in table order and gt first, one column per label fraction."""
    cells = stats.assign(cell=[format_stat(row.mean, row.std, row.n, row.best) for row in stats.itertuples()])
    grid = cells.pivot(index=["row_order", "row", "mask_source"], columns="fraction", values="cell")
    order = {source: rank for rank, source in enumerate(_ordered_sources(stats["mask_source"]))}
    grid = grid.sort_index(key=lambda level: level.map(order) if level.name == "mask_source" else level)
    grid = grid.reindex(columns=sorted(grid.columns)).fillna(MISSING)
    grid.columns = [fraction_label(f) for f in grid.columns]
    grid = grid.droplevel("row_order").rename_axis(["Method", "Mask source"]).reset_index()
    return to_markdown(grid)


def _ordered_sources(sources: Iterable[str]) -> list[str]:
    present = set(sources)
    known = [source for source in MASK_SOURCE_ORDER if source in present]
    return known + sorted(present - set(known))


def paired_markdown(differences: pd.DataFrame) -> str:
    def mean_text(row) -> str:
        return "n/a" if math.isnan(row.mean) else signed(row.mean)

    def interval_text(row) -> str:
        return "n/a" if math.isnan(row.ci_low) else f"[{signed(row.ci_low)}, {signed(row.ci_high)}]"

    table = pd.DataFrame({
        "Fraction": [fraction_label(f) for f in differences["fraction"]],
        "Pairs (seeds)": differences["pairs"].astype(int).astype(str),
        "Mean difference": [mean_text(row) for row in differences.itertuples()],
        "95 % CI (bootstrap)": [interval_text(row) for row in differences.itertuples()],
        "Paper": [MISSING if math.isnan(p) else signed(p) for p in differences["paper"]],
    })
    return to_markdown(table)


def per_class_markdown(runs: pd.DataFrame, classes: list[str]) -> str:
    """Per Table 2 row and fraction: mean over seeds of per-class recall and AUROC, macro AUROC and F1."""
    value_columns = ([f"recall_{c}" for c in classes] + [f"auroc_{c}" for c in classes]
                     + ["macro_auroc", "macro_f1"])
    grouped = table2_runs(runs).groupby(["row_order", "row", "fraction"])
    means = grouped[value_columns].mean()
    counts = grouped["accuracy"].count()
    table = pd.DataFrame({
        "Method": means.index.get_level_values("row"),
        "Fraction": [fraction_label(f) for f in means.index.get_level_values("fraction")],
        "n": counts.to_numpy().astype(str),
    })
    headings = ([f"recall {c}" for c in classes] + [f"AUROC {c}" for c in classes] + ["macro AUROC", "macro F1"])
    for column, heading in zip(value_columns, headings):
        table[heading] = [MISSING if pd.isna(v) else f"{v:.3f}" for v in means[column]]
    return to_markdown(table)


def _hardware_label(run: pd.Series) -> str:
    device = run["gpu"] if isinstance(run["gpu"], str) and run["gpu"] else f"CPU × {run['cpu_count']}"
    return f"{device} · torch {run['torch']}"


def cost_markdown(runs: pd.DataFrame) -> str:
    """Per row: what producing it cost. Reused pretraining (a cached encoder) is not counted again."""
    rows = []
    for (_, label), group in runs.groupby(["row_order", "row"]):
        fresh = group[group["pretrain_reused"].eq(False)]
        has_pretrain = group["pretrain_reused"].notna().any()
        total = fresh["pretrain_wall_time_s"].sum() + group["finetune_wall_time_s"].sum()
        rows.append({
            "Method": label,
            "Runs": str(len(group)),
            "Pretrainings (fresh / reused)": (f"{len(fresh)} / {int(group['pretrain_reused'].eq(True).sum())}"
                                              if has_pretrain else MISSING),
            "Pretraining time / run": format_duration(fresh["pretrain_wall_time_s"].mean()) if len(fresh) else MISSING,
            "Pretraining img/s": f"{fresh['pretrain_images_per_s'].mean():.1f}" if len(fresh) else MISSING,
            "Fine-tuning time / run": format_duration(group["finetune_wall_time_s"].mean()),
            "Fine-tuning img/s": f"{group['finetune_images_per_s'].mean():.1f}",
            "Total wall time": format_duration(total),
            "Hardware": "; ".join(sorted({_hardware_label(run) for _, run in group.iterrows()})),
        })
    return to_markdown(pd.DataFrame(rows))


def table2_compute_markdown(runs: pd.DataFrame) -> str:
    """What one seed of Table 2 cost: each encoder's pretraining once (however many runs reused it) plus
    every fine-tuning of that seed's Table 2 runs."""
    lines = []
    for seed, group in table2_runs(runs).groupby("seed"):
        encoders = group.dropna(subset=["pretrain_cache_key"]).drop_duplicates("pretrain_cache_key")
        seconds = encoders["pretrain_wall_time_s"].sum() + group["finetune_wall_time_s"].sum()
        lines.append(f"- seed {seed}: {format_duration(seconds)} ({group['row'].nunique()} rows, {len(encoders)} "
                     f"pretrainings, {len(group)} fine-tunings)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- protocol

# Config keys that differ between runs by design, or by machine without changing the protocol.
# config keys a section's runs differ in by design (json_normalize names): seeds, mask ratios, regions, paths
EXPECTED_TO_VARY = frozenset({"seed", "methods.rgmim.mask_ratio", "methods.mae.mask_ratio", "data.cache_dir",
                              "data.root", "data.split_file", "region.source", "region.mask_dir",
                              "region.sam_checkpoint", "region.sam_model", "vit.weights", "resnet.weights"})


def _distinct(values: pd.Series) -> list[str]:
    """Distinct values as display strings, in order of first appearance; null shows as "none".

    NaN is what pandas puts where a config lacks the key altogether, so it is left out.
    """
    shown = ["none" if v is None else v if isinstance(v, str) else json.dumps(v)
             for v in values if not (isinstance(v, float) and math.isnan(v))]
    return list(dict.fromkeys(shown))


def protocol_notes(section: Section) -> list[str]:
    """Markdown bullets describing the protocol, generated from the runs' configs and records."""
    configs = pd.json_normalize([record["config"] for record in section.records])

    def value(key: str) -> str:
        if key not in configs.columns:
            return "not recorded"
        shown = _distinct(configs[key])
        if not shown:
            return "not recorded"
        return shown[0] if len(shown) == 1 else " / ".join(shown) + " (⚠ differs between runs)"

    runs = section.runs
    dataset = section.records[0]["dataset"]
    subsets = runs.groupby("fraction")["finetune_subset"].agg(lambda s: " / ".join(_distinct(s)))
    mim_ratios = sorted(runs["mask_ratio"].dropna().unique())
    # the learning rates each run used, as the engines recorded them (lr = blr x batch / 256)
    pretrain_lrs = {record["method_info"]["display"]: record["pretrain"]["base_lr"]
                    for record in section.records if record["pretrain"] and "base_lr" in record["pretrain"]}
    finetune_lrs = _distinct(pd.Series([record["finetune"].get("base_lr") for record in section.records]))
    commits = sorted({f"{c}{' (dirty)' if d else ''}" for c, d in zip(runs["commit"], runs["dirty"])})
    notes = [
        f"Profile `{section.profile}`; dataset `{section.dataset}` (fingerprint `{section.fingerprint}`), "
        f"classes {', '.join(section.classes)}; train pool {dataset['train_pool']} images, "
        f"test set {dataset['test']} images.",
        "Fine-tuning subsets (labelled images per fraction): "
        + ", ".join(f"{fraction_label(f)} → {n}" for f, n in subsets.items()) + ".",
        f"Image size {value('data.image_size')} px; ViT `{value('vit.name')}` "
        f"(depth override {value('vit.depth')}, {value('vit.patch_size')}-px patches); ResNet `{value('resnet.name')}`; "
        f"RGMIM decoder {value('methods.rgmim.decoder_dim')}-d × {value('methods.rgmim.decoder_depth')} layers, "
        f"{value('methods.rgmim.decoder_heads')} heads.",
        f"Pretraining: {value('pretrain.epochs')} epochs, batch {value('pretrain.batch_size')}; "
        "lr = blr × batch / 256 per method: "
        + (", ".join(f"{name} {lr:.3g}" for name, lr in pretrain_lrs.items()) or "no pretraining") + ".",
        "MIM mask ratios run: " + (", ".join(f"{r:.2f}" for r in mim_ratios) or "none")
        + f" (Table 2 uses {paper.DEFAULT_MASK_RATIO:.2f}; the others appear only in Table 3).",
        f"Fine-tuning: {value('finetune.epochs')} epochs, batch {value('finetune.batch_size')}, "
        f"warm-up {value('finetune.warmup_epochs')} epochs, base lr {value('finetune.blr')} → "
        f"lr {' / '.join(finetune_lrs) or 'not recorded'}, layer decay {value('finetune.layer_decay')} (ViT).",
        f"Device `{' / '.join(_distinct(runs['device']))}`, mixed precision `{value('amp')}`; seeds "
        f"{', '.join(str(s) for s in sorted(runs['seed'].unique()))}; code {', '.join(commits)}.",
        "Cells use `metrics.accuracy` (test accuracy after the last fine-tuning epoch); "
        "`best_epoch_accuracy` picks an epoch on the test set, so it is optimistic and only listed in runs.csv.",
        "± is the sample standard deviation over seeds (ddof = 1), n the number of seeds; "
        f"paired CIs are percentile bootstraps ({BOOTSTRAP_RESAMPLES:,} resamples, RNG seed {BOOTSTRAP_SEED}).",
    ]
    if has_other_mask_sources(runs):
        sources = _ordered_sources(runs.loc[runs["region_guided"].astype(bool), "mask_source"])
        notes.append("RGMIM lung-mask sources run: " + ", ".join(f"`{source}`" for source in sources)
                     + f" (Tables 2 and 3 and the paired differences use `{EXPERT_REGION}`, the dataset's own "
                     "masks; the others appear only in \"RGMIM by lung-mask source\").")
    varying = [key for key in configs.columns
               if key not in EXPECTED_TO_VARY and len(_distinct(configs[key])) > 1]
    if varying:
        notes.append("⚠ Config values that differ between runs of this section: "
                     + "; ".join(f"`{key}` = {' / '.join(_distinct(configs[key]))}" for key in varying) + ".")
    if section.superseded:
        notes.append(f"{section.superseded} older run(s) of an already-run condition were replaced by the newest "
                     "run of that condition and are not counted (they stay in runs.csv, marked superseded).")
    return notes


def banner(section: Section) -> str:
    """Says where the numbers come from, and that they are not a reproduction unless they are."""
    if section.comparable_to_paper:
        return (f"> ℹ Dataset `{section.dataset}` with the `{section.profile}` profile: the paper's data and "
                "Table 1 protocol, so the paper's values beside each cell are a like-for-like comparison "
                "(our random split and software versions differ from the authors').")
    reasons = []
    if section.dataset == "phantom":
        reasons.append("synthetic phantom data")
    elif section.dataset != paper.PAPER_DATASET:
        reasons.append(f"dataset `{section.dataset}`, not the paper's `{paper.PAPER_DATASET}`")
    if section.profile != paper.PAPER_PROFILE:
        reasons.append(f"{section.profile} profile")
    return (f"> ⚠ **{', '.join(reasons)}: not comparable to the paper's numbers.** "
            "The paper's values are shown only for orientation; these runs check the pipeline and the "
            "ranking of methods under this setting, not a reproduction.")


def describe_row_labels() -> str:
    """How rows are named: the paper's backbone is implicit, any other is spelled out."""
    byol = {"display": "BYOL", "archs": ["resnet"]}
    return (f"Rows follow the paper's order; `{row_label(byol, 'resnet')}` ran on ResNet as in the paper, "
            f"a label such as `{row_label(byol, 'vit')}` marks a backbone the paper did not use.")
