"""Classification metrics from predicted probabilities (numpy/scipy; no extra dependency)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, -1)


def one_vs_rest_auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """AUROC by the Mann-Whitney U statistic (ties count one half); nan without both classes."""
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata  # lazy: scipy.stats takes over a second to import, and a CLI error needs none of it

    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> dict:
    num_classes = len(classes)
    predictions = probabilities.argmax(axis=1)
    confusion = confusion_matrix(labels, predictions, num_classes)
    true_per_class, predicted_per_class = confusion.sum(axis=1), confusion.sum(axis=0)
    hits = np.diag(confusion)
    recall = np.divide(hits, true_per_class, out=np.zeros(num_classes), where=true_per_class > 0)
    precision = np.divide(hits, predicted_per_class, out=np.zeros(num_classes), where=predicted_per_class > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(num_classes), where=denominator > 0)
    auroc = [one_vs_rest_auroc(probabilities[:, k], labels == k) for k in range(num_classes)]
    return {
        "accuracy": float((predictions == labels).mean()),
        "macro_f1": float(f1.mean()),
        "per_class_recall": {name: float(r) for name, r in zip(classes, recall)},
        # null, not NaN, where a class is absent from the test set (JSON has no NaN)
        "auroc": {name: None if np.isnan(a) else a for name, a in zip(classes, auroc)},
        "macro_auroc": None if np.all(np.isnan(auroc)) else float(np.nanmean(auroc)),
        "confusion": confusion.tolist(),
    }
