"""`gateway.testing` serves the tests and the benchmarks only: the gateway's own code never imports it."""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "server" / "gateway"
TESTING = GATEWAY / "testing"


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_of_the_gateway_imports_gateway_testing() -> None:
    offenders = [
        str(path.relative_to(GATEWAY))
        for path in sorted(GATEWAY.rglob("*.py"))
        if TESTING not in path.parents
        and any(
            name == "gateway.testing" or name.startswith("gateway.testing.")
            for name in _imports(ast.parse(path.read_text()))
        )
    ]
    assert offenders == []


def test_bench_shares_helpers_through_the_package_not_tests_support() -> None:
    bench = GATEWAY.parents[1] / "bench"
    offenders = [
        str(path.name)
        for path in sorted(bench.rglob("*.py"))
        if any(name == "tests" or name.startswith("tests.") for name in _imports(ast.parse(path.read_text())))
    ]
    assert offenders == []
