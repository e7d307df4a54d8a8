"""The package's public names are imported on first use (PEP 562), all at once, and look as
they did when they were imported eagerly; the tools import only the modules they use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import trio_etcd_tree


def _run(code: str) -> list[str]:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()


def _ours(modules: list[str]) -> set[str]:
    return {m for m in modules if m.startswith("trio_etcd_tree.")}


def test_importing_the_package_imports_none_of_its_names() -> None:
    modules = _run(
        "import sys, trio_etcd_tree\n"
        "assert set(trio_etcd_tree.__all__) <= set(dir(trio_etcd_tree))\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    assert _ours(modules) == set()
    assert "trio" not in modules


def test_the_first_name_used_brings_them_all() -> None:
    names = _run(
        "import trio_etcd_tree as et\n"
        "et.mount\n"
        "print(' '.join(n for n in et.__all__ if n in vars(et)))\n"
    )
    assert names == trio_etcd_tree.__all__


def test_the_public_names_are_shown_as_the_package_s() -> None:
    for name in trio_etcd_tree.__all__:
        obj = getattr(trio_etcd_tree, name)
        if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__")):
            assert obj.__module__ == "trio_etcd_tree", name
    assert trio_etcd_tree.Node.__module__ == "trio_etcd_tree"
    namespace: dict[str, object] = {}
    exec("from trio_etcd_tree import *", namespace)
    assert set(trio_etcd_tree.__all__) <= set(namespace)


def test_a_name_it_does_not_have() -> None:
    with pytest.raises(AttributeError, match="module 'trio_etcd_tree' has no attribute 'nope'"):
        trio_etcd_tree.nope  # type: ignore[attr-defined]  # noqa: B018
    assert "__version__" in dir(trio_etcd_tree)


def test_etcd2yaml_imports_only_what_it_uses() -> None:
    modules = _ours(
        _run("import sys, trio_etcd_tree._cli.etcd2yaml\nprint(' '.join(sorted(sys.modules)))\n")
    )
    assert "trio_etcd_tree._yaml.dump" in modules
    assert "trio_etcd_tree._client.client" in modules
    for unused in ("_public", "_tree", "_coord"):
        assert not {m for m in modules if m.startswith(f"trio_etcd_tree.{unused}")}, unused
