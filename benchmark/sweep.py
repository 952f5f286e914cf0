"""``python -m benchmark sweep``: plan a grid of runs, then submit it to SLURM or run it on this machine.

A sweep is a set of fine-tuning runs (one run record each) plus one pretraining job per distinct encoder
(method, seed, mask ratio) that those runs load. Fine-tuning jobs start after their pretraining job
succeeded (SLURM ``afterok``); runs that already have a record are skipped, so submitting a half-finished
sweep again submits only what is missing. Every planned job is listed in the manifest
``<results>/sweeps/<name>.json``, which ``python -m benchmark status`` reads; submitit keeps the jobs'
pickles and logs in ``<results>/slurm/<name>/``.

The job callables hold only strings and numbers: on the node they rerun the CLI's config resolution and
resolve the device there. Preempted or timed out, they are requeued and the engines resume from their own
per-epoch checkpoints; a run whose record exists is a no-op, so a requeued job never writes a record twice.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import tempfile
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import submitit
from submitit.core.utils import FailedJobError
from submitit.slurm.slurm import SlurmInfoWatcher

from benchmark.cluster import ClusterProfile, load_cluster_profile, make_executor, slurm_available
from benchmark.config import Config, resolve_profile
from benchmark.errors import ConfigError
from benchmark.errors import DataError
from benchmark.files import atomic_write_text
from benchmark.paper_grid import PAPER_FRACTIONS, PAPER_ROWS, TABLE3_MASK_RATIOS

SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# SLURM states of a job that is still queued or running (a requeued job passes through PREEMPTED/REQUEUED)
IN_FLIGHT_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "PREEMPTED", "READY",
                              "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "RESIZING", "SIGNALING",
                              "STAGE_OUT"})


@dataclass(frozen=True)
class Grid:
    rows: tuple[tuple[str, str], ...]  # (method, arch) pairs
    fractions: tuple[float, ...]
    mask_ratios: Optional[tuple[float, ...]]  # None: each MIM method's configured mask_ratio


def named_grid(name: str) -> Grid:
    """The paper's tables."""
    grids = {
        "table2": Grid(PAPER_ROWS, PAPER_FRACTIONS, None),
        "table3": Grid((("rgmim", "vit"), ("mae", "vit")), (1.0,), TABLE3_MASK_RATIOS),
    }
    if name not in grids:
        raise ConfigError(f"--grid {name!r}: expected one of {', '.join(grids)}")
    return grids[name]


@dataclass
class PlannedJob:
    kind: str  # "pretrain" or "finetune"
    name: str  # SLURM job name: the run id of a fine-tuning job
    method: str
    arch: str
    seed: int
    mask_ratio: Optional[float]  # None for methods without masking
    fraction: Optional[float]  # fine-tuning only
    options: dict[str, Any]  # config options the job resolves its config from (see resolve_config)
    run_ids: list[str]  # the records this job leads to
    after: Optional[str] = None  # name of the pretraining job a fine-tuning job waits for
    skip_reason: Optional[str] = None  # set when the job is not submitted
    in_flight: bool = False  # skipped because an earlier submission of it is still queued or running
    job_id: Optional[str] = None
    dependency: Optional[str] = None  # e.g. afterok:123
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    state: Optional[str] = None  # local executor: pending, running, done or failed
    error: Optional[str] = None  # local executor: why the job failed


@dataclass
class Sweep:
    name: str
    executor: Optional[str]  # "local", "slurm", or None for a dry run
    results: Path
    jobs: list[PlannedJob]
    cluster: Optional[ClusterProfile]
    cluster_path: Optional[Path]
    profile: str  # the config profile every job resolves
    problems: list[str]  # what would make jobs fail (missing weights files); fatal unless dry run

    @property
    def manifest(self) -> Path:
        return manifest_path(self.results, self.name)

    @property
    def submitit_folder(self) -> Path:
        return self.results / "slurm" / self.name


