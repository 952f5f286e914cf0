"""``bench --grid table2``: the wall time of one seed of Table 2 on this machine, predicted from measured steps.

Every stage is timed with the engines' own step (``bench/pipelines.py``) and multiplied by the images the
stage will process, as the engines plan them (``engine/runtime.py`` StepPlan): each pretraining once per
encoder, the five fine-tunings of every row with an evaluation of the test set after each epoch, and each
encoder's frozen-feature probes (one feature pass over the dataset, a linear probe per fraction). Compute
scales with images here (a CPU, or a GPU at full batches); small fine-tuning subsets run smaller batches,
which a GPU runs below its measured rate, so there the prediction is a lower bound.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.bench.pipelines import OurFinetuning, OurPretraining, time_interleaved
from benchmark.config import Config
from benchmark.data.prepare import PreparedData, prepare
from benchmark.engine.finetune import Classifier, evaluate
from benchmark.engine.batches import TensorPool
from benchmark.engine.probes import linear_probe_probabilities
from benchmark.engine.runtime import finetune_plan, pretrain_plan, resolve_device
from benchmark.paper_grid import PAPER_FRACTIONS, PAPER_ROWS
from benchmark.records.frame import row_label
from benchmark.records.schema import method_facts
from methods import METHODS
from methods.backbones import build_encoder, feature_dim

REPO = Path(__file__).resolve().parents[2]


def seconds_per_image(pipeline, steps: int, warmup: int) -> float:
    times = time_interleaved([pipeline], steps, warmup)[0]
    return float(np.median(times.total)) / pipeline.batch_size


def with_stand_in_weights(config: Config, folder: Path) -> Config:
    """``config`` with a random-weight stand-in file for each encoder family that has no ImageNet file set:
    a row's cost does not depend on its initial weights, and no weights exist offline to time it with."""
    families = {}
    for arch in ("vit", "resnet"):
        family = config.family(arch)
        if family.weights is None:
            path = folder / f"STAND-IN-{arch}-random.pth"
            torch.save(build_encoder(config, arch).state_dict(), path)
            family = dataclasses.replace(family, weights=str(path))
        families[arch] = family
    return dataclasses.replace(config, vit=families["vit"], resnet=families["resnet"])


def time_evaluation(arch: str, config: Config, data: PreparedData, device: torch.device) -> float:
    """Seconds per image of the gradient-free passes: evaluating the test set and extracting features."""
    model = Classifier(build_encoder(config, arch), len(data.classes), config.finetune.head_init_std).to(device)
    pool = TensorPool(data.images, None, data.labels, data.test_idx, device)
    evaluate(model, pool, config, device, data.classes)  # warm-up
    started = time.perf_counter()
    evaluate(model, pool, config, device, data.classes)
    return (time.perf_counter() - started) / len(data.test_idx)


def time_linear_probe(config: Config, data: PreparedData) -> float:
    """Seconds of one linear probe (its length is in steps, so its cost hardly depends on the fraction)."""
    dim = feature_dim(build_encoder(config, "vit"))
    features = np.random.default_rng(0).normal(size=(len(data.train_idx), dim)).astype(np.float32)
    labels = data.labels[data.train_idx]
    started = time.perf_counter()
    linear_probe_probabilities(features, labels, features[:8], len(data.classes), config.probe, 0)
    return time.perf_counter() - started


