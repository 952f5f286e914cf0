"""finetune.min_steps: a small label subset is cycled until the run takes at least that many optimizer steps."""

from __future__ import annotations

from benchmark.engine.runtime import finetune_plan, pretrain_plan
from benchmark.runner import configure, execute


def test_min_steps_cycles_a_small_subset_and_the_schedule_follows_the_real_steps(tmp_path):
    base = [f"data.cache_dir={tmp_path / 'cache'}", "finetune.max_steps=0", "finetune.epochs=2", "probe.enabled=false"]
    plain_config, _ = configure("smoke", base)
    plain = execute("scratch", 0.1, plain_config, tmp_path / "results", arch="resnet", progress=False)
    assert plain["finetune"]["steps"] == 2 and plain["finetune"]["passes_per_epoch"] == 1  # 9 labels, batch 16

    cycled_config, _ = configure("smoke", [*base, "finetune.min_steps=10"])
    cycled = execute("scratch", 0.1, cycled_config, tmp_path / "results", arch="resnet", progress=False)
    summary = cycled["finetune"]
    assert (summary["steps"], summary["steps_per_epoch"], summary["passes_per_epoch"]) == (10, 5, 5)
    subset = cycled["dataset"]["finetune_subset"]
    assert [epoch["train_images"] for epoch in cycled["history"]] == [5 * subset, 5 * subset]
    # warm-up and cosine follow the real number of steps: near the end after 10 steps, not halfway after 2
    assert cycled["history"][-1]["lr"] < 0.1 * summary["base_lr"] < plain["history"][-1]["lr"]
    assert cycled["run_id"] != plain["run_id"] and cycled["probes"] is None
    # the plan `bench --grid` predicts from counts the images the engine trained on
    for record, config in ((plain, plain_config), (cycled, cycled_config)):
        planned = finetune_plan(record["dataset"]["finetune_subset"], config.finetune, announce=False)
        assert planned.images == sum(epoch["train_images"] for epoch in record["history"])
        assert planned.total_steps == record["finetune"]["steps"]


def test_max_steps_caps_both_engines_and_the_record_says_what_ran(tmp_path, capsys):
    overrides = [
        f"data.cache_dir={tmp_path / 'cache'}",
        "pretrain.epochs=5",
        "pretrain.max_steps=2",
        "finetune.epochs=4",
        "finetune.max_steps=3",
        "probe.enabled=false",
    ]
    config, _ = configure("smoke", overrides)
    record = execute("byol", 1.0, config, tmp_path / "results", progress=False)
    pretrain, finetune = record["pretrain"], record["finetune"]
    assert (pretrain["steps"], pretrain["epochs"], pretrain["configured_epochs"]) == (2, 1, 5)
    assert (finetune["steps"], finetune["epochs"], finetune["configured_epochs"]) == (3, 1, 4)  # 6 steps an epoch
    assert len(record["history"]) == 1 and record["history"][0]["train_images"] == 3 * 16
    assert finetune_plan(record["dataset"]["finetune_subset"], config.finetune, announce=False).images == 3 * 16
    assert pretrain_plan(record["dataset"]["train_pool"], config.pretrain, announce=False).images == 2 * 16
    warned = capsys.readouterr().err
    assert "pretrain.max_steps=2 stops the run after 2 steps: 1 of the 5 configured epochs" in warned
    assert "finetune.max_steps=3 stops the run after 3 steps: 1 of the 4 configured epochs" in warned