# ---------------------------------------------------------------------------------------------- parsing

def _items(text: str) -> list[str]:
    return list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))  # order kept, no repeats


def _numbers(text: str, option: str, kind: type, expected: str) -> tuple:
    try:
        values = tuple(kind(item) for item in _items(text))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected {expected}") from None
    if not values:
        raise ConfigError(f"{option} {text!r}: expected {expected}")
    return values


def parse_rows(text: str) -> tuple[tuple[str, str], ...]:
    """``all`` or method names; a method that runs on several encoders (transfer, scratch) gets one row each."""
    from methods import METHODS

    names = list(METHODS) if text.strip() == "all" else _items(text)
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise ConfigError(f"--methods {text!r}: unknown method {unknown[0] if unknown else text!r}; expected all "
                          f"or a comma-separated list of {', '.join(METHODS)}")
    return tuple((name, arch) for name in names for arch in METHODS[name].archs)


def parse_fractions(text: str) -> tuple[float, ...]:
    from benchmark.data.splits import check_fraction

    if text.strip() == "paper":
        return PAPER_FRACTIONS
    values = _numbers(text, "--fractions", float, "paper or comma-separated label fractions in (0, 1], e.g. 0.01,0.5")
    for value in values:
        try:
            check_fraction(value)
        except DataError as error:
            raise DataError(f"--fractions: {error}") from None
    return values


def parse_mask_ratios(text: str) -> tuple[float, ...]:
    values = _numbers(text, "--mask-ratios", float, "comma-separated mask ratios in (0, 1), e.g. 0.15,0.75")
    for value in values:
        if not 0.0 < value < 1.0:
            raise ConfigError(f"--mask-ratios: mask ratio {value:g}: expected a number in (0, 1), e.g. 0.75")
    return values


def parse_seeds(text: str) -> tuple[int, ...]:
    values = _numbers(text, "--seeds", int, "comma-separated non-negative integers, e.g. 0,1,2")
    if any(value < 0 for value in values):
        raise ConfigError(f"--seeds {text!r}: expected comma-separated non-negative integers, e.g. 0,1,2")
    return values


def grid_from_args(args: argparse.Namespace) -> Grid:
    if args.grid is not None:
        fixed = [option for option, value in (("--methods", args.methods), ("--fractions", args.fractions),
                                               ("--mask-ratios", args.mask_ratios)) if value is not None]
        if fixed:
            raise ConfigError(f"--grid {args.grid} sets methods, fractions and mask ratios itself; "
                              f"drop {', '.join(fixed)} or drop --grid")
        return named_grid(args.grid)
    if args.methods is None:
        raise ConfigError("sweep: expected --grid table2|table3, or --methods all|NAME,NAME (with --fractions, "
                          "--mask-ratios)")
    return Grid(parse_rows(args.methods), parse_fractions(args.fractions or "paper"),
                parse_mask_ratios(args.mask_ratios) if args.mask_ratios is not None else None)


def check_sweep_name(name: str) -> str:
    if not SWEEP_NAME.fullmatch(name):
        raise ConfigError(f"--name {name!r}: expected letters, digits, '.', '_' or '-' (it names files and folders)")
    return name


# ---------------------------------------------------------------------------------------------- planning

def resolve_config(options: dict[str, Any]) -> Config:
    """The CLI's own config resolution (profile, shortcut options, --set) from stored option values."""
    from benchmark.runner import config_from_options

    return config_from_options(options)


def job_options(base: dict[str, Any], method_name: str, arch: str, seed: int, mask_ratio: Optional[float],
                weights: dict[str, Optional[str]]) -> dict[str, Any]:
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
    from methods.backbones import weights_path

    if config.family(arch).weights is None:
        return [f"{method} ({arch}) needs local ImageNet weights: pass --weights-{arch} PATH"]
    try:
        weights_path(config, arch)
    except ConfigError as error:
        return [f"{method} ({arch}): {error}"]
    return []


