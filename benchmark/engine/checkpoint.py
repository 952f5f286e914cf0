"""Checkpoints: atomic torch saves (benchmark/files.py), weights-only loads and training-state restore."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from benchmark.engine.runtime import restore_rng_state, rng_state
from benchmark.files import atomic_write


def save_torch(obj: Any, path: Path) -> None:
    atomic_write(Path(path), lambda stream: torch.save(obj, stream))


def load_torch(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_or_set_aside(path: Path) -> Optional[Any]:
    """A cache file or checkpoint the engines wrote, or None when it cannot be read (truncated by a full disk,
    copied in half): it is then renamed ``<name>.damaged-<time>`` with a warning naming it, and the caller
    rebuilds what it held, so that no user has to find and delete the file by hand."""
    try:
        return load_torch(path)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            path.rename(aside)
        except FileNotFoundError:  # another rank of the same job set it aside first
            pass
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        print(
            f"warning: {path} cannot be read ({reason}); moved aside to {aside.name}, rebuilding it",
            file=sys.stderr,
            flush=True,
        )
        return None


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
    """Load a per-epoch checkpoint into model, optimizer and RNG; returns (history, completed epochs), or
    ([], 0) when there is none or it is damaged (set aside): the run then starts from the beginning."""
    saved = load_or_set_aside(path) if path.exists() else None
    if saved is None:
        return [], 0
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    restore_rng_state(saved["rng"], device)
    return saved["history"], saved["epoch"]
