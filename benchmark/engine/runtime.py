"""Device, precision, learning-rate schedule, RNG state, hardware and code-version facts."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmark.config import Config, FinetuneConfig, PretrainConfig
from benchmark.errors import ConfigError
from benchmark import distributed


def resolve_device(config: Config) -> torch.device:
    """The device of this process; under DDP it joins the process group and takes its local GPU."""
    if config.runtime.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(config.runtime.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={config.runtime.device}: no CUDA GPU is available here (use device=cpu or auto)")
    ranks = distributed.join(device.type)
    if device.type == "cuda" and ranks.world > 1:
        return torch.device("cuda", ranks.cuda_index())
    return device


def amp_enabled(device: torch.device, config: Config) -> bool:
    """bf16 autocast on a bf16-capable GPU by default; on CPU only when amp=bf16 is asked for.

    CPU stays fp32 under "auto": records keyed by amp=auto were trained that way.
    """
    return config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())


@contextlib.contextmanager
def autocast(device: torch.device, config: Config) -> Iterator[None]:
    """bf16 autocast when enabled; on a CPU also the math attention kernel, which AMX runs as matmuls.

    PyTorch's CPU flash-attention backward is 8x slower in bf16 than in fp32 at the cpu profile's
    sequence lengths (13.4 vs 1.7 ms per call, 2-core Xeon with AMX), which made bf16 slower than fp32.
    """
    enabled = amp_enabled(device, config)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled))
        if enabled and device.type == "cpu":
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        yield


def step_budget(steps_per_epoch: int, epochs: int, max_steps: int, stage: str, announce: bool = True) -> tuple[int, int]:
    """(total steps, epochs that run): ``max_steps`` caps the total in both engines, and says so on stderr when
    it cuts the configured epochs, so that nobody reads a configured length that did not happen."""
    total = steps_per_epoch * epochs
    if max_steps and max_steps < total:
        total = max_steps
        ran = math.ceil(total / steps_per_epoch)
        if announce:
            print(
                f"[{stage}] {stage}.max_steps={max_steps} stops the run after {total} steps: {ran} of the "
                f"{epochs} configured epochs",
                file=sys.stderr,
                flush=True,
            )
    return total, math.ceil(total / steps_per_epoch)


@dataclass(frozen=True)
class StepPlan:
    """How long a training stage runs, known before it starts; the engines and ``bench --grid`` share it."""

    steps_per_epoch: int
    passes_per_epoch: int  # passes over the training images per epoch (> 1: a small subset cycled)
    total_steps: int
    epochs: int
    images: int  # training images processed in all


def pretrain_plan(pool_size: int, settings: PretrainConfig, announce: bool = True) -> StepPlan:
    steps_per_epoch = pool_size // settings.batch_size  # drop_last=True (protocol §0)
    total, epochs = step_budget(steps_per_epoch, settings.epochs, settings.max_steps, "pretrain", announce)
    return StepPlan(steps_per_epoch, 1, total, epochs, total * settings.batch_size)


def finetune_plan(subset_size: int, settings: FinetuneConfig, announce: bool = True) -> StepPlan:
    one_pass = math.ceil(subset_size / settings.batch_size)  # no drop_last: 1 % may be tiny
    # min_steps: a small subset is cycled (passes per epoch) until the run takes at least that many steps
    steps_per_epoch = max(one_pass, math.ceil(settings.min_steps / settings.epochs))
    passes = math.ceil(steps_per_epoch / one_pass)
    total, epochs = step_budget(steps_per_epoch, settings.epochs, settings.max_steps, "finetune", announce)

    def images(steps: int) -> int:  # whole passes, then full batches of the next one
        return steps // one_pass * subset_size + steps % one_pass * settings.batch_size

    full_epochs, last = divmod(total, steps_per_epoch)
    return StepPlan(steps_per_epoch, passes, total, epochs, full_epochs * images(steps_per_epoch) + images(last))


def scaled_lr(blr: float, batch_size: int) -> float:
    """The linear scaling rule lr = blr * batch / 256 (MAE main_pretrain.py and main_finetune.py)."""
    return blr * batch_size / 256


def lr_at(step: float, total_steps: int, warmup_steps: float, base_lr: float, min_lr: float) -> float:
    """Linear warmup, then half-cycle cosine to min_lr, per iteration (MAE util/lr_sched.py)."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    progress = (step - warmup_steps) / max(1.0, total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float, base_lr: float) -> None:
    """Scheduled lr for every group; `fixed_lr` groups keep base_lr; `lr_scale` is layer-wise decay."""
    for group in optimizer.param_groups:
        group["lr"] = base_lr if group.get("fixed_lr") else lr * group.get("lr_scale", 1.0)


