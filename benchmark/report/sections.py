"""Records grouped into report sections (one dataset and profile each), newest run of each condition."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd

from benchmark.config import MASK_SOURCES
from benchmark.records.frame import records_frame
from benchmark.report import paper

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed so the report is reproducible byte for byte
MINUEND = ("rgmim", "vit")  # the paired comparison: RGMIM - MAE, both on ViT
SUBTRAHEND = ("mae", "vit")
MISSING = "—"
EXPERT_REGION = "gt"  # the paper's RGMIM: the dataset's own expert masks; the only region in Tables 2 and 3
# display order of the "RGMIM by lung-mask source" rows (data/regions.py region_label); unknown ones follow
MASK_SOURCE_ORDER = (MASK_SOURCES[0], "mask-dir", *MASK_SOURCES[1:])  # the user's own masks follow the dataset's


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
