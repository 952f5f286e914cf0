"""``python -m benchmark bench`` end to end through a real subprocess: the figures exist and are positive.

No timing thresholds: how fast a machine is belongs in the README's Performance section, not in a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.bench.breakdown import CLASS_NAMES, op_class

REPO = Path(__file__).resolve().parents[1]
STAGE_FIELDS = (
    "images_per_s",
    "median_step_s",
    "flops_per_image",
    "achieved_flop_per_s",
    "share_of_matmul_peak",
    "peak_memory_mb",
)


def bench(tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "benchmark",
        "bench",
        "--profile",
        "smoke",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        *options,
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_bench_with_the_reference_reports_every_figure(tmp_path):
    result = bench(tmp_path, "--compare-reference", "--json", str(tmp_path / "bench.json"))
    assert result.returncode == 0, result.stderr
    assert "speed-up of our pretraining over the reference" in result.stdout

    report = json.loads((tmp_path / "bench.json").read_text())
    assert set(report["stages"]) == {"pretrain", "reference_pretrain", "finetune"}
    for name, stage in report["stages"].items():
        for field in STAGE_FIELDS:
            assert stage[field] > 0, (name, field)
        assert 0 <= stage["data_share"] < 1, name
        assert stage["timed_steps"] == 2, name
    assert report["stages"]["pretrain"]["sdpa"] is True  # timm's attention runs F.scaled_dot_product_attention
    assert report["speedup_vs_reference"] > 0 and report["matmul_peak_flop_per_s"] > 0
    # both sides compute the same network: the reference is a fair yardstick
    assert report["stages"]["pretrain"]["flops_per_image"] == report["stages"]["reference_pretrain"]["flops_per_image"]


def test_the_reference_loader_workers_do_not_outlive_its_block(tmp_path):
    # left alive, they prefetch into the next pipeline's timed block and its profiled steps
    import multiprocessing

    import torch

    from benchmark.bench.pipelines import ReferencePretraining, time_interleaved
    from benchmark.data.prepare import prepare
    from benchmark.runner import configure, resolve_method

    config, _ = configure("smoke", [f"data.cache_dir={tmp_path}"])
    method, _ = resolve_method("mae", None)
    reference = ReferencePretraining(method, config, prepare(config.data, config.region, progress=False), torch.device("cpu"))
    reference.start_block()
    reference.step()
    assert multiprocessing.active_children(), "the loader runs in worker processes"
    reference.end_block()
    assert not multiprocessing.active_children()
    time_interleaved([reference], steps=1, warmup=0)
    assert not multiprocessing.active_children()


def test_breakdown_puts_each_op_in_its_class() -> None:
    expected = {
        "aten::addmm": "matmul/conv",
        "aten::convolution_backward": "matmul/conv",
        "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
        "aten::native_layer_norm_backward": "normalization",
        "aten::gelu": "activation",
        "aten::add_": "elementwise",
        "aten::_fused_adamw_": "optimizer",
        "aten::copy_": "copies/layout",
        "aten::max_pool2d_with_indices": "other",
    }
    assert {name: op_class(name) for name in expected} == expected


def test_bench_breakdown_says_where_each_stage_spends_its_step(tmp_path):
    result = bench(tmp_path, "--method", "simsiam", "--breakdown", "2", "--json", str(tmp_path / "bench.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    for name in ("pretrain", "finetune"):  # a ResNet: its convolutions are the matmul class
        breakdown = report["stages"][name]["breakdown"]
        assert set(breakdown["shares"]) == {*CLASS_NAMES, "outside ops"} and breakdown["profiled_steps"] == 2
        assert all(share >= 0 for share in breakdown["shares"].values())
        assert sum(breakdown["shares"].values()) == pytest.approx(1.0, abs=0.02)  # op self times never overlap
        assert breakdown["shares"]["matmul/conv"] > 0 and breakdown["shares"]["normalization"] > 0  # conv + BatchNorm
        assert breakdown["matmul_share_of_peak"] > 0
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("where the step goes (2 profiled steps"))
    assert lines[start + 1].startswith("  ours: simsiam pretraining") and "matmul/conv" in lines[start + 1]
    assert lines[start + 2].startswith("  ours: resnet fine-tuning")


def test_the_reference_is_for_masked_image_modeling_only(tmp_path):
    result = bench(tmp_path, "--method", "simsiam", "--compare-reference")
    assert result.returncode == 2
    assert "use --method mae or rgmim" in result.stderr


def test_the_table2_prediction_times_every_row_and_counts_the_steps_the_engines_plan(tmp_path):
    from benchmark.engine.runtime import finetune_plan
    from benchmark.runner import configure

    result = bench(tmp_path, "--grid", "table2", "--set", "finetune.min_steps=5", "--json", str(tmp_path / "grid.json"))
    assert result.returncode == 0, result.stderr
    assert "whole seed as one local sweep" in result.stdout
    prediction = json.loads((tmp_path / "grid.json").read_text())
    rows = {row["row"]: row for row in prediction["rows"]}
    assert len(rows) == 10  # Transfer and Cross timed from stand-in weights: none exist offline
    assert rows["Cross"]["pretrain_s"] > 0 and rows["Transfer (ResNet)"]["pretrain_s"] == 0
    for row in rows.values():
        assert row["finetune_s"] > 0 and row["evaluation_s"] > 0 and row["probe_s"] > 0
        assert row["compute_s"] == pytest.approx(row["pretrain_s"] + row["finetune_s"] + row["evaluation_s"])
    config, _ = configure("smoke", ["finetune.min_steps=5"])
    planned = [finetune_plan(size, config.finetune, announce=False).total_steps for size in prediction["subset_sizes"]]
    assert rows["MAE"]["finetune_steps"] == rows["BYOL"]["finetune_steps"] == planned
    assert prediction["total_s"] > prediction["compute_s"] > 0


def test_bench_names_an_unknown_grid(tmp_path):
    result = bench(tmp_path, "--grid", "table9")
    assert result.returncode == 2 and "--grid 'table9': expected table2" in result.stderr
