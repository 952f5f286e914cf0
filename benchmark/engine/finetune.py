"""Fine-tuning shared by all ten model variants (protocol §8): encoder + one linear head, cross-entropy.

Evaluates on the test set after every epoch; the headline is the final epoch's accuracy (there is no
validation split in the paper, so choosing the best epoch on the test set would leak).
Under DDP each rank trains on its rows of every global batch and evaluates a block of the test set.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from torch import nn
from tqdm import tqdm

from benchmark.config import Config
from benchmark.console import bars_enabled, epoch_line
from benchmark.data.prepare import PreparedData
from benchmark.data.views import ViewSpec, make_view, normalize
from benchmark import distributed
from benchmark.engine.batches import TensorPool
from benchmark.engine.checkpoint import restore_training_state, save_training_state
from benchmark.engine.fastpaths import apply_fast_paths
from benchmark.engine.metrics import classification_metrics
from benchmark.engine.scalars import ScalarLog
from benchmark.engine.runtime import CpuMeter, autocast, finetune_plan, lr_at, scaled_lr, set_lr, time_weighted_share
from benchmark.errors import TrainingError
from methods.backbones import feature_dim


class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_classes: int, head_init_std: float):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feature_dim(encoder), num_classes)
        nn.init.trunc_normal_(self.head.weight, std=head_init_std)  # MAE main_finetune.py
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))


def param_groups(model: Classifier, config: Config) -> list[dict]:
    settings = config.finetune
    encoder = model.encoder
    skip = {f"encoder.{name}" for name in getattr(encoder, "no_weight_decay", lambda: set())()}
    if settings.layer_decay < 1.0 and hasattr(encoder, "blocks"):  # MAE util/lr_decay.py, ViT only
        return param_groups_layer_decay(
            model, settings.weight_decay, no_weight_decay_list=skip, layer_decay=settings.layer_decay
        )
    return param_groups_weight_decay(model, settings.weight_decay, no_weight_decay_list=skip)


@torch.no_grad()
def evaluate(model: nn.Module, pool: TensorPool, config: Config, device: torch.device, classes: tuple[str, ...]) -> dict:
    """Batched, gradient-free; under DDP each rank scores its block and the blocks are gathered in order."""
    model.eval()
    probabilities, labels = [], []
    for batch in pool.batches(config.finetune.eval_batch_size, 0, 0, shuffle=False):
        with autocast(device, config):
            logits = model(normalize(batch.images))
        probabilities.append(logits.float().softmax(dim=1))
        labels.append(batch.labels)
    model.train()
    probabilities = distributed.gather_blocks(torch.cat(probabilities)).cpu()  # one host copy per evaluation
    labels = distributed.gather_blocks(torch.cat(labels)).cpu()
    return classification_metrics(probabilities.numpy(), labels.numpy(), classes)


def build_optimizer(model: Classifier, config: Config) -> tuple[torch.optim.Optimizer, float]:
    """AdamW at lr = blr * global batch / 256 (T1 scaling rule); returns (optimizer, base lr)."""
    settings = config.finetune
    base_lr = scaled_lr(settings.blr, settings.batch_size)
    # fused: one kernel over all parameters, same update rule; the per-tensor loop dominated small steps on CPU
    return torch.optim.AdamW(param_groups(model, config), lr=base_lr, betas=settings.betas, fused=True), base_lr


def training_view(config: Config) -> ViewSpec:
    return ViewSpec(min_scale=config.finetune.min_scale)  # protocol §8: mild crop + flip, nothing else


def classification_backward(
    trained: nn.Module, views: torch.Tensor, labels: torch.Tensor, global_size: int, config: Config, device: torch.device
) -> torch.Tensor:
    """Cross-entropy of this rank's rows, scaled so DDP's average over ranks is the global batch's mean
    even when a last batch splits unevenly (identical to the plain mean in one process)."""
    with autocast(device, config):
        logits = trained(views)
    loss = F.cross_entropy(logits.float(), labels, reduction="sum") / global_size * distributed.current().world
    loss.backward()
    return loss.detach()


def finetune(
    encoder: nn.Module,
    config: Config,
    data: PreparedData,
    fraction: float,
    device: torch.device,
    checkpoint_file: Optional[Path] = None,
    progress: bool = True,
    label: str = "",
) -> dict:
    """Train encoder + head on the label subset of `fraction`; returns history, final metrics, cost."""
    settings = config.finetune
    ranks = distributed.current()
    torch.manual_seed(config.seed)
    model = Classifier(encoder, len(data.classes), settings.head_init_std).to(device)
    apply_fast_paths(model, device, config)
    trained = distributed.wrap(model, device)
    subset = data.subset(fraction)
    train_pool = TensorPool(data.images, None, data.labels, subset, device)
    test_block = data.test_idx[distributed.contiguous_share(len(data.test_idx))]
    test_pool = TensorPool(data.images, None, data.labels, test_block, device)
    plan = finetune_plan(len(train_pool), settings)
    steps_per_epoch, passes, total_steps, epochs = plan.steps_per_epoch, plan.passes_per_epoch, plan.total_steps, plan.epochs
    optimizer, base_lr = build_optimizer(model, config)
    view = training_view(config)

    history: list[dict] = []
    start_epoch = 0
    if checkpoint_file is not None:
        history, start_epoch = restore_training_state(checkpoint_file, model, optimizer, device)
        if start_epoch:
            print(f"[finetune] resuming after {start_epoch} of {epochs} epochs", flush=True)

    scalars = ScalarLog(config.runtime.tensorboard, label or "finetune", ranks.is_main)
    bar = tqdm(
        total=epochs,
        initial=start_epoch,
        unit="epoch",
        desc=f"finetune {label}".strip(),
        disable=not (bars_enabled(progress) and ranks.is_main),
    )
    model.train()
    for epoch in range(start_epoch, epochs):
        started, meter = time.time(), CpuMeter().start()
        loss_sum, seen = torch.zeros((), device=device), 0
        batches = itertools.chain.from_iterable(  # pass p of epoch e: its own seeded order (e with one pass)
            train_pool.batches(settings.batch_size, config.seed, epoch * passes + p, ranks=ranks) for p in range(passes)
        )
        for step_in_epoch, batch in zip(range(steps_per_epoch), batches):
            step = epoch * steps_per_epoch + step_in_epoch
            if step >= total_steps:  # finetune.max_steps
                break
            set_lr(
                optimizer, lr_at(step, total_steps, settings.warmup_epochs * steps_per_epoch, base_lr, settings.min_lr), base_lr
            )
            with distributed.global_batch(batch.global_size):
                views, _ = make_view(batch.images, view, data.image_size)
                loss = classification_backward(trained, views, batch.labels, batch.global_size, config, device)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss * batch.global_size / ranks.world  # this rank's share of the batch's loss sum
            seen += batch.global_size
        train_time = time.time() - started
        train_loss = distributed.total(loss_sum).item() / max(1, seen)
        if not math.isfinite(train_loss):
            raise TrainingError(
                f"fine-tuning loss became {train_loss} at epoch {epoch + 1} (lr {base_lr:.3g}); "
                "lower finetune.blr or turn amp off"
            )
        metrics = evaluate(model, test_pool, config, device, data.classes)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "lr": optimizer.param_groups[0]["lr"],
                "train_images": seen,
                "train_time_s": train_time,
                "eval_time_s": time.time() - started - train_time,
                "other_cpu_share": meter.stop(),
                **metrics,
            }
        )
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{metrics['accuracy']:.3f}")
        if checkpoint_file is not None and ranks.is_main:
            save_training_state(checkpoint_file, model, optimizer, device, history, epoch + 1)
        scalars.add(
            {
                "finetune/train_loss": train_loss,
                "finetune/accuracy": metrics["accuracy"],
                "finetune/macro_f1": metrics["macro_f1"],
                "finetune/lr": optimizer.param_groups[0]["lr"],
            },
            epoch + 1,
        )
        if ranks.is_main and not bars_enabled(progress):
            epoch_line(
                f"finetune {label}".strip(),
                epoch + 1,
                epochs,
                time.time() - started,
                loss=f"{train_loss:.4f}",
                accuracy=f"{metrics['accuracy']:.4f}",
                img_per_s=f"{seen / max(train_time, 1e-9):.0f}",
            )
    bar.close()
    scalars.close()
    train_time = sum(entry["train_time_s"] for entry in history)
    final = dict(history[-1])
    final_metrics = {k: final[k] for k in ("accuracy", "macro_f1", "per_class_recall", "auroc", "macro_auroc", "confusion")}
    final_metrics["best_epoch_accuracy"] = max(entry["accuracy"] for entry in history)  # diagnostic only
    return {
        "metrics": final_metrics,
        "history": [{k: v for k, v in entry.items() if k != "confusion"} for entry in history],
        "summary": {
            "epochs": epochs,
            "configured_epochs": settings.epochs,
            "steps_per_epoch": steps_per_epoch,
            "steps": total_steps,
            "passes_per_epoch": passes,
            "batch_size": settings.batch_size,
            "base_lr": base_lr,
            "subset_size": len(train_pool),
            "wall_time_s": sum(entry["train_time_s"] + entry["eval_time_s"] for entry in history),
            "images_per_s": sum(entry["train_images"] for entry in history) / train_time if train_time else None,
            "other_cpu_share": time_weighted_share(
                [(entry.get("other_cpu_share"), entry["train_time_s"] + entry["eval_time_s"]) for entry in history]
            ),
            "resumed_from_epoch": start_epoch or None,
        },
    }
