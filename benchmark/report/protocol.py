"""The protocol notes, banner and row-label line of a report section, generated from its records."""

from __future__ import annotations

import json
import math

import pandas as pd

from benchmark.records.frame import row_label
from benchmark.report import paper
from benchmark.report.formatting import fraction_label
from benchmark.report.sections import EXPERT_REGION, Section, ordered_sources
from benchmark.report.statistics import has_other_mask_sources

# Config keys that differ between runs by design, or by machine without changing the protocol.
# config keys a section's runs differ in by design (json_normalize names): seeds, mask ratios, regions, paths
EXPECTED_TO_VARY = frozenset(
    {
        "seed",
        "methods.rgmim.mask_ratio",
        "methods.mae.mask_ratio",
        "data.cache_dir",
        "data.root",
        "data.split_file",
        "region.source",
        "region.mask_dir",
        "region.sam_checkpoint",
        "region.sam_model",
        "vit.weights",
        "resnet.weights",
    }
)


def _distinct(values: pd.Series) -> list[str]:
    """Distinct values as display strings, in order of first appearance; null shows as "none".

    NaN is what pandas puts where a config lacks the key altogether, so it is left out.
    """
    shown = [
        "none" if v is None else v if isinstance(v, str) else json.dumps(v)
        for v in values
        if not (isinstance(v, float) and math.isnan(v))
    ]
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
    pretrain_lrs = {
        record["method_info"]["display"]: record["pretrain"]["base_lr"]
        for record in section.records
        if record["pretrain"] and "base_lr" in record["pretrain"]
    }
    finetune_lrs = _distinct(pd.Series([record["finetune"].get("base_lr") for record in section.records]))
    commits = sorted({f"{c}{' (dirty)' if d else ''}" for c, d in zip(runs["commit"], runs["dirty"])})
    notes = [
        f"Profile `{section.profile}`; dataset `{section.dataset}` (fingerprint `{section.fingerprint}`), "
        f"classes {', '.join(section.classes)}; train pool {dataset['train_pool']} images, "
        f"test set {dataset['test']} images.",
        "Fine-tuning subsets (labelled images per fraction): "
        + ", ".join(f"{fraction_label(f)} → {n}" for f, n in subsets.items())
        + ".",
        f"Image size {value('data.image_size')} px; ViT `{value('vit.name')}` "
        f"(depth override {value('vit.depth')}, {value('vit.patch_size')}-px patches); ResNet `{value('resnet.name')}`; "
        f"RGMIM decoder {value('methods.rgmim.decoder_dim')}-d × {value('methods.rgmim.decoder_depth')} layers, "
        f"{value('methods.rgmim.decoder_heads')} heads.",
        f"Pretraining: {value('pretrain.epochs')} epochs, batch {value('pretrain.batch_size')}; "
        "lr = blr × batch / 256 per method: "
        + (", ".join(f"{name} {lr:.3g}" for name, lr in pretrain_lrs.items()) or "no pretraining")
        + ".",
        "MIM mask ratios run: "
        + (", ".join(f"{r:.2f}" for r in mim_ratios) or "none")
        + f" (Table 2 uses {paper.DEFAULT_MASK_RATIO:.2f}; the others appear only in Table 3).",
        f"Fine-tuning: {value('finetune.epochs')} epochs, batch {value('finetune.batch_size')}, "
        f"warm-up {value('finetune.warmup_epochs')} epochs, base lr {value('finetune.blr')} → "
        f"lr {' / '.join(finetune_lrs) or 'not recorded'}, layer decay {value('finetune.layer_decay')} (ViT).",
        f"Device `{' / '.join(_distinct(runs['device']))}`, mixed precision `{value('amp')}`; seeds "
        f"{', '.join(str(s) for s in sorted(runs['seed'].unique()))}; code {', '.join(commits)}.",
        "Cells use `metrics.accuracy` (test accuracy after the last fine-tuning epoch); "
        "`best_epoch_accuracy` picks an epoch on the test set, so it is optimistic and only listed in runs.csv.",
        "± is the sample standard deviation over seeds (ddof = 1), n the number of seeds; "
        "paired CIs are Student-t intervals of the mean difference over seeds (n − 1 degrees of freedom).",
    ]
    if has_other_mask_sources(runs):
        sources = ordered_sources(runs.loc[runs["region_guided"].astype(bool), "mask_source"])
        notes.append(
            "RGMIM lung-mask sources run: "
            + ", ".join(f"`{source}`" for source in sources)
            + f" (Tables 2 and 3 and the paired differences use `{EXPERT_REGION}`, the dataset's own "
            'masks; the others appear only in "RGMIM by lung-mask source").'
        )
    varying = [key for key in configs.columns if key not in EXPECTED_TO_VARY and len(_distinct(configs[key])) > 1]
    if varying:
        notes.append(
            "⚠ Config values that differ between runs of this section: "
            + "; ".join(f"`{key}` = {' / '.join(_distinct(configs[key]))}" for key in varying)
            + "."
        )
    if section.superseded:
        notes.append(
            f"{section.superseded} older run(s) of an already-run condition were replaced by the newest "
            "run of that condition and are not counted (they stay in runs.csv, marked superseded)."
        )
    return notes


def banner(section: Section) -> str:
    """Says where the numbers come from, and that they are not a reproduction unless they are."""
    if section.comparable_to_paper:
        return (
            f"> ℹ Dataset `{section.dataset}` with the `{section.profile}` profile: the paper's data and "
            "Table 1 protocol, so the paper's values beside each cell are a like-for-like comparison "
            "(our random split and software versions differ from the authors')."
        )
    reasons = []
    if section.dataset == "phantom":
        reasons.append("synthetic phantom data")
    elif section.dataset != paper.PAPER_DATASET:
        reasons.append(f"dataset `{section.dataset}`, not the paper's `{paper.PAPER_DATASET}`")
    if section.profile != paper.PAPER_PROFILE:
        reasons.append(f"{section.profile} profile")
    if not section.beside_paper:
        classes = ", ".join(f"`{name}`" for name in section.classes)
        return (
            f"> ⚠ **{', '.join(reasons)}: not the paper's data.** {len(section.classes)} classes ({classes}), "
            f"not the paper's {len(paper.PAPER_CLASSES)}, so no cell is comparable to a cell of the paper and "
            "the paper's values are not printed here. Compare methods with each other within this section."
        )
    return (
        f"> ⚠ **{', '.join(reasons)}: not comparable to the paper's numbers.** "
        "The paper's values are shown only for orientation; these runs check the pipeline and the "
        "ranking of methods under this setting, not a reproduction."
    )


def paper_values_note(section: Section) -> str:
    """What the line beneath each Table 2/3 cell is, or why there is none."""
    if section.beside_paper:
        return "beneath: the paper's value and Δ = ours − paper."
    return "no paper values: another label space (see the banner)."


def describe_row_labels() -> str:
    """How rows are named: the paper's backbone is implicit, any other is spelled out."""
    byol = {"display": "BYOL", "archs": ["resnet"]}
    return (
        f"Rows follow the paper's order; `{row_label(byol, 'resnet')}` ran on ResNet as in the paper, "
        f"a label such as `{row_label(byol, 'vit')}` marks a backbone the paper did not use."
    )
