"""Mask-quality files: how one lung-mask source scores against a dataset's own masks, one JSON file per
(dataset, image size, patch grid, source) under ``<results>/mask-quality/``. ``data masks --evaluate
--results`` writes them; the report reads them beside the run records (without torch)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.files import atomic_write_json

QUALITY_DIR = "mask-quality"
REQUIRED = ("dataset", "fingerprint", "image_size", "patch_size", "min_overlap", "mask_source", "summary")


def quality_path(results: Path, facts: dict) -> Path:
    fingerprint = facts["fingerprint"][:16]  # as the decoded cache names it
    name = f"{facts['dataset']}-{fingerprint}-{facts['image_size']}px-p{facts['patch_size']}-{facts['mask_source']}"
    return Path(results) / QUALITY_DIR / f"{name}.json"


def write_quality(results: Path, facts: dict) -> Path:
    """Write (or replace) the file of this dataset, grid and source atomically; returns its path."""
    missing = [key for key in REQUIRED if key not in facts]
    if missing:
        raise ValueError(f"mask-quality facts lack {', '.join(missing)}")
    path = quality_path(results, facts)
    atomic_write_json(path, facts)
    return path


def load_quality(results: Path) -> tuple[list[dict], list[tuple[Path, str]]]:
    """The readable mask-quality files of a results folder, and (path, reason) for each skipped one."""
    found, skipped = [], []
    for path in sorted((Path(results) / QUALITY_DIR).glob("*.json")):
        try:
            facts = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            skipped.append((path, f"{path}: not a readable mask-quality file ({error})"))
            continue
        missing = [key for key in REQUIRED if not isinstance(facts, dict) or key not in facts]
        if missing:
            skipped.append((path, f"{path}: mask-quality file lacks {', '.join(missing)}"))
            continue
        found.append(facts)
    return found, skipped
