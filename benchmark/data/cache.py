"""Decode once: images and lung masks at the working size as uint8 memory-mapped .npy arrays.

An entry is keyed by (dataset fingerprint, size). It is built in a temporary folder and published by an
atomic rename, with a completion marker written last, so a crashed or interrupted build never leaves a
folder that is later trusted. A file lock makes concurrent preparers (two cluster jobs starting together)
build once: the first builds, the others wait and then reuse.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from filelock import FileLock, Timeout
from tqdm import tqdm

from benchmark.config import DataConfig
from benchmark.data.source import DataError, Source

COMPLETE_MARKER = "COMPLETE"
CACHE_ENV = "RGMIM_CACHE"


@dataclass(frozen=True)
class CacheEntry:
    directory: Path
    images: np.ndarray  # (N, S, S) uint8, read-only memmap
    masks: np.ndarray  # (N, S, S) uint8 {0, 1}, read-only memmap; zeros where has_mask is False
    has_mask: np.ndarray  # (N,) bool
    built: bool  # True if this call decoded the files, False if it reused a published entry


def resolve_cache_root(data_cfg: DataConfig) -> Path:
    """data.cache_dir, else $RGMIM_CACHE, else ~/.cache/rgmim-bench."""
    chosen = data_cfg.cache_dir or os.environ.get(CACHE_ENV) or "~/.cache/rgmim-bench"
    return Path(chosen).expanduser()


def entry_directory(cache_root: Path, source_name: str, fingerprint: str, size: int) -> Path:
    return cache_root / f"{source_name}-{fingerprint[:16]}-{size}px"


def ensure_cache(source: Source, fingerprint: str, size: int, cache_root: Path, progress: bool = True,
                 metadata: Optional[dict[str, Any]] = None) -> CacheEntry:
    """The published entry for (fingerprint, size), building it first if needed (under a file lock)."""
    directory = entry_directory(cache_root, source.name, fingerprint, size)
    if not (directory / COMPLETE_MARKER).exists():
        try:
            cache_root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(f"cache folder {cache_root}: cannot create it ({error.strerror}); expected a "
                            f"writable folder (--cache-dir or ${CACHE_ENV})") from None
        # flock-based; works on local disks and on NFSv4 (Linux maps flock to fcntl locks there)
        lock = FileLock(str(directory) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print(f"[data] another process is preparing {directory.name}; waiting for it", file=sys.stderr)
            lock.acquire()
        try:
            if not (directory / COMPLETE_MARKER).exists():
                _build(source, size, directory, progress, metadata or {})
                return _open(directory, source, built=True)
        finally:
            lock.release()
    return _open(directory, source, built=False)


def _build(source: Source, size: int, directory: Path, progress: bool, metadata: dict[str, Any]) -> None:
    # Holding the lock, nobody else builds this entry: leftovers are from killed builds, never trusted.
    for stale in directory.parent.glob(f".{directory.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if directory.exists():
        shutil.rmtree(directory)  # no marker: not a published entry (e.g. copied in half)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        count = len(source.items)
        images = np.lib.format.open_memmap(staging / "images.npy", "w+", np.uint8, (count, size, size))
        masks = np.lib.format.open_memmap(staging / "masks.npy", "w+", np.uint8, (count, size, size))
        has_mask = np.zeros(count, bool)
        bar = tqdm(range(count), desc=f"decoding {source.name} at {size} px", unit="img", file=sys.stderr,
                   disable=not progress, leave=False)
        for index in bar:
            image, mask = source.load(index, size)
            images[index] = _checked(image, size, source, index, "image")
            if mask is not None:
                masks[index] = _checked(mask, size, source, index, "mask")
                has_mask[index] = True
        for array in (images, masks):
            array.flush()
        del images, masks  # close the memmaps before the folder moves
        np.save(staging / "has_mask.npy", has_mask)
        keys = [item.key for item in source.items]
        (staging / "keys.json").write_text(json.dumps(keys), encoding="utf-8")
        (staging / "meta.json").write_text(json.dumps({"size": size, **metadata}, indent=2, default=str),
                                           encoding="utf-8")
        (staging / COMPLETE_MARKER).write_text("ok\n", encoding="utf-8")
        _sync_files(staging)  # the rename below is what publishes; the marker makes a stray copy untrusted
        staging.chmod(0o755)  # mkdtemp makes it private; a shared cache must be readable by other jobs
        os.rename(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _checked(array: np.ndarray, size: int, source: Source, index: int, what: str) -> np.ndarray:
    binary = what == "mask"
    if array.shape != (size, size) or array.dtype != np.uint8 or (binary and array.max() > 1):
        expected = f"uint8 {{0, 1}} ({size}, {size})" if binary else f"uint8 ({size}, {size})"
        raise DataError(f"{source.name} item {source.items[index].key}: {what} came back as {array.dtype} "
                        f"{array.shape}; expected {expected}")
    return array


def _sync_files(folder: Path) -> None:
    """Flush file contents to disk, so that a published marker implies published data after a crash."""
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def _open(directory: Path, source: Source, built: bool) -> CacheEntry:
    keys = json.loads((directory / "keys.json").read_text(encoding="utf-8"))
    if keys != [item.key for item in source.items]:
        raise DataError(f"cache {directory} lists other images than the dataset it is keyed by; expected "
                        f"the same image keys. Delete that folder to rebuild it.")
    return CacheEntry(
        directory=directory,
        images=np.load(directory / "images.npy", mmap_mode="r"),
        masks=np.load(directory / "masks.npy", mmap_mode="r"),
        has_mask=np.load(directory / "has_mask.npy"),
        built=built,
    )
