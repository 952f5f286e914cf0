"""Command-line entry point: ``python -m benchmark <command>``. Every command's arguments are defined here;
the work lives in the modules the handlers call. Modules that pull in torch are imported by the handler
that needs them, so that ``report``, ``status`` and ``--help`` start fast and without torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.config import MASK_SOURCES, Config
from benchmark.errors import ConfigError, DataError, RecordError, TrainingError


def add_config_options(parser: argparse.ArgumentParser, seed: bool = True) -> None:
    """Options shared by every command that resolves a config (``runner.SHORTCUTS`` maps them to fields);
    ``seed=False`` for ``sweep``, whose seeds are ``--seeds``."""
    group = parser.add_argument_group("configuration")
    group.add_argument("--profile", default="auto", help="paper | cpu | smoke | auto (paper on a CUDA GPU, else cpu; default)")
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config field, e.g. --set pretrain.epochs=5 or --set byol.ema_base=0.996 (repeatable)",
    )
    group.add_argument("--dataset", default=None, help="force a dataset: phantom | covid-radiography | covid-qu-ex | folder")
    group.add_argument("--data-root", default=None, help="dataset folder (default: the embedded phantom)")
    group.add_argument("--cache-dir", default=None, help="decoded-image cache (default: $RGMIM_CACHE or ~/.cache/rgmim-bench)")
    group.add_argument(
        "--missing-masks",
        choices=["error", "skip", "allow"],
        default=None,
        help="training images without a lung mask: fail (default), drop them, or use no region",
    )
    group.add_argument(
        "--split-file",
        default=None,
        help="split CSV to reuse (must match the dataset) or to create; default: next to the "
        "cache, keyed by dataset fingerprint, split seed and test fraction",
    )
    if seed:
        group.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    group.add_argument(
        "--mask-source",
        choices=MASK_SOURCES,
        default=None,
        help="RGMIM's lung region: the dataset's masks (gt, default), an unsupervised segmenter "
        "(classical), the average lung field (prior), Segment Anything (sam) or none "
        "(random masking)",
    )
    group.add_argument(
        "--mask-dir", default=None, help="your own lung masks, paired with the images by file name (with --mask-source gt)"
    )
    group.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="also write per-epoch scalars for TensorBoard under DIR (optional extra: pip install -e '.[tensorboard]')",
    )
    group.add_argument(
        "--sam-checkpoint", default=None, help="Segment Anything checkpoint file for --mask-source sam (never downloaded)"
    )


def config_from_args(args: argparse.Namespace) -> Config:
    from benchmark.runner import config_from_options

    return config_from_options(vars(args))


# ---------------------------------------------------------------------------------------------- handlers


def run_command(args: argparse.Namespace) -> int:
    from benchmark import distributed
    from benchmark.runner import execute, resolve_method

    resolve_method(args.method, args.arch)  # name errors before any config work
    config = config_from_args(args)
    try:
        execute(
            args.method,
            args.fraction,
            config,
            Path(args.results),
            arch=args.arch,
            force=args.force,
            progress=not args.no_progress,
        )
    finally:
        distributed.leave()  # under torchrun: leave the process group cleanly
    return 0


def probe_command(args: argparse.Namespace) -> int:
    from benchmark.files import atomic_write_json, ensure_writable
    from benchmark.runner import probe_only, probe_table, resolve_method
    from benchmark.sweep.grid import parse_fractions

    resolve_method(args.method, args.arch)
    fractions = parse_fractions(args.fractions)
    if args.json is not None:
        ensure_writable(args.json.parent, "--json")  # now, not after pretraining
    summary = probe_only(args.method, fractions, config_from_args(args), arch=args.arch, progress=not args.no_progress)
    print(probe_table(summary), flush=True)
    if args.json is not None:
        atomic_write_json(args.json, summary)
        print(f"[probe] wrote {args.json}", flush=True)
    return 0


def methods_command(args: argparse.Namespace) -> int:
    from methods import METHODS

    print(f"{'name':9} {'archs':11} {'pretraining':12} {'init':9} pretext / reference")
    for name, method in METHODS.items():
        stage = "yes" if method.build_pretrainer else "no"
        print(f"{name:9} {','.join(method.archs):11} {stage:12} {method.init:9} {method.pretext}")
        print(f"{'':44}{method.reference}")
    return 0


def data_command(args: argparse.Namespace) -> int:
    from benchmark.data import commands

    handlers = {
        "info": commands.run_info,
        "prepare": commands.run_prepare,
        "preview": commands.run_preview,
        "export": commands.run_export,
    }
    if args.data_command == "masks":  # its summary file for the report names the code that scored the masks
        from benchmark.engine.runtime import code_version

        return commands.run_masks(args, config_from_args(args), code_version())
    return handlers[args.data_command](args, config_from_args(args))


def report_command(args: argparse.Namespace) -> int:
    from benchmark.report import report_command as build

    return build(args)


def sweep_command(args: argparse.Namespace) -> int:
    from benchmark.sweep.estimate import describe_plan
    from benchmark.sweep.executors import launch
    from benchmark.sweep.plan import plan_sweep

    sweep = plan_sweep(args)
    if args.dry_run:
        print(describe_plan(sweep))
        return 0
    return launch(sweep)


def status_command(args: argparse.Namespace) -> int:
    from benchmark.sweep.status import status_command as show

    return show(args)


def bench_command(args: argparse.Namespace) -> int:
    from benchmark.bench import bench_command as measure

    return measure(args, config_from_args(args))


# ---------------------------------------------------------------------------------------------- parsers


def add_encoder_options(parser: argparse.ArgumentParser) -> None:
    """Which encoder a command starts from: the method, its encoder family, mask ratio and weights file."""
    parser.add_argument("--method", required=True, help="a registry name (see `python -m benchmark methods`)")
    parser.add_argument(
        "--arch",
        choices=["vit", "resnet"],
        default=None,
        help="encoder for transfer/scratch (default: the method's first arch)",
    )
    parser.add_argument("--mask-ratio", type=float, default=None, help="MIM mask ratio sigma (T1: 0.75): METHOD.mask_ratio")
    parser.add_argument("--weights", default=None, help="local ImageNet weights file (transfer, cross)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_run_parser(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="pretrain (or reuse), fine-tune on a label fraction, write a record")
    add_encoder_options(run)
    run.add_argument("--fraction", type=float, required=True, help="label fraction in (0, 1], e.g. 0.05")
    run.add_argument("--results", default="results", help="results folder; the record goes to RESULTS/runs/")
    run.add_argument("--force", action="store_true", help="rerun even when a finished record exists")
    add_config_options(run)
    run.set_defaults(handler=run_command)


def add_probe_parser(commands: argparse._SubParsersAction) -> None:
    probe = commands.add_parser(
        "probe",
        help="kNN and linear probe of a method's frozen starting encoder at every label fraction, no fine-tuning",
        description="Pretrain (or reuse the cached encoder that runs use), extract its frozen features once and "
        "score the weighted kNN and the linear probe at each label fraction on the test set. Prints a table; "
        "writes no run record (a run's record holds the probes of its own fraction).",
    )
    add_encoder_options(probe)
    probe.add_argument("--fractions", default="paper", help="paper (default: 1, 5, 10, 50, 100 %%) or comma-separated")
    probe.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the results as JSON to FILE")
    add_config_options(probe)
    probe.set_defaults(handler=probe_command)


def add_data_parser(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser(
        "data",
        help="inspect, prepare, preview or export a dataset",
        description="Inspect, prepare, preview or export the dataset of a config.",
    )
    subcommands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    specs = {
        "info": "classes, split and label-fraction sizes, mask coverage",
        "prepare": "build the decoded-image cache and the split file ahead of time",
        "preview": "PNG grid of images per class with lung outline and patch grid",
        "export": "write the prepared dataset as PNGs in the folder layout, with split.csv",
        "masks": "compute (or reuse) the lung masks of a source; score them against the dataset's own",
    }
    for name, summary in specs.items():
        command = subcommands.add_parser(name, help=summary, description=summary)
        add_config_options(command)
        if name in ("preview", "export"):
            command.add_argument(
                "--out", required=True, type=Path, help="PNG file to write" if name == "preview" else "empty or new folder"
            )
        if name in ("preview", "masks"):
            command.add_argument("--per-class", type=int, default=4, help="images per class (default 4)")
        if name == "masks":
            command.add_argument(
                "--evaluate",
                action="store_true",
                help="pixel Dice and IoU and patch-level IoU against the dataset's own masks, "
                "per class, with the worst five images",
            )
            command.add_argument(
                "--per-image",
                type=Path,
                default=None,
                metavar="FILE.csv",
                help="with --evaluate: write every image's scores to this CSV file",
            )
            command.add_argument(
                "--results",
                type=Path,
                default=None,
                metavar="DIR",
                help="with --evaluate: also write the summary to DIR/mask-quality/ for `report` (e.g. results)",
            )
            command.add_argument(
                "--preview",
                type=Path,
                default=None,
                metavar="FILE.png",
                help="PNG grid per class: the dataset's outline (green) against the source's (red)",
            )
        command.set_defaults(handler=data_command)


def add_report_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="write <results>/README.md, figures and runs.csv from the run records",
        description="Build the results README (Tables 2 and 3 with the paper's values, paired RGMIM − MAE "
        "differences, per-class metrics, cost, protocol), its figures and runs.csv from "
        "<results>/runs/*.json. Unreadable records are skipped with a warning.",
    )
    parser.add_argument(
        "--results", type=Path, default=Path("results"), metavar="DIR", help="results folder holding runs/ (default: results)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="where README.md, plots/ and runs.csv go (default: --results)"
    )
    parser.set_defaults(handler=report_command)


def add_sweep_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sweep",
        help="plan a grid of runs and submit it to SLURM (or run it here)",
        description="Plan a grid of runs (one pretraining job per encoder, one fine-tuning job per run), skip "
        "runs that have a record, and submit the rest to SLURM with dependencies, or run them here. "
        "Writes <results>/sweeps/<name>.json for `status`.",
    )
    grid = parser.add_argument_group("grid")
    grid.add_argument(
        "--grid",
        default=None,
        help="table2 (ten rows x five fractions) or table3 (RGMIM and MAE x six mask ratios at fraction 1.0)",
    )
    grid.add_argument(
        "--methods",
        default=None,
        help="all or a comma-separated list; transfer and scratch run on both encoders, scratch:vit on one",
    )
    grid.add_argument("--fractions", default=None, help="paper (default) or comma-separated label fractions")
    grid.add_argument(
        "--mask-ratios",
        default=None,
        help="comma-separated mask ratios for RGMIM/MAE (default: each method's configured mask_ratio)",
    )
    grid.add_argument("--seeds", default="0", help="comma-separated run seeds (default 0)")
    grid.add_argument("--weights-vit", default=None, metavar="PATH", help="local ImageNet ViT file (transfer)")
    grid.add_argument("--weights-resnet", default=None, metavar="PATH", help="local ImageNet ResNet file (transfer, cross)")
    where = parser.add_argument_group("execution")
    where.add_argument(
        "--executor",
        choices=["local", "slurm"],
        default=None,
        help="slurm: submit through submitit; local: run here, pretraining first",
    )
    where.add_argument(
        "--cluster",
        default=None,
        metavar="slurm/NAME.yaml",
        help="cluster profile (required with --executor slurm; gives --dry-run its time limit)",
    )
    where.add_argument("--results", default="results", help="results folder (records in RESULTS/runs/)")
    where.add_argument("--name", default=None, help="sweep name (default: the grid's, else 'sweep')")
    where.add_argument("--dry-run", action="store_true", help="print the plan and a cost estimate, submit nothing")
    add_config_options(parser, seed=False)
    probe = argparse.ArgumentParser(add_help=False)
    add_config_options(probe, seed=False)
    # the names of the config options, so that jobs can rerun the config resolution from their values
    parser.set_defaults(handler=sweep_command, config_options=tuple(vars(probe.parse_args([]))))


def add_status_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "status",
        help="a sweep's progress: done, running, pending and failed jobs",
        description="Show a sweep's jobs (from <results>/sweeps/<name>.json), their state from the run records "
        "and SLURM's accounting, and the log and traceback of each failed job.",
    )
    parser.add_argument("--results", default="results", help="results folder of the sweep (default: results)")
    parser.add_argument("--name", default=None, help="sweep name (default: the only sweep in the folder)")
    parser.set_defaults(handler=status_command)


def add_bench_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench",
        help="images/s, data share, memory and FLOP efficiency; --compare-reference for a ratio",
        description="How fast pretraining and fine-tuning run here, and against a reference pipeline.",
    )
    bench.add_argument("--method", default="rgmim", help="a registry name (default rgmim)")
    bench.add_argument("--arch", choices=["vit", "resnet"], default=None, help="encoder for transfer/scratch")
    bench.add_argument("--steps", type=int, default=20, help="timed optimizer steps per stage (default 20)")
    bench.add_argument("--warmup", type=int, default=3, help="untimed steps before each timed block (default 3)")
    bench.add_argument(
        "--compare-reference",
        action="store_true",
        help="also time lightly's MAE example pipeline (PNG files, PIL, DataLoader, fp32), "
        "interleaved, and print our speed-up over it",
    )
    bench.add_argument(
        "--breakdown",
        type=int,
        default=0,
        metavar="N",
        help="profile N more steps of each of our stages: share of the step per op class (matmul, norm, ...)",
    )
    bench.add_argument(
        "--grid",
        default=None,
        metavar="table2",
        help="predict the wall time of one seed of Table 2 here from measured steps of every row (ignores --method)",
    )
    bench.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write the figures as JSON to FILE ('-': to stdout)"
    )
    add_config_options(bench)
    bench.set_defaults(handler=bench_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="rgmim-bench: RGMIM and the methods it compares against, on chest X-rays.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_parser(commands)
    add_probe_parser(commands)
    listing = commands.add_parser("methods", help="list the registry: backbone, pretext task, reference")
    listing.set_defaults(handler=methods_command)
    for add in (add_data_parser, add_report_parser, add_sweep_parser, add_status_parser, add_bench_parser):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, DataError, TrainingError, RecordError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resume = (
            "; run the same command again to resume after the last completed epoch (checkpoints are kept)"
            if args.command in ("run", "sweep")
            else ""
        )
        print(f"interrupted{resume}", file=sys.stderr)
        return 130
