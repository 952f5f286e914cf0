"""The paper profile's model sizes (ViT-B/16 at 224 px with the 8 x 512 decoder, ResNet-50) for one optimizer
step of every registry entry, with a batch this machine can hold: the main use, on GPU clusters, which no
machine here can run at full size. Everything but the budget (phantom size, batch, steps) is the paper's."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import timm
import torch
import torchvision

from benchmark.records.schema import validate_record
from benchmark.runner import configure, execute
from methods import METHODS

ENTRIES = [(name, arch) for name, method in METHODS.items() for arch in method.archs]
BUDGET = [
    "data.phantom_count=20",  # choice: 5 per class, 1 of them in the test split
    "pretrain.epochs=1",
    "pretrain.batch_size=4",
    "pretrain.max_steps=1",
    "finetune.epochs=1",
    "finetune.batch_size=4",
    "finetune.max_steps=1",
    "finetune.eval_batch_size=8",
    "runtime.device=cpu",
]


# choice: ViT-B's checkpoints with AdamW state are about 1 GB; written and fsynced to tmpfs they cost nothing, to
# this machine's disk about 12 s per entry (a 2-core Zen 3)
SCRATCH_ROOT = "/dev/shm" if Path("/dev/shm").is_dir() else None


@pytest.fixture(scope="module")
def paper_workspace() -> Iterator[dict]:
    with tempfile.TemporaryDirectory(prefix="rgmim-paper-profile-", dir=SCRATCH_ROOT) as folder:
        root = Path(folder)
        config, _ = configure("paper")
        # named mocks: random weights saved as files, loaded through the real offline path (no ImageNet files here)
        torch.save(timm.create_model(config.vit.name, pretrained=False).state_dict(), root / "MOCK-vit-imagenet.pth")
        torch.save(torchvision.models.resnet50(weights=None).state_dict(), root / "MOCK-resnet-imagenet.pth")
        yield {"root": root, "weights": {"vit": root / "MOCK-vit-imagenet.pth", "resnet": root / "MOCK-resnet-imagenet.pth"}}


@pytest.mark.slow
@pytest.mark.parametrize("method, arch", ENTRIES)
def test_every_registry_entry_takes_a_step_at_the_paper_sizes(paper_workspace, method, arch):
    root = paper_workspace["root"]
    overrides = [f"data.cache_dir={root / 'cache'}", *BUDGET]
    if METHODS[method].init == "imagenet":
        overrides.append(f"{arch}.weights={paper_workspace['weights'][arch]}")
    config, _ = configure("paper", overrides)
    record = execute(method, 1.0, config, root / "results", arch=arch, progress=False)

    assert validate_record(record) == []
    resolved = record["config"]
    assert (resolved["data"]["image_size"], resolved["vit"]["name"], resolved["vit"]["patch_size"]) == (
        224,
        "vit_base_patch16_224",
        16,
    )
    assert resolved["resnet"]["name"] == "resnet50" and resolved["finetune"]["blr"] == 1.5e-4
    if "rgmim" in resolved["methods"]:
        decoder = resolved["methods"]["rgmim"]
        assert (decoder["decoder_depth"], decoder["decoder_dim"], decoder["decoder_heads"]) == (8, 512, 16)
    assert math.isfinite(record["history"][0]["train_loss"])
    if METHODS[method].build_pretrainer is not None:
        assert record["pretrain"]["steps"] == 1 and math.isfinite(record["pretrain"]["loss_history"][0])
        if method in ("rgmim", "mae"):  # 14 x 14 grid, 49 visible patches (T1's sigma = 0.75)
            assert record["pretrain"]["masking"][0]["mean_valid_patches"] > 0
