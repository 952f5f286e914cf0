"""Planning a sweep: one pretraining job per encoder, one fine-tuning job per missing run record."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path
from typing import Any, Optional


from benchmark.sweep.cluster import ClusterProfile, load_cluster_profile
from benchmark.config import Config, resolve_profile
from benchmark.errors import ConfigError
from benchmark.sweep.grid import Grid, check_sweep_name, grid_from_args, parse_seeds
from benchmark.sweep.manifest import PlannedJob, Sweep, manifest_path, read_manifest
from benchmark.sweep.slurm_state import IN_FLIGHT_STATES, slurm_states


def resolve_config(options: dict[str, Any]) -> Config:
    """The CLI's own config resolution (profile, shortcut options, --set) from stored option values."""
    from benchmark.runner import config_from_options

    return config_from_options(options)


def job_options(
    base: dict[str, Any], method_name: str, arch: str, seed: int, mask_ratio: Optional[float], weights: dict[str, Optional[str]]
) -> dict[str, Any]:
    """``base`` plus what varies per job, as --set strings applied last (so they win over the user's)."""
    from methods import METHODS

    method = METHODS[method_name]
    extra = [f"seed={seed}"]
    if method.uses_mask_ratio:
        extra.append(f"{method_name}.mask_ratio={mask_ratio!r}")
    # like `run --weights`: only the file this run loads, so run ids match runs made with `run`
    if method.init == "imagenet" and weights[arch] is not None:
        extra.append(f"{arch}.weights={weights[arch]}")
    return {**base, "overrides": [*base["overrides"], *extra]}


def pretrain_name(method: str, arch: str, seed: int, mask_ratio: Optional[float]) -> str:
    return f"pretrain-{method}-{arch}-s{seed}" + ("" if mask_ratio is None else f"-m{mask_ratio:g}")


def weights_problems(method: str, arch: str, config: Config) -> list[str]:
    """Why a run that starts from ImageNet weights would fail on its weights file (empty if it would not)."""
    from methods.backbones import check_weights_file

    if config.family(arch).weights is None:
        return [f"{method} ({arch}) needs local ImageNet weights: pass --weights-{arch} PATH"]
    try:
        check_weights_file(config, arch)
    except ConfigError as error:
        return [f"{method} ({arch}): {error}"]
    return []


def plan_jobs(
    grid: Grid, seeds: tuple[int, ...], base: dict[str, Any], weights: dict[str, Optional[str]], results: Path
) -> tuple[list[PlannedJob], list[str]]:
    """Pretraining jobs (one per encoder) then fine-tuning jobs (one per run), and the problems found."""
    from benchmark.data.prepare import identify
    from benchmark.engine.identity import run_id
    from benchmark.records.store import record_path
    from methods import METHODS

    pretraining: dict[str, PlannedJob] = {}
    finetuning: dict[str, PlannedJob] = {}
    problems: list[str] = []
    # config_from_args says which profile it resolved on every call: once (by the caller) is enough here
    with contextlib.redirect_stderr(io.StringIO()):
        base_config = resolve_config(base)
        found = {}  # the dataset of each distinct (data, region) section: fingerprinted once
        for seed in seeds:
            for method_name, arch in grid.rows:
                method = METHODS[method_name]
                ratios = (
                    (grid.mask_ratios or (base_config.method(method_name).mask_ratio,)) if method.uses_mask_ratio else (None,)
                )
                for ratio in ratios:
                    options = job_options(base, method_name, arch, seed, ratio, weights)
                    config = resolve_config(options)
                    where = repr((config.data, config.region))
                    if where not in found:
                        found[where] = identify(config.data, config.region)
                    if method.init == "imagenet":
                        problems.extend(weights_problems(method_name, arch, config))
                    pretrain = None
                    if method.build_pretrainer is not None:
                        name = pretrain_name(method_name, arch, seed, ratio)
                        pretrain = pretraining.setdefault(
                            name, PlannedJob("pretrain", name, method_name, arch, seed, ratio, None, options, [])
                        )
                    for fraction in grid.fractions:
                        identifier = run_id(method, arch, fraction, config, found[where])
                        if identifier in finetuning:
                            continue
                        done = record_path(results, identifier).exists()
                        finetuning[identifier] = PlannedJob(
                            "finetune",
                            identifier,
                            method_name,
                            arch,
                            seed,
                            ratio,
                            fraction,
                            options,
                            [identifier],
                            after=pretrain.name if pretrain else None,
                            skip_reason="record exists" if done else None,
                        )
                        if pretrain is not None:
                            pretrain.run_ids.append(identifier)
    return [*pretraining.values(), *finetuning.values()], list(dict.fromkeys(problems))


