"""SLURM cluster profiles (slurm/*.yaml) and how they map onto submitit's AutoExecutor.

A profile holds what differs between clusters (partition, account, resources per job); the sweep
command turns it into submitit parameters. slurm/README.md documents every field.
"""

from __future__ import annotations

import shutil
import subprocess
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

import submitit
import yaml

from benchmark.errors import ConfigError

LOCAL_CLUSTER_HINT = "start the local one-node cluster with `bash slurm/local-cluster.sh all` (as root, see slurm/README.md)"
SINFO_TIMEOUT_S = 10

SbatchValue = Union[str, int, float, bool]


@dataclass
class ClusterProfile:
    partition: str  # required: sbatch --partition
    gpus_per_node: int = 0  # --gpus-per-node; 0 requests none (and sends no flag)
    # --ntasks-per-node: processes per job, each with cpus_per_task cores; set it to gpus_per_node for DDP over
    # the node's GPUs (one rank per GPU). 1 = one process (sends no flag)
    tasks_per_node: int = 1
    cpus_per_task: int = 1  # --cpus-per-task
    mem_gb: Optional[float] = None  # --mem per node; None = the partition's default
    time_limit_min: int = 60  # --time; checkpointed jobs need >= 3 (README: pitfalls)
    account: Optional[str] = None  # --account; None = the user's default account
    qos: Optional[str] = None  # --qos; None = the partition's default
    constraint: Optional[str] = None  # --constraint, node features such as "a100|h100"
    array_parallelism: Optional[int] = None  # tasks of one array running at once; None = submitit's 256
    extra_sbatch: dict[str, SbatchValue] = field(default_factory=dict)  # other sbatch options, name -> value
    signal_delay_s: Optional[int] = None  # USR2 this long before the limit to checkpoint; None = submitit's 90
    max_requeues: int = 3  # time-out requeues per job (submitit's max_num_timeout)


# sbatch options a field already sets: extra_sbatch would silently override the field
_OPTIONS_OWNED_BY_FIELDS = {
    "partition": "partition",
    "gpus-per-node": "gpus_per_node",
    "ntasks-per-node": "tasks_per_node",
    "cpus-per-task": "cpus_per_task",
    "mem": "mem_gb",
    "time": "time_limit_min",
    "account": "account",
    "qos": "qos",
    "constraint": "constraint",
    "array": "array_parallelism",
    "signal": "signal_delay_s",
}

# (field, smallest allowed value, whether the bound itself is allowed)
_LOWER_BOUNDS = [
    ("gpus_per_node", 0, True),
    ("tasks_per_node", 1, True),
    ("cpus_per_task", 1, True),
    ("mem_gb", 0, False),  # Slurm reads --mem=0 as "all memory of the node"
    ("time_limit_min", 1, True),
    ("array_parallelism", 1, True),
    ("signal_delay_s", 0, True),
    ("max_requeues", 0, True),
]


