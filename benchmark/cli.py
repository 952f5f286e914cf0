"""Command-line entry point: ``python -m benchmark <command>``. Dispatch only; work lives elsewhere."""

from __future__ import annotations

import argparse
import sys

from benchmark.config import Config, ConfigError, build_config
from benchmark.data.source import DataError
from benchmark.engine import TrainingError


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that resolves a config."""
    group = parser.add_argument_group("configuration")
    group.add_argument("--profile", default="auto",
                       help="paper | cpu | smoke | auto (paper on a CUDA GPU, else cpu; default)")
    group.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override any config field, e.g. --set pretrain.epochs=5 (repeatable)")
    group.add_argument("--dataset", default=None,
                       help="force a dataset: phantom | covid-radiography | covid-qu-ex | folder")
    group.add_argument("--data-root", default=None, help="dataset folder (default: the embedded phantom)")
    group.add_argument("--cache-dir", default=None,
                       help="decoded-image cache (default: $RGMIM_CACHE or ~/.cache/rgmim-bench)")
    group.add_argument("--missing-masks", choices=["error", "skip", "allow"], default=None,
                       help="training images without a lung mask: fail, drop them, or use no region")
    group.add_argument("--split-file", default=None,
                       help="split CSV to reuse (must match the dataset) or to create; default: next to the "
                            "cache, keyed by dataset fingerprint, split seed and test fraction")
    group.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    group.add_argument("--mask-source", choices=["gt", "classical", "prior", "sam", "none"], default=None,
                       help="RGMIM's lung region: the dataset's masks (gt, default), an unsupervised segmenter "
                            "(classical), the average lung field (prior), Segment Anything (sam) or none "
                            "(random masking)")
    group.add_argument("--mask-dir", default=None,
                       help="your own lung masks, paired with the images by file name (with --mask-source gt)")
    group.add_argument("--sam-checkpoint", default=None,
                       help="Segment Anything checkpoint file for --mask-source sam (never downloaded)")


# Shortcut options and the config field each one sets; --set overrides are applied after them.
SHORTCUTS = {
    "dataset": "data.dataset", "data_root": "data.root", "cache_dir": "data.cache_dir",
    "missing_masks": "data.missing_masks", "split_file": "data.split_file", "seed": "seed",
    "mask_source": "data.mask_source", "mask_dir": "data.mask_dir", "sam_checkpoint": "data.sam_checkpoint",
    "mask_ratio": "pretrain.mask_ratio",
}


def config_from_args(args: argparse.Namespace) -> Config:
    """Build the resolved config from --profile, the shortcut options and --set (applied last)."""
    # getattr: not every command has every shortcut, and namespaces stored by older sweeps lack new ones
    shortcuts = [f"{key}={getattr(args, option)}" for option, key in SHORTCUTS.items()
                 if getattr(args, option, None) is not None]
    if getattr(args, "weights", None) is not None:
        arch = args.arch or resolve_method(args.method, None)[1]
        shortcuts.append(f"{arch}_weights={args.weights}")
    config, why = build_config(args.profile, shortcuts + list(args.overrides))
    print(f"[benchmark] {why}", file=sys.stderr)
    return config


def resolve_method(name: str, arch: str | None):
    from benchmark.runner import resolve_method as resolve

    return resolve(name, arch)


def run_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.engine import distributed
    from benchmark.runner import execute

    resolve_method(args.method, args.arch)  # name errors before any config work
    config = config_from_args(args)
    try:
        execute(args.method, args.fraction, config, Path(args.results), arch=args.arch, force=args.force,
                progress=not args.no_progress)
    finally:
        distributed.leave()  # under torchrun: leave the process group cleanly
    return 0


def methods_command(args: argparse.Namespace) -> int:
    from methods import METHODS

    print(f"{'name':9} {'archs':11} {'pretraining':12} {'init':9} pretext / reference")
    for name, method in METHODS.items():
        stage = "yes" if method.build_pretrainer else "no"
        print(f"{name:9} {','.join(method.archs):11} {stage:12} {method.init:9} {method.pretext}")
        print(f"{'':44}{method.reference}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from benchmark.bench import add_parser as add_bench_parser
    from benchmark.data import commands as data_commands
    from benchmark.report import add_parser as add_report_parser
    from benchmark.status import add_parser as add_status_parser
    from benchmark.sweep import add_parser as add_sweep_parser

    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="rgmim-bench: RGMIM and the methods it compares against, on chest X-rays.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="pretrain (or reuse), fine-tune on a label fraction, write a record")
    run.add_argument("--method", required=True, help="a registry name (see `python -m benchmark methods`)")
    run.add_argument("--fraction", type=float, required=True, help="label fraction in (0, 1], e.g. 0.05")
    run.add_argument("--arch", choices=["vit", "resnet"], default=None,
                     help="encoder for transfer/scratch (default: the method's first arch)")
    run.add_argument("--mask-ratio", type=float, default=None, help="MIM mask ratio sigma (T1: 0.75)")
    run.add_argument("--weights", default=None, help="local ImageNet weights file (transfer, cross)")
    run.add_argument("--results", default="results", help="results folder; the record goes to RESULTS/runs/")
    run.add_argument("--force", action="store_true", help="rerun even when a finished record exists")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_options(run)
    run.set_defaults(handler=run_command)

    listing = commands.add_parser("methods", help="list the registry: backbone, pretext task, reference")
    listing.set_defaults(handler=methods_command)

    data_commands.add_parser(commands, add_config_options)
    add_report_parser(commands, add_config_options)
    add_sweep_parser(commands, add_config_options)
    add_status_parser(commands, add_config_options)
    add_bench_parser(commands, add_config_options)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, DataError, TrainingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
