"""Damaged cache files and records recover, and two identical runs fine-tune once (#14 §3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.engine import finetune as finetune_module
from benchmark.runner import configure, execute

REPO = Path(__file__).resolve().parents[1]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def test_a_truncated_cached_encoder_is_set_aside_and_trained_again(tmp_path, capsys):
    config, _ = configure("smoke", [f"data.cache_dir={tmp_path / 'cache'}", "probe.enabled=false"])
    first = execute("byol", 0.5, config, tmp_path / "results", progress=False)
    encoder = tmp_path / "cache" / "pretrained" / first["pretrain"]["cache_key"] / "encoder.pt"
    truncate(encoder)
    capsys.readouterr()
    again = execute("byol", 1.0, config, tmp_path / "results", progress=False)  # another fraction, same encoder
    assert f"warning: {encoder} cannot be read" in capsys.readouterr().err
    assert again["pretrain"]["reused"] is False and encoder.stat().st_size > 1000
    assert len(list(encoder.parent.glob("encoder.pt.damaged-*"))) == 1


def test_a_truncated_fine_tuning_checkpoint_restarts_the_run(tmp_path, capsys, monkeypatch):
    config, _ = configure("smoke", [f"data.cache_dir={tmp_path / 'cache'}", "probe.enabled=false"])
    real = finetune_module.save_training_state
    written = []

    def save_then_fail(path, *args):  # a preemption right after the first checkpoint
        real(path, *args)
        written.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune_module, "save_training_state", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        execute("scratch", 0.5, config, tmp_path / "results", arch="resnet", progress=False)
    monkeypatch.undo()
    truncate(written[0])
    capsys.readouterr()
    record = execute("scratch", 0.5, config, tmp_path / "results", arch="resnet", progress=False)
    assert f"warning: {written[0]} cannot be read" in capsys.readouterr().err
    assert record["finetune"]["resumed_from_epoch"] is None and len(record["history"]) == 1


def run_cli(tmp_path: Path, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "benchmark",
        "run",
        "--method",
        "scratch",
        "--arch",
        "resnet",
        "--fraction",
        "0.5",
        "--profile",
        "smoke",
        "--no-progress",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--results",
        str(tmp_path / "results"),
        *extra,
    ]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_corrupt_record_is_one_error_line_and_force_replaces_it(tmp_path):
    first = run_cli(tmp_path)
    assert first.wait(timeout=300) == 0
    [record] = (tmp_path / "results" / "runs").glob("*.json")
    record.write_text(record.read_text()[:200])
    broken = run_cli(tmp_path)
    _, stderr = broken.communicate(timeout=300)
    assert broken.returncode == 2 and "Traceback" not in stderr
    assert f"error: {record}: not valid JSON" in stderr and "`--force` reruns the run and replaces it" in stderr
    forced = run_cli(tmp_path, "--force")
    assert forced.wait(timeout=300) == 0 and record.read_text().rstrip().endswith("}")


@pytest.mark.slow
def test_two_identical_runs_fine_tune_once(tmp_path):
    prepared = run_cli(tmp_path, "--set", "finetune.epochs=1", "--seed", "5")  # builds the cache first
    assert prepared.wait(timeout=300) == 0
    together = [run_cli(tmp_path, "--set", "finetune.epochs=3") for _ in range(2)]
    outputs = [process.communicate(timeout=300)[0] for process in together]
    assert [process.returncode for process in together] == [0, 0]
    assert sum("finished record exists, reusing it" in output for output in outputs) == 1