def time_start_up() -> float:
    """Seconds for a fresh process to import the engines (torch, timm, lightly): once per sweep process."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import benchmark.runner"], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - started


def predict_table2(config: Config, steps: int, warmup: int, progress=print) -> dict:
    """Measured rates and the predicted seconds of each Table 2 row, for one seed at ``config``."""
    device = resolve_device(config)
    prepare(config.data, config.region, progress=False)  # a sweep's first job fills the cache; time a later one
    started = time.perf_counter()
    data = prepare(config.data, config.region, progress=False)
    prepare_s = time.perf_counter() - started
    pool, test = len(data.train_idx), len(data.test_idx)
    with tempfile.TemporaryDirectory() as folder:
        timed = with_stand_in_weights(config, Path(folder))
        pretrain_rate = {}
        for method_name, arch in PAPER_ROWS:
            method = METHODS[method_name]
            if method.build_pretrainer is not None and method_name not in pretrain_rate:
                progress(f"[bench] timing {method_name} pretraining ({steps} steps)")
                pretrain_rate[method_name] = seconds_per_image(OurPretraining(method, timed, data, device), steps, warmup)
        train_rate, eval_rate = {}, {}
        for arch in ("vit", "resnet"):
            progress(f"[bench] timing {arch} fine-tuning ({steps} steps) and evaluation")
            train_rate[arch] = seconds_per_image(OurFinetuning(arch, timed, data, device), steps, warmup)
            eval_rate[arch] = time_evaluation(arch, timed, data, device)
    linear_probe_s = time_linear_probe(config, data) if config.probe.enabled else 0.0
    start_up_s = time_start_up()

    pretrain_images = pretrain_plan(pool, config.pretrain, announce=False).images
    subset_sizes = [len(data.subset(fraction)) for fraction in PAPER_FRACTIONS]
    plans = [finetune_plan(size, config.finetune, announce=False) for size in subset_sizes]
    rows = []
    for method_name, arch in PAPER_ROWS:
        method = METHODS[method_name]
        row = {
            "row": row_label(method_facts(method), arch),
            "pretrain_s": pretrain_images * pretrain_rate[method_name] if method_name in pretrain_rate else 0.0,
            "finetune_s": sum(plan.images for plan in plans) * train_rate[arch],
            "evaluation_s": sum(plan.epochs for plan in plans) * test * eval_rate[arch],
            "finetune_steps": [plan.total_steps for plan in plans],
            # the probes' feature pass over every image, once per encoder, and a linear probe per fraction
            "probe_s": (len(data.labels) * eval_rate[arch] + len(plans) * linear_probe_s) if config.probe.enabled else 0.0,
            "prepare_s": (len(plans) + (method_name in pretrain_rate)) * prepare_s,  # every job prepares its data
        }
        row["compute_s"] = row["pretrain_s"] + row["finetune_s"] + row["evaluation_s"]
        row["total_s"] = row["compute_s"] + row["probe_s"] + row["prepare_s"]
        rows.append(row)
    return {
        "profile": config.profile,
        "fractions": list(PAPER_FRACTIONS),
        "subset_sizes": subset_sizes,
        "train_pool": pool,
        "test": test,
        "seconds_per_image": {
            "pretrain": pretrain_rate,
            "finetune": train_rate,
            "evaluation": eval_rate,
        },
        "linear_probe_s": linear_probe_s,
        "prepare_s": prepare_s,
        "start_up_s": start_up_s,
        "rows": rows,
        "compute_s": sum(row["compute_s"] for row in rows),
        "total_s": start_up_s + sum(row["total_s"] for row in rows),
    }


def grid_table(prediction: dict) -> str:
    minutes = 60.0
    lines = [
        f"predicted cost of one Table 2 seed, profile {prediction['profile']}: {prediction['train_pool']} training "
        f"and {prediction['test']} test images, fractions {', '.join(f'{f:g}' for f in prediction['fractions'])}",
        f"{'row':18} {'pretrain':>9} {'fine-tune':>10} {'evaluate':>9} {'compute':>8} {'probes':>7} {'prepare':>8} "
        f"{'total':>7}  fine-tuning steps",
    ]
    for row in prediction["rows"]:
        lines.append(
            f"{row['row']:18} {row['pretrain_s'] / minutes:>9.1f} {row['finetune_s'] / minutes:>10.1f} "
            f"{row['evaluation_s'] / minutes:>9.1f} {row['compute_s'] / minutes:>8.1f} {row['probe_s'] / minutes:>7.1f} "
            f"{row['prepare_s'] / minutes:>8.1f} {row['total_s'] / minutes:>7.1f}  "
            f"{'/'.join(str(steps) for steps in row['finetune_steps'])}"
        )
    lines += [
        f"minutes; compute = pretraining + fine-tuning + evaluation, the report's compute line: "
        f"{prediction['compute_s'] / minutes:.1f} min",
        f"whole seed as one local sweep (compute, probes, data preparation, {prediction['start_up_s']:.1f} s start-up): "
        f"{prediction['total_s'] / minutes:.1f} min",
    ]
    return "\n".join(lines)