def plan_jobs(grid: Grid, seeds: tuple[int, ...], base: dict[str, Any], weights: dict[str, Optional[str]],
              results: Path) -> tuple[list[PlannedJob], list[str]]:
    """Pretraining jobs (one per encoder) then fine-tuning jobs (one per run), and the problems found."""
    from benchmark.data.prepare import identify
    from benchmark.engine.identity import run_id
    from benchmark.records import record_path
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
                ratios = ((grid.mask_ratios or (base_config.method(method_name).mask_ratio,))
                          if method.uses_mask_ratio else (None,))
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
                        pretrain = pretraining.setdefault(name, PlannedJob(
                            "pretrain", name, method_name, arch, seed, ratio, None, options, []))
                    for fraction in grid.fractions:
                        identifier = run_id(method, arch, fraction, config, found[where])
                        if identifier in finetuning:
                            continue
                        done = record_path(results, identifier).exists()
                        finetuning[identifier] = PlannedJob(
                            "finetune", identifier, method_name, arch, seed, ratio, fraction, options, [identifier],
                            after=pretrain.name if pretrain else None, skip_reason="record exists" if done else None)
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
                entry["job_id"], entry.get("dependency"), entry.get("stdout"), entry.get("stderr"))


def settle_pretraining(jobs: list[PlannedJob]) -> None:
    """A pretraining job is needed only while one of its fine-tuning runs is still to be submitted."""
    to_submit = {job.after for job in jobs if job.kind == "finetune" and job.skip_reason is None}
    for job in jobs:
        if job.kind == "pretrain" and job.skip_reason is None and job.name not in to_submit:
            job.skip_reason = "every run it serves has a record or is in flight"


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM state per job id ("123", "124_0") from one sacct call, parsed by submitit; UNKNOWN if sacct lacks it."""
    watcher = SlurmInfoWatcher()
    for job_id in job_ids:
        watcher.register_job(job_id)
    watcher.update()
    # sacct writes "CANCELLED by 0" for a cancelled job
    return {job_id: watcher.get_state(job_id, mode="cache").split()[0] for job_id in job_ids}


def check_splits_over_ranks(config: Config, cluster: ClusterProfile, cluster_path: Path) -> None:
    """Every rank of a multi-task job takes an equal share of each pretraining batch: refuse here, not on a node."""
    micro_batch = config.pretrain.batch_size // config.pretrain.accum_steps
    if micro_batch % cluster.tasks_per_node:
        raise ConfigError(f"cluster profile {cluster_path}: tasks_per_node={cluster.tasks_per_node} does not divide "
                          f"pretrain.batch_size / accum_steps = {micro_batch}: pick a divisor or --set "
                          f"pretrain.batch_size to a multiple of it")


def plan_sweep(args: argparse.Namespace) -> Sweep:
    """Everything `sweep` decides before it submits or runs anything; bad input raises ConfigError/DataError."""
    if args.seed is not None:
        raise ConfigError(f"--seed {args.seed}: a sweep takes --seeds, e.g. --seeds 0,1,2")
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
    return Sweep(name, None if args.dry_run else args.executor, results, jobs, cluster, cluster_path, profile,
                 problems)


# ---------------------------------------------------------------------------------------------- the plan, printed

def measured_process_times(results: Path, profile: str) -> dict[str, tuple[float, int]]:
    """Mean training time per job kind, in process-seconds (wall time x processes, so that records of DDP
    jobs of any size compare), from the records of this config profile: kind -> (process-seconds, n)."""
    from benchmark.records import scan_records

    records = [record for record in scan_records(results / "runs").records if record["profile"] == profile]
    # records written before DDP carry no process count: they ran one process
    trained = {record["pretrain"]["cache_key"]: record["pretrain"]["wall_time_s"]
               * record["pretrain"].get("processes", 1)
               for record in records if record["pretrain"] is not None and not record["pretrain"]["reused"]}
    samples = {"pretrain": list(trained.values()),
               "finetune": [record["finetune"]["wall_time_s"] * record["hardware"].get("processes", 1)
                            for record in records]}
    return {kind: (sum(values) / len(values), len(values)) for kind, values in samples.items() if values}


def describe_plan(sweep: Sweep) -> str:
    jobs = sweep.jobs
    lines = [f"sweep {sweep.name}: results {sweep.results}, config profile {sweep.profile}", "",
             f"{'kind':9} {'action':8} {'waits for':30} name / reason skipped"]
    for job in jobs:
        action = "submit" if job.skip_reason is None else "skip"
        waits = job.after or "-"
        lines.append(f"{job.kind:9} {action:8} {waits:30} {job.name}"
                     + (f"  ({job.skip_reason})" if job.skip_reason else ""))
    counts = {kind: [job for job in jobs if job.kind == kind] for kind in ("pretrain", "finetune")}
    submitted = {kind: sum(job.skip_reason is None for job in group) for kind, group in counts.items()}
    lines += [""] + [
        f"{label} jobs: {submitted[kind]} to submit, {len(counts[kind]) - submitted[kind]} skipped"
        for kind, label in (("pretrain", "pretraining"), ("finetune", "fine-tuning"))]
    lines.append("dependencies:")
    for pretrain in counts["pretrain"]:
        waiting = sum(job.after == pretrain.name and job.skip_reason is None for job in counts["finetune"])
        if waiting:
            lines.append(f"  {waiting} fine-tuning jobs start after {pretrain.name} succeeded (afterok)")
    independent = sum(job.after is None and job.skip_reason is None for job in counts["finetune"])
    lines.append(f"  {independent} fine-tuning jobs wait for nothing (no pretraining stage)")
    lines += estimate_lines(sweep, submitted)
    lines += [f"warning: {problem}" for problem in sweep.problems]
    return "\n".join(lines)


def estimate_lines(sweep: Sweep, submitted: dict[str, int]) -> list[str]:
    total = sum(submitted.values())
    gpus = sweep.cluster.gpus_per_node if sweep.cluster else None

    def in_gpu_hours(hours: float) -> str:
        if gpus is None:
            return ""
        return f" = {hours * gpus:.2f} GPU-hours at {gpus} GPUs per job" if gpus else " (the profile requests no GPU)"

    lines = ["estimate:"]
    if sweep.cluster is None:
        lines.append("  upper bound: pass --cluster slurm/NAME.yaml for its time limit")
    else:
        hours = total * sweep.cluster.time_limit_min / 60
        lines.append(f"  upper bound: {total} jobs x {sweep.cluster.time_limit_min} min time limit = {hours:.2f} "
                     f"job-hours{in_gpu_hours(hours)}")
    measured = measured_process_times(sweep.results, sweep.profile)
    if not measured:
        lines.append(f"  measured: no {sweep.profile}-profile records in {sweep.results / 'runs'} yet")
        return lines
    parts = [f"{'pretraining' if kind == 'pretrain' else 'fine-tuning'} {mean:.0f} process-s mean over {count} "
             f"records" for kind, (mean, count) in measured.items()]
    # a kind without records counts at the other kind's mean rather than at zero
    fallback = sum(mean for mean, _ in measured.values()) / len(measured)
    tasks = sweep.cluster.tasks_per_node if sweep.cluster else 1
    hours = sum(count * measured.get(kind, (fallback, 0))[0] for kind, count in submitted.items()) / tasks / 3600
    lines.append(f"  measured (training time only, no start-up or queueing): {', '.join(parts)} -> about "
                 f"{hours:.2f} job-hours at {tasks} process{'es' if tasks > 1 else ''} per job, if they scale "
                 f"linearly{in_gpu_hours(hours)}")
    return lines


# ---------------------------------------------------------------------------------------------- the job callables

class PretrainJob(submitit.helpers.Checkpointable):
    """Pretrain (or find cached) one encoder. ``checkpoint()``, inherited, resubmits this same object: the
    requeued job calls ``pretrain_only`` again, which resumes from the encoder cache's per-epoch checkpoint."""

    def __init__(self, method: str, options: dict[str, Any]) -> None:
        self.method, self.options = method, options

    def __call__(self) -> dict:
        from benchmark.runner import pretrain_only

        return pretrain_only(self.method, resolve_config(self.options), progress=False)


