"""``python -m benchmark status``: a sweep's progress from its manifest, the run records and SLURM's accounting.

A fine-tuning job is done once its record exists, whatever the scheduler says; otherwise a SLURM job's state
comes from sacct (through submitit's parser), a local job's from the manifest. Failed jobs are listed with
their log and the last lines of their traceback.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from benchmark.errors import ConfigError
from benchmark.records.store import record_path
from benchmark.sweep.manifest import manifest_path, read_manifest
from benchmark.sweep.slurm_state import IN_FLIGHT_STATES, slurm_states

CATEGORIES = ("done", "running", "pending", "failed")
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT"})
TRACEBACK_LINES = 8


@dataclass
class JobStatus:
    job: dict[str, Any]  # the manifest entry
    category: str  # one of CATEGORIES
    state: str  # SLURM state, local state, or why the job was not submitted
    details: list[str] = field(default_factory=list)  # failed jobs: where to look and the traceback's end


def slurm_category(state: str) -> str:
    if state == "COMPLETED":
        return "done"
    if state in RUNNING_STATES:
        return "running"
    if state in IN_FLIGHT_STATES or state == "UNKNOWN":  # UNKNOWN: sacct has not heard of a new job yet
        return "pending"
    return "failed"  # FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...


def traceback_tail(text: str, count: int = TRACEBACK_LINES) -> list[str]:
    """The last lines of the last traceback in a log (the whole log's end when it holds none)."""
    lines = [line for line in text.splitlines() if not line.startswith("srun: ")]  # srun's own exit notice
    starts = [index for index, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    return (lines[starts[-1] :] if starts else lines)[-count:]


def failure_details(job: dict[str, Any], state: str) -> list[str]:
    if job.get("error"):  # local executor
        return traceback_tail(job["error"])
    log = Path(job["stderr"]) if job.get("stderr") else None
    if log is not None and log.exists():
        return [f"log: {log}", *traceback_tail(log.read_text(errors="replace"))]
    if job.get("dependency") and state == "CANCELLED":
        return [f"never started: cancelled because its dependency {job['dependency']} failed"]
    return [f"never started ({state}); no log at {log}"]


def job_statuses(manifest: dict[str, Any]) -> list[JobStatus]:
    results = Path(manifest["results"])
    slurm = manifest["executor"] == "slurm"
    job_ids = [job["job_id"] for job in manifest["jobs"] if job.get("job_id")]
    states = slurm_states(job_ids) if slurm and job_ids else {}
    statuses = []
    for job in manifest["jobs"]:
        recorded = all(record_path(results, run).exists() for run in job["run_ids"])
        if slurm and job.get("job_id"):
            state = states[job["job_id"]]
            category = slurm_category(state)
        elif job.get("state"):  # local executor
            state = category = job["state"]
        else:  # never submitted: its runs had records when the sweep was planned
            state, category = "skipped", "done" if recorded else "pending"
        if job["kind"] == "finetune" and recorded:
            category = "done"  # the record is the truth, even if the scheduler lost track
        statuses.append(JobStatus(job, category, state, failure_details(job, state) if category == "failed" else []))
    return statuses


def status_text(manifest: dict[str, Any], statuses: list[JobStatus], path: Path) -> str:
    counts = {category: sum(status.category == category for status in statuses) for category in CATEGORIES}
    lines = [
        f"sweep {manifest['name']} ({manifest['executor']}, {len(statuses)} jobs; manifest {path})",
        ", ".join(f"{category} {count}" for category, count in counts.items()),
        "",
        f"{'status':8} {'state':13} {'job id':10} {'kind':9} name",
    ]
    lines += [
        f"{status.category:8} {status.state:13} {status.job.get('job_id') or '-':10} "
        f"{status.job['kind']:9} {status.job['name']}"
        for status in statuses
    ]
    failed = [status for status in statuses if status.category == "failed"]
    if failed:
        lines += ["", "failed jobs:"]
        for status in failed:
            lines.append(f"  {status.job['name']} (job {status.job.get('job_id') or '-'}, {status.state})")
            lines += [f"    {detail}" for detail in status.details]
    return "\n".join(lines)


def find_manifest(results: Path, name: Optional[str]) -> Path:
    folder = results / "sweeps"
    available = sorted(path.stem for path in folder.glob("*.json")) if folder.is_dir() else []
    if not available:
        raise ConfigError(
            f"--results {results}: no sweep manifest in {folder} (`python -m benchmark sweep` writes one per sweep)"
        )
    if name is None and len(available) > 1:  # the one submitted last; the others are named
        latest = max(available, key=lambda stem: (manifest_path(results, stem).stat().st_mtime_ns, stem))
        others = ", ".join(stem for stem in available if stem != latest)
        print(f"[status] {folder} holds several sweeps; showing the latest, {latest} (--name for {others})")
        return manifest_path(results, latest)
    if name is not None and name not in available:
        raise ConfigError(f"--name {name!r}: no such sweep in {folder}; expected one of {', '.join(available)}")
    return manifest_path(results, name or available[0])


def status_command(args: argparse.Namespace) -> int:
    path = find_manifest(Path(args.results), args.name)
    manifest = read_manifest(path)
    print(status_text(manifest, job_statuses(manifest), path))
    return 0
