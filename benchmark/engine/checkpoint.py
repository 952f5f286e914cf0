"""Atomic writes: a file is either the old complete version or the new complete version."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


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