class FinetuneJob(submitit.helpers.Checkpointable):
    """Fine-tune one run and write its record. Requeued, ``execute`` resumes from the run's per-epoch checkpoint,
    or returns the finished record untouched if the job was stopped after writing it."""

    def __init__(self, method: str, arch: str, fraction: float, options: dict[str, Any], results: str) -> None:
        self.method, self.arch, self.fraction, self.options, self.results = method, arch, fraction, options, results

    def __call__(self) -> dict:
        from benchmark.records import record_path
        from benchmark.runner import execute

        record = execute(self.method, self.fraction, resolve_config(self.options), Path(self.results),
                         arch=self.arch, progress=False)
        return {"run_id": record["run_id"], "accuracy": record["metrics"]["accuracy"],
                "record": str(record_path(Path(self.results), record["run_id"]))}


def job_callable(job: PlannedJob, results: Path) -> Callable[[], dict]:
    if job.kind == "pretrain":
        return PretrainJob(job.method, job.options)
    return FinetuneJob(job.method, job.arch, job.fraction, job.options, str(results))


# ---------------------------------------------------------------------------------------------- manifest

def manifest_path(results: Path, name: str) -> Path:
    return Path(results) / "sweeps" / f"{name}.json"


def write_manifest(sweep: Sweep, created_at: str) -> None:

    document = {
        "name": sweep.name, "executor": sweep.executor, "results": str(sweep.results),
        "submitit_folder": str(sweep.submitit_folder) if sweep.executor == "slurm" else None,
        "cluster_profile": str(sweep.cluster_path) if sweep.cluster_path else None,
        "partition": sweep.cluster.partition if sweep.cluster else None,
        "profile": sweep.profile, "created_at": created_at, "updated_at": _now(),
        "jobs": [asdict(job) for job in sweep.jobs],
    }
    atomic_write_text(sweep.manifest, json.dumps(document, indent=2) + "\n")


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"sweep manifest {path}: cannot read it ({error})") from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def ensure_writable(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"{what} {folder}: cannot write there ({error.strerror or error})") from None


