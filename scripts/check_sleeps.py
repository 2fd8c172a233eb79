"""Fail on a fixed sleep in the tests: `time.sleep(<constant>)` or `asyncio.sleep(<constant>)` without a reason.

A test that waits should wait for the thing itself (a future, an event, a log line, a health state) or, for state
that sends no signal, poll through `gateway.testing.eventually`. A fixed sleep that must stay says why on its own
line: `# sleep-ok: <why>`. `asyncio.sleep(0)` (yield to the event loop once) is always allowed.

Usage: `python scripts/check_sleeps.py [PATH ...]` (default: tests/ and server/gateway/testing/); exit 1 on any.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATHS = (ROOT / "tests", ROOT / "server" / "gateway" / "testing")
MARKER = re.compile(r"#\s*sleep-ok:\s*\S")
# `sleep` imported on its own (`from asyncio import sleep`) counts too.
SLEEP_MODULES = frozenset({"asyncio", "time"})


def _constant(node: ast.expr) -> bool:
    """A number written in the code, or arithmetic on such numbers."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _constant(node.operand)
    if isinstance(node, ast.BinOp):
        return _constant(node.left) and _constant(node.right)
    return False


def _is_zero(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value == 0


def _imported_sleeps(tree: ast.Module) -> set[str]:
    """Local names bound to asyncio.sleep or time.sleep by `from ... import sleep [as name]`."""
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in SLEEP_MODULES
        for alias in node.names
        if alias.name == "sleep"
    }


def _is_sleep(call: ast.Call, bare: set[str]) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr == "sleep" and isinstance(func.value, ast.Name) and func.value.id in SLEEP_MODULES
    return isinstance(func, ast.Name) and func.id in bare


def fixed_sleeps(path: Path) -> Iterator[tuple[int, str]]:
    """(line, source line) of each fixed sleep in `path` without a `sleep-ok` reason."""
    source = path.read_text()
    tree = ast.parse(source, str(path))
    lines = source.splitlines()
    bare = _imported_sleeps(tree)
    calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset))
    for node in calls:
        if not _is_sleep(node, bare):
            continue
        delay = (
            node.args[0] if node.args else next((k.value for k in node.keywords if k.arg in ("delay", "secs")), None)
        )
        if delay is None or not _constant(delay) or _is_zero(delay):
            continue
        # The reason may sit on any line of the call (a call split over lines by the formatter).
        end = node.end_lineno or node.lineno
        if not any(MARKER.search(lines[n - 1]) for n in range(node.lineno, end + 1)):
            yield node.lineno, lines[node.lineno - 1].strip()


def _python_files(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if "node_modules" not in p.parts)
        elif path.suffix == ".py":
            yield path


def main(argv: Sequence[str] | None = None) -> int:
    """Report every fixed sleep without a reason; return 1 if there is any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("paths", nargs="*", type=Path, default=list(DEFAULT_PATHS))
    args = parser.parse_args(argv)
    found = [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: {text}"
        for path in _python_files([p.resolve() for p in args.paths])
        for line, text in fixed_sleeps(path)
    ]
    for entry in found:
        print(entry, file=sys.stderr)
    if found:
        print(
            f"{len(found)} fixed sleep(s): wait for the event itself, poll with gateway.testing.eventually, "
            "or say why on the line with '# sleep-ok: <why>'",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
