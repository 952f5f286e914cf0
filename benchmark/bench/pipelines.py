"""Timed training pipelines for ``python -m benchmark bench``: ours, and the straightforward reference.

Ours is the engines' own step (``pretrain_views`` / ``forward_backward`` / ``apply_update`` and the
fine-tuning equivalents), so what is timed is what runs. The reference is MAE pretraining as lightly's
``examples/pytorch/mae.py`` composes it: the same timm ViT under lightly's masked-ViT encoder and decoder,
fed by a DataLoader that decodes one PNG per sample with PIL and applies lightly's MAETransform
(torchvision RandomResizedCrop, flip, ToTensor, Normalize), plain fp32 AdamW. Its PNGs are written once
from the dataset at 299 x 299 px, the size of the COVID-19 Radiography release's files.
"""

from __future__ import annotations

import itertools
import math
import os
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import torchvision
from lightly.models import utils
from lightly.models.modules import MaskedVisionTransformerDecoderTIMM, MaskedVisionTransformerTIMM
from lightly.transforms import MAETransform
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from benchmark.config import Config
from benchmark.data.cache import resolve_cache_root
from benchmark.data.layouts import open_source
from benchmark.data.prepare import PreparedData
from benchmark.data.views import make_view
from benchmark.engine import finetune, pretrain
from benchmark.engine.batches import TensorPool
from benchmark.engine.fastpaths import apply_fast_paths, onednn_linear
from benchmark.engine.runtime import amp_enabled, scaled_lr
from benchmark.files import publish_directory
from methods.backbones import build_encoder, build_vit
from methods.base import Method
from methods.mim import MIMSettings

REFERENCE_PNG_SIZE = 299  # the COVID-19 Radiography release stores 299 x 299 px PNGs
REFERENCE_IMAGES = 512  # a few hundred files: several distinct batches, seconds to write
REFERENCE_WORKERS = 8  # lightly's example uses num_workers=8 (capped at the cores there are)
ROUNDS = 2  # interleaved blocks per pipeline: load drifting on a shared machine hits both alike
EMA_SCHEDULE_STEPS = 1000  # momentum methods' schedule length in the bench; it does not change the cost


