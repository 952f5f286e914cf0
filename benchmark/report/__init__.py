"""The ``report`` command: README tables, figures and runs.csv generated from run records.

``build_report`` is imported on first use (PEP 562) so that building the CLI parser does not load
pandas and matplotlib.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from benchmark.report.build import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def report_command(args: argparse.Namespace) -> int:
    from benchmark.errors import ConfigError
    from benchmark.records.store import RecordWarning
    from benchmark.report.build import build_report

    if not Path(args.results).is_dir():  # a typo must not leave an empty results folder behind
        raise ConfigError(f"--results {args.results}: no such folder; expected a results folder holding runs/")

    # Skipped files and "no runs" become one plain "warning:" line each instead of Python's warning format.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecordWarning)
        readme = build_report(args.results, args.out)
    for warning in caught:
        if issubclass(warning.category, RecordWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    print(readme)
    return 0