def rng_state(device: torch.device) -> dict:
    """The generators a run draws from: the CPU's and, on a GPU, this process's device's.

    Only the device's own generator: under DDP rank r draws on cuda:r, and every rank's stream is equal.
    """
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it, with its family and model numbers (a VM may name only the
    vendor: "AMD EPYC" is a Zen 3 at family 25 model 1 and a Zen 5 at family 26) and PyTorch's kernel level
    (AVX2, AVX512): speed figures differ about 4x between the CPU kinds this project has run on."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not line.strip():
                break  # the first processor's block is enough
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}"


def hardware(device: torch.device) -> dict:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "device": device.type,
        "gpu": gpu,
        "gpu_count": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "hostname": platform.node(),
        "platform": platform.platform(),
    }


def _cpu_ticks(cpus: set[int]) -> tuple[int, int]:
    """(busy, all) clock ticks of ``cpus`` since boot, from /proc/stat's per-CPU lines; busy counts the
    hypervisor's steal too, since it takes time from this process as another tenant would."""
    busy = total = 0
    for line in Path("/proc/stat").read_text().splitlines()[1:]:
        name, *fields = line.split()
        if not name.startswith("cpu"):
            break
        if int(name[3:]) in cpus:
            ticks = [int(value) for value in fields[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class CpuMeter:
    """The share of this process's CPUs that something else used while the block ran: other processes, other
    tenants' steal. A wall time measured beside other work reads high, and a 2-thread OpenMP step loses far
    more than the CPU time taken from it (each parallel region waits for its slowest thread), so records keep
    this share beside their times. ``other_share`` is None where /proc/stat is not available."""

    def __init__(self) -> None:
        self.other_share: float | None = None
        self._start: tuple[set[int], tuple[int, int], float] | None = None

    def start(self) -> "CpuMeter":
        try:
            cpus = os.sched_getaffinity(0)
            self._start = (cpus, _cpu_ticks(cpus), _own_cpu_seconds())
        except (OSError, ValueError, IndexError, AttributeError):
            self._start = None
        return self

    def stop(self) -> float | None:
        if self._start is not None:
            cpus, (busy_before, total_before), own_before = self._start
            try:
                (busy, total), own = _cpu_ticks(cpus), _own_cpu_seconds()
            except (OSError, ValueError, IndexError):
                return self.other_share
            own_ticks = (own - own_before) * os.sysconf("SC_CLK_TCK")
            if total > total_before:
                self.other_share = min(1.0, max(0.0, (busy - busy_before - own_ticks) / (total - total_before)))
        return self.other_share

    __enter__ = start

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def time_weighted_share(parts: list[tuple[float | None, float]]) -> float | None:
    """The mean of (share, seconds) parts weighted by their seconds; None when any part was not measured."""
    seconds = sum(duration for _, duration in parts)
    if not parts or any(share is None for share, _ in parts) or seconds <= 0:
        return None
    return sum(share * duration for share, duration in parts) / seconds


def others_busy_share(interval: float = 0.2) -> float:
    """The share of this process's CPUs others keep busy, sampled over ``interval`` while this one sleeps;
    where /proc/stat is missing, the 1-minute load average per CPU, which lags but is what there is."""
    with CpuMeter() as meter:
        time.sleep(interval)
    if meter.other_share is None:
        return min(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    return meter.other_share


def code_version(root: Path | None = None) -> dict:
    """The git commit of this checkout (and whether its code had uncommitted changes), when available."""
    root = root or Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    # records and reports written into results/ are not code: a clone that ran something is not "dirty"
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}