@dataclass
class StepTimes:
    """Wall time of each timed optimizer step and of its data part (fetch + views, or DataLoader wait)."""

    total: list[float] = field(default_factory=list)
    data: list[float] = field(default_factory=list)

    def summary(self, batch_size: int) -> dict:
        median = statistics.median(self.total)
        return {
            "images_per_s": batch_size / median,
            "median_step_s": median,
            "timed_steps": len(self.total),
            "data_share": sum(self.data) / sum(self.total),
        }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compute_dtype(device: torch.device, config: Config) -> torch.dtype:
    return torch.bfloat16 if amp_enabled(device, config) else torch.float32


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Best FLOP/s of a large square matmul in ``dtype`` on ``device``, through torch's matmul and, on a CPU,
    also through oneDNN (the kernel the engines' fp32 linear layers use there): the efficiency yardstick."""
    size = 8192 if device.type == "cuda" else 2048
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    kernels: list[Callable[[], torch.Tensor]] = [lambda: a @ b]
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        kernels.append(lambda: onednn_linear(a, b))
    best = 0.0
    for kernel in kernels:
        for _ in range(4):
            synchronize(device)
            started = time.perf_counter()
            repeats = 4
            for _ in range(repeats):
                kernel()
            synchronize(device)
            best = max(best, 2 * size**3 * repeats / (time.perf_counter() - started))
    return best


def cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def cpu_attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def onednn_linear_flops(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(input_shape) * weight_shape[0]


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call (forward and backward), CPU kernels included.

    The counter knows the GPU attention kernels only (the CPU one takes the same leading arguments) and
    not oneDNN's linear, which ``fastpaths.py`` routes CPU linear layers through.
    """
    aten = torch.ops.aten
    cpu_kernels = {
        aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: cpu_attention_backward_flops,
        torch.ops.mkldnn._linear_pointwise: onednn_linear_flops,
    }
    with FlopCounterMode(display=False, custom_mapping=cpu_kernels) as counter:
        step()
    return counter.get_total_flops()


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "CUDA allocator peak of the stage"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS so far"


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def endless(batches: Callable[[int], Iterator]) -> Iterator:
    for epoch in itertools.count():
        yield from batches(epoch)


class Pipeline:
    """One timed training pipeline: ``step()`` runs one optimizer step and returns (total, data) seconds."""

    name: str
    batch_size: int

    def step(self) -> tuple[float, float]:
        raise NotImplementedError

    def flops_per_image(self) -> int:
        raise NotImplementedError

    def start_block(self) -> None:
        """Called before each interleaved block (the reference starts its DataLoader workers here)."""

    def end_block(self) -> None:
        """Called after each interleaved block (the reference stops its DataLoader workers here)."""


class OurPretraining(Pipeline):
    """The engine's pretraining step: pool batch and batched views on the device, fused AdamW."""

    def __init__(self, method: Method, config: Config, data: PreparedData, device: torch.device):
        self.name = f"ours: {method.name} pretraining"
        self.config, self.device, self.image_size = config, device, data.image_size
        settings = config.pretrain
        torch.manual_seed(config.seed)
        self.model = method.pretrainer(config).to(device).train()
        apply_fast_paths(self.model, device, config)
        self.optimizer, _, _ = pretrain.build_optimizer(self.model, config.method(method.name), settings.batch_size)
        pool = TensorPool(data.images, data.masks if self.model.uses_masks else None, data.labels, data.train_idx, device)
        self.accum_steps, self.batch_size = settings.accum_steps, settings.batch_size
        micro_batch = settings.batch_size // settings.accum_steps
        self.batches = endless(lambda epoch: pool.batches(micro_batch, config.seed, epoch, drop_last=True))
        self.steps_done = 0

    def micro_step(self) -> float:
        """Views + forward + backward of one micro-batch; returns its data seconds."""
        started = time.perf_counter()
        views, view_masks = pretrain.pretrain_views(self.model, next(self.batches), self.image_size)
        synchronize(self.device)  # bench only: the engine never waits for the device
        data_time = time.perf_counter() - started
        pretrain.forward_backward(self.model, views, view_masks, self.accum_steps, self.config, self.device)
        return data_time

    def step(self) -> tuple[float, float]:
        started = time.perf_counter()
        data_time = sum(self.micro_step() for _ in range(self.accum_steps))
        self.steps_done += 1
        pretrain.apply_update(self.model, self.optimizer, self.steps_done, EMA_SCHEDULE_STEPS)
        synchronize(self.device)
        return time.perf_counter() - started, data_time

    def flops_per_image(self) -> int:
        flops = count_flops(self.micro_step)
        self.optimizer.zero_grad(set_to_none=True)
        return flops // (self.batch_size // self.accum_steps)


class OurFinetuning(Pipeline):
    """The engine's fine-tuning step over the whole training pool (fraction 1)."""

    def __init__(self, arch: str, config: Config, data: PreparedData, device: torch.device):
        self.name = f"ours: {arch} fine-tuning"
        self.config, self.device, self.image_size = config, device, data.image_size
        torch.manual_seed(config.seed)
        encoder = build_encoder(config, arch, drop_path=config.finetune.drop_path if arch == "vit" else 0.0)
        self.model = finetune.Classifier(encoder, len(data.classes), config.finetune.head_init_std).to(device).train()
        apply_fast_paths(self.model, device, config)
        self.optimizer, _ = finetune.build_optimizer(self.model, config)
        self.view = finetune.training_view(config)
        self.batch_size = config.finetune.batch_size
        pool = TensorPool(data.images, None, data.labels, data.train_idx, device)
        self.batches = endless(lambda epoch: pool.batches(self.batch_size, config.seed, epoch, drop_last=True))

    def forward_backward(self) -> float:
        """Views + forward + backward of one batch; returns its data seconds."""
        started = time.perf_counter()
        batch = next(self.batches)
        views, _ = make_view(batch.images, self.view, self.image_size)
        synchronize(self.device)
        data_time = time.perf_counter() - started
        finetune.classification_backward(self.model, views, batch.labels, batch.global_size, self.config, self.device)
        return data_time

    def step(self) -> tuple[float, float]:
        started = time.perf_counter()
        data_time = self.forward_backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        synchronize(self.device)
        return time.perf_counter() - started, data_time

    def flops_per_image(self) -> int:
        flops = count_flops(self.forward_backward)
        self.optimizer.zero_grad(set_to_none=True)
        return flops // self.batch_size


class ReferenceMAE(nn.Module):
    """lightly's examples/pytorch/mae.py model, with the profile's sizes so both sides compute the same."""

    def __init__(self, config: Config, settings: MIMSettings):
        super().__init__()
        vit = build_vit(config)
        self.mask_ratio = settings.mask_ratio
        self.patch_size = vit.patch_embed.patch_size[0]
        self.backbone = MaskedVisionTransformerTIMM(vit=vit)
        self.sequence_length = self.backbone.sequence_length
        self.decoder_embed = nn.Linear(vit.embed_dim, settings.decoder_dim)
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=vit.patch_embed.num_patches,
            embed_dim=settings.decoder_dim,
            depth=settings.decoder_depth,
            num_heads=settings.decoder_heads,
            num_prefix_tokens=vit.num_prefix_tokens,
            mlp_ratio=4.0,
            proj_drop_rate=0.0,
            attn_drop_rate=0.0,
        )
        self.prediction_head = nn.Linear(settings.decoder_dim, self.patch_size**2 * 3)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch_size = images.shape[0]
        idx_keep, idx_mask = utils.random_token_mask(
            size=(batch_size, self.sequence_length), mask_ratio=self.mask_ratio, device=images.device
        )
        encoded = self.backbone.encode(images=images, idx_keep=idx_keep)
        decoded_input = self.decoder_embed(encoded)
        sequence = decoded_input.new_zeros(batch_size, self.sequence_length, decoded_input.shape[-1])
        sequence = utils.set_at_index(sequence, idx_keep, decoded_input.type_as(sequence))
        decoded = self.decoder(sequence, idx_mask=idx_mask)
        prediction = self.prediction_head(utils.get_at_index(decoded, idx_mask))
        target = utils.get_at_index(utils.patchify(images, self.patch_size), idx_mask - 1)
        return prediction, target


def reference_png_folder(config: Config, data: PreparedData) -> Path:
    """``<cache>/bench/reference-png-<fingerprint>/<class>/*.png``: the first images of the training pool at
    299 px, written once (atomically) from the dataset source."""
    folder = resolve_cache_root(config.data) / "bench" / f"reference-png-{data.fingerprint}-{REFERENCE_PNG_SIZE}"
    if folder.exists():
        return folder

    def fill(staging: Path) -> None:
        source = open_source(config.data)
        for index in data.train_idx[:REFERENCE_IMAGES]:
            image, _ = source.load(int(index), REFERENCE_PNG_SIZE)
            class_folder = staging / data.classes[data.labels[index]]
            class_folder.mkdir(exist_ok=True)
            Image.fromarray(image).save(class_folder / f"{index:06d}.png")

    publish_directory(folder, fill)
    return folder


class ReferencePretraining(Pipeline):
    """Per-sample PIL decode + torchvision transforms in DataLoader workers, fp32, plain AdamW."""

    def __init__(self, method: Method, config: Config, data: PreparedData, device: torch.device):
        self.name, self.device = "reference: lightly MAE example", device
        settings = config.method(method.name)
        self.batch_size = config.pretrain.batch_size
        torch.manual_seed(config.seed)
        self.model = ReferenceMAE(config, settings).to(device).train()
        self.criterion = nn.MSELoss()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=scaled_lr(settings.blr, self.batch_size))
        transform = MAETransform(input_size=data.image_size, min_scale=settings.min_scale)
        dataset = torchvision.datasets.ImageFolder(str(reference_png_folder(config, data)), transform=transform)
        if len(dataset) < self.batch_size:
            raise ValueError(f"the reference has {len(dataset)} images, fewer than one batch of {self.batch_size}")
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=min(REFERENCE_WORKERS, os.cpu_count() or 1),
            pin_memory=device.type == "cuda",
        )
        self.batches: Iterator = iter(())

    def start_block(self) -> None:
        self.batches = endless(lambda epoch: iter(self.loader))

    def end_block(self) -> None:
        # Workers left alive go on prefetching (prefetch_factor batches each) into whatever runs next: they took
        # CPU from our pipeline's next block and from its profiled steps. Dropping the iterator joins them.
        self.batches = iter(())

    def forward_backward(self, images: torch.Tensor) -> None:
        prediction, target = self.model(images)
        self.criterion(prediction, target).backward()

    def step(self) -> tuple[float, float]:
        started = time.perf_counter()
        views, _ = next(self.batches)
        images = views[0].to(self.device)
        synchronize(self.device)
        data_time = time.perf_counter() - started
        self.forward_backward(images)
        self.optimizer.step()
        self.optimizer.zero_grad()
        synchronize(self.device)
        return time.perf_counter() - started, data_time

    def flops_per_image(self) -> int:
        images = torch.randn(self.batch_size, 3, *self.model.backbone.vit.patch_embed.img_size, device=self.device)
        flops = count_flops(lambda: self.forward_backward(images))
        self.optimizer.zero_grad()
        return flops // self.batch_size


