"""Atomic writes (a file is either the old or the new complete version) and training-state restore."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.engine.runtime import restore_rng_state


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_torch(obj: Any, path: Path) -> None:
    _atomic(Path(path), lambda stream: torch.save(obj, stream))


def load_torch(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_json(obj: Any, path: Path) -> None:
    _atomic(Path(path), lambda stream: stream.write(json.dumps(obj, indent=2, default=str).encode()))


def restore_training_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                           device: torch.device) -> tuple[list[dict], int]:
    """Load a per-epoch checkpoint into model, optimizer and RNG; returns (history, completed epochs)."""
    saved = load_torch(path)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    restore_rng_state(saved["rng"], device)
    return saved["history"], saved["epoch"]
