"""Running a planned sweep: submitted to SLURM through submitit, or here, pretraining first."""

from __future__ import annotations

import sys
import traceback
from typing import Callable, Optional

from submitit.core.utils import FailedJobError

from benchmark.sweep.cluster import make_executor, slurm_available
from benchmark.errors import ConfigError
from benchmark.sweep.jobs import job_callable
from benchmark.files import ensure_writable
from benchmark.sweep.manifest import _now, write_manifest
from benchmark.sweep.manifest import PlannedJob, Sweep


def submit_to_slurm(sweep: Sweep) -> None:
    """One job per pretraining, then one array per dependency group (the runs of one encoder, and the runs
    without pretraining), each fine-tuning array starting only after its pretraining job succeeded."""
    pretraining = {job.name: job for job in sweep.jobs if job.kind == "pretrain"}
    groups: dict[Optional[str], list[PlannedJob]] = {}
    for job in sweep.jobs:
        if job.kind == "finetune" and job.skip_reason is None:
            groups.setdefault(job.after, []).append(job)
    try:
        for job in pretraining.values():
            if job.skip_reason is None:
                _submit_array(sweep, job.name, [job], None)
        for after, members in groups.items():
            parent = pretraining.get(after)
            waits = parent is not None and (parent.skip_reason is None or parent.in_flight)
            group = after.removeprefix("pretrain-") if after else "no-pretraining"
            name = members[0].name if len(members) == 1 else f"finetune-{group}"
            _submit_array(sweep, name, members, f"afterok:{parent.job_id}" if waits else None)
    except FailedJobError as error:
        message = str(error).strip()
        if "invalid partition" in message:
            raise ConfigError(
                f"cluster profile {sweep.cluster_path}: field 'partition': the cluster has no "
                f"partition {sweep.cluster.partition!r} (`sinfo -s` lists them); sbatch said: "
                f"{message}"
            ) from None
        raise ConfigError(f"cluster profile {sweep.cluster_path}: sbatch refused the job: {message}") from None


def _submit_array(sweep: Sweep, name: str, members: list[PlannedJob], dependency: Optional[str]) -> None:
    executor = make_executor(sweep.cluster, sweep.submitit_folder)
    sbatch = dict(sweep.cluster.extra_sbatch)
    if dependency is not None:
        # a failed pretraining cancels its runs instead of leaving them pending forever
        sbatch.update({"dependency": dependency, "kill-on-invalid-dep": "yes"})
    executor.update_parameters(slurm_job_name=name, **({"slurm_additional_parameters": sbatch} if sbatch else {}))
    with executor.batch():
        handles = [executor.submit(job_callable(job, sweep.results)) for job in members]
    for job, handle in zip(members, handles):
        job.job_id, job.dependency = handle.job_id, dependency
        job.stdout, job.stderr = str(handle.paths.stdout), str(handle.paths.stderr)


def run_here(sweep: Sweep, save: Callable[[], None]) -> int:
    """Run the plan in this process, pretraining first; returns how many jobs failed."""
    pretraining = {job.name: job for job in sweep.jobs if job.kind == "pretrain"}
    todo = [job for job in sweep.jobs if job.skip_reason is None]  # planned pretraining first
    for job in todo:
        job.state = "pending"
    save()
    for number, job in enumerate(todo, start=1):
        parent = pretraining.get(job.after)
        if parent is not None and parent.state == "failed":
            job.state, job.error = "failed", f"not run: its pretraining job {parent.name} failed"
            save()
            continue
        print(f"[sweep] {number}/{len(todo)}: {job.kind} {job.name}", flush=True)
        job.state = "running"
        save()
        try:
            job_callable(job, sweep.results)()
            job.state = "done"
        except Exception:  # one failed run must not stop the others; its traceback goes to the manifest
            job.state, job.error = "failed", traceback.format_exc()
            print(f"[sweep] {job.kind} {job.name} failed:\n{job.error}", file=sys.stderr, flush=True)
        save()
    return sum(job.state == "failed" for job in todo)


def launch(sweep: Sweep) -> int:
    """Submit (slurm) or run (local) the jobs the plan submits, keeping the manifest current."""
    if sweep.problems:
        raise ConfigError(sweep.problems[0])
    ensure_writable(sweep.results, "--results")
    ensure_writable(sweep.manifest.parent, "sweep manifest folder")
    created_at = _now()
    counts = {
        kind: sum(job.kind == kind and job.skip_reason is None for job in sweep.jobs) for kind in ("pretrain", "finetune")
    }
    if sweep.executor == "slurm":
        available, why = slurm_available()
        if not available:
            raise ConfigError(f"--executor slurm: {why}")
        ensure_writable(sweep.submitit_folder, "submitit folder")
        try:
            submit_to_slurm(sweep)
        finally:  # also lists what was submitted before a refusal
            write_manifest(sweep, created_at)
        print(
            f"[sweep] {sweep.name}: submitted {counts['pretrain']} pretraining and {counts['finetune']} "
            f"fine-tuning jobs ({len(sweep.jobs) - sum(counts.values())} skipped); logs in {sweep.submitit_folder}; "
            f"manifest {sweep.manifest}; follow with `python -m benchmark status --results {sweep.results} "
            f"--name {sweep.name}`",
            flush=True,
        )
        return 0
    failures = run_here(sweep, lambda: write_manifest(sweep, created_at))
    print(
        f"[sweep] {sweep.name}: ran {sum(counts.values())} jobs here, {failures} failed "
        f"({len(sweep.jobs) - sum(counts.values())} skipped); manifest {sweep.manifest}",
        flush=True,
    )
    return 1 if failures else 0
