"""``python -m benchmark data {info,prepare,preview,export,masks}``: look at a dataset before training on it."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from benchmark.config import Config, DataConfig, describe_changes, to_dict
from benchmark.data.layouts import open_source
from benchmark.data.mask_quality import MaskScore, evaluate_regions, quality_summary, quality_text
from benchmark.data.quality_files import write_quality
from benchmark.data.prepare import PreparedData, prepare
from benchmark.data.regions import lung_patch_grid
from benchmark.errors import DataError
from benchmark.files import publish_directory
from benchmark.paper_grid import PAPER_FRACTIONS
from benchmark.data.splits import class_sizes, fraction_counts, write_split_file

COVERAGE_CHUNK = 512  # images per step when summarising masks: bounded memory at any dataset size


def run_info(args: argparse.Namespace, config: Config) -> int:
    data = _start(config)
    grid_rule = PatchGrid.of(config)
    print(info_text(data, mask_coverage(data, grid_rule), grid_rule.patch_size))
    return 0


def run_prepare(args: argparse.Namespace, config: Config) -> int:
    data = _start(config)
    print(f"cache:      {data.cache_dir}")
    print(f"split file: {data.split_file}")
    print(f"{data.name}: {len(data.train_idx)} train, {len(data.test_idx)} test at {data.image_size} px")
    return 0


def run_preview(args: argparse.Namespace, config: Config) -> int:
    if args.per_class < 1:
        raise DataError(f"--per-class {args.per_class}: expected at least 1")
    data = _start(config)
    render_preview(data, args.out, args.per_class, PatchGrid.of(config))
    print(f"preview: {args.out}")
    return 0


def run_export(args: argparse.Namespace, config: Config) -> int:
    _check_export_target(args.out)
    data = _start(config)
    export_dataset(data, args.out, {"config": to_dict(config), "exported_from": data.describe()})
    print(f"exported {len(data.keys)} images of {data.name} to {args.out} (folder layout, split.csv)")
    return 0


def run_masks(args: argparse.Namespace, config: Config, code_version: Optional[dict] = None) -> int:
    """``data masks [--mask-source S] [--evaluate [--per-image FILE.csv]] [--preview FILE.png]``."""
    if args.per_class < 1:
        raise DataError(f"--per-class {args.per_class}: expected at least 1")
    for option, value in (("--per-image", args.per_image), ("--results", args.results)):
        if value is not None and not args.evaluate:
            raise DataError(f"{option} writes the scores of --evaluate; add --evaluate")
    data = _start(config)
    grid_rule = PatchGrid.of(config)
    patch_size = grid_rule.patch_size
    coverage = mask_coverage(data, grid_rule)
    grid = coverage["grid"]
    print(f"mask source {data.mask_source}: {data.mask_detail}")
    print(
        f"regions for {coverage['images_with_mask']} of {coverage['images']} images "
        f"({int(data.has_mask[data.train_idx].sum())} of {len(data.train_idx)} in the training pool); "
        f"mean lung fraction {coverage['mean_lung_fraction']:.3f}; mean patches overlapping the lung "
        f"{coverage['mean_lung_patches']:.1f} of {grid * grid}"
    )
    scores: list[MaskScore] = []
    if args.evaluate:
        if not data.reference_has_mask.any():
            raise DataError(f"--evaluate: the {data.name} dataset has no masks of its own to score against")
        scores = evaluate_regions(
            data.masks,
            data.reference_masks,
            data.reference_has_mask,
            data.labels,
            data.classes,
            data.keys,
            patch_size,
            grid_rule.min_overlap,
        )
        print()
        print(quality_text(scores, data.classes, f"{grid}x{grid} grid of {patch_size}-px patches"))
        if args.per_image is not None:
            write_scores(scores, args.per_image)
            print(f"per-image scores: {args.per_image}")
        if args.results is not None:
            facts = {
                "dataset": data.name,
                "fingerprint": data.fingerprint,
                "classes": list(data.classes),
                "image_size": data.image_size,
                "patch_size": patch_size,
                "min_overlap": grid_rule.min_overlap,
                "mask_source": data.mask_source,
                "mask_detail": data.mask_detail,
                "summary": quality_summary(scores, data.classes),
                "code_version": code_version,
                "finished_at": datetime.now(timezone.utc).isoformat(),
            }
            print(f"summary for the report: {write_quality(args.results, facts)}")
    if args.preview is not None:
        render_preview(data, args.preview, args.per_class, grid_rule, compare=True, scores=scores)
        print(f"preview: {args.preview}")
    return 0


def _start(config: Config) -> PreparedData:
    print(f"[data] config: {describe_changes(config)}", file=sys.stderr)
    return prepare(config.data, config.region, progress=True)


@dataclass(frozen=True)
class PatchGrid:
    """The grid RGMIM selects lung patches on: the ViT's patch size and the region's lung-patch rule."""

    patch_size: int
    min_overlap: float

    @classmethod
    def of(cls, config: Config) -> PatchGrid:
        return cls(config.vit.patch_size, config.region.min_overlap)

    def lung_patches(self, masks: np.ndarray) -> np.ndarray:
        """(B, S, S) masks -> (B, g, g) bool, by the rule training uses (regions.lung_patch_grid)."""
        grid = masks.shape[-1] // self.patch_size
        flat = lung_patch_grid(torch.from_numpy(np.asarray(masks, np.uint8)), self.patch_size, self.min_overlap)
        return flat.numpy().reshape(len(masks), grid, grid)


def mask_coverage(data: PreparedData, grid_rule: PatchGrid) -> dict[str, Any]:
    """Mean lung fraction and mean number of patches overlapping the lung, over images with a mask."""
    grid = data.image_size // grid_rule.patch_size
    with_mask = np.flatnonzero(data.has_mask)
    lung_fraction_sum, lung_patch_sum = 0.0, 0
    for start in range(0, len(with_mask), COVERAGE_CHUNK):
        masks = np.asarray(data.masks[with_mask[start : start + COVERAGE_CHUNK]], bool)
        lung_fraction_sum += float(masks.mean(axis=(1, 2)).sum())
        lung_patch_sum += int(grid_rule.lung_patches(masks).sum())
    count = max(len(with_mask), 1)
    return {
        "images_with_mask": int(len(with_mask)),
        "images": len(data.keys),
        "grid": grid,
        "mean_lung_fraction": lung_fraction_sum / count,
        "mean_lung_patches": lung_patch_sum / count,
    }


def info_text(data: PreparedData, coverage: dict[str, Any], patch_size: int) -> str:
    train_sizes = class_sizes(data.labels, data.ranks >= 0, len(data.classes))
    test_sizes = class_sizes(data.labels, data.ranks < 0, len(data.classes))
    fractions = {fraction: fraction_counts(fraction, train_sizes) for fraction in PAPER_FRACTIONS}
    width = max(len(name) for name in (*data.classes, "total"))
    percents = "".join(f" {f'{fraction:.0%}':>7}" for fraction in fractions)
    heading = f"{'class':<{width}}  {'train':>7} {'test':>7}{percents}"
    lines = [
        f"dataset     {data.name}",
        f"fingerprint {data.fingerprint[:16]}",
        f"split file  {data.split_file} (seed {data.split_seed})",
        f"cache       {data.cache_dir}",
        "",
        "images per split, and per label fraction of the training pool:",
        heading,
    ]
    for label, name in enumerate(data.classes):
        lines.append(
            f"{name:<{width}}  {train_sizes[label]:>7} {test_sizes[label]:>7}"
            + "".join(f" {counts[label]:>7}" for counts in fractions.values())
        )
    lines.append(
        f"{'total':<{width}}  {train_sizes.sum():>7} {test_sizes.sum():>7}"
        + "".join(f" {counts.sum():>7}" for counts in fractions.values())
    )
    grid = coverage["grid"]
    lines += [
        "",
        f"lung masks: {coverage['images_with_mask']} of {coverage['images']} images "
        f"({int(data.has_mask[data.train_idx].sum())} of {len(data.train_idx)} in the training pool)",
        f"mean lung fraction {coverage['mean_lung_fraction']:.3f}; mean patches overlapping the lung "
        f"{coverage['mean_lung_patches']:.1f} of {grid * grid} ({patch_size}-px patches, {grid}x{grid} grid "
        f"at {data.image_size} px)",
    ]
    return "\n".join(lines)


def render_preview(
    data: PreparedData, out: Path, per_class: int, grid_rule: PatchGrid, compare: bool = False, scores: Sequence[MaskScore] = ()
) -> None:
    """Per class, the first training images of the seeded fraction order, with the lung outline (green),
    the patch grid and the patches that overlap the lung (tinted): what region guidance will see.
    ``compare``: the dataset's own outline in green against the mask source's in red, titled with ``scores``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size, patch_size = data.image_size, grid_rule.patch_size
    by_index = {score.index: score for score in scores}
    figure_size = (2.3 * per_class, 2.5 * len(data.classes))
    figure, axes = plt.subplots(len(data.classes), per_class, figsize=figure_size, squeeze=False)
    for label, name in enumerate(data.classes):
        members = np.flatnonzero((data.labels == label) & (data.ranks >= 0))
        chosen = members[np.argsort(data.ranks[members])][:per_class]
        for column, axis in enumerate(axes[label]):
            axis.set_axis_off()
            if column >= len(chosen):
                continue
            index = chosen[column]
            axis.imshow(data.images[index], cmap="gray", vmin=0, vmax=255)
            for line in range(patch_size, size, patch_size):
                axis.axhline(line - 0.5, color="white", linewidth=0.3, alpha=0.35)
                axis.axvline(line - 0.5, color="white", linewidth=0.3, alpha=0.35)
            if data.has_mask[index]:
                mask = np.asarray(data.masks[index], bool)
                covered = np.kron(grid_rule.lung_patches(mask[None])[0], np.ones((patch_size, patch_size)))
                tint = np.zeros((size, size, 4))
                tint[: covered.shape[0], : covered.shape[1]] = covered[..., None] * [1.0, 0.8, 0.0, 0.18]
                axis.imshow(tint)
                axis.contour(mask, levels=[0.5], colors="red" if compare else "lime", linewidths=0.8)
            else:
                axis.text(size / 2, size - 4, "no mask", color="red", ha="center", va="bottom", fontsize=7)
            if compare and data.reference_has_mask[index]:
                axis.contour(np.asarray(data.reference_masks[index], bool), levels=[0.5], colors="lime", linewidths=0.8)
            score = by_index.get(int(index))
            scored = "" if score is None else f"\nDice {score.dice:.2f} · patch IoU {score.patch_iou:.2f}"
            axis.set_title(f"{name}\n{Path(data.keys[index]).stem[:28]}{scored}", fontsize=7)
    outlines = (
        f"the dataset's lung outline (green), the {data.mask_source} outline (red)" if compare else "lung outline (green)"
    )
    figure.suptitle(
        f"{data.name} at {size} px\n{outlines}, {patch_size}-px patch grid, patches overlapping the lung (tinted)", fontsize=9
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120, format="png")  # the path as given, even without a .png suffix
    plt.close(figure)


