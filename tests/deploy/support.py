"""What the deploy tests share: the repository's deploy/ files, `gateway serve`'s flags and variables, and a
property-by-property comparison that names every difference."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import argument_parser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
TEMPLATE = DEPLOY / "aws" / "booking-gateway.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"
VENV_BIN = Path(sys.executable).parent

_ENV_IN_HELP = re.compile(r"\[env (GATEWAY_[A-Z0-9_]+)\]")


@dataclass(frozen=True)
class ServeOption:
    """One `gateway serve` setting as a flag and as an environment variable."""

    flag: str
    env: str


def serve_options() -> dict[str, ServeOption]:
    """Every `gateway serve` setting by its flag without dashes (`aws-region`), as the parser declares them."""
    options: dict[str, ServeOption] = {}
    for action in argument_parser()._actions:
        flags = [s for s in action.option_strings if s.startswith("--")]
        found = _ENV_IN_HELP.search(action.help or "")
        if flags and found:
            options[flags[0][2:]] = ServeOption(flag=flags[0], env=found.group(1))
    return options


def camel_to_flag(name: str) -> str:
    """`UserPoolId` -> `user-pool-id` (CloudFormation output names cannot hold dashes)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where `actual` differs from `expected`; `actual` may hold more keys than `expected` (AWS adds defaults)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '.'}: expected a mapping {expected!r}, got {actual!r}"]
        found: list[str] = []
        for key, value in expected.items():
            where = f"{path}.{key}" if path else key
            if key not in actual:
                found.append(f"{where}: {value!r} in the template, absent in what was created")
            else:
                found += differences(value, actual[key], where)
        return found
    if expected != actual:
        return [f"{path or '.'}: {expected!r} in the template, {actual!r} in what was created"]
    return []
