"""Small things a careful user meets at the command line: each fails before this project fixed it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import build_parser
from benchmark.config import RegionConfig
from benchmark.data.prepare import identify
from benchmark.engine.runtime import code_version
from benchmark.errors import ConfigError
from benchmark.report.formatting import count
from benchmark.runner import configure
from conftest import QU_EX_SAMPLE

REPO = Path(__file__).resolve().parents[1]


def cli(*arguments: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *arguments], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_records_written_into_results_do_not_make_the_code_dirty(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "README.md").write_text("generated\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    (tmp_path / "results" / "README.md").write_text("regenerated\n")
    assert code_version(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert code_version(tmp_path)["dirty"] is True


def test_a_negative_seed_is_refused_like_the_sweep_refuses_it():
    with pytest.raises(ConfigError, match="config seed: expected a non-negative integer"):
        configure("smoke", ["seed=-1"])


def test_sweep_does_not_offer_the_seed_it_refuses_and_defaults_are_shown():
    args = build_parser().parse_args(["sweep", "--seed", "1", "--grid", "table2"])
    assert args.seeds == "1" and not hasattr(args, "seed")  # argparse reads --seed as --seeds: one seed
    assert "--seeds" in cli("sweep", "--help").stdout and "--seed " not in cli("sweep", "--help").stdout
    assert "fail (default)" in cli("run", "--help").stdout


def test_report_on_a_missing_results_folder_fails_and_creates_nothing(tmp_path):
    typo = tmp_path / "resluts"
    result = cli("report", "--results", str(typo))
    assert result.returncode == 2 and "--results" in result.stderr and "no such folder" in result.stderr
    assert not typo.exists()


def test_preview_writes_exactly_the_file_it_was_given(tmp_path):
    out = tmp_path / "preview"  # no .png suffix
    result = cli(
        "data", "preview", "--profile", "smoke", "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--per-class", "1"
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "preview.png").exists()


def test_an_official_split_is_named_official_not_by_a_test_fraction(tmp_path):
    config, _ = configure("smoke", [f"data.root={QU_EX_SAMPLE}", f"data.cache_dir={tmp_path / 'cache'}"])
    found = identify(config.data, RegionConfig())
    assert found.split_file.name.endswith("-official.csv") and "test0.2" not in found.split_file.name


def test_counts_agree_with_their_nouns():
    assert (count(1, "row"), count(2, "row"), count(1, "pretraining")) == ("1 row", "2 rows", "1 pretraining")


def test_report_out_writes_elsewhere_and_leaves_the_results_folder_alone(tmp_path):
    from test_records import make_record

    from benchmark.records.store import write_record

    record = make_record("mae", "vit", 0.05, 0)
    write_record(tmp_path / "results" / "runs" / f"{record['run_id']}.json", record)
    result = cli("report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "README.md").is_file() and (tmp_path / "site" / "runs.csv").is_file()
    assert sorted(path.name for path in (tmp_path / "results").iterdir()) == ["runs"]


def test_ctrl_c_says_how_to_resume(tmp_path):
    import signal
    import time

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
        "pretrain.max_steps=0",
        "--set",
        "pretrain.epochs=50",
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a suite started in the background of a non-interactive shell ignores SIGINT, and so would the child
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "cache").glob("pretrained/*/checkpoint.pt")):
        time.sleep(0.2)  # interrupt once the first epoch's checkpoint exists
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "interrupted; run the same command again to resume after the last completed epoch" in stderr


def test_cached_encoders_and_checkpoints_follow_the_umask_like_records(tmp_path):
    import os

    import torch

    from benchmark.engine.checkpoint import save_torch
    from benchmark.files import atomic_write_text

    previous = os.umask(0o022)
    try:
        save_torch({"w": torch.zeros(1)}, tmp_path / "encoder.pt")
        atomic_write_text(tmp_path / "record.json", "{}")
    finally:
        os.umask(previous)
    modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()}
    assert modes == {"encoder.pt": 0o644, "record.json": 0o644}  # readable by a group sharing the cache


def test_a_folder_dataset_inside_an_archive_folder_is_found_like_the_known_layouts(tmp_path, data_config):
    from benchmark.data.layouts import open_source

    for name in ("A", "B"):
        images = sorted((QU_EX_SAMPLE / "Val" / "Normal" / "images").iterdir())[:3]
        (tmp_path / "download" / "MyData" / name / "images").mkdir(parents=True)
        for image in images:
            (tmp_path / "download" / "MyData" / name / "images" / image.name).write_bytes(image.read_bytes())
    source = open_source(data_config(tmp_path / "download", dataset="folder", missing_masks="allow"))
    assert source.classes == ("A", "B") and source.root == tmp_path / "download" / "MyData"
    assert source.items[0].key.startswith("A/images/")  # keys relative to the dataset folder: the same fingerprint
