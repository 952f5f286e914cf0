"""The pretraining loop shared by every pretraining method, and the cache of pretrained encoders.

Pretraining is label-free over the whole training pool and independent of the label fraction, so
its result is cached under a key of everything that affects it and reused by every fine-tuning run.
Under DDP every rank trains; rank 0 alone holds the cache lock, writes checkpoints and the encoder.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn
from tqdm import tqdm

from benchmark import distributed
from benchmark.config import Config
from benchmark.console import bars_enabled, epoch_line
from benchmark.data.prepare import PreparedData
from benchmark.data.views import make_view
from benchmark.engine.batches import Batch, TensorPool
from benchmark.engine.checkpoint import load_or_set_aside, restore_training_state, save_training_state, save_torch
from benchmark.engine.fastpaths import apply_fast_paths
from benchmark.engine.identity import encoder_cache_key
from benchmark.engine.scalars import ScalarLog
from benchmark.engine.runtime import CpuMeter, autocast, lr_at, pretrain_plan, scaled_lr, set_lr, time_weighted_share
from benchmark.errors import ConfigError, TrainingError
from benchmark.files import atomic_write_json
from methods.base import AdamWRecipe, Method, Pretrainer


@dataclass
class PretrainedEncoder:
    arch: str
    state: dict  # encoder state_dict
    summary: dict  # goes into the run record's "pretrain" field


def pretrained_encoder(
    method: Method, config: Config, data: PreparedData, device: torch.device, cache_root: Path, progress: bool = True
) -> PretrainedEncoder:
    """Reuse the cached encoder for this key, or pretrain (resuming from the last epoch) and cache it."""
    key = encoder_cache_key(method, config, data)
    directory = cache_root / "pretrained" / key
    directory.mkdir(parents=True, exist_ok=True)
    encoder_file, summary_file = directory / "encoder.pt", directory / "summary.json"
    is_main = distributed.current().is_main
    # two jobs asking for the same encoder: one trains; within a DDP job rank 0 decides for all ranks
    with FileLock(str(directory / ".lock")) if is_main else contextlib.nullcontext():
        if distributed.main_decides(encoder_file.exists() and summary_file.exists()):
            saved = load_or_set_aside(encoder_file)  # a damaged file is set aside and trained again
            if distributed.main_decides(saved is not None):
                print(f"[pretrain] reusing cached encoder {key} ({directory})", flush=True)
                summary = {**json.loads(summary_file.read_text()), "reused": True}
                return PretrainedEncoder(saved["arch"], saved["state"], summary)
        summary, model = train(method, config, data, device, directory / "checkpoint.pt", progress)
        summary.update(cache_key=key, reused=False)
        state = {name: tensor.detach().cpu() for name, tensor in model.encoder().state_dict().items()}
        if is_main:
            save_torch({"arch": model.arch, "state": state}, encoder_file)
            atomic_write_json(summary_file, summary)
            (directory / "checkpoint.pt").unlink(missing_ok=True)
        return PretrainedEncoder(model.arch, state, summary)


NOT_MASKING = ("loss", "wall_time_s", "other_cpu_share")  # the epoch history's other entries are masking statistics


def check_pretraining_batch(batch_size: int, pool_size: int) -> None:
    """Pretraining drops the last partial batch (protocol §0): the pool must hold one whole batch."""
    if batch_size > pool_size:
        raise ConfigError(f"pretrain.batch_size={batch_size} is larger than the training pool ({pool_size} images): lower it")


def build_optimizer(model: Pretrainer, settings: object, batch_size: int) -> tuple[torch.optim.Optimizer, float, float]:
    """(optimizer, base lr, warmup epochs) following the method's recipe (the base class of its settings).

    fused: one kernel over all parameters, the same update rule; 3.2x faster MIM steps on a 2-core Zen 5.
    """
    base_lr = scaled_lr(settings.blr, batch_size)
    if isinstance(settings, AdamWRecipe):  # T1: AdamW, betas (0.9, 0.95), wd 0.05
        return (
            torch.optim.AdamW(model.param_groups(settings.weight_decay), lr=base_lr, betas=settings.betas, fused=True),
            base_lr,
            settings.warmup_epochs,
        )
    # protocol §3: SGD, momentum 0.9, wd 1e-4, cosine to 0 without warmup
    return (
        torch.optim.SGD(model.param_groups(settings.weight_decay), lr=base_lr, momentum=settings.momentum, fused=True),
        base_lr,
        0.0,
    )


def pretrain_views(model: Pretrainer, batch: Batch, image_size: int) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The method's views of a batch; the lung masks follow the first view's crop."""
    views, view_masks = [], None
    for index, spec in enumerate(model.view_specs):
        view, aligned = make_view(batch.images, spec, image_size, batch.masks if index == 0 else None)
        views.append(view)
        view_masks = aligned if index == 0 else view_masks
    return views, view_masks