# ---------------------------------------------------------------------------------------------- executors

def submit_to_slurm(sweep: Sweep) -> None:
    """One job per pretraining, then one array per dependency group (the runs of one encoder, and the runs
    without pretraining), each fine-tuning array starting only after its pretraining job succeeded."""
    pretraining = {job.name: job for job in sweep.jobs if job.kind == "pretrain"}
    groups: dict[Optional[str], list[PlannedJob]] = {}
    for job in sweep.jobs:
        if job.kind == "finetune" and job.skip_reason is None:
            groups.setdefault(job.after, []).append(job)
    try:
        for job in pretraining.values():
            if job.skip_reason is None:
                _submit_array(sweep, job.name, [job], None)
        for after, members in groups.items():
            parent = pretraining.get(after)
            waits = parent is not None and (parent.skip_reason is None or parent.in_flight)
            group = after.removeprefix("pretrain-") if after else "no-pretraining"
            name = members[0].name if len(members) == 1 else f"finetune-{group}"
            _submit_array(sweep, name, members, f"afterok:{parent.job_id}" if waits else None)
    except FailedJobError as error:
        message = str(error).strip()
        if "invalid partition" in message:
            raise ConfigError(f"cluster profile {sweep.cluster_path}: field 'partition': the cluster has no "
                              f"partition {sweep.cluster.partition!r} (`sinfo -s` lists them); sbatch said: "
                              f"{message}") from None
        raise ConfigError(f"cluster profile {sweep.cluster_path}: sbatch refused the job: {message}") from None