def _matches(value: Any, annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Union:
        return any(_matches(value, arg) for arg in args)
    if origin is dict:
        return isinstance(value, dict) and all(
            _matches(key, args[0]) and _matches(item, args[1]) for key, item in value.items()
        )
    if annotation is type(None):
        return value is None
    if annotation is int:  # YAML true/false are bools, and bool is a subclass of int
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _describe(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Union and type(None) in args:
        return f"{_describe(next(arg for arg in args if arg is not type(None)))} or null"
    if origin is Union:
        return "a string, number or true/false"
    if origin is dict:
        return f"a mapping of sbatch option name to {_describe(args[1])}"
    return {int: "an integer", float: "a number", str: "a string"}[annotation]


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"cluster profile {path}: file not found") from None
    except OSError as error:
        raise ConfigError(f"cluster profile {path}: cannot read it: {error.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"cluster profile {path}: invalid YAML: {error}") from None
    if document is None:  # empty file: report the missing required field below
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"cluster profile {path}: expected a mapping of field: value, got {type(document).__name__}")
    return document


def _check_values(profile: ClusterProfile, path: Path) -> None:
    for name, minimum, inclusive in _LOWER_BOUNDS:
        value = getattr(profile, name)
        if value is None or value > minimum or (inclusive and value == minimum):
            continue
        expected = f">= {minimum}" if inclusive else f"> {minimum}"
        raise ConfigError(f"cluster profile {path}: field {name!r}: expected a number {expected}, got {value}")
    if 0 < profile.gpus_per_node < profile.tasks_per_node:
        raise ConfigError(
            f"cluster profile {path}: field 'tasks_per_node': {profile.tasks_per_node} tasks is more than "
            f"gpus_per_node ({profile.gpus_per_node}), so DDP ranks would share a GPU; set tasks_per_node to at "
            f"most gpus_per_node (one rank per GPU)"
        )
    if profile.signal_delay_s is not None and profile.signal_delay_s >= profile.time_limit_min * 60:
        raise ConfigError(
            f"cluster profile {path}: field 'signal_delay_s': {profile.signal_delay_s} s is not shorter than "
            f"time_limit_min ({profile.time_limit_min} min), so the job would be signalled as it starts"
        )
    for option in profile.extra_sbatch:
        owner = _OPTIONS_OWNED_BY_FIELDS.get(option.replace("_", "-"))
        if owner is not None:
            raise ConfigError(
                f"cluster profile {path}: field 'extra_sbatch': option {option!r} is set by the field {owner!r}; use that"
            )


def load_cluster_profile(path: str | Path) -> ClusterProfile:
    """Read and check a profile; every problem raises ConfigError naming the file and the field."""
    path = Path(path)
    document = _read_yaml_mapping(path)
    hints = typing.get_type_hints(ClusterProfile)
    unknown = sorted(set(document) - set(hints), key=str)
    if unknown:
        raise ConfigError(f"cluster profile {path}: unknown field {unknown[0]!r}; valid fields: {', '.join(hints)}")
    required = [spec.name for spec in fields(ClusterProfile) if spec.default is MISSING and spec.default_factory is MISSING]
    for name in required:
        if name not in document:
            raise ConfigError(f"cluster profile {path}: missing required field {name!r}")
    values: dict[str, Any] = {}
    for name, value in document.items():
        if not _matches(value, hints[name]):
            raise ConfigError(f"cluster profile {path}: field {name!r}: expected {_describe(hints[name])}, got {value!r}")
        values[name] = value
    if values.get("mem_gb") is not None:
        values["mem_gb"] = float(values["mem_gb"])  # YAML `2` is an int; keep the field's type
    profile = ClusterProfile(**values)
    _check_values(profile, path)
    return profile


def executor_parameters(profile: ClusterProfile) -> dict[str, Any]:
    """Keyword arguments for submitit's AutoExecutor.update_parameters; unset optional fields are left out."""
    parameters: dict[str, Any] = {
        "slurm_partition": profile.partition,
        "cpus_per_task": profile.cpus_per_task,
        "timeout_min": profile.time_limit_min,
    }
    optional = {
        "gpus_per_node": profile.gpus_per_node or None,  # no --gpus-per-node=0 on clusters without GRES
        "tasks_per_node": profile.tasks_per_node if profile.tasks_per_node > 1 else None,  # sbatch's default is 1
        "mem_gb": profile.mem_gb,
        "slurm_account": profile.account,
        "slurm_qos": profile.qos,
        "slurm_constraint": profile.constraint,
        "slurm_array_parallelism": profile.array_parallelism,
        "slurm_signal_delay_s": profile.signal_delay_s,
        "slurm_additional_parameters": dict(profile.extra_sbatch) or None,
    }
    parameters.update({name: value for name, value in optional.items() if value is not None})
    return parameters


def make_executor(profile: ClusterProfile, folder: str | Path) -> submitit.AutoExecutor:
    """A SLURM executor for the profile; max_requeues is a constructor argument, not an update_parameters one."""
    # cluster="slurm": never fall back silently to local processes that ignore the profile
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=profile.max_requeues)
    executor.update_parameters(**executor_parameters(profile))
    return executor


def slurm_available(partition: str | None = None) -> tuple[bool, str]:
    """Whether a SLURM controller answers here with a partition up (``partition`` if given), and why not."""
    if shutil.which("sinfo") is None:
        return False, f"no SLURM here: `sinfo` is not on PATH; {LOCAL_CLUSTER_HINT}"
    try:
        completed = subprocess.run(
            ["sinfo", "--noheader", "--format=%P %a"], capture_output=True, text=True, timeout=SINFO_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return False, f"`sinfo` did not answer within {SINFO_TIMEOUT_S} s; {LOCAL_CLUSTER_HINT}"
    if completed.returncode != 0:
        reason = (completed.stderr.strip().splitlines() or ["no message"])[-1]
        return False, f"no SLURM controller answers (`sinfo`: {reason}); {LOCAL_CLUSTER_HINT}"
    partitions_up = [
        name.rstrip("*")  # sinfo marks the default partition with *
        for name, state in (line.split() for line in completed.stdout.splitlines() if line.strip())
        if state == "up"
    ]
    if partition is not None and partition not in partitions_up:
        up = ", ".join(partitions_up) or "none"
        return False, f"SLURM partition {partition!r} is not up (up: {up}); {LOCAL_CLUSTER_HINT}"
    if not partitions_up:
        return False, f"SLURM answers but no partition is up; {LOCAL_CLUSTER_HINT}"
    return True, f"SLURM answers; partitions up: {', '.join(partitions_up)}"
