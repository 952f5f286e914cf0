"""The packages depend one way: every import (lazy ones included) points to the same layer or below, and
no chain of imports between the project's modules closes a cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bottom to top; a module belongs to the first layer whose prefix it starts with
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "benchmark.errors",
        "benchmark.files",
        "benchmark.console",
        "benchmark.config",
        "benchmark.paper_grid",
        "benchmark.distributed",
    ),
    ("benchmark.data",),
    ("methods",),
    ("benchmark.engine",),
    ("benchmark.runner", "benchmark.records"),
    ("benchmark.sweep", "benchmark.report", "benchmark.bench"),
    ("benchmark.cli", "benchmark.__main__", "benchmark"),
)


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def project_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted([*(ROOT / "benchmark").rglob("*.py"), *(ROOT / "methods").rglob("*.py")]):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports anywhere in it (``from a import b`` counts a.b when it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module for alias in node.names
            )
    return {name for name in found if name in known}


def test_every_import_points_down_and_no_import_closes_a_cycle():
    modules = project_modules()
    graph = {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}
    upward = [
        f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})"
        for source, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(source)
    ]
    assert not upward, "\n".join(upward)

    visiting, done, cycles = [], set(), []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycles.append(" -> ".join(visiting[visiting.index(name) :] + [name]))
            return
        visiting.append(name)
        for target in sorted(graph[name]):
            if not (name.startswith(target + ".") and modules[target].name == "__init__.py"):  # a package's own
                visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert not cycles, "\n".join(cycles)


def test_report_and_status_load_without_torch():
    code = (
        "import sys, benchmark.report.build, benchmark.sweep.status, benchmark.records; "
        "print(sorted(m for m in ('torch', 'timm', 'lightly') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
