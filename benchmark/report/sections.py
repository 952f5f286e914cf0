"""Records grouped into report sections (one dataset, profile and protocol each), newest run of each condition.

Within a (dataset, profile) family, runs that read a setting with another value than the family's most
common one (``pretrain.epochs=40`` in a sweep of budgets, say) form a section of their own, titled by
those settings: a table never mixes protocols.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, fields
from typing import Iterable
from datetime import datetime, timezone

import pandas as pd

from benchmark.config import (
    MASK_SOURCES,
    DataConfig,
    FinetuneConfig,
    PretrainConfig,
    ProbeConfig,
    RegionConfig,
    ResNetConfig,
    ViTConfig,
    counts_for,
)
from benchmark.records.frame import records_frame
from benchmark.report import paper

MINUEND = ("rgmim", "vit")  # the paired comparison: RGMIM - MAE, both on ViT
SUBTRAHEND = ("mae", "vit")
MISSING = "—"
EXPERT_REGION = "gt"  # the paper's RGMIM: the dataset's own expert masks; the only region in Tables 2 and 3
# display order of the "RGMIM by lung-mask source" rows (data/regions.py region_label); unknown ones follow
MASK_SOURCE_ORDER = (MASK_SOURCES[0], "mask-dir", *MASK_SOURCES[1:])  # the user's own masks follow the dataset's


def ordered_sources(sources: Iterable[str]) -> list[str]:
    """Mask sources in display order: the known ones in MASK_SOURCE_ORDER, then any others by name."""
    present = set(sources)
    known = [source for source in MASK_SOURCE_ORDER if source in present]
    return known + sorted(present - set(known))


@dataclass
class Section:
    """The runs of one (dataset, fingerprint, profile, protocol variant) group: never mixed with another's numbers."""

    dataset: str
    fingerprint: str
    profile: str
    records: list[dict]  # the latest run of each (method, arch, fraction, seed, mask ratio, RGMIM's mask source)
    runs: pd.DataFrame  # records_frame(records) with a mask_source column
    superseded: int  # older runs of a condition that a newer run replaced
    variant: tuple[str, ...] = ()  # settings that differ from the family's most common ones, "key=value"

    @property
    def family(self) -> tuple[str, str, str]:
        return (self.dataset, self.fingerprint, self.profile)

    @property
    def slug(self) -> str:
        """File-name and anchor safe id, unique per group (fingerprints may share a prefix, so hash them)."""
        readable = re.sub(r"[^a-z0-9]+", "-", f"{self.dataset}-{self.profile}".lower()).strip("-")
        slug = f"{readable}-{hashlib.sha256(self.fingerprint.encode()).hexdigest()[:8]}"
        return f"{slug}-{hashlib.sha256(repr(self.variant).encode()).hexdigest()[:6]}" if self.variant else slug

    @property
    def title(self) -> str:
        return f"{self.dataset} · {self.profile} profile" + (f" · {', '.join(self.variant)}" if self.variant else "")

    @property
    def comparable_to_paper(self) -> bool:
        return self.dataset == paper.PAPER_DATASET and self.profile == paper.PAPER_PROFILE and not self.variant

    @property
    def classes(self) -> list[str]:
        return list(self.records[0]["dataset"]["classes"])

    @property
    def beside_paper(self) -> bool:
        """Whether the paper's values are printed beside ours: only for the paper's own label space (the
        phantom models it); on another (3-class COVID-QU-Ex, say) a paper value is no reference at all."""
        return tuple(self.classes) == paper.PAPER_CLASSES


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
    return (
        record["method"],
        record["arch"],
        round(float(record["fraction"]), 6),
        record["seed"],
        None if mask_ratio is None else round(float(mask_ratio), 6),
        region,
    )


