"""Frozen-feature probes of an encoder: weighted kNN and a linear probe on the label subset, scored on the test set.

The features of every image (training pool and test set, no augmentation) are extracted once per encoder
and dataset and cached, so probing all five label fractions costs about one forward pass over the data
(protocol §8). kNN follows solo-learn's weighted kNN (``solo/utils/knn.py``: cosine similarity, the k most
similar training images vote with weight exp(s / T)); the linear probe follows MAE's (``main_linprobe.py``:
BatchNorm without affine parameters before one linear layer), trained for a fixed number of steps.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config import PROBE_METRICS, Config, ProbeConfig
from benchmark.data.prepare import PreparedData
from benchmark.data.views import normalize
from benchmark.engine.batches import TensorPool
from benchmark.engine.metrics import classification_metrics
from benchmark.engine.runtime import autocast, lr_at
from benchmark.files import atomic_write_bytes


@torch.no_grad()
def extract_features(encoder: nn.Module, data: PreparedData, config: Config, device: torch.device) -> np.ndarray:
    """(N, D) float32 features of every item in dataset order, the encoder in eval mode, images only resized."""
    was_training = encoder.training
    encoder.eval()
    everything = np.arange(len(data.labels))
    pool = TensorPool(data.images, None, data.labels, everything, device)
    blocks = []
    for batch in pool.batches(config.finetune.eval_batch_size, 0, 0, shuffle=False):
        with autocast(device, config):
            blocks.append(encoder(normalize(batch.images)).float().cpu())
    encoder.train(was_training)
    return torch.cat(blocks).numpy()


def cached_features(
    encoder: nn.Module, data: PreparedData, config: Config, device: torch.device, cache_file: Path
) -> tuple[np.ndarray, bool]:
    """The encoder's features, read from ``cache_file`` when an earlier run extracted them; (features, reused)."""
    if cache_file.exists():
        features = np.load(cache_file)
        if features.shape[0] == len(data.labels):
            return features, True
    features = extract_features(encoder, data, config, device)
    buffer = io.BytesIO()
    np.save(buffer, features)
    atomic_write_bytes(cache_file, buffer.getvalue())
    return features, False


def knn_probabilities(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, num_classes: int, k: int, temperature: float
) -> np.ndarray:
    """Weighted kNN class scores, normalised per test image: the k most cosine-similar training images vote
    with weight exp(similarity / T)."""
    train_t = F.normalize(torch.from_numpy(train).float(), dim=1)
    test_t = F.normalize(torch.from_numpy(test).float(), dim=1)
    similarity = test_t @ train_t.T
    top, index = similarity.topk(min(k, len(train_t)), dim=1)
    weights = (top / temperature).exp()
    votes = F.one_hot(torch.from_numpy(train_labels)[index], num_classes).float() * weights[..., None]
    scores = votes.sum(dim=1)
    return (scores / scores.sum(dim=1, keepdim=True)).numpy()


def linear_probe_probabilities(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, num_classes: int, settings: ProbeConfig, seed: int
) -> np.ndarray:
    """A non-affine BatchNorm + linear head trained on the frozen features for ``linear_steps`` steps (SGD,
    momentum 0.9, cosine schedule, no weight decay), then applied to the test features."""
    generator = torch.Generator().manual_seed(seed)
    features, labels = torch.from_numpy(train).float(), torch.from_numpy(train_labels)
    head = nn.Sequential(nn.BatchNorm1d(features.shape[1], affine=False), nn.Linear(features.shape[1], num_classes))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        nn.init.trunc_normal_(head[1].weight, std=0.01)  # MAE main_linprobe.py
        nn.init.zeros_(head[1].bias)
    optimizer = torch.optim.SGD(head.parameters(), lr=settings.linear_lr, momentum=0.9)
    batch = min(settings.linear_batch_size, len(features))
    order, position = torch.randperm(len(features), generator=generator), 0
    head.train()
    for step in range(settings.linear_steps):
        if position + batch > len(order):  # cycle through the subset, reshuffled each pass
            order, position = torch.randperm(len(features), generator=generator), 0
        chosen = order[position : position + batch]
        position += batch
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, settings.linear_steps, 0.0, settings.linear_lr, 0.0)
        loss = F.cross_entropy(head(features[chosen]), labels[chosen])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    head.eval()
    with torch.no_grad():
        return head(torch.from_numpy(test).float()).softmax(dim=1).numpy()


def probe(features: np.ndarray, data: PreparedData, subset: np.ndarray, settings: ProbeConfig, seed: int) -> dict:
    """kNN and linear-probe metrics of ``features`` with the labels of ``subset``, on the test set."""
    train, train_labels = features[subset], data.labels[subset]
    test, test_labels = features[data.test_idx], data.labels[data.test_idx]
    classes = data.classes
    knn = knn_probabilities(train, train_labels, test, len(classes), settings.knn_k, settings.knn_temperature)
    linear = linear_probe_probabilities(train, train_labels, test, len(classes), settings, seed)

    def summary(probabilities: np.ndarray, **facts) -> dict:
        metrics = classification_metrics(probabilities, test_labels, classes)
        return {**{key: metrics[key] for key in PROBE_METRICS}, **facts}

    return {
        "knn": summary(knn, k=min(settings.knn_k, len(subset)), temperature=settings.knn_temperature),
        "linear": summary(linear, steps=settings.linear_steps),
        "subset_size": int(len(subset)),
        "feature_dim": int(features.shape[1]),
    }
