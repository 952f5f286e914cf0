"""Frozen-feature probes (benchmark/engine/probes.py) on inputs whose answer is known, and their one
feature extraction per encoder."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.config import ProbeConfig
from benchmark.engine import probes
from benchmark.runner import configure, execute


def clusters(count: int, classes: int, dim: int, seed: int, spread: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    labels = rng.integers(0, classes, count)
    return (centres[labels] + spread * rng.normal(size=(count, dim))).astype(np.float32), labels


def test_knn_scores_separable_features_perfectly_and_shuffled_labels_at_chance():
    train, train_labels = clusters(400, 4, 16, seed=0)
    test, test_labels = clusters(400, 4, 16, seed=0)  # the same centres, other noise draws
    test, test_labels = test[200:], test_labels[200:]
    probabilities = probes.knn_probabilities(train, train_labels, test, 4, k=20, temperature=0.07)
    assert (probabilities.argmax(axis=1) == test_labels).mean() == 1.0
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    shuffled = np.random.default_rng(1).permutation(train_labels)
    chance = (probes.knn_probabilities(train, shuffled, test, 4, 20, 0.07).argmax(axis=1) == test_labels).mean()
    assert 0.1 < chance < 0.45  # about 1/4


def test_the_linear_probe_recovers_a_planted_linear_rule():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(600, 32)).astype(np.float32) * 5 + 3  # unstandardised: BatchNorm handles it
    rule = rng.normal(size=(32, 3))
    labels = (features @ rule).argmax(axis=1)
    settings = ProbeConfig(linear_steps=300)
    probabilities = probes.linear_probe_probabilities(features[:400], labels[:400], features[400:], 3, settings, 0)
    assert (probabilities.argmax(axis=1) == labels[400:]).mean() > 0.9
    knn_only = probes.knn_probabilities(features[:400], labels[:400], features[400:], 3, 20, 0.07)
    assert (probabilities.argmax(1) == labels[400:]).mean() > (knn_only.argmax(1) == labels[400:]).mean()


def test_features_are_extracted_once_per_encoder_and_reused_by_every_fraction(tmp_path, monkeypatch):
    calls = []
    real = probes.extract_features
    monkeypatch.setattr(probes, "extract_features", lambda *args: calls.append(1) or real(*args))
    config, _ = configure("smoke", [f"data.cache_dir={tmp_path / 'cache'}"])
    records = [
        execute("scratch", fraction, config, tmp_path / "results", arch="resnet", progress=False)
        for fraction in (0.1, 0.5, 1.0)
    ]
    assert len(calls) == 1
    assert [record["probes"]["features_reused"] for record in records] == [False, True, True]
    assert [record["probes"]["subset_size"] for record in records] == [
        record["dataset"]["finetune_subset"] for record in records
    ]
    for record in records:
        for name in ("knn", "linear"):
            assert 0.0 <= record["probes"][name]["accuracy"] <= 1.0


@pytest.mark.parametrize("override", ["probe.knn_k=5", "probe.linear_steps=20"])
def test_probe_settings_are_part_of_the_run_identity(override, tmp_path):
    from benchmark.data.prepare import identify
    from benchmark.engine.identity import run_id
    from methods import METHODS

    base, _ = configure("smoke", [f"data.cache_dir={tmp_path / 'cache'}"])
    changed, _ = configure("smoke", [f"data.cache_dir={tmp_path / 'cache'}", override])
    found = identify(base.data, base.region)
    assert run_id(METHODS["mae"], "vit", 0.1, base, found) != run_id(METHODS["mae"], "vit", 0.1, changed, found)


def test_the_result_summary_names_chance_the_probes_and_the_baselines_and_repeats_on_reuse(tmp_path, capsys):
    config, _ = configure("smoke", [f"data.cache_dir={tmp_path / 'cache'}"])
    results = tmp_path / "results"
    execute("scratch", 0.5, config, results, arch="vit", progress=False)
    execute("mae", 0.5, config, results, progress=False)
    capsys.readouterr()
    execute("rgmim", 0.5, config, results, progress=False)
    fresh = capsys.readouterr().out
    assert "(chance 0.2500, 4 classes)" in fresh and "frozen starting encoder: kNN " in fresh
    assert "same dataset, profile, fraction and seed: Scratch (ViT) " in fresh and ", MAE " in fresh
    execute("rgmim", 0.5, config, results, progress=False)
    reused = capsys.readouterr().out
    assert "finished record exists, reusing it" in reused
    assert reused.split("(--force reruns)\n", 1)[1] == fresh  # the same summary as the fresh run


def test_the_probe_command_scores_every_fraction_from_one_extraction_and_runs_reuse_its_numbers(tmp_path):
    import json

    from conftest import smoke_run

    cache, results = tmp_path / "cache", tmp_path / "results"
    probed = smoke_run(cache, "--method", "mae", "--fractions", "0.1,1.0", "--json", str(tmp_path / "p.json"), command="probe")
    assert probed.returncode == 0, probed.stderr
    assert "chance 0.2500" in probed.stdout and "linear acc" in probed.stdout
    summary = json.loads((tmp_path / "p.json").read_text())
    rows = {row["fraction"]: row for row in summary["fractions"]}
    assert list(rows) == [0.1, 1.0] and rows[0.1]["subset_size"] < rows[1.0]["subset_size"]
    assert [row["features_reused"] for row in rows.values()] == [False, False]  # one extraction for both
    assert summary["pretrain"]["reused"] is False
    # a run of the same encoder reuses its pretraining and its features, and scores the same probes
    ran = smoke_run(cache, "--method", "mae", "--fraction", "0.1", "--results", str(results))
    assert ran.returncode == 0, ran.stderr
    record = json.loads(next((results / "runs").glob("*.json")).read_text())
    assert record["pretrain"]["reused"] is True and record["probes"]["features_reused"] is True
    assert record["probes"]["knn"] == rows[0.1]["knn"] and record["probes"]["linear"] == rows[0.1]["linear"]


def test_the_probe_command_names_a_bad_fraction_before_any_work(tmp_path):
    from conftest import smoke_run

    failed = smoke_run(tmp_path / "cache", "--method", "mae", "--fractions", "0.1,2", command="probe")
    assert failed.returncode == 2
    assert "--fractions" in failed.stderr and "2" in failed.stderr
    assert not (tmp_path / "cache").exists()
