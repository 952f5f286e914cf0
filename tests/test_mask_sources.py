"""Lung-mask sources for region-guided masking (gt, classical, prior, sam, none, --mask-dir): their quality
on the real samples, pairing, empty regions, caching, errors, the `data masks` command and the report."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.runner import configure
from benchmark.data.cache import COMPLETE_MARKER
from benchmark.config import RegionConfig
from benchmark.data.mask_quality import evaluate_regions
from benchmark.data.regions import lung_patch_grid
from benchmark.data.sam import SamSegmenter, check_sam_available, lung_boxes
from benchmark.data.segmenter import segment_lungs, template_field
from benchmark.data.prepare import PreparedData, prepare
from benchmark.errors import DataError
from benchmark.engine.identity import encoder_cache_key, run_id
from benchmark.records.store import write_record
from benchmark.report import build_report
from benchmark.report.sections import group_sections
from benchmark.report.statistics import mask_source_differences, paired_mean_ci
from conftest import QU_EX_SAMPLE, RADIOGRAPHY_SAMPLE, prepare_data
from methods import METHODS
from methods.masking import region_guided_masking
from test_records import make_record

REPO = Path(__file__).resolve().parents[1]
PAPER_SIZE, PAPER_PATCH = 224, 16  # the measurements: 224 px images, 16-px patches
REAL_SAMPLES = {  # every real image with an expert mask, in its released layout
    "covid-radiography": RADIOGRAPHY_SAMPLE,  # Viral Pneumonia with masks/, read as a one-class folder dataset
    "covid-qu-ex": QU_EX_SAMPLE,  # Val with 'lung masks' (Train pool), Test without
}


def mean_scores(data: PreparedData, patch_size: int) -> tuple[float, float]:
    """(mean pixel Dice, mean patch-level IoU) of ``data``'s regions against the dataset's own masks."""
    scores = evaluate_regions(
        data.masks, data.reference_masks, data.reference_has_mask, data.labels, data.classes, data.keys, patch_size, 0.0
    )
    assert scores, "the sample has expert masks to score against"
    return float(np.mean([s.dice for s in scores])), float(np.mean([s.patch_iou for s in scores]))


@pytest.mark.parametrize("sample", sorted(REAL_SAMPLES))
def test_classical_reaches_dice_070_and_beats_the_prior_on_the_real_samples(sample, data_config):
    config = data_config(REAL_SAMPLES[sample], image_size=PAPER_SIZE)
    classical_dice, classical_patch_iou = mean_scores(prepare_data(config, source="classical"), PAPER_PATCH)
    prior_dice, prior_patch_iou = mean_scores(prepare_data(config, source="prior"), PAPER_PATCH)
    assert classical_dice >= 0.70, (sample, classical_dice)
    assert classical_patch_iou > prior_patch_iou, (sample, classical_patch_iou, prior_patch_iou)
    assert classical_dice > prior_dice


def folder_dataset(root: Path, files: dict[str, list[Path]], with_masks: bool) -> Path:
    """``root/<class>/images/*`` (and ``masks/*``) from real QU-Ex Val files, keyed by class name."""
    for class_name, images in files.items():
        for image in images:
            (root / class_name / "images").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, root / class_name / "images" / image.name)
            if with_masks:
                (root / class_name / "masks").mkdir(exist_ok=True)
                shutil.copyfile(image.parent.parent / "lung masks" / image.name, root / class_name / "masks" / image.name)
    return root


def qu_ex_val(class_name: str) -> list[Path]:
    return sorted((QU_EX_SAMPLE / "Val" / class_name / "images").iterdir())


def test_prior_falls_back_to_the_template_and_none_gives_no_region(tmp_path, data_config):
    root = folder_dataset(
        tmp_path / "unmasked", {"COVID-19": qu_ex_val("COVID-19"), "Normal": qu_ex_val("Normal")}, with_masks=False
    )
    config = data_config(root)
    with pytest.raises(DataError, match="have no lung mask"):  # gt still needs the dataset's masks
        prepare_data(config)

    prior = prepare_data(config, source="prior")
    assert prior.mask_source == "prior" and "built-in" in prior.mask_detail
    assert prior.has_mask.all() and all(np.array_equal(mask, template_field(64)) for mask in prior.masks)

    none = prepare_data(config, source="none")
    assert none.mask_source == "none" and not none.has_mask.any() and not np.asarray(none.masks).any()
    assert none.describe()["with_mask"] == {"train": 0, "test": 0}
    # no region: RGMIM's masking keeps the usual visible count, drawn uniformly like MAE's
    valid = lung_patch_grid(torch.from_numpy(np.array(none.masks[:2]))[:, None], 8, 0.0)
    visible, masked = region_guided_masking(valid, 0.75)
    assert not valid.any() and visible.shape == (2, 16) and masked.shape == (2, 48)


def test_prior_is_the_median_field_of_the_training_pool(data_config):
    data = prepare_data(data_config(QU_EX_SAMPLE), source="prior")
    pool = np.asarray(data.reference_masks[data.train_idx], float)
    assert "9 training-pool masks" in data.mask_detail
    assert np.array_equal(data.masks[0], (pool.mean(axis=0) >= 0.5).astype(np.uint8))


def test_mask_dir_pairs_masks_by_file_name(tmp_path, data_config):
    # Two classes holding a file of the same name: only a mask at the image's relative path can pair it.
    shared = qu_ex_val("Normal")[0]
    root = folder_dataset(
        tmp_path / "data", {"COVID-19": qu_ex_val("COVID-19"), "Normal": qu_ex_val("Normal")}, with_masks=True
    )
    shutil.copyfile(shared, root / "COVID-19" / "images" / shared.name)
    shutil.copyfile(root / "Normal" / "masks" / shared.name, root / "COVID-19" / "masks" / shared.name)
    mask_dir = tmp_path / "my masks"
    (mask_dir / "flat").mkdir(parents=True)
    for class_name in ("COVID-19", "Normal"):
        for mask in (root / class_name / "masks").iterdir():
            if mask.name != shared.name:  # other case and extension than the image: names still pair
                Image.open(mask).save(mask_dir / "flat" / f"{mask.stem.upper()}.PNG")
        (mask_dir / class_name / "images").mkdir(parents=True)
        shutil.copyfile(root / class_name / "masks" / shared.name, mask_dir / class_name / "images" / shared.name)

    config = data_config(root)
    data = prepare_data(config, mask_dir=str(mask_dir))
    assert data.mask_source == "mask-dir" and data.has_mask.all()
    assert np.array_equal(data.masks, data.reference_masks)  # the same files, found by name

    # a training image without a mask there: a clear error by default, no region with allow
    training_key = next(data.keys[i] for i in data.train_idx if shared.name not in data.keys[i])
    (mask_dir / "flat" / f"{Path(training_key).stem.upper()}.PNG").unlink()
    with pytest.raises(DataError, match=r"1 training images have no mask there .*--missing-masks allow"):
        prepare_data(config, mask_dir=str(mask_dir))
    allowed = prepare_data(replace(config, missing_masks="allow"), mask_dir=str(mask_dir))
    assert [key for key, has in zip(allowed.keys, allowed.has_mask) if not has] == [training_key]

    # two masks of the same name are ambiguous
    (mask_dir / "other").mkdir()
    duplicated = next((mask_dir / "flat").iterdir())
    shutil.copyfile(duplicated, mask_dir / "other" / duplicated.name)
    with pytest.raises(DataError, match="several masks are named like"):
        prepare_data(replace(config, missing_masks="allow"), mask_dir=str(mask_dir))


def test_a_source_that_finds_no_lung_gives_no_region_for_that_image(tmp_path, data_config):
    root = folder_dataset(
        tmp_path / "data", {"COVID-19": qu_ex_val("COVID-19"), "Normal": qu_ex_val("Normal")}, with_masks=True
    )
    blank = root / "Normal" / "images" / qu_ex_val("Normal")[0].name
    Image.fromarray(np.full((256, 256), 128, np.uint8)).save(blank)  # e.g. a failed exposure
    assert not segment_lungs(np.full((64, 64), 128, np.uint8)).any()

    data = prepare_data(data_config(root), source="classical")
    blank_index = data.keys.index(f"Normal/images/{blank.name}")
    assert not data.has_mask[blank_index] and not np.asarray(data.masks[blank_index]).any()
    assert data.has_mask.sum() == len(data.keys) - 1
    scores = evaluate_regions(
        data.masks, data.reference_masks, data.reference_has_mask, data.labels, data.classes, data.keys, 8, 0.0
    )
    worst = min(scores, key=lambda score: score.dice)
    assert (worst.index, worst.dice, worst.patch_iou) == (blank_index, 0.0, 0.0)
    assert not lung_patch_grid(torch.from_numpy(np.asarray(data.masks[[blank_index]]))[:, None], 8, 0.0).any()


def test_derived_masks_are_cached_beside_the_images_and_reused(radiography_root, data_config):
    config = data_config(radiography_root)
    gt = prepare_data(config)
    image_marker = (gt.cache_dir / COMPLETE_MARKER).stat().st_mtime_ns
    classical = prepare_data(config, source="classical")
    assert classical.cache_dir == gt.cache_dir  # one image cache for every source
    assert (gt.cache_dir / COMPLETE_MARKER).stat().st_mtime_ns == image_marker  # no image decoded again
    mask_folder = gt.cache_dir.parent / f"{gt.cache_dir.name}-masks-classical-v1"
    assert isinstance(classical.masks, np.memmap) and (mask_folder / COMPLETE_MARKER).exists()
    mask_marker = (mask_folder / COMPLETE_MARKER).stat().st_mtime_ns
    again = prepare_data(config, source="classical")
    assert (mask_folder / COMPLETE_MARKER).stat().st_mtime_ns == mask_marker
    assert np.array_equal(again.masks, classical.masks) and not np.array_equal(again.masks, gt.masks)
    assert (classical.fingerprint, classical.split_file) == (gt.fingerprint, gt.split_file)
    for source in ("prior", "none"):  # one region for all, or none: nothing to cache
        prepare_data(config, source=source)
    assert sorted(p.name for p in gt.cache_dir.parent.iterdir() if p.is_dir() and p.name not in ("splits", "digests")) == [
        gt.cache_dir.name,
        mask_folder.name,
    ]


def test_options_that_do_not_fit_the_mask_source_are_errors(data_config):
    for overrides, message in (
        ({"source": "classical", "mask_dir": "masks"}, "goes with --mask-source gt"),
        ({"sam_checkpoint": "sam.pth"}, "only used by --mask-source sam"),
        ({"source": "sam", "sam_model": "vit_s"}, "expected one of vit_b"),
    ):
        with pytest.raises(DataError, match=message):
            prepare_data(data_config(QU_EX_SAMPLE), **overrides)


def test_each_mask_source_gets_its_own_run_id_and_pretrained_encoder():
    method = METHODS["rgmim"]
    configs = []
    for source in ("gt", "classical", "prior", "none"):
        config, _ = configure("smoke", [f"region.source={source}"])
        configs.append(config)
    data = SimpleNamespace(fingerprint="same-dataset", split_digest="same-split")
    assert len({run_id(method, "vit", 0.05, config, data) for config in configs}) == 4
    assert len({encoder_cache_key(method, config, data) for config in configs}) == 4


def test_sam_errors_say_what_is_missing(tmp_path, monkeypatch, data_config):
    with pytest.raises(DataError, match="needs --sam-checkpoint PATH.*never downloads"):
        prepare_data(data_config(QU_EX_SAMPLE), source="sam")
    with pytest.raises(DataError, match="no such file"):
        check_sam_available(str(tmp_path / "sam_vit_b.pth"), "vit_b")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "segment_anything", None)  # as if the optional package were absent
        with pytest.raises(DataError, match="pip install segment-anything"):
            check_sam_available(str(garbage), "vit_b")

    pytest.importorskip("segment_anything")
    with pytest.raises(DataError, match="cannot be read as a PyTorch checkpoint"):
        SamSegmenter(garbage, "vit_b")
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(DataError, match="not a Segment Anything vit_b checkpoint"):
        SamSegmenter(other, "vit_b")


@pytest.mark.slow
def test_sam_runs_end_to_end_on_one_image_with_a_random_model(tmp_path, data_config, capsys):
    segment_anything = pytest.importorskip("segment_anything")
    torch.manual_seed(0)
    checkpoint = tmp_path / "sam_vit_b_random.pth"  # randomly initialised: no weights exist offline
    torch.save(segment_anything.sam_model_registry["vit_b"]().state_dict(), checkpoint)
    root = folder_dataset(tmp_path / "one", {"Normal": qu_ex_val("Normal")[:1]}, with_masks=False)
    config = data_config(root)
    region = RegionConfig(source="sam", sam_checkpoint=str(checkpoint))

    data = prepare(config, region, progress=True)
    assert "lung masks (sam-vit_b-" in capsys.readouterr().err  # the progress bar
    assert data.mask_source == "sam" and data.masks.shape == (1, 64, 64) and set(np.unique(data.masks)) <= {0, 1}
    inside = np.zeros((64, 64), bool)  # SAM's lungs stay inside its box prompts
    for x0, y0, x1, y1 in lung_boxes(np.asarray(data.images[0])):
        inside[y0:y1, x0:x1] = True
    assert not (np.asarray(data.masks[0], bool) & ~inside).any()
    again = prepare(config, region, progress=False)  # cached: no model is loaded again
    assert np.array_equal(again.masks, data.masks) and again.has_mask[0] == data.has_mask[0]


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *arguments], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_data_masks_command_scores_previews_and_lists_the_worst(tmp_path):
    preview, per_image, results = tmp_path / "masks.png", tmp_path / "scores.csv", tmp_path / "results"
    result = run_cli(
        "data",
        "masks",
        "--profile",
        "smoke",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--data-root",
        str(QU_EX_SAMPLE),
        "--mask-source",
        "classical",
        "--evaluate",
        "--preview",
        str(preview),
        "--per-image",
        str(per_image),
        "--per-class",
        "2",
        "--results",
        str(results),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("mask source classical: the classical lung-field segmenter")
    assert "regions for 15 of 15 images (9 of 9 in the training pool)" in lines[1]
    assert any(line.startswith("quality against the dataset's own masks (9 images") for line in lines)
    assert [line.split()[:2] for line in lines if line.split()[:1] in (["COVID-19"], ["Normal"], ["all"])] == [
        ["COVID-19", "3"],
        ["Normal", "3"],
        ["all", "9"],
    ]
    start = lines.index("worst 5 by Dice:") + 1
    assert all(line.startswith("  Dice 0.") for line in lines[start : start + 5])
    assert lines[start + 5] == f"per-image scores: {per_image}"
    (summary_file,) = (results / "mask-quality").glob("*.json")
    assert lines[start + 6] == f"summary for the report: {summary_file}"
    with open(per_image, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 9 and {"key", "class", "dice", "iou", "patch_iou"} == set(rows[0])
    with Image.open(preview) as picture:
        assert picture.format == "PNG" and picture.width > 200

    gone = run_cli("data", "masks", "--profile", "smoke", "--source", "prior")  # one option for one setting
    assert gone.returncode == 2 and "unrecognized arguments: --source" in gone.stderr
    unscored = run_cli("data", "masks", "--profile", "smoke", "--data-root", str(QU_EX_SAMPLE), "--results", str(results))
    assert unscored.returncode != 0 and "--results writes the scores of --evaluate; add --evaluate" in unscored.stderr

    # The report shows the summary in the section of the same dataset, fingerprint and image size.
    facts = json.loads(summary_file.read_text(encoding="utf-8"))
    dice = [float(row["dice"]) for row in rows]
    overall = facts["summary"]["all"]
    assert overall["images"] == 9 and overall["dice"]["mean"] == pytest.approx(np.mean(dice), abs=1e-4)  # CSV: 4 digits
    same_data = {"dataset": facts["dataset"], "fingerprint": facts["fingerprint"], "classes": facts["classes"]}
    record = make_record("rgmim", "vit", 1.0, 0, **same_data)
    record["dataset"]["image_size"] = facts["image_size"]
    write_record(results / "runs" / f"{record['run_id']}.json", record)
    readme = build_report(results).read_text(encoding="utf-8")
    table = readme.split("### Lung-mask sources against the dataset's own masks")[1].split("###")[0]
    assert f"| `classical` | 9 | {overall['dice']['mean']:.3f} ({overall['dice']['median']:.3f}) |" in table


def test_report_keeps_other_mask_sources_out_of_table_2(tmp_path):
    def record(source: str, seed: int, accuracy: float) -> dict:
        made = make_record("rgmim", "vit", 0.05, seed, accuracy)
        made["config"]["region"]["source"] = made["dataset"]["mask_source"] = source
        made["run_id"] += f"-{source}"
        return made

    records = [
        record(source, seed, accuracy + 0.01 * seed)
        for source, accuracy in (("gt", 0.80), ("classical", 0.90), ("prior", 0.70), ("none", 0.60))
        for seed in (0, 1)
    ]
    records += [make_record("mae", "vit", 0.05, seed, 0.75 + 0.01 * seed) for seed in (0, 1)]
    for made in records:
        write_record(tmp_path / "runs" / f"{made['run_id']}.json", made)
    readme = build_report(tmp_path).read_text(encoding="utf-8")

    table2 = readme.split("### Table 2")[1].split("### Table 3")[0]
    assert "| RGMIM | **0.805 ± 0.007** (n=2)" in table2  # gt only, although classical scored higher
    by_source = readme.split("### RGMIM by lung-mask source")[1].split("###")[0]
    rows = [line.split("|")[1:4] for line in by_source.splitlines() if line.startswith("| ") and "---" not in line]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["Method", "Mask source", "5 %"],
        ["RGMIM", "gt", "0.805 ± 0.007 (n=2)"],
        ["RGMIM", "classical", "**0.905 ± 0.007** (n=2)"],
        ["RGMIM", "prior", "0.705 ± 0.007 (n=2)"],
        ["RGMIM", "none", "0.605 ± 0.007 (n=2)"],
    ]  # MAE's masking ignores the region: not in this table
    paired = readme.split("### RGMIM − MAE, paired by seed")[1].split("###")[0]
    assert "| 5 % | 2 | +0.050 |" in paired  # RGMIM (gt) − MAE per seed: the other sources are not paired
    assert "`region.source`" not in readme  # differing by design: no ⚠ in the protocol notes
    assert "RGMIM lung-mask sources run: `gt`, `classical`, `prior`, `none`" in readme


def test_report_pairs_each_mask_source_with_none_and_with_gt_by_seed(tmp_path):
    accuracies = {  # source: {fraction: accuracy per seed}; prior ran two seeds, 100 % only seed 0
        "gt": {0.05: (0.80, 0.82, 0.81), 1.0: (0.90,)},
        "classical": {0.05: (0.85, 0.88, 0.86), 1.0: (0.91,)},
        "prior": {0.05: (0.75, 0.80)},
        "none": {0.05: (0.70, 0.69, 0.73), 1.0: (0.88,)},
    }
    records = []
    for source, by_fraction in accuracies.items():
        for fraction, per_seed in by_fraction.items():
            for seed, accuracy in enumerate(per_seed):
                made = make_record("rgmim", "vit", fraction, seed, accuracy)
                made["config"]["region"]["source"] = made["dataset"]["mask_source"] = source
                made["run_id"] += f"-{source}"
                records.append(made)
    records.append(make_record("mae", "vit", 0.05, 0, 0.99))  # not region-guided: never paired here
    lone = make_record("rgmim", "vit", 0.05, 9, 0.50)  # a seed no other source ran: nothing to pair it with
    lone["config"]["region"]["source"] = lone["dataset"]["mask_source"] = "sam"
    lone["run_id"] += "-sam"
    records.append(lone)
    for made in records:
        write_record(tmp_path / "runs" / f"{made['run_id']}.json", made)

    frame = mask_source_differences(group_sections(records)[0].runs).set_index(["comparison", "fraction"])
    assert list(frame.index.get_level_values(0).unique()) == [
        "gt − none",
        "classical − none",
        "prior − none",
        "classical − gt",
        "prior − gt",
    ]
    classical = frame.loc[("classical − none", 0.05)]
    assert classical["pairs"] == 3 and classical["mean"] == pytest.approx(np.mean([0.15, 0.19, 0.13]))
    assert (classical["ci_low"], classical["ci_high"]) == pytest.approx(paired_mean_ci([0.15, 0.19, 0.13]))
    assert frame.loc[("prior − gt", 0.05), "pairs"] == 2  # only the seeds both sources ran
    assert frame.loc[("prior − gt", 0.05), "mean"] == pytest.approx(np.mean([-0.05, -0.02]))
    assert frame.loc[("classical − gt", 1.0), "pairs"] == 1 and np.isnan(frame.loc[("classical − gt", 1.0), "ci_low"])

    readme = build_report(tmp_path).read_text(encoding="utf-8")
    table = readme.split("### Lung-mask sources paired by seed")[1].split("###")[0]
    rows = {cells[2]: cells[3:5] for cells in (line.split("|") for line in table.splitlines() if line.startswith("| RGMIM"))}
    low, high = paired_mean_ci([0.15, 0.19, 0.13])
    assert [cell.strip() for cell in rows[" classical − none "]] == [f"**+0.157 [+{low:.3f}, +{high:.3f}]** (n=3)", "n/a (1)"]
    assert rows[" classical − gt "][1].strip() == "n/a (1)"
    assert [cell.strip() for cell in rows[" prior − gt "]] == ["−0.035 [−0.226, +0.156] (n=2)", "—"]  # no pair at 100 %


@pytest.mark.slow
def test_rgmim_runs_with_each_mask_source_land_in_their_report_section(tmp_path):
    results = tmp_path / "results"
    for source in ("classical", "prior", "none"):
        result = run_cli(
            "run",
            "--method",
            "rgmim",
            "--fraction",
            "0.05",
            "--profile",
            "smoke",
            "--no-progress",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--results",
            str(results),
            "--mask-source",
            source,
        )
        assert result.returncode == 0, result.stderr
        assert f"region.source='{source}'" in result.stderr  # the settings that differ from the profile
    report = run_cli("report", "--results", str(results))
    assert report.returncode == 0, report.stderr
    readme = (results / "README.md").read_text(encoding="utf-8")
    assert "No runs count in Table 2: its MIM rows need mask ratio 0.75 and RGMIM `gt` masks" in readme
    by_source = readme.split("### RGMIM by lung-mask source")[1].split("###")[0]
    assert [line.split("|")[2].strip() for line in by_source.splitlines() if line.startswith("| ")][2:] == [
        "classical",
        "prior",
        "none",
    ]
