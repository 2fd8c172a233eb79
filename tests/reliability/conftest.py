"""The reliability suite's marker: its heavy tests run in `make test` and can be left out with -m "not slow"."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a heavy reliability or scale-out test (part of `make test`; -m 'not slow' leaves it out)"
    )
