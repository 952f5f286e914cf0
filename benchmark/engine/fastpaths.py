"""Speed-only model settings applied by both engines: they change how a step computes, not what it computes.

* ``cpu_onednn_linear``: on an AVX-512 CPU in fp32, every ``nn.Linear`` runs its forward and both backward
  products through oneDNN (``torch.ops.mkldnn._linear_pointwise``) where that is measured to be faster.
  PyTorch sends fp32 matmuls to MKL, which runs its AVX2 code on AMD processors; oneDNN uses AVX-512 on any
  x86 CPU that has it: 2.0-2.4x faster on the ViT-Tiny shapes of the cpu profile (2-core Zen 5). On Intel,
  MKL has AVX-512 kernels and the path only adds transpose copies (2-core Xeon, Emerald Rapids, idle: RGMIM
  pretraining 242 vs 201 img/s, ViT fine-tuning 113 vs 99). So the choice is not made by vendor name: the
  first process on a CPU kind times both on the cpu profile's linear shapes and writes the verdict to
  ``$RGMIM_CACHE/fastpaths/`` (default ``~/.cache/rgmim-bench``); every later process on that kind reads it,
  so every run there makes the same choice. Same math, another summation order: results agree to rounding,
  not bit for bit, with MKL's.
* ``cpu_keep_freed_memory``: glibc hands every freed block above its mmap threshold back to the kernel and
  maps it anew on the next step, so each step page-faults its activations back in: 31k faults and 12 % of
  an RGMIM pretraining step in the kernel (2-core Emerald Rapids Xeon). Raising the mmap and trim thresholds
  keeps freed blocks in the heap: 268 / 279 -> 299 / 314 img/s there, ViT fine-tuning 133 / 154 -> 157 / 158,
  BYOL 46 / 54 -> 65 / 60 (two processes each). Peak memory with it is not measured yet.
* ``channels_last``: ResNets keep activations NHWC, the layout cuDNN and oneDNN convolutions are fastest in.
* ``compile``: ``torch.compile`` of each repeated block (transformer blocks, ResNet residual blocks), not
  of the whole model: masking and index gathers stay eager (no graph breaks), identical blocks share one
  compiled graph (compile time about 25 s on 2 cores), and the fusions that matter happen inside a block.
  Off by default: the compile time outweighs the cpu profile's short runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import math
import time
import types
from pathlib import Path

import torch
import torchvision
from timm.models.vision_transformer import Block
from torch import nn

from benchmark.config import Config
from benchmark.data.cache import default_cache_root
from benchmark.engine.runtime import amp_enabled, cpu_name, others_busy_share
from benchmark.files import atomic_write_json, stable_hash


# The repeated units of every backbone here: timm ViT blocks (lightly's decoder reuses them), ResNet blocks.
COMPILED_BLOCKS = (Block, torchvision.models.resnet.BasicBlock, torchvision.models.resnet.Bottleneck)


def onednn_linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """input (N, in) @ weight (out, in).T + bias; strided (transposed) operands are read in place."""
    return torch.ops.mkldnn._linear_pointwise(input, weight, bias, "none", [], "")


class OneDNNLinearFunction(torch.autograd.Function):
    """nn.Linear's math with all three matmuls in oneDNN; the bias gradient is a plain sum."""

    @staticmethod
    def forward(ctx, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        flat = input.reshape(-1, input.shape[-1])
        ctx.save_for_backward(flat, weight)
        ctx.input_shape, ctx.has_bias = input.shape, bias is not None
        return onednn_linear(flat, weight, bias).reshape(*input.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        flat, weight = ctx.saved_tensors
        grad_flat = grad_output.reshape(-1, grad_output.shape[-1])
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = onednn_linear(grad_flat, weight.t()).reshape(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            grad_weight = onednn_linear(grad_flat.t(), flat.t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_flat.sum(dim=0)
        return grad_input, grad_weight, grad_bias


def _onednn_forward(self: nn.Linear, input: torch.Tensor) -> torch.Tensor:
    if input.dtype != torch.float32 or input.numel() == 0:  # oneDNN path is fp32 only; empty batches: MKL
        return nn.functional.linear(input, self.weight, self.bias)
    return OneDNNLinearFunction.apply(input, self.weight, self.bias)


def onednn_linear_supported() -> bool:
    return torch.backends.mkldnn.is_available() and torch.backends.cpu.get_cpu_capability().startswith("AVX512")


LINEAR_TRIAL = (2048, 192, 768)  # rows x in x out: the cpu profile's ViT-Tiny MLP, 32 images x 64 tokens
LINEAR_REPEATS = 5  # timed forward+backward passes per backend, interleaved; the minimum counts
LINEAR_MARGIN = 1.1  # choice: oneDNN only when clearly faster; a near tie keeps PyTorch's default (MKL)
IDLE_BUSY = 0.25  # choice: share of CPU time busy with other work below which the machine counts as idle


def cpu_kind() -> dict:
    """What a measured choice holds for: the CPU model and kernel level, threads and torch version."""
    return {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__}


def time_linear_backends(repeats: int = LINEAR_REPEATS) -> dict[str, float]:
    """Seconds of one forward and backward of ``LINEAR_TRIAL`` through MKL (F.linear) and through oneDNN."""
    rows, inputs, outputs = LINEAR_TRIAL
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, inputs, generator=generator, requires_grad=True)
    weight = torch.randn(outputs, inputs, generator=generator, requires_grad=True)
    bias = torch.zeros(outputs, requires_grad=True)
    grad = torch.randn(rows, outputs, generator=generator)
    backends = {"mkl": nn.functional.linear, "onednn": OneDNNLinearFunction.apply}
    best = dict.fromkeys(backends, math.inf)
    for repeat in range(repeats + 1):  # the first round warms up
        for name, linear in backends.items():
            started = time.perf_counter()
            torch.autograd.grad(linear(x, weight, bias), (x, weight, bias), grad)
            if repeat:
                best[name] = min(best[name], time.perf_counter() - started)
    return best


@functools.cache
def onednn_linear_wins(cache_root: Path) -> bool:
    """Whether oneDNN beats MKL by ``LINEAR_MARGIN`` on this CPU kind: read from ``cache_root``, measured once."""
    kind = cpu_kind()
    path = cache_root / "fastpaths" / f"linear-{stable_hash(kind, 16)}.json"
    try:
        return bool(json.loads(path.read_text(encoding="utf-8"))["onednn"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not measured here yet, or an unreadable file: measure (again)
    seconds = time_linear_backends()
    verdict = seconds["mkl"] > LINEAR_MARGIN * seconds["onednn"]
    # MKL's threads lose more than oneDNN's on a busy machine (measured on a 2-core Xeon: MKL 1.7x faster
    # idle, 1.6x slower beside a running sweep), so only a verdict measured on an idle machine is kept.
    if others_busy_share() < IDLE_BUSY:
        atomic_write_json(path, {**kind, "seconds": seconds, "margin": LINEAR_MARGIN, "onednn": verdict})
    return verdict


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEPT_BLOCK_BYTES = 32 << 20  # glibc's largest mmap threshold on 64-bit: blocks up to 32 MiB come from the heap
KEPT_FREE_BYTES = 1 << 30  # choice: up to 1 GiB freed at the heap's top waits for the next step, untrimmed


@functools.cache
def keep_freed_memory() -> bool:
    """Raise this process's glibc mmap and trim thresholds, once; False where the C library has no mallopt."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEPT_BLOCK_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES) == 1)


def onednn_linear_applies(device: torch.device, config: Config) -> bool:
    return (
        config.runtime.cpu_onednn_linear
        and device.type == "cpu"
        and not amp_enabled(device, config)
        and not config.runtime.compile
        and onednn_linear_supported()
        and onednn_linear_wins(default_cache_root())
    )


def apply_fast_paths(model: nn.Module, device: torch.device, config: Config) -> None:
    """Apply the speed-only settings in place (state-dict keys and values are unchanged)."""
    if config.runtime.cpu_keep_freed_memory and device.type == "cpu":
        keep_freed_memory()
    if config.runtime.channels_last and any(isinstance(module, torchvision.models.ResNet) for module in model.modules()):
        model.to(memory_format=torch.channels_last)
    if onednn_linear_applies(device, config):
        for module in model.modules():
            if type(module) is nn.Linear:  # subclasses may have their own forward
                module.forward = types.MethodType(_onednn_forward, module)
    if config.runtime.compile:
        for module in model.modules():
            if isinstance(module, COMPILED_BLOCKS):
                module.compile()
