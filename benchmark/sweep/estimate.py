"""The plan, printed: jobs to submit, skipped, and the cost estimate from measured records."""

from __future__ import annotations

from pathlib import Path


from benchmark.sweep.manifest import Sweep


def measured_process_times(results: Path, profile: str) -> dict[str, tuple[float, int]]:
    """Mean training time per job kind, in process-seconds (wall time x processes, so that records of DDP
    jobs of any size compare), from the records of this config profile: kind -> (process-seconds, n)."""
    from benchmark.records.store import scan_records

    records = [record for record in scan_records(results / "runs").records if record["profile"] == profile]
    # records written before DDP carry no process count: they ran one process
    trained = {
        record["pretrain"]["cache_key"]: record["pretrain"]["wall_time_s"] * record["pretrain"].get("processes", 1)
        for record in records
        if record["pretrain"] is not None and not record["pretrain"]["reused"]
    }
    samples = {
        "pretrain": list(trained.values()),
        "finetune": [record["finetune"]["wall_time_s"] * record["hardware"].get("processes", 1) for record in records],
    }
    return {kind: (sum(values) / len(values), len(values)) for kind, values in samples.items() if values}


def describe_plan(sweep: Sweep) -> str:
    jobs = sweep.jobs
    lines = [
        f"sweep {sweep.name}: results {sweep.results}, config profile {sweep.profile}",
        "",
        f"{'kind':9} {'action':8} {'waits for':30} name / reason skipped",
    ]
    for job in jobs:
        action = "submit" if job.skip_reason is None else "skip"
        waits = job.after or "-"
        lines.append(f"{job.kind:9} {action:8} {waits:30} {job.name}" + (f"  ({job.skip_reason})" if job.skip_reason else ""))
    counts = {kind: [job for job in jobs if job.kind == kind] for kind in ("pretrain", "finetune")}
    submitted = {kind: sum(job.skip_reason is None for job in group) for kind, group in counts.items()}
    lines += [""] + [
        f"{label} jobs: {submitted[kind]} to submit, {len(counts[kind]) - submitted[kind]} skipped"
        for kind, label in (("pretrain", "pretraining"), ("finetune", "fine-tuning"))
    ]
    lines.append("dependencies:")
    for pretrain in counts["pretrain"]:
        waiting = sum(job.after == pretrain.name and job.skip_reason is None for job in counts["finetune"])
        if waiting:
            lines.append(f"  {waiting} fine-tuning jobs start after {pretrain.name} succeeded (afterok)")
    independent = sum(job.after is None and job.skip_reason is None for job in counts["finetune"])
    lines.append(f"  {independent} fine-tuning jobs wait for nothing (no pretraining stage)")
    lines += estimate_lines(sweep, submitted)
    lines += [f"warning: {problem}" for problem in sweep.problems]
    return "\n".join(lines)


def estimate_lines(sweep: Sweep, submitted: dict[str, int]) -> list[str]:
    total = sum(submitted.values())
    gpus = sweep.cluster.gpus_per_node if sweep.cluster else None

    def in_gpu_hours(hours: float) -> str:
        if gpus is None:
            return ""
        return f" = {hours * gpus:.2f} GPU-hours at {gpus} GPUs per job" if gpus else " (the profile requests no GPU)"

    lines = ["estimate:"]
    if sweep.cluster is None:
        lines.append("  upper bound: pass --cluster slurm/NAME.yaml for its time limit")
    else:
        hours = total * sweep.cluster.time_limit_min / 60
        lines.append(
            f"  upper bound: {total} jobs x {sweep.cluster.time_limit_min} min time limit = {hours:.2f} "
            f"job-hours{in_gpu_hours(hours)}"
        )
    measured = measured_process_times(sweep.results, sweep.profile)
    if not measured:
        lines.append(f"  measured: no {sweep.profile}-profile records in {sweep.results / 'runs'} yet")
        return lines
    parts = [
        f"{'pretraining' if kind == 'pretrain' else 'fine-tuning'} {mean:.0f} process-s mean over {count} records"
        for kind, (mean, count) in measured.items()
    ]
    # a kind without records counts at the other kind's mean rather than at zero
    fallback = sum(mean for mean, _ in measured.values()) / len(measured)
    tasks = sweep.cluster.tasks_per_node if sweep.cluster else 1
    hours = sum(count * measured.get(kind, (fallback, 0))[0] for kind, count in submitted.items()) / tasks / 3600
    lines.append(
        f"  measured (training time only, no start-up or queueing): {', '.join(parts)} -> about "
        f"{hours:.2f} job-hours at {tasks} process{'es' if tasks > 1 else ''} per job, if they scale "
        f"linearly{in_gpu_hours(hours)}"
    )
    return lines
