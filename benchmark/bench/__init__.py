"""``python -m benchmark bench``: how fast pretraining and fine-tuning run here, and against a reference.

Per stage: images/s (median of timed optimizer steps after warm-up), data time as a share of step time,
peak memory, FLOPs per image (``torch.utils.flop_counter``) and achieved FLOP/s as a share of this
device's matmul peak, measured by the command itself in the precision the step computes in.
``--compare-reference`` also times a straightforward MAE pretraining (``bench/pipelines.py``) in the
same process, interleaved block by block, and prints our speed as a ratio to it. ``--breakdown N``
profiles N more steps of each of our stages and says where their time goes (``bench/breakdown.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from benchmark.config import Config
from benchmark.errors import ConfigError


SHORT_OF_PEAK = 0.8  # issue goal: our steps at >= 80 % of the measured matmul peak where shapes allow


def run_bench(
    method_name: str,
    arch: str | None,
    config: Config,
    steps: int,
    warmup: int,
    compare_reference: bool,
    breakdown_steps: int = 0,
) -> dict:
    """Time pretraining (when the method has it; with the reference interleaved if asked) and fine-tuning;
    with ``breakdown_steps``, profile that many more steps of each of our stages by op class."""
    import torch

    from benchmark.bench.breakdown import profile_breakdown

    from benchmark.data.prepare import prepare
    from benchmark.engine.fastpaths import onednn_linear_applies
    from benchmark.engine.runtime import hardware, resolve_device
    from benchmark.bench.pipelines import (
        OurFinetuning,
        OurPretraining,
        Pipeline,
        ReferencePretraining,
        compute_dtype,
        matmul_peak,
        reset_peak_memory,
        sdpa_in_use,
        stage_report,
        time_interleaved,
    )
    from benchmark.runner import resolve_method

    method, arch = resolve_method(method_name, arch)
    if compare_reference and not method.uses_mask_ratio:
        raise ConfigError(
            f"--compare-reference: the reference is MAE pretraining; use --method mae or rgmim, not {method_name}"
        )
    device = resolve_device(config)
    data = prepare(config.data, config.region, progress=False)
    dtype = compute_dtype(device, config)
    peak = matmul_peak(device, dtype)
    report = {
        "method": method.name,
        "arch": arch,
        "profile": config.profile,
        "device": hardware(device),
        "compute_dtype": str(dtype).replace("torch.", ""),
        "cpu_linear": None if device.type != "cpu" else "onednn" if onednn_linear_applies(device, config) else "default",
        "matmul_peak_flop_per_s": peak,
        "steps": steps,
        "warmup": warmup,
        "load_average": os.getloadavg(),
        "stages": {},
    }

    if method.build_pretrainer is not None:
        reset_peak_memory(device)
        pipelines: list[Pipeline] = [OurPretraining(method, config, data, device)]
        if compare_reference:
            pipelines.append(ReferencePretraining(method, config, data, device))
        times = time_interleaved(pipelines, steps, warmup)
        report["stages"]["pretrain"] = stage_report(pipelines[0], times[0], device, peak)
        report["stages"]["pretrain"]["sdpa"] = sdpa_in_use(pipelines[0].model)
        if breakdown_steps:
            report["stages"]["pretrain"]["breakdown"] = profile_breakdown(
                pipelines[0], breakdown_steps, device, report["stages"]["pretrain"]["flops_per_image"], peak
            )
        if compare_reference:  # the reference computes in fp32: its yardstick is the fp32 peak
            fp32_peak = peak if dtype == torch.float32 else matmul_peak(device, torch.float32)
            reference = stage_report(pipelines[1], times[1], device, fp32_peak)
            report["stages"]["reference_pretrain"] = reference
            report["speedup_vs_reference"] = report["stages"]["pretrain"]["images_per_s"] / reference["images_per_s"]
        del pipelines

    reset_peak_memory(device)
    finetuning = OurFinetuning(arch, config, data, device)
    report["stages"]["finetune"] = stage_report(finetuning, time_interleaved([finetuning], steps, warmup)[0], device, peak)
    if breakdown_steps:
        report["stages"]["finetune"]["breakdown"] = profile_breakdown(
            finetuning, breakdown_steps, device, report["stages"]["finetune"]["flops_per_image"], peak
        )
    return report


def table(report: dict) -> str:
    device = report["device"]
    lines = [
        f"bench {report['method']} ({report['arch']}), profile {report['profile']}, "
        f"{device['gpu'] or device['cpu']} ({device['cpu_count']} cores, {device['threads']} threads), "
        f"torch {device['torch']}, compute {report['compute_dtype']}"
        + (f" (nn.Linear: {report['cpu_linear']})" if report.get("cpu_linear") else "")
        + ", "
        f"measured matmul peak {report['matmul_peak_flop_per_s'] / 1e9:,.0f} GFLOP/s, "
        f"load average {report['load_average'][0]:.2f}",
        f"{'stage':34} {'batch':>5} {'img/s':>8} {'step ms':>8} {'data %':>7} {'GFLOP/img':>10} "
        f"{'GFLOP/s':>8} {'% peak':>7} {'peak MB':>8}",
    ]
    for stage in report["stages"].values():
        lines.append(
            f"{stage['name']:34} {stage['batch_size']:>5} {stage['images_per_s']:>8.1f} "
            f"{stage['median_step_s'] * 1e3:>8.1f} {stage['data_share'] * 100:>7.1f} "
            f"{stage['flops_per_image'] / 1e9:>10.3f} {stage['achieved_flop_per_s'] / 1e9:>8.1f} "
            f"{stage['share_of_matmul_peak'] * 100:>7.1f} {stage['peak_memory_mb']:>8.0f}"
        )
    if "speedup_vs_reference" in report:
        lines.append(
            f"speed-up of our pretraining over the reference (median img/s, same process, interleaved): "
            f"{report['speedup_vs_reference']:.2f}x"
        )
    profiled = {name: stage for name, stage in report["stages"].items() if "breakdown" in stage}
    if profiled:
        from benchmark.bench.breakdown import breakdown_line

        steps = next(iter(profiled.values()))["breakdown"]["profiled_steps"]
        lines.append(f"where the step goes ({steps} profiled steps per stage, torch.profiler self time by op class):")
        for stage in profiled.values():
            short = stage["share_of_matmul_peak"] < SHORT_OF_PEAK
            verdict = f" [below {SHORT_OF_PEAK * 100:.0f} % of peak]" if short else ""
            lines.append("  " + breakdown_line(stage["name"] + verdict, stage["breakdown"]))
    memory_kinds = {stage["peak_memory_kind"] for stage in report["stages"].values()}
    sdpa = report["stages"].get("pretrain", {}).get("sdpa")
    lines.append(
        f"medians of {report['steps']} timed steps after {report['warmup']} warm-up steps per block; "
        f"peak MB: {', '.join(sorted(memory_kinds))}; SDPA attention: {'n/a' if sdpa is None else sdpa}"
    )
    return "\n".join(lines)


def bench_command(args: argparse.Namespace, config: Config) -> int:
    if args.steps < 1 or args.warmup < 0 or args.breakdown < 0:
        raise ConfigError("--steps must be at least 1, --warmup and --breakdown at least 0")
    if args.grid is not None:
        if args.grid != "table2":
            raise ConfigError(f"--grid {args.grid!r}: expected table2")
        if args.compare_reference or args.breakdown:
            raise ConfigError(
                "--grid table2 predicts a sweep's cost; --compare-reference and --breakdown are for one method's bench"
            )
        from benchmark.bench.grid import grid_table, predict_table2

        report = predict_table2(config, args.steps, args.warmup, progress=lambda line: print(line, file=sys.stderr))
        print(grid_table(report), flush=True)
    else:
        report = run_bench(args.method, args.arch, config, args.steps, args.warmup, args.compare_reference, args.breakdown)
        print(table(report), flush=True)
    if args.json is not None:
        text = json.dumps(report, indent=2, default=str)
        if str(args.json) == "-":
            print(text)
        else:
            args.json.write_text(text + "\n", encoding="utf-8")
            print(f"json: {args.json}", file=sys.stderr)
    return 0
