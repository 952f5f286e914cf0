"""Real datasets on disk: find the layout, list (image, lung mask, label, official split), decode files.

Three layouts are known:
  covid-radiography  <root>/{COVID,Lung_Opacity,Normal,Viral Pneumonia}/{images,masks}/*.png
                     (root may also be the folder holding COVID-19_Radiography_Dataset/)
  covid-qu-ex        <part>/{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/{images,lung masks}/*.png
                     (part = "Lung Segmentation Data" or "Infection Segmentation Data", or their parent)
  folder             <root>/<class>/<images_dir>/* with masks in <root>/<class>/<masks_dir>/*
Item keys are paths relative to the dataset folder, so pointing at a parent folder gives the same keys.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from benchmark.config import DataConfig
from benchmark.data.cache import resolve_cache_root
from benchmark.data.fingerprint import DigestCache
from benchmark.data.source import Item, Source, resize_image, resize_mask
from benchmark.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LAYOUTS = ("covid-radiography", "covid-qu-ex", "folder")
DATASETS = ("auto", "phantom") + LAYOUTS

RADIOGRAPHY_CLASSES = ("COVID", "Lung_Opacity", "Normal", "Viral Pneumonia")
RADIOGRAPHY_FOLDER = "COVID-19_Radiography_Dataset"
QU_EX_CLASSES = ("COVID-19", "Non-COVID", "Normal")
QU_EX_PARTS = ("Lung Segmentation Data", "Infection Segmentation Data")
QU_EX_SPLITS = (("Train", "train"), ("Val", "train"), ("Test", "test"))  # Train + Val form the pool
QU_EX_MASKS = "lung masks"

ASPECT_TOLERANCE = 0.02  # relative; 299x299 images with 256x256 masks are the same shape
SHOWN_NAMES = 5  # how many file names an error message lists

LAYOUT_HELP = (
    "covid-radiography (<root>/COVID/images/*.png, <root>/COVID/masks/*.png, ... for COVID, Lung_Opacity, "
    "Normal, Viral Pneumonia), covid-qu-ex (<root>/{Train,Val,Test}/COVID-19/images/*.png with "
    "'lung masks' beside 'images'), folder (<root>/<class>/images/* with masks in <root>/<class>/masks/*)"
)


@dataclass
class FileSource:
    """Images and lung masks read from files; ``items[i].key`` is the image path relative to ``root``."""

    name: str
    classes: tuple[str, ...]
    root: Path
    items: list[Item]
    mask_keys: list[Optional[str]]  # mask path relative to root, parallel to items
    digest_store: Optional[Path] = None  # where file digests are remembered (fingerprint.DigestCache)
    _fingerprint: Optional[str] = field(default=None, init=False, repr=False)

    def load(self, index: int, size: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        image_path = self.root / self.items[index].key
        image = read_image(image_path)
        mask_key = self.mask_keys[index]
        if mask_key is None:
            return resize_image(image, size), None
        mask_path = self.root / mask_key
        mask = read_mask(mask_path)
        check_same_aspect(image_path, image.shape, mask_path, mask.shape)
        return resize_image(image, size), resize_mask(mask, size)

    def fingerprint(self) -> str:
        """Relative path, label, split and content of every image and mask (``fingerprint.py``)."""
        if self._fingerprint is None:
            digests = DigestCache(self.root, self.digest_store)
            digest = hashlib.sha256(f"{self.name}\n{self.classes}\n".encode())
            for item, mask_key in zip(self.items, self.mask_keys):
                entry = [item.key, item.label, item.official_split, digests.digest(item.key)]
                if mask_key is not None:
                    entry += [mask_key, digests.digest(mask_key)]
                digest.update((repr(entry) + "\n").encode())
            digests.save()
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


@dataclass(frozen=True)
class _Candidate:
    key: str
    label: int
    mask_key: Optional[str]
    official_split: Optional[str]


def open_source(data_cfg: DataConfig) -> Source:
    """The dataset named by ``data.dataset`` (or detected from ``data.root``; no root = the phantom)."""
    if data_cfg.dataset not in DATASETS:
        raise DataError(f"data.dataset={data_cfg.dataset!r}: expected one of {', '.join(DATASETS)}")
    if data_cfg.dataset == "phantom" or (data_cfg.root is None and data_cfg.dataset == "auto"):
        from benchmark.data.phantom import PhantomSource  # lazy: only phantom runs pay for it

        return PhantomSource(
            data_cfg.phantom_count, data_cfg.phantom_seed, data_cfg.phantom_native_size, data_cfg.phantom_shortcut
        )
    if data_cfg.root is None:
        raise DataError(f"data.dataset={data_cfg.dataset}: needs a data root (--data-root or data.root)")
    root = Path(data_cfg.root).expanduser()
    _check_root(root)
    name, dataset_root = detect_layout(root, data_cfg)
    if name == "covid-radiography":
        classes, candidates = RADIOGRAPHY_CLASSES, _radiography_candidates(dataset_root)
    elif name == "covid-qu-ex":
        classes, candidates = QU_EX_CLASSES, _qu_ex_candidates(dataset_root)
    else:
        classes = _folder_classes(dataset_root, data_cfg.images_dir)
        candidates = _folder_candidates(dataset_root, classes, data_cfg.images_dir, data_cfg.masks_dir)
    _check_classes_filled(candidates, classes, dataset_root, "")
    candidates = _apply_mask_policy(candidates, data_cfg.missing_masks, dataset_root)
    _check_classes_filled(candidates, classes, dataset_root, " left after dropping images without masks")
    return FileSource(
        name=name,
        classes=classes,
        root=dataset_root,
        items=[Item(c.key, c.label, c.mask_key is not None, c.official_split) for c in candidates],
        mask_keys=[c.mask_key for c in candidates],
        digest_store=resolve_cache_root(data_cfg) / "digests",
    )


def detect_layout(root: Path, data_cfg: DataConfig) -> tuple[str, Path]:
    """(layout name, dataset folder) for ``root``; ``data.dataset`` other than auto forces the layout."""
    wanted = data_cfg.dataset
    if wanted in ("auto", "covid-radiography"):
        radiography = _radiography_root(root, forced=wanted == "covid-radiography")
        if radiography is not None:
            return "covid-radiography", radiography
        if wanted == "covid-radiography":
            raise DataError(
                f"{root}: not a COVID-19 Radiography Database folder; expected "
                f"{', '.join(RADIOGRAPHY_CLASSES)} folders with images/ inside, directly or "
                f"under {RADIOGRAPHY_FOLDER}/"
            )
    if wanted in ("auto", "covid-qu-ex"):
        part = _qu_ex_part(root)
        if part is not None:
            return "covid-qu-ex", part
        if wanted == "covid-qu-ex":
            raise DataError(
                f"{root}: not a COVID-QU-Ex folder; expected Train/, Val/ and Test/ folders, "
                f"directly or under one of {', '.join(QU_EX_PARTS)}"
            )
    for candidate in (root, *_only_subfolder(root)):  # an archive's top folder is descended into, as above
        if any((candidate / entry / data_cfg.images_dir).is_dir() for entry in _visible_dirs(candidate)):
            return "folder", candidate
    found = ", ".join(sorted(_visible_names(root))[:SHOWN_NAMES]) or "nothing"
    raise DataError(f"{root}: matches no known dataset layout (found: {found}); expected one of: {LAYOUT_HELP}")


def _only_subfolder(root: Path) -> tuple[Path, ...]:
    """(the single visible sub-folder,) when ``root`` holds nothing else, else ()."""
    entries = _visible_names(root)
    return (root / entries[0],) if len(entries) == 1 and (root / entries[0]).is_dir() else ()


def read_image(path: Path) -> np.ndarray:
    """Greyscale uint8 at the native size, from PNG or JPEG, 8 or 16 bit, greyscale or RGB."""
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so truncated files fail here and name themselves
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                return _scale_to_uint8(np.asarray(image))
            return np.asarray(image.convert("L"))  # ITU-R 601 luma; R = G = B in the RGB-stored X-rays
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(
            f"{path}: cannot decode image ({error}); expected a readable PNG or JPEG file. Replace or remove it."
        ) from None


def read_mask(path: Path) -> np.ndarray:
    """Lung mask as bool at its native size: any non-zero channel is lung (masks come as L, RGB or P)."""
    try:
        with Image.open(path) as image:
            image.load()
            values = np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(
            f"{path}: cannot decode mask ({error}); expected a readable PNG or JPEG file. Replace or remove it."
        ) from None
    if values.ndim == 3:
        values = values[..., :3].max(axis=-1)  # drop alpha: transparency is not lung
    return values > 0


def check_same_aspect(image_path: Path, image_shape: tuple[int, ...], mask_path: Path, mask_shape: tuple[int, ...]) -> None:
    image_aspect = image_shape[1] / image_shape[0]
    mask_aspect = mask_shape[1] / mask_shape[0]
    if abs(image_aspect - mask_aspect) > ASPECT_TOLERANCE * image_aspect:
        raise DataError(
            f"mask {mask_path} is {mask_shape[1]}x{mask_shape[0]} but image {image_path} is "
            f"{image_shape[1]}x{image_shape[0]}; expected the same aspect ratio "
            f"(a mask is resized to its image, never cropped)"
        )


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    # 16-bit X-rays rarely use the full 0..65535 range (10-12-bit detectors, arbitrary offsets), so
    # dividing by 65535 would leave them nearly black; stretching each image's own range keeps contrast.
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DataError(f"data root {root} does not exist; expected a dataset folder ({LAYOUT_HELP})")
    if not root.is_dir():
        raise DataError(f"data root {root} is a file; expected a dataset folder ({LAYOUT_HELP})")
    if not _visible_names(root):
        raise DataError(f"data root {root} is empty; expected a dataset folder ({LAYOUT_HELP})")


def _visible_names(folder: Path) -> list[str]:
    try:
        return [entry.name for entry in os.scandir(folder) if not entry.name.startswith(".")]
    except OSError as error:
        raise DataError(f"{folder}: cannot list folder ({error.strerror})") from None


def _visible_dirs(folder: Path) -> list[str]:
    """Sub-folders, skipping hidden ones and archive debris such as __MACOSX."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith((".", "__")))


