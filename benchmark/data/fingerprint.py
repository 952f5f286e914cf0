"""Content fingerprints: the same bytes are the same dataset, wherever they lie and whatever their times.

A dataset's fingerprint hashes the relative path, class, split and bytes of every image and mask, so a
``cp -r`` (with or without preserved times), a move, or a copy to node-local scratch keeps its cache, its
split file and its run ids, while one changed pixel or a renamed class folder makes another dataset.
Hashing every byte costs a pass over the files once: each file's digest is cached in a JSON file under
the cache root, keyed by the folder's absolute path and valid while the file's size and mtime are unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

from benchmark.errors import DataError
from benchmark.files import atomic_write_json, stable_hash

READ_CHUNK = 1 << 20  # bytes per read while hashing a file


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes; a DataError naming the file when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(READ_CHUNK):
                digest.update(chunk)
    except OSError as error:
        raise DataError(f"{path}: cannot read file ({error.strerror})") from None
    return digest.hexdigest()


class DigestCache:
    """File digests below ``root``, remembered in ``store`` (one JSON file per root) between processes."""

    def __init__(self, root: Path, store_folder: Optional[Path]):
        self.root = root
        self.store = None if store_folder is None else store_folder / f"{stable_hash(str(root.resolve()), 16)}.json"
        self.known: dict[str, list] = {}
        self.changed = False
        if self.store is not None and self.store.exists():
            try:
                self.known = json.loads(self.store.read_text(encoding="utf-8"))["files"]
            except (OSError, ValueError, KeyError, TypeError):
                self.known = {}  # an unreadable digest cache costs one re-hash, never a wrong digest

    def digest(self, relative: str) -> str:
        path = self.root / relative
        try:
            stat = path.stat()
        except OSError as error:
            raise DataError(f"{path}: cannot read file ({error.strerror})") from None
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = self.known.get(relative)
        if entry is not None and entry[:2] == stamp:
            return entry[2]
        value = file_digest(path)
        self.known[relative] = [*stamp, value]
        self.changed = True
        return value

    def save(self) -> None:
        """Write the digests back (atomically); a cache folder that cannot be written only costs speed."""
        if self.store is None or not self.changed:
            return
        try:
            atomic_write_json(self.store, {"root": str(self.root.resolve()), "files": self.known})
        except OSError:
            pass
        self.changed = False