def carry_over(jobs: list[PlannedJob], previous: list[dict[str, Any]], states: dict[str, str]) -> None:
    """Take over job ids from the sweep's earlier submission; a job still queued or running is not submitted
    again, and a pretraining job that completed has its encoder in the cache already."""
    earlier = {(entry["kind"], entry["name"]): entry for entry in previous if entry.get("job_id")}
    for job in jobs:
        entry = earlier.get((job.kind, job.name))
        if entry is None:
            continue
        state = states.get(entry["job_id"], "UNKNOWN")
        if job.skip_reason is None and state in IN_FLIGHT_STATES:
            job.skip_reason, job.in_flight = f"in flight as job {entry['job_id']} ({state})", True
        elif job.skip_reason is None and job.kind == "pretrain" and state == "COMPLETED":
            job.skip_reason = f"completed as job {entry['job_id']}"
        if job.skip_reason is not None:
            job.job_id, job.dependency, job.stdout, job.stderr = (
                entry["job_id"],
                entry.get("dependency"),
                entry.get("stdout"),
                entry.get("stderr"),
            )


def settle_pretraining(jobs: list[PlannedJob]) -> None:
    """A pretraining job is needed only while one of its fine-tuning runs is still to be submitted."""
    to_submit = {job.after for job in jobs if job.kind == "finetune" and job.skip_reason is None}
    for job in jobs:
        if job.kind == "pretrain" and job.skip_reason is None and job.name not in to_submit:
            job.skip_reason = "every run it serves has a record or is in flight"


def check_splits_over_ranks(config: Config, cluster: ClusterProfile, cluster_path: Path) -> None:
    """Every rank of a multi-task job takes an equal share of each pretraining batch: refuse here, not on a node."""
    micro_batch = config.pretrain.batch_size // config.pretrain.accum_steps
    if micro_batch % cluster.tasks_per_node:
        raise ConfigError(
            f"cluster profile {cluster_path}: tasks_per_node={cluster.tasks_per_node} does not divide "
            f"pretrain.batch_size / accum_steps = {micro_batch}: pick a divisor or --set "
            f"pretrain.batch_size to a multiple of it"
        )


def plan_sweep(args: argparse.Namespace) -> Sweep:
    """Everything `sweep` decides before it submits or runs anything; bad input raises ConfigError/DataError."""
    if args.executor is None and not args.dry_run:
        raise ConfigError("--executor: expected local or slurm (or --dry-run to print the plan only)")
    if args.executor == "slurm" and args.cluster is None:
        raise ConfigError("--executor slurm: expected --cluster slurm/NAME.yaml, a cluster profile (slurm/README.md)")
    name = check_sweep_name(args.name or args.grid or "sweep")
    grid = grid_from_args(args)
    seeds = parse_seeds(args.seeds)
    cluster_path = Path(args.cluster) if args.cluster is not None else None
    cluster = load_cluster_profile(cluster_path) if cluster_path is not None else None
    if args.profile == "auto" and args.executor == "slurm":
        # the jobs run on the cluster's nodes, not on this (login) machine
        profile = "paper" if cluster.gpus_per_node else "cpu"
        why = f"auto: the cluster profile requests {cluster.gpus_per_node} GPUs per job"
    else:
        profile, why = resolve_profile(args.profile)
    print(f"[sweep] profile {profile} ({why})", file=sys.stderr)
    if cluster is not None and cluster.tasks_per_node > 1:
        from benchmark.runner import configure

        check_splits_over_ranks(configure(profile, list(args.overrides))[0], cluster, cluster_path)
    base = {option: getattr(args, option) for option in args.config_options}
    base["profile"] = profile
    results = Path(args.results).absolute()  # jobs may run in another directory
    jobs, problems = plan_jobs(grid, seeds, base, {"vit": args.weights_vit, "resnet": args.weights_resnet}, results)
    manifest = manifest_path(results, name)
    if args.executor != "local" and manifest.exists():
        previous = read_manifest(manifest)
        if previous["executor"] == "slurm":
            job_ids = [entry["job_id"] for entry in previous["jobs"] if entry.get("job_id")]
            carry_over(jobs, previous["jobs"], slurm_states(job_ids) if job_ids else {})
    settle_pretraining(jobs)
    return Sweep(name, None if args.dry_run else args.executor, results, jobs, cluster, cluster_path, profile, problems)