def _image_names(folder: Path) -> list[str]:
    """Image files in ``folder`` in a fixed order; spreadsheets, READMEs and hidden files are ignored."""
    if not folder.is_dir():
        return []
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_file() and not entry.name.startswith(".") and entry.name.lower().endswith(IMAGE_SUFFIXES)
    )


def _mask_finder(folder: Path) -> Callable[[str], Optional[str]]:
    """Pair an image name with the mask of the same stem: exact stem first, then ignoring case
    (COVID-QU-Ex spells Non_COVID / non_COVID inconsistently) and tolerating another extension."""
    names = _image_names(folder)
    exact = {os.path.splitext(name)[0]: name for name in names}
    folded = {stem.casefold(): name for stem, name in exact.items()}

    def find(image_name: str) -> Optional[str]:
        stem = os.path.splitext(image_name)[0]
        return exact.get(stem) or folded.get(stem.casefold())

    return find


def _class_candidates(
    dataset_root: Path, class_dir: str, images_dir: str, masks_dir: str, label: int, official_split: Optional[str]
) -> list[_Candidate]:
    find_mask = _mask_finder(dataset_root / class_dir / masks_dir)
    candidates = []
    for name in _image_names(dataset_root / class_dir / images_dir):
        mask_name = find_mask(name)
        mask_key = None if mask_name is None else f"{class_dir}/{masks_dir}/{mask_name}"
        candidates.append(_Candidate(f"{class_dir}/{images_dir}/{name}", label, mask_key, official_split))
    return candidates


