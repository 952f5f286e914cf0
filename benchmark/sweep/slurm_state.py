"""What SLURM says of a sweep's jobs: sacct states through submitit's parser."""

from __future__ import annotations


from submitit.slurm.slurm import SlurmInfoWatcher


# SLURM states of a job that is still queued or running (a requeued job passes through PREEMPTED/REQUEUED)
IN_FLIGHT_STATES = frozenset(
    {
        "PENDING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "PREEMPTED",
        "READY",
        "RUNNING",
        "COMPLETING",
        "CONFIGURING",
        "SUSPENDED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
    }
)


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM state per job id ("123", "124_0") from one sacct call, parsed by submitit; UNKNOWN if sacct lacks it."""
    watcher = SlurmInfoWatcher()
    for job_id in job_ids:
        watcher.register_job(job_id)
    watcher.update()
    # sacct writes "CANCELLED by 0" for a cancelled job
    return {job_id: watcher.get_state(job_id, mode="cache").split()[0] for job_id in job_ids}
