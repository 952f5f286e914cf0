"""Speed-only model settings applied by both engines: they change how a step computes, not what it computes.

* ``cpu_onednn_linear``: on a non-Intel AVX-512 CPU in fp32, every ``nn.Linear`` runs its forward and both
  backward products through oneDNN (``torch.ops.mkldnn._linear_pointwise``). PyTorch sends fp32 matmuls to
  MKL, which runs its AVX2 code on AMD processors; oneDNN uses AVX-512 on any x86 CPU that has it: 2.0-2.4x
  faster on the ViT-Tiny shapes of the cpu profile (2-core Zen 5). On Intel, MKL has AVX-512 kernels and
  the path only adds transpose copies (RGMIM pretraining 318 vs 366 img/s on a 2-core Xeon), so it stays
  off there. Same math, another summation order: results agree to rounding, not bit for bit, with MKL's.
* ``channels_last``: ResNets keep activations NHWC, the layout cuDNN and oneDNN convolutions are fastest in.
* ``compile``: ``torch.compile`` of each repeated block (transformer blocks, ResNet residual blocks), not
  of the whole model: masking and index gathers stay eager (no graph breaks), identical blocks share one
  compiled graph (compile time about 25 s on 2 cores), and the fusions that matter happen inside a block.
  Off by default: the compile time outweighs the cpu profile's short runs.
"""

from __future__ import annotations

import functools
import platform
import types
from pathlib import Path

import torch
import torchvision
from timm.models.vision_transformer import Block
from torch import nn

from benchmark.config import Config
from benchmark.engine.runtime import amp_enabled


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


@functools.cache
def mkl_lacks_avx512() -> bool:
    """MKL dispatches its AVX-512 kernels on Intel processors only; elsewhere it runs AVX2 code."""
    try:
        return "GenuineIntel" not in Path("/proc/cpuinfo").read_text()
    except OSError:
        return "intel" not in platform.processor().lower()


def onednn_linear_applies(device: torch.device, config: Config) -> bool:
    return (
        config.runtime.cpu_onednn_linear
        and device.type == "cpu"
        and not amp_enabled(device, config)
        and not config.runtime.compile
        and onednn_linear_supported()
        and mkl_lacks_avx512()
    )


def apply_fast_paths(model: nn.Module, device: torch.device, config: Config) -> None:
    """Apply the speed-only settings in place (state-dict keys and values are unchanged)."""
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