def _submit_array(sweep: Sweep, name: str, members: list[PlannedJob], dependency: Optional[str]) -> None:
    executor = make_executor(sweep.cluster, sweep.submitit_folder)
    sbatch = dict(sweep.cluster.extra_sbatch)
    if dependency is not None:
        # a failed pretraining cancels its runs instead of leaving them pending forever
        sbatch.update({"dependency": dependency, "kill-on-invalid-dep": "yes"})
    executor.update_parameters(slurm_job_name=name, **({"slurm_additional_parameters": sbatch} if sbatch else {}))
    with executor.batch():
        handles = [executor.submit(job_callable(job, sweep.results)) for job in members]
    for job, handle in zip(members, handles):
        job.job_id, job.dependency = handle.job_id, dependency
        job.stdout, job.stderr = str(handle.paths.stdout), str(handle.paths.stderr)


def run_here(sweep: Sweep, save: Callable[[], None]) -> int:
    """Run the plan in this process, pretraining first; returns how many jobs failed."""
    pretraining = {job.name: job for job in sweep.jobs if job.kind == "pretrain"}
    todo = [job for job in sweep.jobs if job.skip_reason is None]  # planned pretraining first
    for job in todo:
        job.state = "pending"
    save()
    for number, job in enumerate(todo, start=1):
        parent = pretraining.get(job.after)
        if parent is not None and parent.state == "failed":
            job.state, job.error = "failed", f"not run: its pretraining job {parent.name} failed"
            save()
            continue
        print(f"[sweep] {number}/{len(todo)}: {job.kind} {job.name}", flush=True)
        job.state = "running"
        save()
        try:
            job_callable(job, sweep.results)()
            job.state = "done"
        except Exception:  # one failed run must not stop the others; its traceback goes to the manifest
            job.state, job.error = "failed", traceback.format_exc()
            print(f"[sweep] {job.kind} {job.name} failed:\n{job.error}", file=sys.stderr, flush=True)
        save()
    return sum(job.state == "failed" for job in todo)


def launch(sweep: Sweep) -> int:
    """Submit (slurm) or run (local) the jobs the plan submits, keeping the manifest current."""
    if sweep.problems:
        raise ConfigError(sweep.problems[0])
    ensure_writable(sweep.results, "--results")
    ensure_writable(sweep.manifest.parent, "sweep manifest folder")
    created_at = _now()
    counts = {kind: sum(job.kind == kind and job.skip_reason is None for job in sweep.jobs)
              for kind in ("pretrain", "finetune")}
    if sweep.executor == "slurm":
        available, why = slurm_available()
        if not available:
            raise ConfigError(f"--executor slurm: {why}")
        ensure_writable(sweep.submitit_folder, "submitit folder")
        try:
            submit_to_slurm(sweep)
        finally:  # also lists what was submitted before a refusal
            write_manifest(sweep, created_at)
        print(f"[sweep] {sweep.name}: submitted {counts['pretrain']} pretraining and {counts['finetune']} "
              f"fine-tuning jobs ({len(sweep.jobs) - sum(counts.values())} skipped); logs in {sweep.submitit_folder}; "
              f"manifest {sweep.manifest}; follow with `python -m benchmark status --results {sweep.results} "
              f"--name {sweep.name}`", flush=True)
        return 0
    failures = run_here(sweep, lambda: write_manifest(sweep, created_at))
    print(f"[sweep] {sweep.name}: ran {sum(counts.values())} jobs here, {failures} failed "
          f"({len(sweep.jobs) - sum(counts.values())} skipped); manifest {sweep.manifest}", flush=True)
    return 1 if failures else 0


# ---------------------------------------------------------------------------------------------- command line

def sweep_command(args: argparse.Namespace) -> int:
    sweep = plan_sweep(args)
    if args.dry_run:
        print(describe_plan(sweep))
        return 0
    return launch(sweep)
