"""How good a lung-mask source is, against the dataset's own masks: Dice, IoU and lung-patch IoU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.data.regions import lung_patch_grid

CHUNK = 512  # images per step when scoring masks: bounded memory at any dataset size


def overlap_scores(
    predicted: np.ndarray, reference: np.ndarray, patch_size: int, min_overlap: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image of (B, S, S) masks: pixel Dice, pixel IoU and IoU of the patches overlapping the lung
    (RGMIM's valid patches). Two empty masks agree: 1.0."""
    predicted, reference = predicted.astype(bool), reference.astype(bool)

    def ratios(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        axes = tuple(range(1, first.ndim))
        both = (first & second).sum(axis=axes).astype(float)
        either = (first | second).sum(axis=axes).astype(float)
        total = first.sum(axis=axes) + second.sum(axis=axes)
        dice = np.divide(2 * both, total, out=np.ones_like(both), where=total > 0)
        iou = np.divide(both, either, out=np.ones_like(both), where=either > 0)
        return dice, iou

    dice, iou = ratios(predicted, reference)
    _, patch_iou = ratios(
        *(lung_patch_grid(torch.from_numpy(masks), patch_size, min_overlap).numpy() for masks in (predicted, reference))
    )
    return dice, iou, patch_iou


@dataclass(frozen=True)
class MaskScore:
    index: int  # into the dataset's items
    key: str
    class_name: str
    dice: float
    iou: float
    patch_iou: float


def evaluate_regions(
    predicted: np.ndarray,
    reference: np.ndarray,
    has_reference: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    keys: list[str],
    patch_size: int,
    min_overlap: float,
) -> list[MaskScore]:
    """Scores of every image that has a reference mask; an image without a predicted region scores as an
    empty prediction (Dice 0 against a non-empty reference)."""
    chosen = np.flatnonzero(has_reference)
    scores = []
    for start in range(0, len(chosen), CHUNK):
        batch = chosen[start : start + CHUNK]
        dice, iou, patch_iou = overlap_scores(
            np.asarray(predicted[batch]), np.asarray(reference[batch]), patch_size, min_overlap
        )
        scores += [
            MaskScore(int(index), keys[index], classes[labels[index]], float(d), float(i), float(p))
            for index, d, i, p in zip(batch, dice, iou, patch_iou)
        ]
    return scores


def quality_text(scores: list[MaskScore], classes: tuple[str, ...], grid_text: str, worst: int = 5) -> str:
    """Per class and overall: mean and median of each score; then the ``worst`` images by Dice."""
    metrics = (("Dice", "dice"), ("IoU", "iou"), ("patch IoU", "patch_iou"))
    width = max(len(name) for name in (*classes, "all"))
    heading = f"{'class':<{width}}  {'images':>6}" + "".join(f"  {f'{title} mean':>14} {'median':>7}" for title, _ in metrics)
    lines = [f"quality against the dataset's own masks ({len(scores)} images with one; patch IoU on the {grid_text}):", heading]
    for name in (*classes, "all"):
        members = [score for score in scores if name in ("all", score.class_name)]
        if not members:
            continue
        cells = "".join(
            f"  {np.mean([getattr(s, field) for s in members]):>14.3f} {np.median([getattr(s, field) for s in members]):>7.3f}"
            for _, field in metrics
        )
        lines.append(f"{name:<{width}}  {len(members):>6}{cells}")
    lines += ["", f"worst {min(worst, len(scores))} by Dice:"]
    for score in sorted(scores, key=lambda s: (s.dice, s.key))[:worst]:
        lines.append(
            f"  Dice {score.dice:.3f}  IoU {score.iou:.3f}  patch IoU {score.patch_iou:.3f}  {score.class_name}: {score.key}"
        )
    return "\n".join(lines)