def _latest_per_condition(records: list[dict]) -> list[dict]:
    """A rerun of the same condition replaces the older run instead of counting as another seed."""
    latest: dict[tuple, dict] = {}
    for record in sorted(records, key=_finished_at):
        latest[_condition(record)] = record
    return list(latest.values())


# The config sections a run may read (engine/identity.py), and what a section's runs vary by design: the lung
# mask source (its own table) and where weights files lie; seed, fraction and mask ratio are not config here.
SHARED_SECTIONS = {
    "data": DataConfig,
    "vit": ViTConfig,
    "resnet": ResNetConfig,
    "pretrain": PretrainConfig,
    "finetune": FinetuneConfig,
    "probe": ProbeConfig,
    "region": RegionConfig,
}
VARIES_BY_DESIGN = frozenset(
    {"region.source", "region.mask_dir", "region.sam_checkpoint", "region.sam_model", "vit.weights", "resnet.weights"}
)


def protocol_settings(record: dict) -> dict[str, str]:
    """``section.key`` -> JSON value of each recorded setting the run read (engine/identity.py's rule, applied to
    the recorded config), leaving out what a section varies by design and the method's mask ratio."""
    config, info, arch = record["config"], record["method_info"], record["arch"]
    read = ["data", arch, "finetune", "probe"]
    if info["pretrains"]:
        read += ["pretrain", "region"] if info["region_guided"] else ["pretrain"]
    settings = {"amp": json.dumps(config.get("amp"))}
    for name in read:
        declared = {item.name: item for item in fields(SHARED_SECTIONS[name])}
        for key, value in config.get(name, {}).items():
            if key in declared and not counts_for(declared[key], arch, info["init"]):
                continue
            if f"{name}.{key}" not in VARIES_BY_DESIGN:
                settings[f"{name}.{key}"] = json.dumps(value, sort_keys=True)
    if info["pretrains"]:
        own = config.get("methods", {}).get(record["method"], {})
        settings.update({f"{record['method']}.{key}": json.dumps(value) for key, value in own.items() if key != "mask_ratio"})
    return settings


def _variants(records: list[dict]) -> dict[str, tuple[str, ...]]:
    """run id -> the settings where the run differs from the most common value among the runs that read it."""
    settings = {record["run_id"]: protocol_settings(record) for record in sorted(records, key=_finished_at)}
    seen: dict[str, Counter] = {}
    for values in settings.values():
        for key, value in values.items():
            seen.setdefault(key, Counter())[value] += 1
    usual = {key: counter.most_common(1)[0][0] for key, counter in seen.items()}  # ties: the earliest run's
    return {
        run: tuple(sorted(f"{key}={value}" for key, value in values.items() if value != usual[key]))
        for run, values in settings.items()
    }


def group_sections(records: list[dict]) -> list[Section]:
    """One section per (dataset name, fingerprint, profile, protocol variant); paper-comparable sections first,
    then each family's usual protocol before its variants."""
    families: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        key = (record["dataset"]["name"], record["dataset"]["fingerprint"], record["profile"])
        families.setdefault(key, []).append(record)
    sections = []
    for (dataset, fingerprint, profile), family in families.items():
        variants = _variants(family)
        groups: dict[tuple[str, ...], list[dict]] = {}
        for record in family:
            groups.setdefault(variants[record["run_id"]], []).append(record)
        for variant, group in groups.items():
            kept = _latest_per_condition(group)
            runs = with_mask_source(records_frame(kept), kept)
            sections.append(Section(dataset, fingerprint, profile, kept, runs, len(group) - len(kept), variant))
    return sorted(sections, key=lambda s: (not s.comparable_to_paper, s.dataset, s.profile, s.fingerprint, s.variant))


def families(sections: list[Section]) -> list[list[Section]]:
    """The sections of each (dataset, fingerprint, profile) family, in report order."""
    grouped: dict[tuple[str, str, str], list[Section]] = {}
    for section in sections:
        grouped.setdefault(section.family, []).append(section)
    return list(grouped.values())