def time_interleaved(pipelines: list[Pipeline], steps: int, warmup: int) -> list[StepTimes]:
    """ROUNDS blocks per pipeline, in turn; each block warms up, then times its share of ``steps``."""
    times = [StepTimes() for _ in pipelines]
    rounds = ROUNDS if len(pipelines) > 1 else 1
    per_block = max(1, math.ceil(steps / rounds))
    for _ in range(rounds):
        for pipeline, measured in zip(pipelines, times):
            pipeline.start_block()
            for _ in range(warmup):
                pipeline.step()
            for _ in range(per_block):
                total, data = pipeline.step()
                measured.total.append(total)
                measured.data.append(data)
            pipeline.end_block()
    return times


def stage_report(pipeline: Pipeline, measured: StepTimes, device: torch.device, peak: float) -> dict:
    flops = pipeline.flops_per_image()
    result = {
        "name": pipeline.name,
        "batch_size": pipeline.batch_size,
        **measured.summary(pipeline.batch_size),
        "flops_per_image": flops,
    }
    result["achieved_flop_per_s"] = flops * result["images_per_s"]
    result["share_of_matmul_peak"] = result["achieved_flop_per_s"] / peak
    result["peak_memory_mb"], result["peak_memory_kind"] = peak_memory_mb(device)
    return result


def sdpa_in_use(model: nn.Module) -> bool | None:
    """Whether timm's attention calls F.scaled_dot_product_attention (its ``fused_attn`` flag); None: no attention."""
    flags = [module.fused_attn for module in model.modules() if hasattr(module, "fused_attn")]
    return all(flags) if flags else None
