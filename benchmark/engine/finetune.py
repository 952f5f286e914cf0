"""Fine-tuning shared by all ten model variants (spec §0.2): encoder + one linear head, cross-entropy.

Evaluates on the test set after every epoch; the headline is the final epoch's accuracy (there is no
validation split in the paper, so choosing the best epoch on the test set would leak).
"""

from __future__ import annotations

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
from benchmark.data.prepare import PreparedData
from benchmark.data.views import ViewSpec, make_view, normalize
from benchmark.engine.batches import TensorPool
from benchmark.engine.checkpoint import load_torch, save_torch
from benchmark.engine.metrics import classification_metrics
from benchmark.engine.runtime import TrainingError, autocast, lr_at, restore_rng_state, rng_state, set_lr
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
        return param_groups_layer_decay(model, settings.weight_decay, no_weight_decay_list=skip,
                                        layer_decay=settings.layer_decay)
    return param_groups_weight_decay(model, settings.weight_decay, no_weight_decay_list=skip)


@torch.no_grad()
def evaluate(model: nn.Module, pool: TensorPool, config: Config, device: torch.device,
             classes: tuple[str, ...]) -> dict:
    model.eval()
    probabilities, labels = [], []
    for images, _, batch_labels in pool.batches(config.finetune.eval_batch_size, 0, 0, shuffle=False):
        with autocast(device, config):
            logits = model(normalize(images))
        probabilities.append(logits.float().softmax(dim=1).cpu())
        labels.append(batch_labels.cpu())
    model.train()
    return classification_metrics(torch.cat(probabilities).numpy(), torch.cat(labels).numpy(), classes)


def finetune(encoder: nn.Module, config: Config, data: PreparedData, fraction: float, device: torch.device,
             checkpoint_file: Optional[Path] = None, progress: bool = True, label: str = "") -> dict:
    """Train encoder + head on the label subset of `fraction`; returns history, final metrics, cost."""
    settings = config.finetune
    torch.manual_seed(config.seed)
    model = Classifier(encoder, len(data.classes), settings.head_init_std).to(device)
    subset = data.subset(fraction)
    train_pool = TensorPool(data.images, None, data.labels, subset, device)
    test_pool = TensorPool(data.images, None, data.labels, data.test_idx, device)
    steps_per_epoch = math.ceil(len(train_pool) / settings.batch_size)  # no drop_last: 1 % may be tiny
    if settings.max_steps:
        steps_per_epoch = min(steps_per_epoch, settings.max_steps)
    total_steps = steps_per_epoch * settings.epochs
    base_lr = settings.blr * settings.batch_size / 256  # T1 scaling rule
    # fused: one kernel over all parameters, same update rule; the per-tensor loop dominated small steps on CPU
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=base_lr, betas=settings.betas, fused=True)
    view = ViewSpec(min_scale=settings.min_scale)  # spec §0.2: mild crop + flip, nothing else

    history: list[dict] = []
    start_epoch = 0
    if checkpoint_file is not None and checkpoint_file.exists():
        saved = load_torch(checkpoint_file)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        restore_rng_state(saved["rng"])
        history, start_epoch = saved["history"], saved["epoch"]
        print(f"[finetune] resuming from epoch {start_epoch}/{settings.epochs}", flush=True)

    bar = tqdm(total=settings.epochs, initial=start_epoch, unit="epoch", desc=f"finetune {label}".strip(),
               disable=not progress)
    model.train()
    for epoch in range(start_epoch, settings.epochs):
        started = time.time()
        loss_sum, seen = torch.zeros((), device=device), 0
        batches = train_pool.batches(settings.batch_size, config.seed, epoch)
        for step_in_epoch, (images, _, labels) in zip(range(steps_per_epoch), batches):
            step = epoch * steps_per_epoch + step_in_epoch
            set_lr(optimizer, lr_at(step, total_steps, settings.warmup_epochs * steps_per_epoch, base_lr,
                                    settings.min_lr), base_lr)
            views, _ = make_view(images, view, data.image_size)
            with autocast(device, config):
                loss = F.cross_entropy(model(views).float(), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach() * len(labels)
            seen += len(labels)
        train_time = time.time() - started
        train_loss = loss_sum.item() / max(1, seen)
        if not math.isfinite(train_loss):
            raise TrainingError(f"fine-tuning loss became {train_loss} at epoch {epoch + 1} (lr {base_lr:.3g}); "
                                "lower finetune.blr or turn amp off")
        metrics = evaluate(model, test_pool, config, device, data.classes)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"],
                        "train_images": seen, "train_time_s": train_time,
                        "eval_time_s": time.time() - started - train_time, **metrics})
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{metrics['accuracy']:.3f}")
        if checkpoint_file is not None:
            save_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(),
                        "history": history, "epoch": epoch + 1}, checkpoint_file)
    bar.close()
    train_time = sum(entry["train_time_s"] for entry in history)
    final = dict(history[-1])
    final_metrics = {k: final[k] for k in ("accuracy", "macro_f1", "per_class_recall", "auroc",
                                          "macro_auroc", "confusion")}
    final_metrics["best_epoch_accuracy"] = max(entry["accuracy"] for entry in history)  # diagnostic only
    return {
        "metrics": final_metrics,
        "history": [{k: v for k, v in entry.items() if k != "confusion"} for entry in history],
        "summary": {
            "epochs": settings.epochs, "steps_per_epoch": steps_per_epoch, "batch_size": settings.batch_size,
            "base_lr": base_lr, "subset_size": len(train_pool),
            "wall_time_s": sum(entry["train_time_s"] + entry["eval_time_s"] for entry in history),
            "images_per_s": sum(entry["train_images"] for entry in history) / train_time if train_time else None,
            "resumed_from_epoch": start_epoch or None,
        },
    }
