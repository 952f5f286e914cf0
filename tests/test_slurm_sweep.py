"""Sweeps submitted for real, through submitit, to the local SLURM cluster (bash slurm/local-cluster.sh all).

One smoke-profile sweep: RGMIM pretraining (8 short epochs) with a dependent fine-tuning array at fractions
0.25 and 0.5, and Cross, whose ImageNet weights file is deleted after planning, so its pretraining job fails and
SLURM cancels its dependent array. The RGMIM pretraining job is preempted after its first epoch
(``job._interrupt()``): it must be requeued, resume, and end with the same records as an uninterrupted twin
that the local executor runs with its own results and cache folders.

A second, smaller sweep uses a profile with tasks_per_node: 2, so each of its jobs runs as two DDP ranks.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import submitit
import yaml

from benchmark.sweep import status as status_module
from benchmark.sweep import executors
from benchmark.sweep import manifest as manifests
from benchmark.sweep import plan as planning
from benchmark.cli import build_parser
from benchmark.sweep.cluster import load_cluster_profile, slurm_available
from benchmark.errors import ConfigError
from conftest import smoke_weights
from benchmark.records.store import read_record
from benchmark.records.store import record_path
from test_ddp import assert_same_training  # pytest puts tests/ on sys.path (rootdir-less test modules)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

LOCAL_PROFILE = Path(__file__).resolve().parents[1] / "slurm" / "local.yaml"
SWEEP_TIMEOUT_S = 240
TIMING_KEYS = {"train_time_s", "eval_time_s", "other_cpu_share"}  # what differs between identical runs: measurements


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            squeue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
            pytest.fail(f"{what} not seen after {timeout_s} s; squeue:\n{squeue}")
        time.sleep(interval_s)
    return value


@pytest.fixture(scope="module")
def cluster_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """slurm/local.yaml with a 15-minute limit: submitit counts every USR2 as a time-out when the limit is
    10 minutes or less, and this test wants a preemption."""
    settings = yaml.safe_load(LOCAL_PROFILE.read_text())
    available, message = slurm_available(settings["partition"])
    if not available:
        pytest.skip(message)
    path = tmp_path_factory.mktemp("profile") / "local-15min.yaml"
    path.write_text(yaml.safe_dump({**settings, "time_limit_min": 15}))
    return path


@pytest.fixture(scope="module")
def finished_sweep(cluster_profile: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("slurm-sweep")
    weights = smoke_weights(root)["resnet"]  # deleted before any job reads it
    grid = [
        "--methods",
        "rgmim,cross",
        "--fractions",
        "0.25,0.5",
        "--seeds",
        "0",
        "--profile",
        "smoke",
        "--set",
        "pretrain.max_steps=0",
        "--set",
        "pretrain.epochs=8",
        "--weights-resnet",
        str(weights),
    ]
    arguments = [
        *grid,
        "--executor",
        "slurm",
        "--cluster",
        str(cluster_profile),
        "--results",
        str(root / "results"),
        "--cache-dir",
        str(root / "cache"),
        "--name",
        "smoke",
    ]
    sweep = planning.plan_sweep(parse("sweep", *arguments))
    weights.unlink()
    assert executors.launch(sweep) == 0
    manifest = manifests.read_manifest(sweep.manifest)
    folder = manifest["submitit_folder"]
    jobs = {entry["name"]: submitit.SlurmJob(folder, entry["job_id"]) for entry in manifest["jobs"]}
    try:
        pretraining = jobs["pretrain-rgmim-vit-s0-m0.75"]

        def checkpoints() -> list[Path]:  # saved after every epoch, deleted once the encoder is cached
            return list((root / "cache" / "pretrained").glob("rgmim-*/checkpoint.pt"))

        wait_until(
            lambda: checkpoints() or pretraining.done(), 120, "RGMIM's first pretraining epoch checkpoint", interval_s=0.1
        )
        if not checkpoints():
            pytest.fail(f"RGMIM pretraining ended before it could be preempted:\n{pretraining.stderr()}")
        pretraining._interrupt()  # preemption: SIGTERM, then USR2

        twin = planning.plan_sweep(
            parse(
                "sweep",
                *grid[2:],
                "--methods",
                "rgmim",
                "--executor",
                "local",
                "--results",
                str(root / "twin"),
                "--cache-dir",
                str(root / "twin-cache"),
                "--name",
                "twin",
            )
        )
        assert executors.launch(twin) == 0

        wait_until(
            lambda: all(job.done(force_check=True) for job in jobs.values()),
            SWEEP_TIMEOUT_S,
            "the end of every job of the sweep",
            interval_s=2,
        )
        yield {"root": root, "arguments": arguments, "manifest": manifest, "jobs": jobs, "weights": weights}
    finally:
        subprocess.run(["scancel", *(job.job_id for job in jobs.values())], capture_output=True)


def test_preempted_pretraining_resumes_and_matches_its_uninterrupted_twin(finished_sweep: dict[str, Any]) -> None:
    pretraining = finished_sweep["jobs"]["pretrain-rgmim-vit-s0-m0.75"]
    log = pretraining.stdout()
    assert "this job is preempted" in log and "[pretrain] resuming rgmim after " in log
    assert pretraining.result()["resumed_from_epoch"] >= 1
    root = finished_sweep["root"]
    rgmim_runs = [
        entry["name"]
        for entry in finished_sweep["manifest"]["jobs"]
        if entry["kind"] == "finetune" and entry["method"] == "rgmim"
    ]
    assert len(rgmim_runs) == 2
    for run in rgmim_runs:
        interrupted = read_record(record_path(root / "results", run))
        twin = read_record(record_path(root / "twin", run))
        assert interrupted["pretrain"]["resumed_from_epoch"] >= 1 and twin["pretrain"]["resumed_from_epoch"] is None
        assert interrupted["pretrain"]["loss_history"] == twin["pretrain"]["loss_history"]
        assert interrupted["metrics"] == twin["metrics"]
        assert [{k: v for k, v in epoch.items() if k not in TIMING_KEYS} for epoch in interrupted["history"]] == [
            {k: v for k, v in epoch.items() if k not in TIMING_KEYS} for epoch in twin["history"]
        ]


def test_status_shows_progress_and_the_failed_jobs_tracebacks(
    finished_sweep: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    results = finished_sweep["root"] / "results"
    assert status_module.status_command(parse("status", "--results", str(results), "--name", "smoke")) == 0
    output = capsys.readouterr().out
    assert "done 3, running 0, pending 0, failed 3" in output
    failed = next(entry for entry in finished_sweep["manifest"]["jobs"] if entry["name"] == "pretrain-cross-resnet-s0")
    assert f"log: {failed['stderr']}" in output
    assert f"ConfigError: resnet.weights: weights file {finished_sweep['weights']} does not exist" in output
    assert output.count(f"never started: cancelled because its dependency afterok:{failed['job_id']} failed") == 2


def test_jobs_are_named_after_their_runs_and_logged_in_the_sweep_folder(finished_sweep: dict[str, Any]) -> None:
    manifest = finished_sweep["manifest"]
    assert manifest["submitit_folder"] == str(finished_sweep["root"] / "results" / "slurm" / "smoke")
    by_name = {entry["name"]: entry for entry in manifest["jobs"]}
    pretraining = by_name["pretrain-rgmim-vit-s0-m0.75"]
    runs = [entry for entry in manifest["jobs"] if entry.get("after") == pretraining["name"]]
    assert {entry["dependency"] for entry in runs} == {f"afterok:{pretraining['job_id']}"}
    array_id = runs[0]["job_id"].split("_")[0]
    assert sorted(entry["job_id"] for entry in runs) == [f"{array_id}_0", f"{array_id}_1"]
    accounting = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,JobName", "-j", f"{pretraining['job_id']},{array_id}"],
        capture_output=True,
        text=True,
    ).stdout
    names = dict(line.split("|") for line in accounting.splitlines())
    assert names[pretraining["job_id"]] == "pretrain-rgmim-vit-s0-m0.75"
    assert names[f"{array_id}_0"] == "finetune-rgmim-vit-s0-m0.75"
    for entry in runs + [pretraining]:
        assert Path(entry["stdout"]).is_file() and Path(entry["stdout"]).parent == Path(manifest["submitit_folder"])


def test_resubmitting_the_sweep_plans_only_what_is_missing(finished_sweep: dict[str, Any]) -> None:
    again = planning.plan_sweep(parse("sweep", *finished_sweep["arguments"], "--dry-run"))
    planned = {job.name: job for job in again.jobs}
    assert planned["pretrain-rgmim-vit-s0-m0.75"].skip_reason is not None
    cross_runs = [job.name for job in again.jobs if job.kind == "finetune" and job.method == "cross"]
    assert [job.name for job in again.jobs if job.skip_reason is None] == ["pretrain-cross-resnet-s0", *cross_runs]
    assert "does not exist" in again.problems[0]  # the weights file is still missing: launch would refuse


def test_report_is_built_from_the_sweep_records(finished_sweep: dict[str, Any]) -> None:
    from benchmark.report import build_report

    results = finished_sweep["root"] / "results"
    build_report(results)
    readme = (results / "README.md").read_text()
    assert "RGMIM" in readme and "2 valid run records" in readme


def test_an_unknown_partition_is_a_config_error(cluster_profile: Path, tmp_path: Path) -> None:
    profile = tmp_path / "nosuch.yaml"
    profile.write_text(yaml.safe_dump({**yaml.safe_load(cluster_profile.read_text()), "partition": "nosuch"}))
    sweep = planning.plan_sweep(
        parse(
            "sweep",
            "--methods",
            "scratch",
            "--fractions",
            "0.5",
            "--profile",
            "smoke",
            "--executor",
            "slurm",
            "--cluster",
            str(profile),
            "--results",
            str(tmp_path / "results"),
        )
    )
    with pytest.raises(ConfigError) as caught:
        executors.launch(sweep)
    message = str(caught.value)
    assert f"cluster profile {profile}: field 'partition': the cluster has no partition 'nosuch'" in message
    assert "sbatch: error: invalid partition specified: nosuch" in message
    assert load_cluster_profile(profile).partition == "nosuch"  # the file itself is valid: only sbatch knows


# the overrides under which two DDP ranks compute what one process computes (tests/test_ddp.py says why)
DDP_OVERRIDES = ["pretrain.max_steps=2", "finetune.max_steps=0", "finetune.epochs=2", "finetune.drop_path=0"]
DDP_TIMEOUT_S = 150


def test_a_two_task_profile_runs_each_job_as_two_ddp_ranks(cluster_profile: Path, tmp_path: Path) -> None:
    """tasks_per_node: 2 makes every job of the sweep two submitit tasks that join one DDP group (gloo on CPU):
    one record, written by rank 0, equal to what the local executor gets in one process."""
    profile = tmp_path / "local-2tasks.yaml"
    profile.write_text(
        yaml.safe_dump(
            {**yaml.safe_load(cluster_profile.read_text()), "tasks_per_node": 2, "cpus_per_task": 1, "gpus_per_node": 0}
        )
    )
    grid = [
        "--methods",
        "rgmim",
        "--fractions",
        "0.1",
        "--seeds",
        "0",
        "--profile",
        "smoke",
        *(item for override in DDP_OVERRIDES for item in ("--set", override)),
    ]
    sweep = planning.plan_sweep(
        parse(
            "sweep",
            *grid,
            "--executor",
            "slurm",
            "--cluster",
            str(profile),
            "--results",
            str(tmp_path / "results"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--name",
            "ddp",
        )
    )
    assert executors.launch(sweep) == 0
    manifest = manifests.read_manifest(sweep.manifest)
    jobs = {
        entry["name"]: submitit.SlurmJob(manifest["submitit_folder"], entry["job_id"], tasks=(0, 1))
        for entry in manifest["jobs"]
    }
    try:
        twin = planning.plan_sweep(
            parse(  # one process, here, while the cluster works
                "sweep",
                *grid,
                "--executor",
                "local",
                "--results",
                str(tmp_path / "twin"),
                "--cache-dir",
                str(tmp_path / "twin-cache"),
                "--name",
                "twin",
            )
        )
        assert executors.launch(twin) == 0
        wait_until(
            lambda: all(job.done(force_check=True) for job in jobs.values()),
            DDP_TIMEOUT_S,
            "the end of both two-task jobs",
            interval_s=1,
        )
        (run,) = [name for name in jobs if not name.startswith("pretrain-")]
        # results() raises with the task's stderr if a rank failed; both ranks return the run they made
        assert [result["run_id"] for result in jobs[run].results()] == [run, run]
        assert len(jobs[f"pretrain-rgmim-vit-s0-m{0.75:g}"].results()) == 2
    finally:
        subprocess.run(["scancel", *(job.job_id for job in jobs.values())], capture_output=True)
    assert [path.name for path in (tmp_path / "results" / "runs").glob("*.json")] == [f"{run}.json"]
    record = read_record(record_path(tmp_path / "results", run))
    single = read_record(record_path(tmp_path / "twin", run))
    assert record["hardware"]["processes"] == 2 and single["hardware"]["processes"] == 1
    assert record["pretrain"]["processes"] == 2  # the pretraining job ran as two ranks too
    assert len(single["history"]) == 2
    assert_same_training(record, single)
