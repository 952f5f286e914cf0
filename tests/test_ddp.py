"""DDP on CPU (gloo, two processes): the same global batch gives what one process gives; rank 0 alone
writes; a checkpoint resumes under DDP.

The ranks are spawned with torchrun's environment variables, so this is the torchrun code path. Fine-tuning
runs with drop_path=0: drop-path masks are drawn inside the network per rank (distributed.py says why), every
other random draw is made for the global batch on every rank and is therefore identical to one process's.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import benchmark.engine.pretrain as pretrain_module
from benchmark.runner import configure
from benchmark.data.prepare import prepare
from benchmark import distributed
from benchmark.runner import execute
from methods import METHODS

WORLD = 2
# fraction 0.1 of the smoke pool is 9 images: one fine-tuning batch that splits 5 / 4 over the ranks
OVERRIDES = ["pretrain.max_steps=2", "finetune.max_steps=0", "finetune.epochs=2", "finetune.drop_path=0"]
FRACTION = 0.1

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def join_as(rank: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)


def refuse_writes(monkeypatch_targets: list[tuple[object, str]]) -> None:
    """On ranks other than 0, any record or checkpoint write fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"rank {distributed.current().rank} wrote {args[-1]}")

    for module, name in monkeypatch_targets:
        setattr(module, name, refuse)


def run_worker(rank: int, port: int, cache: str, results: str, out: str) -> None:
    import benchmark.engine.checkpoint as checkpoint_module
    import benchmark.runner as runner_module

    join_as(rank, port)
    if rank != 0:
        refuse_writes(
            [
                (runner_module, "write_record"),
                (pretrain_module, "save_torch"),  # the cached encoder
                (pretrain_module, "atomic_write_json"),  # its summary
                (checkpoint_module, "save_torch"),  # every per-epoch checkpoint of both engines
            ]
        )
    config, _ = configure("smoke", [f"data.cache_dir={cache}", *OVERRIDES])
    try:
        record = execute("rgmim", FRACTION, config, Path(results), progress=False)
        Path(out, f"rank{rank}.json").write_text(json.dumps(record, default=str))
    finally:
        distributed.leave()


def resume_worker(rank: int, port: int, cache: str, checkpoint: str, out: str) -> None:
    join_as(rank, port)
    config, _ = configure("smoke", [f"data.cache_dir={cache}", "pretrain.epochs=2", "pretrain.max_steps=0"])
    try:
        device = torch.device("cpu")
        distributed.join(device.type)
        summary, model = pretrain_module.train(
            METHODS["rgmim"],
            config,
            prepare(config.data, config.region, progress=False),
            device,
            Path(checkpoint),
            progress=False,
        )
        torch.save({"summary": summary, "state": model.state_dict()}, Path(out, f"rank{rank}.pt"))
    finally:
        distributed.leave()


def spawn(worker, *args) -> None:
    mp.start_processes(worker, args=(free_port(), *args), nprocs=WORLD, start_method="spawn", join=True)


def encoder_state(cache: Path) -> dict:
    (encoder_file,) = cache.glob("pretrained/*/encoder.pt")
    return torch.load(encoder_file, weights_only=True)["state"]


KEY_BIAS_ATOL = 1e-5  # the key bias's gradient is rounding noise: AdamW's steps on it differ by the summation order


def assert_close_states(expected: dict, actual: dict) -> None:
    """Equal within float32 summation-order noise. A key bias gets no gradient in exact arithmetic (softmax is
    unchanged by a shift shared by all keys), so its value only has to stay as near zero as the other run's
    (measured on a Zen 3: 1.1e-6 apart after 2 epochs, against 1e-6 allowed elsewhere)."""
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        ours = actual[name]
        if name.endswith("attn.qkv.bias"):
            (query, key, value), (our_query, our_key, our_value) = tensor.chunk(3), ours.chunk(3)
            torch.testing.assert_close(our_key, key, rtol=0, atol=KEY_BIAS_ATOL, msg=lambda text: f"{name} key: {text}")
            tensor, ours = torch.cat([query, value]), torch.cat([our_query, our_value])
        torch.testing.assert_close(ours, tensor, rtol=1e-5, atol=1e-6, msg=lambda text: f"{name}: {text}")


