"""Where a training step's time goes, by op class, from ``torch.profiler`` (``bench --breakdown``).

Each op's self time (on CPU: the op's span on the calling thread, intra-op threads included; on CUDA: the
kernels it launched) goes to one class. The matmul class's share of the step, and the FLOP rate it reaches
against the measured matmul peak, say whether a stage is bound by its matmuls or by everything around them.
The profiler adds a small cost per op, so shares of many tiny ops read a little high.
"""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from benchmark.bench.pipelines import Pipeline, synchronize

# (class, substrings of the op name), first match wins; names are aten's, plus oneDNN/mkldnn and the
# optimizer's record_function ranges. "other" takes the rest.
OP_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention")),
    (
        "matmul/conv",
        ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "convolution", "mkldnn_linear", "linear_pointwise"),
    ),
    ("normalization", ("layer_norm", "batch_norm", "group_norm")),
    ("activation", ("gelu", "relu", "silu", "threshold_backward", "softmax", "sigmoid", "tanh")),
    ("optimizer", ("_foreach_", "adam", "sgd", "Optimizer.", "lerp")),
    (
        "copies/layout",
        (
            "copy_",
            "clone",
            "contiguous",
            "aten::cat",
            "aten::stack",
            "index",
            "gather",
            "scatter",
            "_to_copy",
            "fill_",
            "zero_",
            "empty",
        ),
    ),
    (
        "elementwise",
        (
            "aten::add",
            "aten::mul",
            "aten::div",
            "aten::sub",
            "aten::pow",
            "aten::sqrt",
            "aten::where",
            "aten::sum",
            "aten::mean",
            "aten::neg",
            "aten::exp",
            "aten::clamp",
            "aten::rsub",
        ),
    ),
)
CLASS_NAMES = (*(name for name, _ in OP_CLASSES), "other")


def op_class(name: str) -> str:
    for class_name, needles in OP_CLASSES:
        if any(needle in name for needle in needles):
            return class_name
    return "other"


def profile_breakdown(pipeline: Pipeline, steps: int, device: torch.device, flops_per_image: float, peak: float) -> dict:
    """Profile ``steps`` optimizer steps of a warmed-up pipeline; shares of the step per op class, the time
    outside any op (Python, framework) and the FLOP/s the matmul classes reach as a share of ``peak``."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    synchronize(device)
    with profile(activities=activities) as profiler:
        wall = sum(pipeline.step()[0] for _ in range(steps))
    seconds = dict.fromkeys(CLASS_NAMES, 0.0)
    for event in profiler.key_averages():
        self_us = event.self_device_time_total if cuda else event.self_cpu_time_total
        seconds[op_class(event.key)] += self_us / 1e6
    in_ops = sum(seconds.values())
    matmul_s = seconds["matmul/conv"] + seconds["attention"]
    shares = {name: value / wall for name, value in seconds.items()}
    shares["outside ops"] = max(0.0, 1.0 - in_ops / wall)
    return {
        "profiled_steps": steps,
        "step_s": wall / steps,
        "shares": shares,
        "matmul_share_of_peak": (flops_per_image * pipeline.batch_size * steps / matmul_s) / peak if matmul_s > 0 else None,
    }


def breakdown_line(name: str, breakdown: dict) -> str:
    """One stage: each class's share of the step, largest first, and the matmul classes' FLOP rate."""
    ranked = sorted(breakdown["shares"].items(), key=lambda item: -item[1])
    parts = " · ".join(f"{cls} {share * 100:.0f} %" for cls, share in ranked if share >= 0.005)
    rate = breakdown["matmul_share_of_peak"]
    rate_text = "" if rate is None else f"; matmul/conv + attention run at {rate * 100:.0f} % of the peak"
    return f"{name}: {parts}{rate_text}"
