"""--tensorboard DIR writes per-epoch scalars of pretraining, fine-tuning and the probes (#14 §6)."""

from __future__ import annotations

import pytest

from benchmark.data.prepare import identify
from benchmark.engine.identity import run_id
from benchmark.runner import configure, execute
from methods import METHODS

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def scalars_of(folder) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for events in sorted(folder.glob("events.out.tfevents.*")):
        accumulator = event_accumulator.EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            found.setdefault(tag, []).extend(event.value for event in accumulator.Scalars(tag))
    return found


def test_tensorboard_gets_the_scalars_the_record_holds(tmp_path):
    budget = [f"data.cache_dir={tmp_path / 'cache'}", "finetune.epochs=2", "finetune.max_steps=0"]
    board = tmp_path / "board"
    config, _ = configure("smoke", [*budget, f"runtime.tensorboard={board}"])
    record = execute("rgmim", 0.5, config, tmp_path / "results", progress=False)
    run = scalars_of(board / record["run_id"])
    assert run["finetune/accuracy"] == pytest.approx([epoch["accuracy"] for epoch in record["history"]])
    assert run["probe/knn_accuracy"] == pytest.approx([record["probes"]["knn"]["accuracy"]])
    pretraining = scalars_of(board / f"pretrain-{record['pretrain']['cache_key']}")
    assert pretraining["pretrain/loss"] == pytest.approx(record["pretrain"]["loss_history"])
    assert "pretrain/mean_valid_patches" in pretraining
    plain, _ = configure("smoke", budget)
    found = identify(plain.data, plain.region)
    assert run_id(METHODS["rgmim"], "vit", 0.5, plain, found) == record["run_id"]  # where logs go is no identity