def write_scores(scores: list[MaskScore], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["key", "class", "dice", "iou", "patch_iou"])
        writer.writerows(
            [score.key, score.class_name, f"{score.dice:.4f}", f"{score.iou:.4f}", f"{score.patch_iou:.4f}"] for score in scores
        )


def export_dataset(data: PreparedData, out: Path, metadata: dict[str, Any]) -> None:
    """``out/<class>/images/*.png``, ``out/<class>/masks/*.png`` (0/255) and ``out/split.csv``, built in
    a temporary sibling folder and renamed into place, so a failed export leaves nothing behind."""
    _check_export_target(out)

    def fill(staging: Path) -> None:
        names = _export_names(data)
        for index in tqdm(range(len(data.keys)), desc="exporting", unit="img", file=sys.stderr, leave=False):
            class_folder = staging / data.classes[data.labels[index]]
            (class_folder / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(data.images[index])).save(class_folder / "images" / names[index])
            if data.has_mask[index]:
                (class_folder / "masks").mkdir(exist_ok=True)
                mask = np.asarray(data.masks[index]) * np.uint8(255)
                Image.fromarray(mask).save(class_folder / "masks" / names[index])
        # The split file is keyed to the exported files, so it can be reused with --split-file.
        exported = open_source(DataConfig(dataset="folder", root=str(staging), missing_masks="allow"))
        old_index = {f"{data.classes[data.labels[i]]}/images/{names[i]}": i for i in range(len(names))}
        order = np.array([old_index[item.key] for item in exported.items])
        header = {
            "dataset": exported.name,
            "fingerprint": exported.fingerprint(),
            "split_seed": data.split_seed,
            "test_fraction": data.test_fraction,
            "official_split": False,
            "exported_from": {"dataset": data.name, "fingerprint": data.fingerprint},
        }
        write_split_file(staging / "split.csv", exported, header, data.ranks[order] >= 0, data.ranks[order])
        (staging / "export.json").write_text(json.dumps(metadata, indent=2, default=str), encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty, checked above

    publish_directory(out, fill)


def _check_export_target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(
            f"export folder {out} is not empty (or is a file); expected a new or empty folder (refusing to overwrite)"
        )


def _export_names(data: PreparedData) -> list[str]:
    """The image's own stem as a .png name; the whole key, flattened, where two stems of a class collide
    (e.g. the same name under Train/ and Test/)."""
    stems = [Path(key).stem for key in data.keys]
    taken = Counter(zip(data.labels.tolist(), stems))
    flattened = [Path(key).with_suffix("").as_posix().replace("/", "__") for key in data.keys]
    return [
        f"{stem if taken[(label, stem)] == 1 else flat}.png"
        for stem, flat, label in zip(stems, flattened, data.labels.tolist())
    ]
