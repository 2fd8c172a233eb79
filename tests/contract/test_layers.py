"""Imports point down (docs/architecture.md, "Layers"): read from the source, so a wrong arrow fails here and not in
a review. Every import counts, also one inside a function or under `TYPE_CHECKING`."""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "server" / "gateway"


def _module_name(path: Path) -> str:
    parts = path.relative_to(GATEWAY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    return _imports_in(path.read_text(), _module_name(path), is_package=path.name == "__init__.py")


def _imports_in(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module `source` (the text of `module`) imports, relative imports resolved, `from a import b`
    counted as `a` and `a.b`."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _offenders(layer: str, allowed: frozenset[str] | None = None, *, forbidden: tuple[str, ...] = ()) -> list[str]:
    """`path: module` for each import under `gateway/<layer>/` of a forbidden module (or, given `allowed`, of any
    `gateway` module outside the layer and `allowed`)."""
    found: list[str] = []
    for path in sorted((GATEWAY / layer).rglob("*.py")):
        for name in sorted(_imports(path)):
            if not (name == "gateway" or name.startswith("gateway.")):
                continue
            top = ".".join(name.split(".")[:2])
            if any(name == f or name.startswith(f + ".") for f in forbidden) or (
                allowed is not None and top not in allowed | {f"gateway.{layer}", "gateway"}
            ):
                found.append(f"{path.relative_to(GATEWAY)}: {name}")
    return found


def test_adapters_never_import_services() -> None:
    assert _offenders("adapters", forbidden=("gateway.services", "gateway.transport", "gateway.app")) == []


def test_the_language_package_imports_nothing_of_ours_but_the_domain() -> None:
    assert _offenders("language", allowed=frozenset({"gateway.domain"})) == []


def test_the_transport_never_imports_the_composition_root_or_the_settings() -> None:
    assert _offenders("transport", forbidden=("gateway.app", "gateway.config")) == []


def test_the_check_sees_every_spelling_of_an_adapter_importing_a_service() -> None:
    """So that an empty list above means something."""
    for source in (
        "from gateway.services.chat.tools import ToolRegistry\n",
        "import gateway.services.chat\n",
        "from gateway import services\n",
        "def f() -> None:\n    from ..services import reservations\n",
        "if TYPE_CHECKING:\n    from ..services.chat import tools\n",
    ):
        names = _imports_in(source, "gateway.adapters.scripted_agent")
        assert any(n == "gateway.services" or n.startswith("gateway.services.") for n in names), source
