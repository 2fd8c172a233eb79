"""Every reason the gateway can send is a value of `booking.v1.ErrorReason`, and every domain error has a status."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import gateway
from booking.v1 import errors_pb2
from gateway.errors import GatewayError
from gateway.services.chat.tools import TOOL_FAILURE_REASONS
from gateway.transport.errors import status_for

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "ERROR_REASON_"
CONTRACT_REASONS = frozenset(
    value.name.removeprefix(PREFIX)
    for value in errors_pb2.ErrorReason.DESCRIPTOR.values
    if value.name != f"{PREFIX}UNSPECIFIED"
)
# What ErrorInfo allows for a reason.
_REASON_FORM = re.compile(r"[A-Z][A-Z0-9_]{0,62}")


def _every_gateway_module() -> list[str]:
    """Import every module of the gateway package, so that no GatewayError subclass is missed."""
    names = [info.name for info in pkgutil.walk_packages(gateway.__path__, f"{gateway.__name__}.")]
    for name in names:
        importlib.import_module(name)
    return names


def _subclasses(cls: type[GatewayError]) -> Iterator[type[GatewayError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _gateway_errors() -> list[type[GatewayError]]:
    _every_gateway_module()
    found = {cls for cls in _subclasses(GatewayError) if cls.__module__.startswith(f"{gateway.__name__}.")}
    return sorted(found, key=lambda cls: (cls.__module__, cls.__qualname__))


GATEWAY_ERRORS = _gateway_errors()


def test_every_module_of_the_gateway_was_imported() -> None:
    names = _every_gateway_module()
    assert "gateway.errors" in names
    assert "gateway.services.chat.tools" in names
    assert any(name.startswith("gateway.transport.") for name in names)


def test_every_contract_reason_has_the_errorinfo_form() -> None:
    bad = sorted(reason for reason in CONTRACT_REASONS if not _REASON_FORM.fullmatch(reason))
    assert not bad, f"ErrorInfo.reason must match [A-Z][A-Z0-9_]{{0,62}}: {bad}"


@pytest.mark.parametrize("error", [GatewayError, *GATEWAY_ERRORS], ids=lambda cls: cls.__qualname__)
def test_every_gateway_error_reason_is_in_the_contract(error: type[GatewayError]) -> None:
    assert error.reason in CONTRACT_REASONS, (
        f"{error.__module__}.{error.__qualname__}.reason = {error.reason!r} is not a booking.v1.ErrorReason value: "
        f"add ERROR_REASON_{error.reason} to protos/booking/v1/errors.proto (documented, with a new number)"
    )


@pytest.mark.parametrize("error", GATEWAY_ERRORS, ids=lambda cls: cls.__qualname__)
def test_every_gateway_error_maps_to_a_status_other_than_internal(error: type[GatewayError]) -> None:
    code = status_for(error("probe"))
    assert code is not grpc.StatusCode.INTERNAL, (
        f"{error.__qualname__} has no entry in the error table of gateway/transport/errors.py: it would be INTERNAL"
    )


def test_the_error_tree_is_walked_whole() -> None:
    names = {cls.__qualname__ for cls in GATEWAY_ERRORS}
    assert {"NotFoundError", "NightsTakenError", "OtpInvalidError", "ShuttingDownError"} <= names


@pytest.mark.parametrize("reason", sorted(TOOL_FAILURE_REASONS))
def test_every_tool_failure_reason_is_in_the_contract(reason: str) -> None:
    assert reason in CONTRACT_REASONS, (
        f"the chat tools fail with {reason!r}, which booking.v1.ErrorReason lacks: add ERROR_REASON_{reason}"
    )


def _literal_strings(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [value for element in node.elts for value in _literal_strings(element)]
    return []


def _named_reason(node: ast.expr) -> bool:
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name == "reason"


def _reason_literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Reasons written as literals: `reason = "X"`, `reason="X"`, `failed("X", ...)`, `reason == "X"`."""
    for node in ast.walk(tree):
        values: list[str] = []
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is not None and any(_named_reason(target) for target in targets):
                values = _literal_strings(node.value)
        elif isinstance(node, ast.Call):
            values = [v for k in node.keywords if k.arg == "reason" for v in _literal_strings(k.value)]
            function = node.func
            if isinstance(function, ast.Name) and function.id == "failed" and node.args:
                values += _literal_strings(node.args[0])
        elif isinstance(node, ast.Compare) and _named_reason(node.left):
            values = [v for comparator in node.comparators for v in _literal_strings(comparator)]
        for value in values:
            if value:
                yield node.lineno if isinstance(node, ast.stmt | ast.expr) else 0, value


def test_every_reason_literal_in_the_server_and_the_python_client_is_in_the_contract() -> None:
    sources = [*(ROOT / "server" / "gateway").rglob("*.py"), *(ROOT / "clients" / "python").rglob("*.py")]
    unknown = [
        f"{path.relative_to(ROOT)}:{line}: {value}"
        for path in sorted(sources)
        for line, value in _reason_literals(ast.parse(path.read_text(), str(path)))
        if value not in CONTRACT_REASONS
    ]
    assert not unknown, "reasons that booking.v1.ErrorReason lacks:\n" + "\n".join(unknown)


def test_every_reason_the_web_client_explains_is_in_the_contract() -> None:
    source = (ROOT / "clients" / "web" / "src" / "errors.ts").read_text()
    explained = set(re.findall(r'case "([A-Z][A-Z0-9_]*)":', source))
    assert explained, "clients/web/src/errors.ts no longer explains reasons with `case`: update this test"
    assert not explained - CONTRACT_REASONS
