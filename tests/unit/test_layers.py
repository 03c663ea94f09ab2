"""Imports point inward: no layer imports one above it, and no module cycle exists.

domain <- application <- (projections | infrastructure) <- interfaces. Projections and
infrastructure are siblings: each may use the application's ports, neither the other.
Every import counts, those inside functions too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("domain", "application", "projections", "infrastructure", "interfaces")
MAY_IMPORT = {
    "domain": {"domain"},
    "application": {"domain", "application"},
    "projections": {"domain", "application", "projections"},
    "infrastructure": {"domain", "application", "infrastructure"},
    "interfaces": set(LAYERS),
}
LIBRARIES_OF_THE_DOMAIN = ("eventsourcing.domain", "eventsourcing.utils")


def modules() -> Iterator[tuple[str, Path]]:
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(p for p in parts if p != "__init__")
            yield name, path


def imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


OURS = dict(modules())


@pytest.mark.parametrize("module", sorted(OURS))
def test_a_module_imports_only_its_own_layer_and_those_below(module: str) -> None:
    layer = module.split(".")[0]
    wrong = sorted(
        {
            name
            for name in imports(OURS[module])
            if name.split(".")[0] in LAYERS and name.split(".")[0] not in MAY_IMPORT[layer]
        }
    )
    assert not wrong, f"{module} ({layer}) imports {wrong}"


def test_the_domain_uses_no_framework() -> None:
    for module, path in OURS.items():
        if not module.startswith("domain"):
            continue
        outside = {
            name
            for name in imports(path)
            if name.split(".")[0] == "eventsourcing"
            and not name.startswith(LIBRARIES_OF_THE_DOMAIN)
        }
        outside |= {
            name
            for name in imports(path)
            if name.split(".")[0] in {"sqlalchemy", "psycopg", "httpx", "litestar", "msgspec"}
        }
        assert not outside, f"{module} imports {sorted(outside)}"


def test_no_two_modules_import_each_other_in_a_cycle() -> None:
    graph = {
        module: {
            target
            for name in imports(path)
            for target in (name, name.rpartition(".")[0])
            if target in OURS and target != module
        }
        for module, path in OURS.items()
    }
    cycles = []
    for start in sorted(graph):
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in seen and nxt > start:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
