"""A sweep and its planned jobs, and their manifest ``<results>/sweeps/<name>.json``, which ``status`` reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional


from benchmark.errors import ConfigError
from benchmark.files import atomic_write_text
from benchmark.sweep.cluster import ClusterProfile


@dataclass
class PlannedJob:
    kind: str  # "pretrain" or "finetune"
    name: str  # SLURM job name: the run id of a fine-tuning job
    method: str
    arch: str
    seed: int
    mask_ratio: Optional[float]  # None for methods without masking
    fraction: Optional[float]  # fine-tuning only
    options: dict[str, Any]  # config options the job resolves its config from (see resolve_config)
    run_ids: list[str]  # the records this job leads to
    after: Optional[str] = None  # name of the pretraining job a fine-tuning job waits for
    skip_reason: Optional[str] = None  # set when the job is not submitted
    in_flight: bool = False  # skipped because an earlier submission of it is still queued or running
    job_id: Optional[str] = None
    dependency: Optional[str] = None  # e.g. afterok:123
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    state: Optional[str] = None  # local executor: pending, running, done or failed
    error: Optional[str] = None  # local executor: why the job failed


@dataclass
class Sweep:
    name: str
    executor: Optional[str]  # "local", "slurm", or None for a dry run
    results: Path
    jobs: list[PlannedJob]
    cluster: Optional[ClusterProfile]
    cluster_path: Optional[Path]
    profile: str  # the config profile every job resolves
    problems: list[str]  # what would make jobs fail (missing weights files); fatal unless dry run

    @property
    def manifest(self) -> Path:
        return manifest_path(self.results, self.name)

    @property
    def submitit_folder(self) -> Path:
        return self.results / "slurm" / self.name


def manifest_path(results: Path, name: str) -> Path:
    return Path(results) / "sweeps" / f"{name}.json"


def write_manifest(sweep: Sweep, created_at: str) -> None:

    document = {
        "name": sweep.name,
        "executor": sweep.executor,
        "results": str(sweep.results),
        "submitit_folder": str(sweep.submitit_folder) if sweep.executor == "slurm" else None,
        "cluster_profile": str(sweep.cluster_path) if sweep.cluster_path else None,
        "partition": sweep.cluster.partition if sweep.cluster else None,
        "profile": sweep.profile,
        "created_at": created_at,
        "updated_at": _now(),
        "jobs": [asdict(job) for job in sweep.jobs],
    }
    atomic_write_text(sweep.manifest, json.dumps(document, indent=2) + "\n")


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"sweep manifest {path}: cannot read it ({error})") from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
