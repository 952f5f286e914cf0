"""The user's own lung masks (``--mask-dir``): pairing mask files with the dataset's images by name."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

import numpy as np

from benchmark.data.layouts import IMAGE_SUFFIXES, SHOWN_NAMES
from benchmark.errors import DataError


def pair_mask_files(keys: list[str], mask_dir: Path) -> list[Optional[Path]]:
    """Each image's mask in ``mask_dir``: the file at the image key's relative path (any image extension),
    else the file of the same name anywhere below ``mask_dir``; names compare without case or extension.
    Names shared by two images need the relative path; a name shared by two mask files is an error."""
    check_mask_dir(mask_dir)
    by_path: dict[str, Path] = {}
    by_name: defaultdict[str, list[Path]] = defaultdict(list)
    for path in sorted(mask_dir.rglob("*")):
        relative = path.relative_to(mask_dir)
        if (
            not path.is_file()
            or path.suffix.lower() not in IMAGE_SUFFIXES
            or any(part.startswith(".") for part in relative.parts)
        ):
            continue
        by_path[relative.with_suffix("").as_posix().casefold()] = path
        by_name[path.stem.casefold()].append(path)
    if not by_path:
        raise DataError(
            f"--mask-dir {mask_dir}: holds no {'/'.join(IMAGE_SUFFIXES)} files; expected one mask per image, named like it"
        )
    image_names = Counter(Path(key).stem.casefold() for key in keys)
    pairs: list[Optional[Path]] = []
    for key in keys:
        name = Path(key).stem.casefold()
        mirrored = by_path.get(Path(key).with_suffix("").as_posix().casefold())
        if mirrored is None and image_names[name] == 1 and len(by_name[name]) > 1:
            found = ", ".join(str(path.relative_to(mask_dir)) for path in by_name[name][:SHOWN_NAMES])
            raise DataError(
                f"--mask-dir {mask_dir}: several masks are named like image {key} ({found}); "
                f"expected one, or the image's relative path {Path(key).with_suffix('.png')}"
            )
        named = by_name[name][0] if image_names[name] == 1 and len(by_name[name]) == 1 else None
        pairs.append(mirrored or named)
    return pairs


def check_mask_dir(mask_dir: Path) -> None:
    if not mask_dir.is_dir():
        raise DataError(
            f"--mask-dir {mask_dir}: not a folder; expected a folder of mask images named like the dataset's images"
        )


def check_pairs(keys: list[str], is_train: np.ndarray, pairs: list[Optional[Path]], policy: str, mask_dir: Path) -> None:
    """Training images need a region unless ``missing_masks`` is "allow"; test images never do."""
    unpaired = [key for key, path, train in zip(keys, pairs, is_train) if path is None and train]
    if not unpaired or policy == "allow":
        return
    names_used = Counter(Path(key).stem.casefold() for key in keys)
    shared = [key for key in unpaired if names_used[Path(key).stem.casefold()] > 1]
    names = ", ".join(unpaired[:SHOWN_NAMES])
    hint = f" Images sharing a file name ({shared[0]}, ...) need their relative path under the mask folder." if shared else ""
    skip = " (--mask-dir cannot drop images: skip is not available here)" if policy == "skip" else ""
    raise DataError(
        f"--mask-dir {mask_dir}: {len(unpaired)} training images have no mask there (first: "
        f"{names}); expected a mask file with the image's name.{hint} Use --missing-masks allow to "
        f"train them without a region{skip}."
    )
