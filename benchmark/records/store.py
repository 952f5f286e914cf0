"""Record files: one JSON file per finished run, written atomically, read back with their problems named."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from benchmark.records.schema import validate_record
from benchmark.errors import RecordError
from benchmark.files import atomic_write_text


def record_path(results: Path, identifier: str) -> Path:
    return Path(results) / "runs" / f"{identifier}.json"


class RecordWarning(UserWarning):
    """A run record file was skipped while loading a results folder."""


def _to_builtin(value: Any) -> Any:
    """JSON fallback for numpy/torch scalars and arrays, which all offer ``tolist``."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_record(path: Path, record: dict) -> None:
    """Validate ``record`` and write it atomically as JSON; raises RecordError before writing if invalid."""
    path = Path(path)
    normalised = json.loads(json.dumps(record, default=_to_builtin))
    problems = validate_record(normalised)
    if problems:
        raise RecordError(f"{path}: refusing to write an invalid run record: " + "; ".join(problems))
    atomic_write_text(path, json.dumps(normalised, indent=2, allow_nan=False) + "\n")


def read_record(path: Path) -> dict:
    """Read and validate one record; raises RecordError naming the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RecordError(f"{path}: cannot read run record ({error})") from error
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(
            f"{path}: not valid JSON, truncated or corrupt ({error.msg}: line {error.lineno}, column {error.colno})"
        ) from error
    problems = validate_record(record)
    if problems:
        raise RecordError(f"{path}: invalid run record: " + "; ".join(problems))
    return record


@dataclass
class RecordScan:
    """The usable records of a folder and the files skipped, each with the reason."""

    records: list[dict] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def scan_records(directory: Path) -> RecordScan:
    """Read every ``*.json`` in ``directory`` (sorted by name); a missing folder holds no records."""
    scan = RecordScan()
    directory = Path(directory)
    if not directory.is_dir():
        return scan
    for path in sorted(directory.glob("*.json")):
        try:
            scan.records.append(read_record(path))
        except RecordError as error:
            scan.skipped.append((path, str(error)))
    return scan


def load_records(directory: Path) -> list[dict]:
    """Every valid record in ``directory``; each unusable file is skipped with a RecordWarning naming it."""
    scan = scan_records(directory)
    for _, reason in scan.skipped:
        warnings.warn(f"skipping {reason}", RecordWarning, stacklevel=2)
    return scan.records