def test_two_ranks_match_one_process_and_only_rank_0_writes(tmp_path):
    config, _ = configure("smoke", [f"data.cache_dir={tmp_path / 'single-cache'}", *OVERRIDES])
    single = execute("rgmim", FRACTION, config, tmp_path / "single-results", progress=False)

    out = tmp_path / "out"
    out.mkdir()
    spawn(run_worker, str(tmp_path / "ddp-cache"), str(tmp_path / "ddp-results"), str(out))

    ranks = [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(WORLD)]
    written = list((tmp_path / "ddp-results" / "runs").glob("*.json"))
    assert [path.name for path in written] == [f"{single['run_id']}.json"]
    assert_close_states(encoder_state(tmp_path / "single-cache"), encoder_state(tmp_path / "ddp-cache"))
    for record in ranks:
        assert record["hardware"]["processes"] == WORLD
        assert_same_training(record, single)


def assert_same_training(record: dict, single: dict) -> None:
    """A multi-process run's record against its one-process twin: same subset, losses, accuracies, confusion."""
    assert record["finetune"]["subset_size"] == single["finetune"]["subset_size"]
    assert record["pretrain"]["loss_history"] == pytest.approx(single["pretrain"]["loss_history"], rel=1e-5)
    assert len(record["history"]) == len(single["history"])
    for ours, theirs in zip(record["history"], single["history"]):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert ours["train_images"] == theirs["train_images"]
        assert ours["accuracy"] == theirs["accuracy"]
        assert ours["macro_auroc"] == pytest.approx(theirs["macro_auroc"], abs=1e-6)
    assert record["metrics"]["confusion"] == single["metrics"]["confusion"]


class Stop(Exception):
    """Stands in for a preemption right after the first epoch's checkpoint."""


def test_a_checkpoint_resumes_under_ddp_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    config, _ = configure("smoke", [f"data.cache_dir={tmp_path / 'cache'}", "pretrain.epochs=2", "pretrain.max_steps=0"])
    data, device, method = prepare(config.data, config.region, progress=False), torch.device("cpu"), METHODS["rgmim"]
    _, straight = pretrain_module.train(method, config, data, device, tmp_path / "straight.pt", progress=False)

    import benchmark.engine.checkpoint as checkpoint_module

    real_save = checkpoint_module.save_torch

    def save_then_stop(obj, path):  # both engines checkpoint through checkpoint.save_training_state
        real_save(obj, path)
        raise Stop()

    monkeypatch.setattr(checkpoint_module, "save_torch", save_then_stop)
    with pytest.raises(Stop):
        pretrain_module.train(method, config, data, device, tmp_path / "resumed.pt", progress=False)
    monkeypatch.undo()

    out = tmp_path / "out"
    out.mkdir()
    spawn(resume_worker, str(tmp_path / "cache"), str(tmp_path / "resumed.pt"), str(out))
    for rank in range(WORLD):
        result = torch.load(out / f"rank{rank}.pt", weights_only=False)
        assert result["summary"]["resumed_from_epoch"] == 1
        assert_close_states(straight.state_dict(), result["state"])


def ensembled_worker(rank: int, port: int, variant: str, out: str) -> None:
    from methods.skd import batch_ensembled

    join_as(rank, port)
    try:
        distributed.join("cpu")
        everyone = torch.randn(7, 16, generator=torch.Generator().manual_seed(0))  # splits 4 / 3
        mine = distributed.current().rows(everyone)
        torch.save(batch_ensembled(mine, variant, 0.5, 0.1, 4.0), Path(out, f"rank{rank}.pt"))
    finally:
        distributed.leave()


@pytest.mark.parametrize("variant", ["cosine", "kl"])
def test_skd_ensembles_over_the_global_batch_under_ddp(tmp_path, variant):
    """BAKE's propagation spans the whole batch: two ranks give each image one process's target."""
    from methods.skd import batch_ensembled

    everyone = torch.randn(7, 16, generator=torch.Generator().manual_seed(0))
    single = batch_ensembled(everyone, variant, 0.5, 0.1, 4.0)
    spawn(ensembled_worker, variant, str(tmp_path))
    for rank in range(WORLD):
        torch.testing.assert_close(torch.load(tmp_path / f"rank{rank}.pt"), single[rank::WORLD])
    # the ranks' own 4- and 3-image batches would give other targets: the gather is what makes them equal
    assert not torch.allclose(batch_ensembled(everyone[0::WORLD], variant, 0.5, 0.1, 4.0), single[0::WORLD])
