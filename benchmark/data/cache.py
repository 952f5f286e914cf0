"""Decode once: images and lung masks at the working size as uint8 memory-mapped .npy arrays.

An entry is keyed by (dataset fingerprint, size). It is built in a temporary folder and published by an
atomic rename, with a completion marker written last, so a crashed or interrupted build never leaves a
folder that is later trusted. A file lock makes concurrent preparers (two cluster jobs starting together)
build once: the first builds, the others wait and then reuse.

Lung masks from another source than the dataset's own (``masks.py``) live beside their image entry, one
folder per source (``<entry>-masks-<tag>``), published the same way; images are never decoded again for them.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
from filelock import FileLock, Timeout
from benchmark.console import stage

from benchmark.config import DataConfig
from benchmark.data.source import Source
from benchmark.files import publish_directory
from benchmark.errors import DataError

COMPLETE_MARKER = "COMPLETE"
CACHE_ENV = "RGMIM_CACHE"


@dataclass(frozen=True)
class CacheEntry:
    directory: Path
    images: np.ndarray  # (N, S, S) uint8, read-only memmap
    masks: np.ndarray  # (N, S, S) uint8 {0, 1}, read-only memmap; zeros where has_mask is False
    has_mask: np.ndarray  # (N,) bool
    built: bool  # True if this call decoded the files, False if it reused a published entry


@dataclass(frozen=True)
class MaskEntry:
    directory: Path
    masks: np.ndarray  # (N, S, S) uint8 {0, 1}, read-only memmap; zeros where has_mask is False
    has_mask: np.ndarray  # (N,) bool: the source found a non-empty region
    built: bool


def default_cache_root() -> Path:
    """$RGMIM_CACHE, else ~/.cache/rgmim-bench: where facts about the machine, not a dataset, are kept."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/rgmim-bench").expanduser()


def resolve_cache_root(data_cfg: DataConfig) -> Path:
    """data.cache_dir, else $RGMIM_CACHE, else ~/.cache/rgmim-bench."""
    return Path(data_cfg.cache_dir).expanduser() if data_cfg.cache_dir else default_cache_root()


def entry_directory(cache_root: Path, source_name: str, fingerprint: str, size: int) -> Path:
    return cache_root / f"{source_name}-{fingerprint[:16]}-{size}px"


def ensure_cache(
    source: Source,
    fingerprint: str,
    size: int,
    cache_root: Path,
    progress: bool = True,
    metadata: Optional[dict[str, Any]] = None,
) -> CacheEntry:
    """The published entry for (fingerprint, size), building it first if needed (under a file lock)."""
    directory = entry_directory(cache_root, source.name, fingerprint, size)

    def write(staging: Path) -> None:
        _write_images(source, size, staging, progress, metadata or {})

    built = _ensure_published(directory, write)
    return _open(directory, source, built)


def mask_entry_directory(image_directory: Path, tag: str) -> Path:
    return image_directory.parent / f"{image_directory.name}-masks-{tag}"


def ensure_mask_cache(
    image_directory: Path,
    tag: str,
    keys: list[str],
    size: int,
    compute: Callable[[int], Optional[np.ndarray]],
    progress: bool = True,
    metadata: Optional[dict[str, Any]] = None,
    forkable: bool = False,
) -> MaskEntry:
    """The published masks of one source (``tag``) for the images of ``image_directory``, computing them
    first if needed: ``compute(index)`` gives image ``index``'s uint8 {0, 1} (size, size) mask or None.
    ``forkable``: ``compute`` runs numpy/PIL/scipy only, so forked workers may run it (``parallel_map``)."""
    directory = mask_entry_directory(image_directory, tag)

    def write(staging: Path) -> None:
        masks = np.lib.format.open_memmap(staging / "masks.npy", "w+", np.uint8, (len(keys), size, size))
        has_mask = np.zeros(len(keys), bool)
        with contextlib.closing(parallel_map(compute, len(keys), forkable)) as results:  # closed: an error stops the workers
            for index in stage(range(len(keys)), f"lung masks ({tag}) at {size} px", progress):
                mask = next(results)
                if mask is None:
                    continue
                masks[index] = _checked(mask, size, keys[index], "mask")
                has_mask[index] = bool(mask.any())  # an empty region is no region: random masking
        masks.flush()
        del masks  # close the memmap before the folder moves
        np.save(staging / "has_mask.npy", has_mask)
        _write_index(staging, keys, {"size": size, **(metadata or {})})

    built = _ensure_published(directory, write)
    _check_keys(directory, keys)
    return MaskEntry(directory, np.load(directory / "masks.npy", mmap_mode="r"), np.load(directory / "has_mask.npy"), built)


def _ensure_published(directory: Path, write: Callable[[Path], None]) -> bool:
    """Publish ``directory`` once, filled by ``write(staging folder)``; True if this call built it."""
    if (directory / COMPLETE_MARKER).exists():
        return False
    cache_root = directory.parent
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"cache folder {cache_root}: cannot create it ({error.strerror}); expected a "
            f"writable folder (--cache-dir or ${CACHE_ENV})"
        ) from None
    # flock-based; works on local disks and on NFSv4 (Linux maps flock to fcntl locks there)
    lock = FileLock(str(directory) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"[data] another process is preparing {directory.name}; waiting for it", file=sys.stderr)
        lock.acquire()
    try:
        if (directory / COMPLETE_MARKER).exists():
            return False
        _build(directory, write)
        return True
    finally:
        lock.release()


