"""The job callables: only strings and numbers, rerunning the config resolution on the node."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import submitit

from benchmark.sweep.manifest import PlannedJob
from benchmark.sweep.plan import resolve_config


class PretrainJob(submitit.helpers.Checkpointable):
    """Pretrain (or find cached) one encoder. ``checkpoint()``, inherited, resubmits this same object: the
    requeued job calls ``pretrain_only`` again, which resumes from the encoder cache's per-epoch checkpoint."""

    def __init__(self, method: str, options: dict[str, Any]) -> None:
        self.method, self.options = method, options

    def __call__(self) -> dict:
        from benchmark.runner import pretrain_only

        return pretrain_only(self.method, resolve_config(self.options), progress=False)


class FinetuneJob(submitit.helpers.Checkpointable):
    """Fine-tune one run and write its record. Requeued, ``execute`` resumes from the run's per-epoch checkpoint,
    or returns the finished record untouched if the job was stopped after writing it."""

    def __init__(self, method: str, arch: str, fraction: float, options: dict[str, Any], results: str) -> None:
        self.method, self.arch, self.fraction, self.options, self.results = method, arch, fraction, options, results

    def __call__(self) -> dict:
        from benchmark.records.store import record_path
        from benchmark.runner import execute

        record = execute(
            self.method, self.fraction, resolve_config(self.options), Path(self.results), arch=self.arch, progress=False
        )
        return {
            "run_id": record["run_id"],
            "accuracy": record["metrics"]["accuracy"],
            "record": str(record_path(Path(self.results), record["run_id"])),
        }


def job_callable(job: PlannedJob, results: Path) -> Callable[[], dict]:
    if job.kind == "pretrain":
        return PretrainJob(job.method, job.options)
    return FinetuneJob(job.method, job.arch, job.fraction, job.options, str(results))
