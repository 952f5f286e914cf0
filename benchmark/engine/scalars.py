"""Per-epoch scalars for TensorBoard (``--tensorboard DIR``, the optional extra ``.[tensorboard]``), as MAE and
lightly's benchmarks log them. The run records stay the source of every table and plot."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from benchmark.errors import ConfigError

EXTRA_HELP = "pip install -e '.[tensorboard]'"


def check_available(folder: Optional[str]) -> None:
    """Before any work: ``--tensorboard`` needs the tensorboard package."""
    if folder is None:
        return
    try:
        import tensorboard  # noqa: F401  (only checked here; ScalarLog loads torch's writer)
    except ImportError:
        raise ConfigError(f"--tensorboard {folder}: needs the optional package tensorboard ({EXTRA_HELP})") from None


class ScalarLog:
    """Scalars of one run or pretraining under ``<folder>/<name>``; does nothing without a folder."""

    def __init__(self, folder: Optional[str], name: str, enabled: bool = True):
        self.writer = None
        if folder is not None and enabled:
            check_available(folder)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(folder).expanduser() / name))

    def add(self, scalars: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in scalars.items():
                if value is not None:
                    self.writer.add_scalar(tag, float(value), step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