def _build(directory: Path, write: Callable[[Path], None]) -> None:
    # Holding the lock, nobody else builds this entry: leftovers are from killed builds, never trusted.
    for stale in directory.parent.glob(f".{directory.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if directory.exists():
        shutil.rmtree(directory)  # no marker: not a published entry (e.g. copied in half)

    def fill(staging: Path) -> None:
        write(staging)
        (staging / COMPLETE_MARKER).write_text("ok\n", encoding="utf-8")
        _sync_files(staging)  # the rename is what publishes; the marker makes a stray copy untrusted

    publish_directory(directory, fill)


def _write_images(source: Source, size: int, staging: Path, progress: bool, metadata: dict[str, Any]) -> None:
    count = len(source.items)
    images = np.lib.format.open_memmap(staging / "images.npy", "w+", np.uint8, (count, size, size))
    masks = np.lib.format.open_memmap(staging / "masks.npy", "w+", np.uint8, (count, size, size))
    has_mask = np.zeros(count, bool)
    with contextlib.closing(decoded_items(source, size)) as decoded:  # closed: an error here stops the workers
        for index in stage(range(count), f"decoding {source.name} at {size} px", progress):
            image, mask = next(decoded)
            name = f"{source.name} item {source.items[index].key}"
            images[index] = _checked(image, size, name, "image")
            if mask is not None:
                masks[index] = _checked(mask, size, name, "mask")
                has_mask[index] = True
    for array in (images, masks):
        array.flush()
    del images, masks  # close the memmaps before the folder moves
    np.save(staging / "has_mask.npy", has_mask)
    _write_index(staging, [item.key for item in source.items], {"size": size, **metadata})


WORKERS_MAX = 8  # choice: a cap, so that a build on a many-core node leaves cores to others (measured on 2 only)
PARALLEL_MIN_ITEMS = 256  # choice: a sample folder of a few dozen images is not worth starting a pool for


def decoded_items(source: Source, size: int) -> Iterator[tuple[np.ndarray, Optional[np.ndarray]]]:
    """``source.load(index, size)`` for every index in order, on every CPU (``parallel_map``)."""
    return parallel_map(lambda index: source.load(index, size), len(source.items))


_forked_function: Optional[Callable[[int], Any]] = None  # what parallel_map's forked workers run


def parallel_map(function: Callable[[int], Any], count: int, fork: bool = True) -> Iterator[Any]:
    """``function(index)`` for every index in order, on every CPU this process may use when ``fork``. Processes,
    not threads: PNG decoding, resizing, the phantom's rendering and the classical segmenter hold the GIL (measured
    on a 2-core Zen 3, phantom at 64 px: 2 threads 1.2x over 120 images, 2 processes 1.9x over 400, byte-identical).
    The workers are forked and inherit ``function`` (a closure is fine: only indices and results are pickled), so
    it must not use torch: they never run the parent's OpenMP pool. Close it (or run it to the end) to stop them."""
    global _forked_function
    workers = min(len(os.sched_getaffinity(0)), WORKERS_MAX)
    if not fork or workers < 2 or count < PARALLEL_MIN_ITEMS or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(function, range(count))
        return
    # Forked: spawned workers would run the caller's script again (one without a __main__ guard, or stdin); they
    # leave Ctrl-C to this process. They fork at the first submit, inside pool.map, while the global is set.
    _forked_function = function
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_ignore_sigint)
    try:
        yield from pool.map(_run_forked, range(count), chunksize=max(8, count // (workers * 16)))
    finally:
        _forked_function = None
        pool.shutdown(wait=True, cancel_futures=True)  # a bad file stops the build without computing the rest


def _run_forked(index: int) -> Any:
    return _forked_function(index)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write_index(staging: Path, keys: list[str], metadata: dict[str, Any]) -> None:
    (staging / "keys.json").write_text(json.dumps(keys), encoding="utf-8")
    (staging / "meta.json").write_text(json.dumps(metadata, indent=2, default=str), encoding="utf-8")


def _checked(array: np.ndarray, size: int, name: str, what: str) -> np.ndarray:
    binary = what == "mask"
    if array.shape != (size, size) or array.dtype != np.uint8 or (binary and array.max() > 1):
        expected = f"uint8 {{0, 1}} ({size}, {size})" if binary else f"uint8 ({size}, {size})"
        raise DataError(f"{name}: {what} came back as {array.dtype} {array.shape}; expected {expected}")
    return array


def _sync_files(folder: Path) -> None:
    """Flush file contents to disk, so that a published marker implies published data after a crash."""
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def _check_keys(directory: Path, keys: list[str]) -> None:
    if json.loads((directory / "keys.json").read_text(encoding="utf-8")) != keys:
        raise DataError(
            f"cache {directory} lists other images than the dataset it is keyed by; expected "
            f"the same image keys. Delete that folder to rebuild it."
        )


def _open(directory: Path, source: Source, built: bool) -> CacheEntry:
    _check_keys(directory, [item.key for item in source.items])
    return CacheEntry(
        directory=directory,
        images=np.load(directory / "images.npy", mmap_mode="r"),
        masks=np.load(directory / "masks.npy", mmap_mode="r"),
        has_mask=np.load(directory / "has_mask.npy"),
        built=built,
    )