def forward_backward(
    trained: nn.Module,
    views: list[torch.Tensor],
    view_masks: torch.Tensor | None,
    accum_steps: int,
    config: Config,
    device: torch.device,
) -> tuple[torch.Tensor, dict]:
    """Loss and statistics of one micro-batch, gradients accumulated (``trained``: the model or its DDP)."""
    with autocast(device, config):
        loss, stats = trained(views, view_masks)
    (loss / accum_steps).backward()
    return loss.detach(), {name: value.detach() for name, value in stats.items()}


def apply_update(model: Pretrainer, optimizer: torch.optim.Optimizer, step: int, total_steps: int) -> None:
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.after_step(step, total_steps)


def train(
    method: Method, config: Config, data: PreparedData, device: torch.device, checkpoint_file: Path, progress: bool
) -> tuple[dict, Pretrainer]:
    settings = config.pretrain
    ranks = distributed.current()
    torch.manual_seed(config.seed)
    model = method.pretrainer(config).to(device)
    apply_fast_paths(model, device, config)
    trained = distributed.wrap(model, device)
    pool = TensorPool(data.images, data.masks if model.uses_masks else None, data.labels, data.train_idx, device)
    check_pretraining_batch(settings.batch_size, len(pool))
    plan = pretrain_plan(len(pool), settings)
    steps_per_epoch, total_steps, epochs = plan.steps_per_epoch, plan.total_steps, plan.epochs
    micro_batch = settings.batch_size // settings.accum_steps  # over all ranks; lr follows the global batch
    if micro_batch % ranks.world:
        raise ConfigError(
            f"pretrain.batch_size / accum_steps = {micro_batch} does not split over {ranks.world} "
            f"ranks: make it a multiple of the number of processes"
        )
    optimizer, base_lr, warmup_epochs = build_optimizer(model, config.method(method.name), settings.batch_size)

    history: list[dict] = []
    start_epoch, started = 0, time.time()
    scalars = ScalarLog(config.runtime.tensorboard, f"pretrain-{checkpoint_file.parent.name}", ranks.is_main)
    # every rank loads rank 0's checkpoint: the ranks' states are equal
    history, start_epoch = restore_training_state(checkpoint_file, model, optimizer, device)
    if start_epoch:
        print(f"[pretrain] resuming {method.name} after {start_epoch} of {epochs} epochs", flush=True)

    bar = tqdm(
        total=total_steps * settings.batch_size,
        initial=start_epoch * steps_per_epoch * settings.batch_size,
        unit="img",
        unit_scale=True,
        desc=f"pretrain {method.name}",
        disable=not (bars_enabled(progress) and ranks.is_main),
        smoothing=0.1,
    )
    model.train()
    for epoch in range(start_epoch, epochs):
        epoch_started, meter = time.time(), CpuMeter().start()
        loss_sum = torch.zeros((), device=device)
        stat_sums: dict[str, torch.Tensor] = {}
        steps_done = 0
        batches = pool.batches(micro_batch, config.seed, epoch, drop_last=True, ranks=ranks)
        for step_in_epoch in range(steps_per_epoch):
            step = epoch * steps_per_epoch + step_in_epoch
            if step >= total_steps:
                break
            set_lr(optimizer, lr_at(step, total_steps, warmup_epochs * steps_per_epoch, base_lr, 0.0), base_lr)
            for micro_step in range(settings.accum_steps):
                batch = next(batches)
                last = micro_step == settings.accum_steps - 1
                with distributed.global_batch(batch.global_size), distributed.gradient_sync(trained, last):
                    views, view_masks = pretrain_views(model, batch, data.image_size)
                    loss, stats = forward_backward(trained, views, view_masks, settings.accum_steps, config, device)
                loss_sum += loss / settings.accum_steps
                for name, value in stats.items():
                    stat_sums[name] = stat_sums.get(name, 0) + value / settings.accum_steps
            apply_update(model, optimizer, step, total_steps)
            steps_done += 1
            bar.update(settings.batch_size)
            if step_in_epoch % 10 == 0:  # a host sync (and under DDP an all-reduce) only every few steps
                mean_loss = distributed.mean(loss_sum)
                check_finite(mean_loss, method, epoch, step_in_epoch, optimizer)
                bar.set_postfix(loss=f"{mean_loss.item() / steps_done:.4f}")
        mean_loss = distributed.mean(loss_sum)
        check_finite(mean_loss, method, epoch, steps_done, optimizer)
        record = {
            "epoch": epoch + 1,
            "loss": mean_loss.item() / max(1, steps_done),
            "wall_time_s": time.time() - epoch_started,
            "other_cpu_share": meter.stop(),
        }
        record.update({name: float(distributed.mean(value)) / max(1, steps_done) for name, value in stat_sums.items()})
        history.append(record)
        if ranks.is_main:
            save_training_state(checkpoint_file, model, optimizer, device, history, epoch + 1)
            scalars.add({f"pretrain/{name}": value for name, value in record.items() if name != "epoch"}, epoch + 1)
            if not bars_enabled(progress):
                rate = steps_done * settings.batch_size / max(record["wall_time_s"], 1e-9)
                epoch_line(
                    f"pretrain {method.name}",
                    epoch + 1,
                    epochs,
                    record["wall_time_s"],
                    loss=f"{record['loss']:.4f}",
                    img_per_s=f"{rate:.0f}",
                )
    bar.close()
    scalars.close()
    wall = sum(entry["wall_time_s"] for entry in history)
    images_seen = min(total_steps, epochs * steps_per_epoch) * settings.batch_size
    summary = {
        "epochs": epochs,
        "configured_epochs": settings.epochs,
        "steps": total_steps,
        "batch_size": settings.batch_size,
        "base_lr": base_lr,
        "wall_time_s": wall,
        "images_per_s": images_seen / wall if wall > 0 else None,
        "other_cpu_share": time_weighted_share([(e.get("other_cpu_share"), e["wall_time_s"]) for e in history]),
        "loss_history": [entry["loss"] for entry in history],
        "masking": [{k: v for k, v in entry.items() if k not in NOT_MASKING} for entry in history]
        if model.uses_masks or method.uses_mask_ratio
        else None,
        "resumed_from_epoch": start_epoch or None,
        "elapsed_this_process_s": time.time() - started,
        "processes": ranks.world,
    }
    return summary, model


def check_finite(loss_sum: torch.Tensor, method: Method, epoch: int, step: int, optimizer: torch.optim.Optimizer) -> None:
    if not torch.isfinite(loss_sum):
        lr = optimizer.param_groups[0]["lr"]
        raise TrainingError(
            f"{method.name} pretraining loss became {loss_sum.item()} at epoch {epoch + 1}, "
            f"step {step} (lr {lr:.3g}); lower the learning rate or turn amp off"
        )
