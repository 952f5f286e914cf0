"""Cluster profiles (benchmark/sweep/cluster.py) and one real submission to the local SLURM cluster."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import submitit

from benchmark.sweep.cluster import (
    ClusterProfile,
    executor_parameters,
    load_cluster_profile,
    make_executor,
    slurm_available,
)
from benchmark.errors import ConfigError

SLURM_DIR = Path(__file__).resolve().parents[1] / "slurm"
SUBMIT_TIMEOUT_S = 120


def write_profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return path


def test_shipped_profiles_load() -> None:
    example = load_cluster_profile(SLURM_DIR / "example.yaml")
    local = load_cluster_profile(SLURM_DIR / "local.yaml")
    assert example.gpus_per_node >= 1 and example.extra_sbatch
    assert (local.partition, local.gpus_per_node, local.cpus_per_task, local.mem_gb) == ("debug", 0, 1, 2.0)
    assert local.time_limit_min >= 5 and local.array_parallelism == 2


def test_minimal_profile_takes_defaults(tmp_path: Path) -> None:
    assert load_cluster_profile(write_profile(tmp_path, "partition: gpu\n")) == ClusterProfile(partition="gpu")


def test_mem_gb_integer_becomes_float(tmp_path: Path) -> None:
    profile = load_cluster_profile(write_profile(tmp_path, "partition: gpu\nmem_gb: 16\n"))
    assert profile.mem_gb == 16.0 and isinstance(profile.mem_gb, float)


@pytest.mark.parametrize(
    ("text", "message_parts"),
    [
        ("partition: [gpu\n", ["invalid YAML"]),
        ("- partition\n", ["expected a mapping"]),
        ("", ["missing required field 'partition'"]),
        ("gpus_per_node: 1\n", ["missing required field 'partition'"]),
        ("partition: gpu\ngpu_per_node: 1\n", ["unknown field 'gpu_per_node'", "gpus_per_node"]),
        ("partition: gpu\ncpus_per_task: four\n", ["field 'cpus_per_task'", "expected an integer", "'four'"]),
        ("partition: gpu\ncpus_per_task: 1.5\n", ["field 'cpus_per_task'", "expected an integer"]),
        ("partition: gpu\ngpus_per_node: true\n", ["field 'gpus_per_node'", "expected an integer"]),
        ("partition: 7\n", ["field 'partition'", "expected a string"]),
        ("partition: gpu\nmem_gb: lots\n", ["field 'mem_gb'", "a number or null"]),
        ("partition: gpu\naccount: 42\n", ["field 'account'", "a string or null"]),
        ("partition: gpu\nextra_sbatch: exclusive\n", ["field 'extra_sbatch'", "mapping"]),
        ("partition: gpu\nextra_sbatch: {mail-type: [FAIL]}\n", ["field 'extra_sbatch'"]),
        ("partition: gpu\nextra_sbatch: {time: 5}\n", ["field 'extra_sbatch'", "'time_limit_min'"]),
        ("partition: gpu\nextra_sbatch: {cpus_per_task: 2}\n", ["field 'extra_sbatch'", "'cpus_per_task'"]),
        ("partition: gpu\ncpus_per_task: 0\n", ["field 'cpus_per_task'", ">= 1"]),
        ("partition: gpu\nmem_gb: 0\n", ["field 'mem_gb'", "> 0"]),
        ("partition: gpu\ntime_limit_min: 5\nsignal_delay_s: 300\n", ["field 'signal_delay_s'", "time_limit_min"]),
        ("partition: gpu\ntasks_per_node: 0\n", ["field 'tasks_per_node'", ">= 1"]),
        ("partition: gpu\ntasks_per_node: 2.0\n", ["field 'tasks_per_node'", "expected an integer"]),
        (
            "partition: gpu\ngpus_per_node: 2\ntasks_per_node: 4\n",
            ["field 'tasks_per_node'", "gpus_per_node (2)", "share a GPU"],
        ),
        ("partition: gpu\nextra_sbatch: {ntasks-per-node: 2}\n", ["field 'extra_sbatch'", "'tasks_per_node'"]),
        ("partition: gpu\nextra_sbatch: {ntasks_per_node: 2}\n", ["field 'extra_sbatch'", "'tasks_per_node'"]),
    ],
)
def test_bad_profile_names_file_and_field(tmp_path: Path, text: str, message_parts: list[str]) -> None:
    path = write_profile(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_cluster_profile(path)
    message = str(caught.value)
    assert str(path) in message
    for part in message_parts:
        assert part in message


@pytest.mark.parametrize(
    "name",
    [
        "gpus_per_node",
        "tasks_per_node",
        "cpus_per_task",
        "mem_gb",
        "time_limit_min",
        "array_parallelism",
        "signal_delay_s",
        "max_requeues",
    ],
)
def test_negative_numbers_are_refused(tmp_path: Path, name: str) -> None:
    path = write_profile(tmp_path, f"partition: gpu\n{name}: -1\n")
    with pytest.raises(ConfigError, match=f"{path}: field '{name}': expected a number"):
        load_cluster_profile(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match=f"cluster profile {path}: file not found"):
        load_cluster_profile(path)


def test_executor_parameters_map_every_field() -> None:
    profile = ClusterProfile(
        partition="gpu",
        gpus_per_node=2,
        tasks_per_node=2,
        cpus_per_task=8,
        mem_gb=64.0,
        time_limit_min=240,
        account="lab",
        qos="high",
        constraint="a100",
        array_parallelism=4,
        extra_sbatch={"mail-type": "FAIL"},
        signal_delay_s=120,
    )
    assert executor_parameters(profile) == {
        "slurm_partition": "gpu",
        "gpus_per_node": 2,
        "tasks_per_node": 2,
        "cpus_per_task": 8,
        "mem_gb": 64.0,
        "timeout_min": 240,
        "slurm_account": "lab",
        "slurm_qos": "high",
        "slurm_constraint": "a100",
        "slurm_array_parallelism": 4,
        "slurm_signal_delay_s": 120,
        "slurm_additional_parameters": {"mail-type": "FAIL"},
    }


def test_executor_parameters_leave_out_unset_fields() -> None:
    assert executor_parameters(ClusterProfile(partition="debug")) == {
        "slurm_partition": "debug",
        "cpus_per_task": 1,
        "timeout_min": 60,
    }


def test_tasks_per_node_up_to_gpus_per_node_or_any_on_cpu(tmp_path: Path) -> None:
    one_rank_per_gpu = load_cluster_profile(write_profile(tmp_path, "partition: gpu\ngpus_per_node: 4\ntasks_per_node: 4\n"))
    cpu_ranks = load_cluster_profile(write_profile(tmp_path, "partition: cpu\ntasks_per_node: 3\n"))  # DDP with gloo
    assert (one_rank_per_gpu.tasks_per_node, cpu_ranks.tasks_per_node) == (4, 3)


@pytest.mark.parametrize(("tasks", "line"), [(2, "#SBATCH --ntasks-per-node=2\n"), (1, None)])
def test_tasks_per_node_becomes_sbatch_ntasks_per_node(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tasks: int, line: str | None
) -> None:
    # SlurmExecutor refuses to exist where `srun` is missing; the sbatch script itself needs no cluster
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    executor = make_executor(ClusterProfile(partition="debug", tasks_per_node=tasks), tmp_path)
    script = executor._executor._make_submission_file_text("true", "uid")
    assert executor._executor._num_tasks() == tasks  # submitit waits for, and reads, one result per task
    if line is None:
        assert "ntasks-per-node" not in script
    else:
        assert line in script


def test_executor_parameters_are_known_to_submitit(tmp_path: Path) -> None:
    # the local executor validates slurm_* names too, without needing a cluster
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="local")
    executor.update_parameters(**executor_parameters(load_cluster_profile(SLURM_DIR / "example.yaml")))


def test_slurm_unavailable_says_how_to_start_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sinfo on PATH
    available, message = slurm_available()
    assert not available
    assert "bash slurm/local-cluster.sh all" in message


def test_slurm_controller_down_says_how_to_start_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_sinfo = tmp_path / "sinfo"
    fake_sinfo.write_text("#!/bin/sh\necho 'Unable to contact slurm controller (connect failure)' >&2\nexit 1\n")
    fake_sinfo.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    available, message = slurm_available()
    assert not available
    assert "Unable to contact slurm controller" in message and "bash slurm/local-cluster.sh all" in message


@pytest.mark.slurm
def test_submit_to_local_cluster(tmp_path: Path) -> None:
    profile = load_cluster_profile(SLURM_DIR / "local.yaml")
    available, message = slurm_available(profile.partition)
    if not available:
        pytest.skip(message)
    executor = make_executor(profile, tmp_path / "%j")
    # os.getenv pickles by reference and imports anywhere, unlike a function defined in this test module
    job = executor.submit(os.getenv, "SLURM_JOB_PARTITION")
    deadline = time.monotonic() + SUBMIT_TIMEOUT_S
    while not job.done():
        if time.monotonic() > deadline:
            job.cancel(check=False)
            pytest.fail(f"job {job.job_id} not done after {SUBMIT_TIMEOUT_S} s; see `squeue` and {tmp_path}")
        time.sleep(0.5)
    assert job.result() == profile.partition
