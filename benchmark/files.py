"""Writing files so that readers see the old version or the whole new one, and stable short hashes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable

from benchmark.errors import ConfigError


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(stream)`` on a temporary file in the same folder, fsync it and rename it over ``path``.

    The rename is atomic on one filesystem; on any failure the temporary file is removed. The file is
    created with mode 0o666 so that the umask decides its permissions, as a plain ``open()`` would.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def publish_directory(directory: Path, fill: Callable[[Path], None]) -> None:
    """Build ``directory`` in a hidden sibling folder with ``fill(staging)`` and rename it into place, so a
    crashed or interrupted build never leaves a half-filled folder under the final name."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        fill(staging)
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a shared cache must be readable
        os.rename(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_writable(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and check a file can be written there; a ConfigError naming ``what`` if not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"{what} {folder}: cannot write there ({error.strerror or error})") from None


def stable_hash(payload: Any, length: int = 10) -> str:
    """Short deterministic hash of JSON-able data (run ids, cache keys)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
