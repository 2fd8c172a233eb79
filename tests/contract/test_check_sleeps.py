"""`scripts/check_sleeps.py`, run by `make lint`: a fixed sleep in a test fails unless its line says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_sleeps.py"


def check(tmp_path: Path, source: str) -> tuple[int, str]:
    test = tmp_path / "test_sample.py"
    test.write_text(source)
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=False)
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    "line",
    [
        "await asyncio.sleep(0.05)",
        "time.sleep(1)",
        "await asyncio.sleep(2 * 0.1)",
        "await sleep(0.3)",
        "await asyncio.sleep(delay=0.5)",
        "await asyncio.sleep(0.05)  # wait for it",
    ],
)
def test_a_fixed_sleep_without_a_reason_fails(tmp_path: Path, line: str) -> None:
    code, err = check(
        tmp_path, f"import asyncio\nimport time\nfrom asyncio import sleep\n\n\nasync def f() -> None:\n    {line}\n"
    )
    assert code == 1
    assert "test_sample.py:7:" in err


@pytest.mark.parametrize(
    "line",
    [
        "await asyncio.sleep(0)",
        "await asyncio.sleep(left)",
        "await asyncio.sleep(0.05)  # sleep-ok: the fake model types one word per 50 ms on purpose",
        "await asyncio.wait_for(event.wait(), 0.5)",
    ],
)
def test_a_yield_a_computed_delay_or_a_sleep_with_a_reason_passes(tmp_path: Path, line: str) -> None:
    code, err = check(
        tmp_path, f"import asyncio\n\n\nasync def f(left: float, event: asyncio.Event) -> None:\n    {line}\n"
    )
    assert (code, err) == (0, "")


def test_the_tests_of_this_repository_have_no_fixed_sleep() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
