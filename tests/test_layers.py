"""The package's import graph, read from the source: no cycles, no import from a higher layer.

Every import counts: module level, under ``TYPE_CHECKING``, and inside functions. The
layers, lowest first::

    core      _core/ (errors, types, transactions as values, keys, codecs, util)
    wire      _wire/ (the calls in Python types, and the transports)
    client    _client/
    testing   testing/ (beside the client: fake and real etcd for tests; its nemesis,
              which runs workloads through every layer, sits with the tools)
    domain    _tree/, _coord/, _yaml/
    tools     _cli/ and the package's own ``__init__`` (the public names)

A module may import from its own layer and the layers below. Where a lower layer needs to
call a higher one, it defines a small Protocol the higher one implements.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import trio_etcd_tree

PACKAGE = "trio_etcd_tree"
ROOT = Path(trio_etcd_tree.__file__).parent

LAYERS: dict[str, int] = {
    "_core": 0,
    "_wire": 1,
    "_client": 2,
    "testing": 3,  # beside the client: real and in-memory etcd, fixtures
    "testing.nemesis": 5,  # runs workloads through every layer
    "_tree": 4,
    "_coord": 4,
    "_yaml": 4,
    "_cli": 5,
    "": 5,  # trio_etcd_tree/__init__.py: the public names
    "_public": 5,  # (imported by __init__ on first use)
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def resolve(
    importer: str, is_package: bool, node: ast.ImportFrom | ast.Import, known: set[str]
) -> Iterator[str]:
    """The package's modules an import statement names (whatever ``as`` it uses): for
    ``from X import y`` the module ``X.y`` if there is one, else ``X``."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                yield alias.name
        return
    if node.level:
        base = importer.split(".")
        if not is_package:
            base.pop()  # a module's relative imports start from its package
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target != PACKAGE and not target.startswith(PACKAGE + "."):
        return
    for alias in node.names:
        submodule = f"{target}.{alias.name}"
        yield submodule if submodule in known else target


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (every import statement in the file)."""
    files = modules()
    known = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in resolve(name, is_package, node, known):
                    if target in known and target != name:
                        edges.add(target)
        graph[name] = edges
    return graph


def layer(module: str) -> int:
    parts = module.split(".")[1:3]
    if ".".join(parts) in LAYERS:  # a package placed apart from its parent (testing.nemesis)
        return LAYERS[".".join(parts)]
    top = parts[0] if parts else ""
    if top not in LAYERS:
        pytest.fail(f"{module} is in no layer: add {top!r} to LAYERS in {__file__}")
    return LAYERS[top]


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    found = sorted(sorted(c) for c in cycles(import_graph()))
    assert not found, f"import cycles: {found}"


def test_no_import_from_a_higher_layer() -> None:
    graph = import_graph()
    upward = sorted(
        f"{source} ({layer(source)}) imports {target} ({layer(target)})"
        for source, targets in graph.items()
        for target in targets
        if layer(target) > layer(source)
    )
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_graph_sees_every_kind_of_import() -> None:
    """The checks above fail when they should: a TYPE_CHECKING import, a function-local
    one and ``from . import x`` all make edges, and a cycle through them is found."""
    source = """
from typing import TYPE_CHECKING
from . import _keys
from .._core.errors import EtcdError
import trio_etcd_tree._core.util as u
if TYPE_CHECKING:
    from ._tree.node import Node
def f():
    from ..testing import _fake
"""
    tree = ast.parse(source)
    known = {"trio_etcd_tree._cli._keys", "trio_etcd_tree.testing._fake"}
    edges = {
        target
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for target in resolve("trio_etcd_tree._cli.x", False, node, known)
    }
    assert edges == {
        "trio_etcd_tree._cli._keys",
        "trio_etcd_tree._core.errors",
        "trio_etcd_tree._core.util",
        "trio_etcd_tree._cli._tree.node",
        "trio_etcd_tree.testing._fake",
    }
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer("trio_etcd_tree._client.http") == 2
    assert layer("trio_etcd_tree") == 5
