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


SCORES = (("Dice", "dice"), ("IoU", "iou"), ("patch IoU", "patch_iou"))


def _score_stats(members: list[MaskScore]) -> dict:
    return {
        "images": len(members),
        **{
            field: {
                "mean": float(np.mean([getattr(s, field) for s in members])),
                "median": float(np.median([getattr(s, field) for s in members])),
            }
            for _, field in SCORES
        },
    }


def quality_summary(scores: list[MaskScore], classes: tuple[str, ...]) -> dict:
    """Image count, mean and median of each score over all scored images and per class (classes without a
    scored image are left out)."""
    per_class = {name: [score for score in scores if score.class_name == name] for name in classes}
    return {
        "all": _score_stats(scores) if scores else None,
        "classes": {name: _score_stats(members) for name, members in per_class.items() if members},
    }


def quality_text(scores: list[MaskScore], classes: tuple[str, ...], grid_text: str, worst: int = 5) -> str:
    """Per class and overall: mean and median of each score; then the ``worst`` images by Dice."""
    summary = quality_summary(scores, classes)
    rows = [*summary["classes"].items(), *((("all", summary["all"]),) if summary["all"] else ())]
    width = max(len(name) for name in (*classes, "all"))
    heading = f"{'class':<{width}}  {'images':>6}" + "".join(f"  {f'{title} mean':>14} {'median':>7}" for title, _ in SCORES)
    lines = [f"quality against the dataset's own masks ({len(scores)} images with one; patch IoU on the {grid_text}):", heading]
    for name, stats in rows:
        cells = "".join(f"  {stats[field]['mean']:>14.3f} {stats[field]['median']:>7.3f}" for _, field in SCORES)
        lines.append(f"{name:<{width}}  {stats['images']:>6}{cells}")
    lines += ["", f"worst {min(worst, len(scores))} by Dice:"]
    for score in sorted(scores, key=lambda s: (s.dice, s.key))[:worst]:
        lines.append(
            f"  Dice {score.dice:.3f}  IoU {score.iou:.3f}  patch IoU {score.patch_iou:.3f}  {score.class_name}: {score.key}"
        )
    return "\n".join(lines)
