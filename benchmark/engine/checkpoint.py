"""Checkpoints: atomic torch saves (benchmark/files.py), weights-only loads and training-state restore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.engine.runtime import restore_rng_state, rng_state
from benchmark.files import atomic_write


def save_torch(obj: Any, path: Path) -> None:
    atomic_write(Path(path), lambda stream: torch.save(obj, stream))


def load_torch(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_training_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, history: list[dict], epoch: int
) -> None:
    """The per-epoch checkpoint both engines write: weights, optimizer, RNG, history, completed epochs."""
    save_torch(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rng_state(device),
            "history": history,
            "epoch": epoch,
        },
        path,
    )


def restore_training_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
) -> tuple[list[dict], int]:
    """Load a per-epoch checkpoint into model, optimizer and RNG; returns (history, completed epochs)."""
    saved = load_torch(path)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    restore_rng_state(saved["rng"], device)
    return saved["history"], saved["epoch"]