def _radiography_root(root: Path, forced: bool) -> Optional[Path]:
    """Detected from all four class folders (or the release's top folder), so that a folder-layout
    dataset that merely has a class called COVID is not mistaken for it; forced, one class suffices
    and the missing ones are reported."""
    if (root / RADIOGRAPHY_FOLDER).is_dir():
        return root / RADIOGRAPHY_FOLDER
    present = [name for name in RADIOGRAPHY_CLASSES if (root / name / "images").is_dir()]
    if len(present) == len(RADIOGRAPHY_CLASSES) or (forced and present):
        return root
    return None


def _radiography_candidates(dataset_root: Path) -> list[_Candidate]:
    missing = [name for name in RADIOGRAPHY_CLASSES if not (dataset_root / name / "images").is_dir()]
    if missing:
        raise DataError(
            f"{dataset_root}: missing class folders {', '.join(missing)}; expected all of "
            f"{', '.join(RADIOGRAPHY_CLASSES)}, each with images/ and masks/ (for other class "
            f"sets use --dataset folder)"
        )
    candidates = []
    for label, name in enumerate(RADIOGRAPHY_CLASSES):
        candidates += _class_candidates(dataset_root, name, "images", "masks", label, None)
    return candidates


def _qu_ex_part(root: Path) -> Optional[Path]:
    if any((root / split).is_dir() for split, _ in QU_EX_SPLITS):
        return root
    parts = [root / part for part in QU_EX_PARTS if (root / part).is_dir()]
    if len(parts) > 1:
        raise DataError(
            f"{root} holds both COVID-QU-Ex parts ({' and '.join(QU_EX_PARTS)}); "
            f"point --data-root at the one to use, e.g. {parts[0]}"
        )
    return parts[0] if parts else None


