"""The docs' figures are up to date with what they are drawn from (docs/make_figures.py).

Each SVG carries the SHA-256 of its source (the ``.dot`` text or the benchmark's JSON), so
these tests tell a stale figure without Graphviz or matplotlib. Drawing them again is one
command: ``python docs/make_figures.py``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import re
from pathlib import Path
from types import ModuleType

import pytest
import trio

import trio_etcd_tree as et
from trio_etcd_tree.testing import open_fake_etcd

ROOT = Path(__file__).parent.parent
FIGURES = ROOT / "docs" / "figures"


def load_make_figures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "docs" / "make_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_figures = load_make_figures()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_figure_the_docs_show_exists() -> None:
    shown = []
    for page in (ROOT / "docs").glob("*.rst"):
        shown += re.findall(r"^\.\. (?:figure|image):: (\S+)", page.read_text(), re.MULTILINE)
    assert {"figures/mount-states.svg", "figures/lock-queue.svg", "figures/viewer.svg"} <= set(
        shown
    )
    for name in shown:
        assert (ROOT / "docs" / name).is_file(), name


def test_the_mount_diagram_has_exactly_the_states_of_a_mount() -> None:
    ends = {end for edge in make_figures.MOUNT_TRANSITIONS for end in edge[:2]}
    assert ends - {make_figures.START, make_figures.RAISES} == {s.name for s in et.MountState}
    targets = {target for _, target, _ in make_figures.MOUNT_TRANSITIONS}
    assert targets >= {s.name for s in et.MountState}  # each state is reached somehow


@pytest.mark.parametrize("name", ["mount-states", "lock-queue"])
def test_the_diagrams_are_drawn_from_their_dot_source(name: str) -> None:
    dot = FIGURES / f"{name}.dot"
    assert f"source sha256 {sha256(dot)}" in (FIGURES / f"{name}.svg").read_text()


async def test_a_mount_moves_along_the_edges_of_the_diagram(autojump_clock: object) -> None:
    """Drive a mount on the in-memory etcd through a disconnect, a compaction while
    disconnected, a new cluster id and a refused read, recording each state it passes."""
    start, raises = make_figures.START, make_figures.RAISES
    path: list[str] = [start]
    moved = trio.Event()

    async def record(root: et.Root) -> None:  # root.state, looked at every 10 ms
        nonlocal moved
        while True:
            if root.state.name != path[-1]:
                path.append(root.state.name)
                moved.set()
                moved = trio.Event()
            await trio.sleep(0.01)

    async def reach(root: et.Root, state: et.MountState) -> None:
        with trio.fail_after(120):
            while path[-1] != state.name:
                await moved.wait()

    async with open_fake_etcd() as fake, et.open_client(fake.endpoints, transport=fake) as client:
        fake.put("/m/a", "1")
        with pytest.raises(et.MirrorError):
            async with et.mount(client, "/m") as root, trio.open_nursery() as nursery:
                nursery.start_soon(record, root)
                fake.member_down(0)
                await reach(root, et.MountState.DISCONNECTED)
                fake.member_up(0)
                await reach(root, et.MountState.SYNCED)
                # compacted while disconnected: the watch cannot resume
                fake.member_down(0)
                await reach(root, et.MountState.DISCONNECTED)
                fake.put("/m/a", "2")
                fake.compact(fake.put("/m/b", "3"))
                fake.delay_next("/v3/kv/range", 2)  # the snapshot takes a while: RESYNCING shows
                fake.member_up(0)
                await reach(root, et.MountState.RESYNCING)
                await reach(root, et.MountState.SYNCED)
                # the cluster id changes under a live watch; the fresh snapshot is refused
                fake.new_cluster_id()
                fake.delay_next("/v3/kv/range", 2)  # (less than attempt_timeout)
                # refused for the whole range and for the subtree alone (the limited mode)
                fake.fail_next(
                    "/v3/kv/range", code=7, message="etcdserver: permission denied", count=2
                )
                fake.put("/m/c", "4")
                await reach(root, et.MountState.RESYNCING)
                with trio.fail_after(600):
                    await trio.sleep_forever()
        path.append(raises)
        async with et.mount(client, "/m") as root:
            path += [start, "SYNCED"]
        path.append(root.state.name)

    edges = set(itertools.pairwise(path)) - {(raises, start)}
    assert edges == {
        (start, "SYNCED"),
        ("SYNCED", "DISCONNECTED"),
        ("DISCONNECTED", "SYNCED"),
        ("DISCONNECTED", "RESYNCING"),
        ("RESYNCING", "SYNCED"),
        ("SYNCED", "RESYNCING"),
        ("RESYNCING", raises),
        ("SYNCED", "CLOSED"),
    }
    assert edges <= {(source, target) for source, target, _ in make_figures.MOUNT_TRANSITIONS}


def test_the_mount_diagram_is_drawn_from_the_transition_table() -> None:
    assert (FIGURES / "mount-states.dot").read_text() == make_figures.mount_states_dot()


async def test_the_lock_queue_is_the_queue_that_lock_builds(autojump_clock: object) -> None:
    """The figure's queue is what four lock() calls leave in etcd (the lease ids differ
    from run to run, nothing else)."""
    kvs = await make_figures.lock_queue_kvs()
    assert [kv.key for kv in kvs] == [f"jobs/lock/{kv.lease:x}".encode() for kv in kvs]
    assert [kv.create_revision for kv in kvs] == sorted(kv.create_revision for kv in kvs)

    def shape(dot: str) -> str:
        return re.sub(r"jobs/lock/[0-9a-f]+", "jobs/lock/LEASE", dot)

    drawn = (FIGURES / "lock-queue.dot").read_text()
    assert shape(make_figures.lock_queue_dot(kvs)) == shape(drawn)
    assert drawn.count("watches for") == 3


@pytest.mark.parametrize("name", ["client", "mount", "tools"])
def test_the_benchmark_plots_are_drawn_from_the_benchmarks_output(name: str) -> None:
    data = FIGURES / "data" / f"bench_{name}.json"
    table = json.loads(data.read_text())
    assert table["script"] == f"bench_{name}.py"
    assert table["rows"] and all(row["ours"] and row["baseline"] for row in table["rows"])
    assert f"source sha256 {sha256(data)}" in (FIGURES / f"bench-{name}.svg").read_text()


def test_the_viewer_screenshot_is_of_a_real_etcd_with_headed_columns() -> None:
    svg = (FIGURES / "viewer.svg").read_text()
    assert "http://127.0.0.1:" in svg and "fake" not in svg
    for text in (">key<", ">value<", ">mod&#160;rev<", ">lease<", "just&#160;changed", "synced"):
        assert text in svg, text
