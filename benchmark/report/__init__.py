"""The ``report`` command: README tables, figures and runs.csv generated from run records.

``build_report`` is imported on first use (PEP 562) so that building the CLI parser does not load
pandas and matplotlib.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Callable


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from benchmark.report.build import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _report_command(args: argparse.Namespace) -> int:
    from benchmark.records import RecordWarning
    from benchmark.report.build import build_report

    # Skipped files and "no runs" become one plain "warning:" line each instead of Python's warning format.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecordWarning)
        readme = build_report(args.results)
    for warning in caught:
        if issubclass(warning.category, RecordWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    print(readme)
    return 0


def add_parser(subparsers: Any, add_config_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``report``; it reads records only, so it takes no config options."""
    del add_config_options  # the report needs no config: everything it shows comes from the records
    parser = subparsers.add_parser(
        "report",
        help="write <results>/README.md, figures and runs.csv from the run records",
        description="Build the results README (Tables 2 and 3 with the paper's values, paired RGMIM − MAE "
                    "differences, per-class metrics, cost, protocol), its figures and runs.csv from "
                    "<results>/runs/*.json. Unreadable records are skipped with a warning.",
    )
    parser.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                        help="results folder holding runs/ (default: results)")
    parser.set_defaults(handler=_report_command)