def _qu_ex_candidates(part: Path) -> list[_Candidate]:
    present = [split for split, _ in QU_EX_SPLITS if (part / split).is_dir()]
    if "Test" not in present or present == ["Test"]:
        raise DataError(f"{part}: found split folders {present or 'none'}; expected Test/ and at least one of Train/ and Val/")
    candidates = []
    for split, official_split in QU_EX_SPLITS:
        if split not in present:
            continue
        for label, name in enumerate(QU_EX_CLASSES):
            if not (part / split / name / "images").is_dir():
                raise DataError(
                    f"{part / split}: missing {name}/images/; expected one folder per class "
                    f"({', '.join(QU_EX_CLASSES)}), each with images/ and '{QU_EX_MASKS}/'"
                )
            candidates += _class_candidates(part, f"{split}/{name}", "images", QU_EX_MASKS, label, official_split)
    return candidates


def _folder_classes(root: Path, images_dir: str) -> tuple[str, ...]:
    classes = _visible_dirs(root)
    stray = [name for name in classes if not (root / name / images_dir).is_dir()]
    if stray:
        raise DataError(
            f"{root}: class folders without {images_dir}/: {', '.join(stray[:SHOWN_NAMES])}; "
            f"expected <root>/<class>/{images_dir}/* for every sub-folder"
        )
    return tuple(classes)


def _folder_candidates(root: Path, classes: tuple[str, ...], images_dir: str, masks_dir: str) -> list[_Candidate]:
    candidates = []
    for label, name in enumerate(classes):
        candidates += _class_candidates(root, name, images_dir, masks_dir, label, None)
    return candidates


def _apply_mask_policy(candidates: list[_Candidate], policy: str, root: Path) -> list[_Candidate]:
    """Training images need a lung mask (the region RGMIM is guided by); test images do not."""
    unmasked = [c for c in candidates if c.mask_key is None and c.official_split != "test"]
    if not unmasked or policy == "allow":
        return candidates
    if policy == "skip":
        return [c for c in candidates if c.mask_key is not None or c.official_split == "test"]
    names = ", ".join(c.key for c in unmasked[:SHOWN_NAMES])
    raise DataError(
        f"{root}: {len(unmasked)} training images have no lung mask (first: {names}); expected "
        f"a mask with the same file name in the masks folder. Use --missing-masks skip to drop "
        f"them or --missing-masks allow to train them without a region."
    )


def _check_classes_filled(candidates: list[_Candidate], classes: tuple[str, ...], root: Path, when: str) -> None:
    for label, name in enumerate(classes):
        splits = {c.official_split for c in candidates if c.label == label}
        if not splits:
            raise DataError(
                f"{root}: class {name!r} has no images{when}; expected at least one "
                f"{'/'.join(IMAGE_SUFFIXES)} file in its images folder"
            )
        if None not in splits and splits != {"train", "test"}:
            missing = "training pool (Train/, Val/)" if "train" not in splits else "test set (Test/)"
            raise DataError(
                f"{root}: class {name!r} has no images{when} in the {missing}; expected "
                f"images in both the training pool and the test set"
            )
