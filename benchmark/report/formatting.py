"""How numbers are written in the results README: fractions, durations, mean ± std cells, markdown."""

from __future__ import annotations

import math

import pandas as pd

from benchmark.report.sections import MISSING


def count(number: int, noun: str) -> str:
    """ "1 run", "2 runs": a count with its noun in the right number."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def fraction_label(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def signed(value: float) -> str:
    """A difference with an explicit sign and a typographic minus."""
    return f"{value:+.3f}".replace("-", "−")


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return MISSING
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def format_stat(mean: float, std: float, n: int, bold: bool = False) -> str:
    """ "mean ± std (n=seeds)"; the ± part is left out for a single seed, where std is undefined."""
    text = f"{mean:.3f}" if n < 2 else f"{mean:.3f} ± {std:.3f}"
    return f"{f'**{text}**' if bold else text} (n={n})"


def with_paper(cell: str, paper_value: float, delta: float) -> str:
    if math.isnan(paper_value):
        return cell
    return f"{cell}<br>paper {paper_value:.3f} · Δ {signed(delta)}"


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub pipe table of a frame of strings (pandas' own needs the optional ``tabulate``)."""

    def escape(value: object) -> str:
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(escape(c) for c in frame.columns) + " |"
    rule = "|" + "|".join(" --- " for _ in frame.columns) + "|"
    body = ["| " + " | ".join(escape(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def hardware_label(run: pd.Series) -> str:
    """The device a run used, as the cost and frontier tables name it."""
    if isinstance(run["gpu"], str) and run["gpu"]:
        device = run["gpu"]
    elif isinstance(run["cpu"], str) and run["cpu"]:
        device = f"{run['cpu']} × {run['cpu_count']}"
    else:
        device = f"CPU not recorded × {run['cpu_count']}"  # records written before they named the CPU
    return f"{device} · torch {run['torch']}"
