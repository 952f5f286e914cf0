"""What the engines print: progress bars on a terminal, one line per epoch and per stage everywhere else
(SLURM logs, ``> file``), where redrawn bars would pile up into hundreds of partial lines."""

from __future__ import annotations

import sys
import time
from typing import Iterator

from tqdm import tqdm


def bars_enabled(progress: bool) -> bool:
    """Bars only when asked for and stderr is a terminal; ``--no-progress`` keeps the per-epoch lines."""
    return progress and sys.stderr.isatty()


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def epoch_line(stage: str, epoch: int, epochs: int, epoch_seconds: float, **figures: str) -> None:
    """``[stage] epoch 3/10: loss 0.51, 310 img/s, 12 s, ETA 1.2 min`` on stderr (the ETA from this epoch)."""
    shown = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in figures.items())
    eta = duration(epoch_seconds * (epochs - epoch))
    print(f"[{stage}] epoch {epoch}/{epochs}: {shown}, {duration(epoch_seconds)}, ETA {eta}", file=sys.stderr, flush=True)


def stage(items: range, description: str, progress: bool, unit: str = "img") -> Iterator[int]:
    """Iterate ``items`` under a bar on a terminal; elsewhere one line when the stage starts and one when it ends."""
    if bars_enabled(progress):
        yield from tqdm(items, desc=description, unit=unit, file=sys.stderr, leave=False)
        return
    started = time.time()
    print(f"[data] {description}: {len(items)} {unit} ...", file=sys.stderr, flush=True)
    yield from items
    print(f"[data] {description}: done in {duration(time.time() - started)}", file=sys.stderr, flush=True)
