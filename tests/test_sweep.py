"""`sweep` planning (grids, deduplication, skipping finished runs, dry-run output), bad input, the local
executor and `status`. The real SLURM submissions are in test_slurm_sweep.py.

Most tests build the parser from the commands' own ``add_parser`` and call the handler in-process; the ones
named ``*_through_the_cli`` run ``python -m benchmark`` in a subprocess and need sweep/status wired into cli.py.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import submitit

from benchmark.sweep import status as status_module
from benchmark import cli
from benchmark.sweep import executors
from benchmark.sweep import manifest as manifests
from benchmark.cli import build_parser
from benchmark.errors import ConfigError
from benchmark.errors import DataError
from benchmark.records.store import write_record
from benchmark.records.store import record_path
from benchmark.sweep.jobs import FinetuneJob, PretrainJob
from benchmark.sweep.manifest import PlannedJob
from benchmark.sweep.plan import carry_over, plan_sweep, settle_pretraining
from conftest import smoke_weights
from test_records import make_record  # pytest puts tests/ on sys.path

REPO = Path(__file__).resolve().parents[1]
LOCAL_PROFILE = REPO / "slurm" / "local.yaml"


def parse(*argv: str) -> argparse.Namespace:
    """The sweep/status command line, as cli.py will register it."""
    return build_parser().parse_args(argv)


def plan(tmp_path: Path, *argv: str) -> manifests.Sweep:
    return plan_sweep(parse("sweep", "--profile", "smoke", "--results", str(tmp_path / "results"), *argv))


def counts(sweep: manifests.Sweep) -> dict[str, tuple[int, int]]:
    """kind -> (jobs to submit, jobs skipped)."""
    return {
        kind: (
            sum(job.kind == kind and job.skip_reason is None for job in sweep.jobs),
            sum(job.kind == kind and job.skip_reason is not None for job in sweep.jobs),
        )
        for kind in ("pretrain", "finetune")
    }


def write_finished_record(results: Path, job: PlannedJob, processes: int = 1) -> None:
    record = make_record(job.method, job.arch, job.fraction, job.seed, mask_ratio=job.mask_ratio, profile="smoke")
    record["run_id"] = job.name
    if processes > 1:  # a DDP job
        record["hardware"]["processes"] = record["pretrain"]["processes"] = processes
    write_record(record_path(results, job.name), record)


# ---------------------------------------------------------------------------------------------- planning


def test_table2_is_six_pretraining_and_fifty_finetuning_jobs_per_seed(tmp_path: Path) -> None:
    sweep = plan(tmp_path, "--grid", "table2", "--dry-run")
    assert counts(sweep) == {"pretrain": (6, 0), "finetune": (50, 0)}
    pretraining = [job for job in sweep.jobs if job.kind == "pretrain"]
    assert sorted(job.method for job in pretraining) == sorted(["rgmim", "mae", "skd", "cross", "byol", "simsiam"])
    for job in pretraining:  # each encoder serves its five fractions
        assert len(job.run_ids) == 5
        assert {f.after for f in sweep.jobs if f.name in job.run_ids} == {job.name}
    independent = [job for job in sweep.jobs if job.kind == "finetune" and job.after is None]
    assert {(job.method, job.arch) for job in independent} == {
        ("transfer", "vit"),
        ("transfer", "resnet"),
        ("scratch", "vit"),
        ("scratch", "resnet"),
    }
    assert len({job.name for job in sweep.jobs}) == len(sweep.jobs)
    assert {job.mask_ratio for job in sweep.jobs if job.method in ("rgmim", "mae")} == {0.75}


def test_table2_for_two_seeds(tmp_path: Path) -> None:
    assert counts(plan(tmp_path, "--grid", "table2", "--seeds", "0,1", "--dry-run")) == {
        "pretrain": (12, 0),
        "finetune": (100, 0),
    }


def test_table3_is_one_encoder_per_method_and_mask_ratio(tmp_path: Path) -> None:
    sweep = plan(tmp_path, "--grid", "table3", "--seeds", "0,1", "--dry-run")
    assert counts(sweep) == {"pretrain": (24, 0), "finetune": (24, 0)}
    assert {job.fraction for job in sweep.jobs if job.kind == "finetune"} == {1.0}
    assert sorted({job.mask_ratio for job in sweep.jobs}) == [0.15, 0.30, 0.45, 0.60, 0.75, 0.90]


def test_pretraining_is_deduplicated_per_encoder(tmp_path: Path) -> None:
    sweep = plan(
        tmp_path, "--methods", "rgmim,rgmim,byol", "--fractions", "0.5,0.5,0.25", "--mask-ratios", "0.3,0.6", "--dry-run"
    )
    pretraining = sorted(job.name for job in sweep.jobs if job.kind == "pretrain")
    # byol does not mask: one encoder whatever the mask ratios
    assert pretraining == ["pretrain-byol-resnet-s0", "pretrain-rgmim-vit-s0-m0.3", "pretrain-rgmim-vit-s0-m0.6"]
    assert counts(sweep)["finetune"] == (6, 0)


def test_transfer_and_scratch_expand_to_both_encoders(tmp_path: Path) -> None:
    files = smoke_weights(tmp_path)
    weights = files["vit"]
    sweep = plan(
        tmp_path,
        "--methods",
        "transfer,scratch",
        "--fractions",
        "0.5",
        "--weights-vit",
        str(weights),
        "--weights-resnet",
        str(files["resnet"]),
        "--dry-run",
    )
    assert sorted((job.method, job.arch) for job in sweep.jobs) == [
        ("scratch", "resnet"),
        ("scratch", "vit"),
        ("transfer", "resnet"),
        ("transfer", "vit"),
    ]
    assert sweep.problems == []
    transfer_vit = next(job for job in sweep.jobs if (job.method, job.arch) == ("transfer", "vit"))
    assert f"vit.weights={weights}" in transfer_vit.options["overrides"]
    assert not any("resnet.weights" in item for item in transfer_vit.options["overrides"])


def test_an_encoder_named_after_the_method_keeps_that_row_only(tmp_path: Path) -> None:
    # a seed of the ViT row without the ResNet one (the cheaper cut when compute runs short)
    sweep = plan(tmp_path, "--methods", "scratch:vit,mae,scratch", "--fractions", "0.5", "--dry-run")
    assert [(job.method, job.arch) for job in sweep.jobs if job.kind == "finetune"] == [
        ("scratch", "vit"),
        ("mae", "vit"),
        ("scratch", "resnet"),
    ]
    only_vit = plan(tmp_path, "--methods", "scratch:vit", "--fractions", "0.5", "--dry-run")
    assert [(job.method, job.arch) for job in only_vit.jobs] == [("scratch", "vit")]


def test_run_ids_match_the_run_command(tmp_path: Path) -> None:
    from benchmark.data.prepare import identify
    from benchmark.engine.identity import run_id
    from benchmark.runner import configure, resolve_method

    sweep = plan(tmp_path, "--methods", "mae", "--fractions", "0.1", "--seeds", "3", "--set", "finetune.epochs=2", "--dry-run")
    config, _ = configure("smoke", ["finetune.epochs=2", "seed=3", "mae.mask_ratio=0.75"])
    finetune = next(job for job in sweep.jobs if job.kind == "finetune")
    found = identify(config.data, config.region)
    assert finetune.name == run_id(resolve_method("mae", None)[0], "vit", 0.1, config, found)


def test_finished_runs_are_skipped_and_a_finished_sweep_submits_nothing(tmp_path: Path) -> None:
    results = tmp_path / "results"
    arguments = ("--methods", "rgmim,scratch", "--fractions", "0.25,0.5", "--dry-run")
    first = plan(tmp_path, *arguments)
    rgmim_runs = [job for job in first.jobs if job.kind == "finetune" and job.method == "rgmim"]
    write_finished_record(results, rgmim_runs[0])

    half = plan(tmp_path, *arguments)
    assert counts(half) == {"pretrain": (1, 0), "finetune": (5, 1)}
    assert next(job for job in half.jobs if job.name == rgmim_runs[0].name).skip_reason == "record exists"

    write_finished_record(results, rgmim_runs[1])
    rgmim_done = plan(tmp_path, *arguments)
    assert counts(rgmim_done) == {"pretrain": (0, 1), "finetune": (4, 2)}  # no encoder needed any more

    for job in rgmim_done.jobs:
        if job.kind == "finetune" and job.skip_reason is None:
            write_finished_record(results, job)
    assert counts(plan(tmp_path, *arguments)) == {"pretrain": (0, 1), "finetune": (0, 6)}


def test_resubmission_leaves_jobs_in_flight_alone(tmp_path: Path) -> None:
    sweep = plan(tmp_path, "--methods", "rgmim,byol,scratch", "--fractions", "0.5", "--dry-run")
    rgmim, byol = (
        next(job for job in sweep.jobs if job.kind == "pretrain" and job.method == name) for name in ("rgmim", "byol")
    )
    scratch = [job for job in sweep.jobs if job.method == "scratch"]
    previous = [
        {"kind": "pretrain", "name": rgmim.name, "job_id": "10", "stdout": "10.out", "stderr": "10.err"},
        {"kind": "pretrain", "name": byol.name, "job_id": "12", "stdout": "12.out", "stderr": "12.err"},
        {"kind": "finetune", "name": scratch[0].name, "job_id": "11_0", "dependency": None},
        {"kind": "finetune", "name": scratch[1].name, "job_id": "11_1", "dependency": None},
    ]
    carry_over(sweep.jobs, previous, {"10": "RUNNING", "12": "COMPLETED", "11_0": "PENDING", "11_1": "FAILED"})
    settle_pretraining(sweep.jobs)
    assert rgmim.in_flight and rgmim.job_id == "10" and rgmim.skip_reason.startswith("in flight as job 10")
    assert byol.skip_reason == "completed as job 12" and not byol.in_flight  # its encoder is cached
    assert scratch[0].skip_reason.startswith("in flight") and scratch[1].skip_reason is None  # failed: again
    assert all(job.skip_reason is None for job in sweep.jobs if job.kind == "finetune" and job.method != "scratch")


def test_job_callables_pickle_and_checkpoint_as_themselves() -> None:
    job = FinetuneJob("rgmim", "vit", 0.5, {"profile": "smoke", "overrides": ["seed=0"]}, "/results")
    restored = pickle.loads(pickle.dumps(job))
    assert vars(restored) == vars(job)
    for callable_job in (job, PretrainJob("mae", {"profile": "smoke", "overrides": []})):
        delayed = callable_job.checkpoint()
        assert isinstance(delayed, submitit.helpers.DelayedSubmission) and delayed.function is callable_job


# ---------------------------------------------------------------------------------------------- dry run


def test_dry_run_prints_counts_dependencies_and_estimates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    arguments = (
        "--profile",
        "smoke",
        "--results",
        str(results),
        "--methods",
        "rgmim,scratch",
        "--fractions",
        "0.25,0.5",
        "--cluster",
        str(LOCAL_PROFILE),
        "--dry-run",
    )
    assert cli.sweep_command(parse("sweep", *arguments)) == 0
    output = capsys.readouterr().out
    assert "pretraining jobs: 1 to submit, 0 skipped" in output
    assert "fine-tuning jobs: 6 to submit, 0 skipped" in output
    assert "2 fine-tuning jobs start after pretrain-rgmim-vit-s0-m0.75 succeeded (afterok)" in output
    assert "4 fine-tuning jobs wait for nothing" in output
    assert "upper bound: 7 jobs x 10 min time limit = 1.17 job-hours (the profile requests no GPU)" in output
    assert "no smoke-profile records" in output

    job = next(job for job in plan_sweep(parse("sweep", *arguments)).jobs if job.kind == "finetune")
    write_finished_record(results, job)  # make_record: fine-tuning 60 * 0.25 + 5 s, pretraining 120 s
    cli.sweep_command(parse("sweep", *arguments))
    output = capsys.readouterr().out
    assert "fine-tuning jobs: 5 to submit, 1 skipped" in output
    assert (
        "measured (training time only, no start-up or queueing): pretraining 120 process-s mean over 1 "
        "records, fine-tuning 20 process-s mean over 1 records -> about 0.06 job-hours at 1 process per job" in output
    )
    assert not (results / "sweeps").exists()  # a dry run writes nothing


def test_dry_run_estimate_counts_the_processes_that_made_each_record(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    arguments = (
        "--profile",
        "smoke",
        "--results",
        str(results),
        "--methods",
        "rgmim",
        "--fractions",
        "0.25,0.5",
        "--cluster",
        str(LOCAL_PROFILE),
        "--dry-run",
    )
    job = next(job for job in plan_sweep(parse("sweep", *arguments)).jobs if job.kind == "finetune")
    write_finished_record(results, job, processes=2)
    cli.sweep_command(parse("sweep", *arguments))
    # two ranks for 120 s and 20 s are 240 and 40 process-s: one pretraining + one fine-tuning left = 280 s
    assert (
        "pretraining 240 process-s mean over 1 records, fine-tuning 40 process-s mean over 1 records -> "
        "about 0.08 job-hours at 1 process per job" in capsys.readouterr().out
    )


def test_dry_run_of_table2_through_the_cli(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "benchmark",
        "sweep",
        "--grid",
        "table2",
        "--seeds",
        "0,1",
        "--dry-run",
        "--profile",
        "smoke",
        "--results",
        str(tmp_path / "results"),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "pretraining jobs: 12 to submit, 0 skipped" in completed.stdout
    assert "fine-tuning jobs: 100 to submit, 0 skipped" in completed.stdout
    assert "warning: transfer (vit) needs local ImageNet weights: pass --weights-vit PATH" in completed.stdout


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (["--methods", "rgmim,nosuch"], ConfigError, "--methods 'rgmim,nosuch': unknown method 'nosuch'; expected all"),
        (["--methods", "scratch:vgg"], ConfigError, "--methods 'scratch:vgg': scratch runs on vit or resnet, not 'vgg'"),
        (["--methods", "byol:vit"], ConfigError, "--methods 'byol:vit': byol runs on resnet, not 'vit'"),
        (
            ["--methods", "rgmim", "--fractions", "0.5,2"],
            DataError,
            "--fractions: label fraction 2.0: expected a number in (0, 1]",
        ),
        (["--methods", "rgmim", "--fractions", "half"], ConfigError, "--fractions 'half': expected paper or"),
        (["--grid", "table9"], ConfigError, "--grid 'table9': expected one of table2, table3"),
        (["--grid", "table2", "--methods", "mae"], ConfigError, "--grid table2 sets methods"),
        ([], ConfigError, "expected --grid table2|table3, or --methods"),
        (
            ["--methods", "mae", "--mask-ratios", "0.5,1.5"],
            ConfigError,
            "--mask-ratios: mask ratio 1.5: expected a number in (0, 1)",
        ),
        (["--methods", "mae", "--seeds", "0,-1"], ConfigError, "--seeds '0,-1': expected comma-separated non-negative"),
        (["--methods", "mae", "--name", "../x"], ConfigError, "--name '../x': expected letters"),
        (["--methods", "mae", "--set", "pretrain.epoch=2"], ConfigError, "unknown key 'epoch'"),
    ],
)
def test_bad_grid_input_names_the_value(tmp_path: Path, arguments: list[str], error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        plan(tmp_path, *arguments, "--dry-run")
    assert message in str(caught.value)


def test_executor_is_required_unless_dry_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--executor: expected local or slurm"):
        plan(tmp_path, "--methods", "mae")
    with pytest.raises(ConfigError, match="--executor slurm: expected --cluster slurm/NAME.yaml"):
        plan(tmp_path, "--methods", "mae", "--executor", "slurm")


def test_missing_or_invalid_cluster_profile(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match=f"cluster profile {missing}: file not found"):
        plan(tmp_path, "--methods", "mae", "--executor", "slurm", "--cluster", str(missing))
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("partition: debug\ncpus_per_task: four\n")
    with pytest.raises(ConfigError, match="field 'cpus_per_task': expected an integer, got 'four'"):
        plan(tmp_path, "--methods", "mae", "--executor", "slurm", "--cluster", str(invalid))


def test_ranks_that_cannot_split_the_pretraining_batch_are_refused_at_planning(tmp_path: Path) -> None:
    three_tasks = tmp_path / "three.yaml"
    three_tasks.write_text("partition: debug\ntasks_per_node: 3\n")
    with pytest.raises(ConfigError, match=r"tasks_per_node=3 does not divide pretrain.batch_size / accum_steps = 16"):
        plan(tmp_path, "--methods", "mae", "--executor", "slurm", "--cluster", str(three_tasks))
    plan(
        tmp_path, "--methods", "mae", "--executor", "slurm", "--cluster", str(three_tasks), "--set", "pretrain.batch_size=24"
    )  # 24 splits over 3 ranks


def test_missing_weights_file_is_fatal_unless_dry_run(tmp_path: Path) -> None:
    arguments = ("--methods", "cross", "--fractions", "0.5", "--weights-resnet", str(tmp_path / "gone.pth"))
    assert "does not exist" in plan(tmp_path, *arguments, "--dry-run").problems[0]
    with pytest.raises(ConfigError, match="cross \\(resnet\\): resnet.weights: weights file .*gone.pth does not exist"):
        executors.launch(plan(tmp_path, *arguments, "--executor", "local"))


def test_unwritable_results_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # works as root too, unlike permission bits
    sweep = plan_sweep(
        parse(
            "sweep",
            "--profile",
            "smoke",
            "--methods",
            "scratch",
            "--fractions",
            "0.5",
            "--executor",
            "local",
            "--results",
            str(blocker / "results"),
        )
    )
    with pytest.raises(ConfigError, match=f"--results {blocker / 'results'}: cannot write there"):
        executors.launch(sweep)


def test_sbatch_refusing_the_partition_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in SLURM commands, so this runs without a cluster; test_slurm_sweep.py asks the real sbatch."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "sinfo": "echo 'debug* up'",
        "srun": "exit 0",
        "sbatch": "echo 'sbatch: error: invalid partition specified: nosuch' >&2; exit 1",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    profile = tmp_path / "nosuch.yaml"
    profile.write_text("partition: nosuch\n")
    sweep = plan(tmp_path, "--methods", "scratch", "--fractions", "0.5", "--executor", "slurm", "--cluster", str(profile))
    with pytest.raises(ConfigError) as caught:
        executors.launch(sweep)
    message = str(caught.value)
    assert f"cluster profile {profile}: field 'partition'" in message and "'nosuch'" in message
    assert "sbatch: error: invalid partition specified: nosuch" in message


def test_bad_input_exits_2_through_the_cli(tmp_path: Path) -> None:
    for arguments, message in (
        (["sweep", "--methods", "nosuch", "--dry-run"], "error: --methods 'nosuch'"),
        (["status", "--results", str(tmp_path)], "error: --results"),
    ):
        completed = subprocess.run(
            [sys.executable, "-m", "benchmark", *arguments], capture_output=True, text=True, timeout=300, cwd=REPO
        )
        assert completed.returncode == 2, completed.stderr[-2000:]
        assert message in completed.stderr


# ---------------------------------------------------------------------------------------------- local executor, status


@pytest.mark.slow
def test_local_executor_runs_a_tiny_sweep(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arguments = (
        "sweep",
        "--methods",
        "rgmim,scratch",
        "--fractions",
        "0.5",
        "--seeds",
        "0",
        "--profile",
        "smoke",
        "--executor",
        "local",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--results",
        str(tmp_path / "results"),
        "--name",
        "tiny",
    )
    assert cli.sweep_command(parse(*arguments)) == 0
    records = sorted(path.name for path in (tmp_path / "results" / "runs").glob("*.json"))
    assert [name.split("-f")[0] for name in records] == ["rgmim-vit", "scratch-resnet", "scratch-vit"]
    manifest = manifests.read_manifest(tmp_path / "results" / "sweeps" / "tiny.json")
    assert [job["state"] for job in manifest["jobs"]] == ["done"] * 4
    assert manifest["jobs"][0]["kind"] == "pretrain"  # dependency order

    assert status_module.status_command(parse("status", "--results", str(tmp_path / "results"))) == 0
    assert "done 4, running 0, pending 0, failed 0" in capsys.readouterr().out

    assert cli.sweep_command(parse(*arguments)) == 0  # finished: nothing runs again
    assert "ran 0 jobs here, 0 failed (4 skipped)" in capsys.readouterr().out


def test_local_executor_records_failures_and_status_shows_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = smoke_weights(tmp_path)["resnet"]
    results = tmp_path / "results"
    sweep = plan(
        tmp_path,
        "--methods",
        "cross",
        "--fractions",
        "0.5",
        "--weights-resnet",
        str(weights),
        "--executor",
        "local",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    weights.unlink()  # after planning: the pretraining job fails on it
    assert executors.launch(sweep) == 1
    capsys.readouterr()
    assert status_module.status_command(parse("status", "--results", str(results))) == 0
    output = capsys.readouterr().out
    assert "done 0, running 0, pending 0, failed 2" in output
    assert f"ConfigError: resnet.weights: weights file {weights} does not exist" in output
    assert "not run: its pretraining job pretrain-cross-resnet-s0 failed" in output


def test_status_needs_an_existing_sweep(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no sweep manifest in"):
        status_module.status_command(parse("status", "--results", str(tmp_path)))
    (tmp_path / "sweeps").mkdir()
    for name in ("a", "b"):
        (tmp_path / "sweeps" / f"{name}.json").write_text("{}")
    os.utime(tmp_path / "sweeps" / "a.json", ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))
    assert status_module.find_manifest(tmp_path, None) == tmp_path / "sweeps" / "a.json"  # the latest, not the first
    with pytest.raises(ConfigError, match="--name 'c': no such sweep"):
        status_module.status_command(parse("status", "--results", str(tmp_path), "--name", "c"))


def test_traceback_tail_keeps_the_end_of_the_last_traceback() -> None:
    log = "\n".join(
        [
            "submitit INFO start",
            "Traceback (most recent call last):",
            '  File "a.py", line 1',
            "ValueError: first",
            "Traceback (most recent call last):",
            '  File "b.py", line 2, in f',
            "    raise KeyError",
            "KeyError: 'x'",
            "srun: error: vm: task 0: Exited with exit code 1",
        ]
    )
    assert status_module.traceback_tail(log) == [
        "Traceback (most recent call last):",
        '  File "b.py", line 2, in f',
        "    raise KeyError",
        "KeyError: 'x'",
    ]
    assert status_module.traceback_tail(log, count=2) == ["    raise KeyError", "KeyError: 'x'"]
