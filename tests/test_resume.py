"""A pretraining or fine-tuning run stopped after epoch k and restarted ends where an uninterrupted run ends."""

import pytest
import torch

import benchmark.engine.checkpoint as checkpoint_module
import benchmark.engine.finetune as finetune_module
import benchmark.engine.pretrain as pretrain_module
from benchmark.runner import configure
from benchmark.data.prepare import prepare
from methods import METHODS
from methods.backbones import build_encoder


class Stop(Exception):
    """Stands in for a preemption right after a checkpoint was written."""


def stop_after_first_checkpoint(monkeypatch):
    """Both engines write their per-epoch checkpoint through checkpoint.save_training_state -> save_torch."""
    module = checkpoint_module
    real_save = module.save_torch

    def save_then_stop(obj, path):
        real_save(obj, path)
        if obj.get("epoch") == 1:
            raise Stop()

    monkeypatch.setattr(module, "save_torch", save_then_stop)


@pytest.fixture
def setup(tmp_path):
    config, _ = configure(
        "smoke", [f"data.cache_dir={tmp_path / 'cache'}", "pretrain.epochs=2", "pretrain.max_steps=0", "finetune.epochs=2"]
    )
    return config, prepare(config.data, config.region, progress=False), torch.device("cpu")


@pytest.mark.parametrize("method_name", ["rgmim", "byol"])
def test_pretraining_resumes_to_the_same_weights(setup, tmp_path, monkeypatch, method_name):
    config, data, device = setup
    method = METHODS[method_name]
    _, straight = pretrain_module.train(method, config, data, device, tmp_path / "a.pt", progress=False)

    stop_after_first_checkpoint(monkeypatch)
    with pytest.raises(Stop):
        pretrain_module.train(method, config, data, device, tmp_path / "b.pt", progress=False)
    monkeypatch.undo()
    summary, resumed = pretrain_module.train(method, config, data, device, tmp_path / "b.pt", progress=False)

    assert summary["resumed_from_epoch"] == 1
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_finetuning_resumes_to_the_same_history(setup, tmp_path, monkeypatch):
    config, data, device = setup

    def fresh_encoder():
        torch.manual_seed(0)
        return build_encoder(config, "resnet")

    straight = finetune_module.finetune(fresh_encoder(), config, data, 0.5, device, tmp_path / "a.pt", False)
    stop_after_first_checkpoint(monkeypatch)
    with pytest.raises(Stop):
        finetune_module.finetune(fresh_encoder(), config, data, 0.5, device, tmp_path / "b.pt", False)
    monkeypatch.undo()
    resumed = finetune_module.finetune(fresh_encoder(), config, data, 0.5, device, tmp_path / "b.pt", False)

    assert resumed["summary"]["resumed_from_epoch"] == 1

    def computed(history: list[dict]) -> list[dict]:  # without what was measured about the machine
        return [{k: v for k, v in e.items() if not k.endswith("time_s") and k != "other_cpu_share"} for e in history]

    assert computed(straight["history"]) == computed(resumed["history"])
    assert all(0.0 <= e["other_cpu_share"] <= 1.0 for e in resumed["history"])  # measured after resuming too
