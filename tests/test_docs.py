"""Every complete program in TUTORIAL.rst and docs/*.rst runs, against etcd 3.4 and 3.5."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trio_etcd_tree.testing.pytest_plugin import Servers

ROOT = Path(__file__).parent.parent
DOCUMENTS = [ROOT / "TUTORIAL.rst", *sorted((ROOT / "docs").glob("*.rst"))]


def programs(path: Path) -> list[tuple[str, str]]:
    """(id, source) of each ``code-block:: python`` that is a whole program."""
    text = path.read_text()
    found = []
    for match in re.finditer(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text):
        source = "\n".join(line[4:] for line in match.group(1).splitlines())
        if "ETCDCTL_ENDPOINTS" in source:
            line = text[: match.start()].count("\n") + 1
            found.append((f"{path.name}:{line}", source))
    return found


PROGRAMS = [p for doc in DOCUMENTS for p in programs(doc)]


def example_test_module() -> str:
    """The complete test module that docs/testing.rst shows (run by tests/test_wheel.py)."""
    text = (ROOT / "docs" / "testing.rst").read_text()
    match = re.search(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text)
    assert match is not None
    source = "\n".join(line[4:] for line in match.group(1).splitlines())
    assert source.startswith("# test_example.py")
    return source + "\n"


def test_the_tutorial_has_programs() -> None:
    assert len([p for p in PROGRAMS if p[0].startswith("TUTORIAL")]) >= 6


def test_every_complete_program_is_run() -> None:
    """A program that runs trio is one of PROGRAMS (none is skipped for how it reads the
    endpoint)."""
    for doc in DOCUMENTS:
        blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", doc.read_text())
        complete = [b for b in blocks if "trio.run(" in b]
        assert len(complete) == len(programs(doc)), doc.name


@pytest.mark.parametrize("version", ["3.4", "3.5"])
@pytest.mark.parametrize(("where", "source"), PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_program_runs(
    where: str,
    source: str,
    version: str,
    etcd_servers: Servers,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ETCDCTL_ENDPOINTS", ",".join(etcd_servers.get(version).endpoints))
    exec(compile(source, where, "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out
    for expected in re.findall(r"print\(.*\)\s+# (\[.*\])", source):
        assert expected in printed


def test_every_public_name_has_a_reference_entry() -> None:
    """Each name in ``trio_etcd_tree.__all__`` and ``trio_etcd_tree.testing.__all__`` is in
    the API reference of some page (exceptions: in the tree the errors page draws)."""
    import trio_etcd_tree
    import trio_etcd_tree.testing

    documented = set()
    for page in (ROOT / "docs").glob("*.rst"):
        for names in re.findall(
            r"^\s*\.\. (?:auto\w+|class|function|data|exception):: ([^\n(]+)",
            page.read_text(),
            re.MULTILINE,
        ):
            documented |= {name.strip().rsplit(".", 1)[-1] for name in names.split()}
        for line in re.findall(r"^\s{10}(\w+)$", page.read_text(), re.MULTILINE):
            documented.add(line)  # further names of a multi-name ``.. data::``
    for module in (trio_etcd_tree, trio_etcd_tree.testing):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                continue  # .. exception-tree:: documents every exported exception
            assert name in documented, f"{module.__name__}.{name} is in no reference section"
