"""Training batches straight from the decoded uint8 cache: no decoding or PIL on the hot path.

The selected images (and lung masks) are held as one uint8 tensor on the training device; a batch is
an index into it. Batch order is a seeded permutation per epoch, so a resumed run sees the same order.
Under DDP every rank holds the pool, walks the same permutation and keeps its rows of each global batch.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import numpy as np
import torch

from benchmark.data.views import to_unit
from benchmark.distributed import Ranks


class Batch(NamedTuple):
    images: torch.Tensor  # (b, 1, H, W) in [0, 1], this rank's rows
    masks: Optional[torch.Tensor]  # (b, 1, H, W) {0, 1} or None
    labels: torch.Tensor  # (b,)
    global_size: int  # rows of the global batch over all ranks (random draws are made for all of them)


class TensorPool:
    def __init__(
        self, images: np.ndarray, masks: Optional[np.ndarray], labels: np.ndarray, indices: np.ndarray, device: torch.device
    ):
        order = np.sort(indices)  # memmap reads in file order
        self.images = torch.from_numpy(np.ascontiguousarray(images[order])).to(device)
        self.masks = torch.from_numpy(np.ascontiguousarray(masks[order])).to(device) if masks is not None else None
        self.labels = torch.from_numpy(np.asarray(labels)[order].astype(np.int64)).to(device)
        self.device = device

    def __len__(self) -> int:
        return len(self.labels)

    def batches(
        self, batch_size: int, seed: int, epoch: int, shuffle: bool = True, drop_last: bool = False, ranks: Ranks = Ranks()
    ) -> Iterator[Batch]:
        """Batches of ``batch_size`` (global) images on the device; ``ranks`` picks this rank's rows."""
        if shuffle:
            generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
            order = torch.randperm(len(self), generator=generator).to(self.device)
        else:
            order = torch.arange(len(self), device=self.device)
        stop = len(self) - (len(self) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            global_index = order[start : start + batch_size]
            index = ranks.rows(global_index)
            masks = self.masks[index].unsqueeze(1).float() if self.masks is not None else None
            yield Batch(to_unit(self.images[index]), masks, self.labels[index], len(global_index))
