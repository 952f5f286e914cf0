"""Output for log files: off a terminal, one line per epoch and per stage instead of redrawn bars (#14 §4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_run_into_a_log_file_prints_lines_not_bars_and_a_short_config(tmp_path):
    command = [
        sys.executable,
        "-m",
        "benchmark",
        "run",
        "--method",
        "mae",
        "--fraction",
        "0.5",
        "--profile",
        "smoke",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--results",
        str(tmp_path / "results"),
        "--set",
        "finetune.epochs=2",
        "--set",
        "finetune.max_steps=0",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)  # stderr is a pipe
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert "\r" not in log  # no redrawn progress bars
    assert "[data] decoding phantom at 32 px: 120 img ..." in log and "[data] decoding phantom at 32 px: done in" in log
    assert "[pretrain mae] epoch 1/1: loss " in log and ", img per s " in log and "ETA" in log
    finetune_lines = [line for line in log.splitlines() if line.startswith("[finetune mae-vit-f0.5")]
    assert len(finetune_lines) == 2 and "epoch 2/2: loss " in finetune_lines[1] and "accuracy " in finetune_lines[1]
    config_lines = [line for line in log.splitlines() if line.startswith("[run] config: ")]
    assert config_lines == [config_lines[0]] and "finetune.epochs=2" in config_lines[0]
    assert len(log.splitlines()) < 20  # not ~100 lines of JSON
