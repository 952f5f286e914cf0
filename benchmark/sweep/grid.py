"""Sweep grids: the paper's tables and the --methods/--fractions/--mask-ratios/--seeds parsing."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Optional


from benchmark.errors import ConfigError
from benchmark.errors import DataError
from benchmark.paper_grid import PAPER_FRACTIONS, PAPER_ROWS, TABLE3_MASK_RATIOS


SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Grid:
    rows: tuple[tuple[str, str], ...]  # (method, arch) pairs
    fractions: tuple[float, ...]
    mask_ratios: Optional[tuple[float, ...]]  # None: each MIM method's configured mask_ratio


def named_grid(name: str) -> Grid:
    """The paper's tables."""
    grids = {
        "table2": Grid(PAPER_ROWS, PAPER_FRACTIONS, None),
        "table3": Grid((("rgmim", "vit"), ("mae", "vit")), (1.0,), TABLE3_MASK_RATIOS),
    }
    if name not in grids:
        raise ConfigError(f"--grid {name!r}: expected one of {', '.join(grids)}")
    return grids[name]


def _items(text: str) -> list[str]:
    return list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))  # order kept, no repeats


def _numbers(text: str, option: str, kind: type, expected: str) -> tuple:
    try:
        values = tuple(kind(item) for item in _items(text))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected {expected}") from None
    if not values:
        raise ConfigError(f"{option} {text!r}: expected {expected}")
    return values


def parse_rows(text: str) -> tuple[tuple[str, str], ...]:
    """``all`` or method names; a method that runs on several encoders (transfer, scratch) gets one row each,
    unless the item names one (``scratch:vit``): a sweep can then cut the seeds of one encoder only."""
    from methods import METHODS

    expected = f"expected all or a comma-separated list of {', '.join(METHODS)}, each optionally NAME:ARCH"
    items = list(METHODS) if text.strip() == "all" else _items(text)
    if not items:
        raise ConfigError(f"--methods {text!r}: {expected}")
    rows: list[tuple[str, str]] = []
    for item in items:
        name, _, arch = item.partition(":")
        if name not in METHODS:
            raise ConfigError(f"--methods {text!r}: unknown method {name!r}; {expected}")
        archs = METHODS[name].archs
        if arch and arch not in archs:
            raise ConfigError(f"--methods {text!r}: {name} runs on {' or '.join(archs)}, not {arch!r}")
        rows.extend((name, each) for each in ([arch] if arch else archs) if (name, each) not in rows)
    return tuple(rows)


def parse_fractions(text: str) -> tuple[float, ...]:
    from benchmark.data.splits import check_fraction

    if text.strip() == "paper":
        return PAPER_FRACTIONS
    values = _numbers(text, "--fractions", float, "paper or comma-separated label fractions in (0, 1], e.g. 0.01,0.5")
    for value in values:
        try:
            check_fraction(value)
        except DataError as error:
            raise DataError(f"--fractions: {error}") from None
    return values


def parse_mask_ratios(text: str) -> tuple[float, ...]:
    values = _numbers(text, "--mask-ratios", float, "comma-separated mask ratios in (0, 1), e.g. 0.15,0.75")
    for value in values:
        if not 0.0 < value < 1.0:
            raise ConfigError(f"--mask-ratios: mask ratio {value:g}: expected a number in (0, 1), e.g. 0.75")
    return values


def parse_seeds(text: str) -> tuple[int, ...]:
    values = _numbers(text, "--seeds", int, "comma-separated non-negative integers, e.g. 0,1,2")
    if any(value < 0 for value in values):
        raise ConfigError(f"--seeds {text!r}: expected comma-separated non-negative integers, e.g. 0,1,2")
    return values


def grid_from_args(args: argparse.Namespace) -> Grid:
    if args.grid is not None:
        fixed = [
            option
            for option, value in (
                ("--methods", args.methods),
                ("--fractions", args.fractions),
                ("--mask-ratios", args.mask_ratios),
            )
            if value is not None
        ]
        if fixed:
            raise ConfigError(
                f"--grid {args.grid} sets methods, fractions and mask ratios itself; drop {', '.join(fixed)} or drop --grid"
            )
        return named_grid(args.grid)
    if args.methods is None:
        raise ConfigError("sweep: expected --grid table2|table3, or --methods all|NAME,NAME (with --fractions, --mask-ratios)")
    return Grid(
        parse_rows(args.methods),
        parse_fractions(args.fractions or "paper"),
        parse_mask_ratios(args.mask_ratios) if args.mask_ratios is not None else None,
    )


def check_sweep_name(name: str) -> str:
    if not SWEEP_NAME.fullmatch(name):
        raise ConfigError(f"--name {name!r}: expected letters, digits, '.', '_' or '-' (it names files and folders)")
    return name
