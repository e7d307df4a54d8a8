"""Draw the figures of the docs again, from the code and from measurements: one command.

    python docs/make_figures.py                 # every figure, from the committed data
    python docs/make_figures.py --benchmarks    # run the benchmarks (--quick) first
    python docs/make_figures.py viewer          # only some: mount-states lock-queue
                                                #   benchmarks viewer

Writes into docs/figures/:

* ``mount-states.dot/.svg``: the states of a mount (the members of ``MountState``) and what
  moves it between them (``MOUNT_TRANSITIONS`` below, each edge naming the code that takes
  it; tests/test_figures.py checks that the states are exactly ``MountState``'s, and that
  what a mount on the in-memory etcd goes through is drawn).
* ``lock-queue.dot/.svg``: the queue of a lock as etcd holds it, read from etcd after four
  contenders called ``lock()`` on the in-memory etcd: the keys in create-revision order,
  and who watches whom (each waiter its predecessor, as ``_lock.py`` does).
* ``bench-client.svg``, ``bench-mount.svg``, ``bench-tools.svg``: the benchmark tables as
  plots, from ``data/bench_*.json``, which ``benchmarks/bench_*.py --json FILE`` write.
* ``viewer.svg``: Textual's screenshot of ``etcd-tree`` on a real etcd 3.5 (started here)
  with the demo data, a change just highlighted.

Each SVG carries the SHA-256 of the source it was drawn from (the ``.dot`` text or the
JSON data), so tests/test_figures.py can tell that it is up to date without drawing it.
Needs Graphviz's ``dot`` (``apt-get install graphviz``) for the diagrams, matplotlib (the
``docs`` dependency group) for the plots, Textual (the ``viewer`` extra) and an etcd 3.5
binary (the ``testing`` extra) for the screenshot. The docs build needs none of them: the
figures are committed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import trio
import trio.testing

import trio_etcd_tree as et

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
FIGURES = DOCS / "figures"
DATA = FIGURES / "data"
BENCHMARKS = ("client", "mount", "tools")

# --- the mount's states ---------------------------------------------------------------------

START = "mount()"
RAISES = "raises MirrorError"
MOUNT_TRANSITIONS: list[tuple[str, str, str]] = [
    # (from, to, what moves it: the code that does it)
    (START, "SYNCED", "loaded at one revision R,\nwatch from R+1 confirmed\n(mount() yields)"),
    ("SYNCED", "DISCONNECTED", "the watch's connection\nbroke (it reconnects)"),
    ("DISCONNECTED", "SYNCED", "reconnected, resumed at\nthe last revision + 1"),
    ("SYNCED", "RESYNCING", "CompactedError or\nClusterChangedError\nfrom the watch"),
    ("DISCONNECTED", "RESYNCING", "resumed, but compacted\nor a restored cluster"),
    ("RESYNCING", "SYNCED", "fresh snapshot read, the\ndifferences published\n(update.resync)"),
    ("SYNCED", "CLOSED", "the block was left"),
    ("DISCONNECTED", "CLOSED", ""),
    ("RESYNCING", "CLOSED", ""),
    ("SYNCED", RAISES, "any other EtcdError\n(lost permission, ...)"),
    ("DISCONNECTED", RAISES, ""),
    ("RESYNCING", RAISES, ""),
]
"""Every way ``root.state`` changes. ``mount()`` and "raises" are not states: before the
block the tree is loading, and a mirror that cannot go on ends the block with an error."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mount_states_dot() -> str:
    lines = [
        "digraph mount_states {",
        '  graph [rankdir=TB, fontname="Helvetica", nodesep=0.6, ranksep=0.5, bgcolor="white"];',
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", color="#3b5b92",'
        ' fontname="Helvetica", fontsize=12];',
        '  edge [fontname="Helvetica", fontsize=9, color="#555555"];',
        f'  "{START}" [shape=plaintext, style="", fontname="Courier"];',
        f'  "{RAISES}" [shape=plaintext, style="", fontcolor="#a00000"];',
    ]
    for state in et.MountState:
        fill = "#d8f0d8" if state is et.MountState.SYNCED else "#eef3fb"
        lines.append(
            f'  "{state.name}" [label="{state.name}\\n({state.value})", fillcolor="{fill}"];'
        )
    for source, target, label in MOUNT_TRANSITIONS:
        text = label.replace("\n", "\\n")
        lines.append(f'  "{source}" -> "{target}" [label="{text}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- the lock queue ------------------------------------------------------------------------

LOCK_NAME = "jobs/lock"


async def lock_queue_kvs() -> list[et.KeyValue]:
    """The keys under the lock's name once a holder and three waiters queued for it, on the
    in-memory etcd, in create-revision order."""
    from trio_etcd_tree.testing import open_fake_etcd

    async with open_fake_etcd() as fake, et.open_client(fake.endpoints, transport=fake) as c:
        release = trio.Event()

        async def contender() -> None:
            async with et.lock(c, LOCK_NAME, ttl=30):
                await release.wait()

        async with trio.open_nursery() as nursery:
            for count in range(1, 5):
                nursery.start_soon(contender)
                while (await c.range(LOCK_NAME + "/", prefix=True, count_only=True)).count < count:
                    await trio.testing.wait_all_tasks_blocked()
            queue = await c.range(LOCK_NAME + "/", prefix=True)
            release.set()
    return sorted(queue.kvs, key=lambda kv: kv.create_revision)


def lock_queue_dot(kvs: list[et.KeyValue]) -> str:
    lines = [
        "digraph lock_queue {",
        '  graph [rankdir=TB, fontname="Helvetica", nodesep=0.4, ranksep=0.45, bgcolor="white"];',
        '  node [shape=box, style="rounded,filled", fontname="Courier", fontsize=11,'
        ' color="#3b5b92"];',
        '  edge [fontname="Helvetica", fontsize=9];',
        f"  label=\"the keys under {LOCK_NAME}/, each created\\nwith its contender's lease;"
        ' the lowest\\ncreate revision holds the lock";',
        "  labelloc=b; fontsize=10;",
    ]
    for i, kv in enumerate(kvs):
        role = "holds the lock" if i == 0 else f"waiter {i}"
        fill = "#d8f0d8" if i == 0 else "#eef3fb"
        label = f"{kv.key.decode()}\\ncreate revision {kv.create_revision}\\n{role}"
        lines.append(f'  k{i} [label="{label}", fillcolor="{fill}"];')
    # drawn from the holder at the top; each arrow points at the key its waiter watches
    edge = '[dir=back, label="watches for\\nits deletion", color="#3b5b92"]'
    lines += [f"  k{i - 1} -> k{i} {edge};" for i in range(1, len(kvs))]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_dot(name: str, source: str) -> None:
    """Write ``name.dot`` and draw ``name.svg`` with the source's hash in a comment."""
    (FIGURES / f"{name}.dot").write_text(source)
    marked = source.replace("{", f'{{\n  comment="source sha256 {sha256(source.encode())}";', 1)
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=marked, capture_output=True, text=True, check=True
    ).stdout
    (FIGURES / f"{name}.svg").write_text(svg)
    print(f"wrote {FIGURES / name}.dot and .svg")


# --- the benchmarks ------------------------------------------------------------------------


def run_benchmarks() -> None:
    for name in BENCHMARKS:
        script = ROOT / "benchmarks" / f"bench_{name}.py"
        out = DATA / f"bench_{name}.json"
        print(f"running {script.name} --quick ...", flush=True)
        subprocess.run([sys.executable, script, "--quick", "--json", out], check=True)


def plot_benchmark(name: str) -> None:
    """One horizontal bar per table row: ours / baseline (the median ratio), its target."""
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    raw = (DATA / f"bench_{name}.json").read_bytes()
    data = json.loads(raw)
    rows = [row for row in data["rows"] if row["ratio"] is not None]
    # a row indented in the table belongs to the row above it: "... : what it adds"
    labels = [
        textwrap.shorten(row["metric"].strip(), 70, placeholder="...")
        if not row["metric"].startswith(" ")
        else "… " + textwrap.shorten(row["metric"].strip(), 66, placeholder="...")
        for row in rows
    ]
    ratios = [row["ratio"] for row in rows]
    colors = []
    for row in rows:
        if row["kind"] == "info":
            colors.append("#b0b0b0")
        elif row["verdict"].endswith("ok"):
            colors.append("#4c9a4c")
        else:
            colors.append("#c0504d")
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, NullLocator

    fig, ax = plt.subplots(figsize=(8.5, 0.3 * len(rows) + 2.2))
    y = list(range(len(rows)))
    # each bar runs from 1 (the baseline) to the row's ratio
    ax.barh(y, [r - 1 for r in ratios], left=1, color=colors, height=0.7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize=7.5)
    ax.invert_yaxis()
    ax.set_xscale("log")
    low = min(0.5, min(ratios) / 1.3)
    high = max(2.0, max(ratios) * 1.6)
    ax.set_xlim(low, high)
    ticks = [x for x in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32) if low <= x <= high]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{x:g}" for x in ticks], fontsize=8)
    ax.set_xlabel("ours / baseline, median (log scale)", fontsize=8)
    for i, row in enumerate(rows):
        ax.text(
            max(ratios[i], 1.0) * 1.03,
            i,
            f"{ratios[i]:.2f}  {row['verdict']}",
            va="center",
            fontsize=6.5,
        )
    settings = textwrap.fill(", ".join(f"{k}={v}" for k, v in data["settings"].items()), 90)
    ax.set_title(
        f"{data['script']}: {data['title']}\n{settings}\n"
        f"python {data['python']}, trio {data['trio']}, httpx {data['httpx']}, "
        f"{data['cpus']} CPUs",
        fontsize=7.5,
    )
    ax.legend(
        handles=[
            Patch(color="#4c9a4c", label="target met"),
            Patch(color="#c0504d", label="target missed"),
            Patch(color="#b0b0b0", label="for information"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=3,
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout()
    path = FIGURES / f"bench-{name}.svg"
    fig.savefig(
        path,
        bbox_inches="tight",
        metadata={"Description": f"source sha256 {sha256(raw)}", "Date": None},
    )
    plt.close(fig)
    print(f"wrote {path}")


# --- the viewer ----------------------------------------------------------------------------


def viewer_screenshot() -> None:
    """``etcd-tree /demo`` on a real etcd 3.5 with the demo data, one change highlighted."""
    import asyncio
    import functools
    import time

    from trio_etcd_tree._cli import viewer
    from trio_etcd_tree._cli.viewer_app import ViewerApp
    from trio_etcd_tree._cli.viewer_bridge import Bridge
    from trio_etcd_tree._cli.viewer_treeview import TreeView
    from trio_etcd_tree.testing import EtcdCluster, find_etcd

    with EtcdCluster.start(find_etcd("3.5")) as cluster:
        connect = functools.partial(et.open_client, cluster.endpoints)
        bridge = Bridge(connect, "/demo", setup=viewer._setup("/demo", viewer.DEMO_DATA))
        app = ViewerApp(bridge)

        async def wait_for(pilot: object, test: object) -> None:
            deadline = time.monotonic() + 30
            while not test():  # type: ignore[operator]
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the viewer did not get to {test}")
                await pilot.pause(0.02)  # type: ignore[attr-defined]

        async def main() -> str:
            async with app.run_test(size=(110, 28)) as pilot:
                await wait_for(pilot, lambda: app.model is not None)
                await pilot.press("down", "right", "down", "down", "down")
                await pilot.press("g", *"services/api/env", "enter")

                async def change() -> None:
                    async with et.open_client(cluster.endpoints) as client:
                        await client.put("/demo/services/api/replicas", "5")

                await asyncio.to_thread(trio.run, change)
                await wait_for(pilot, lambda: app.query_one(TreeView).heat)
                await pilot.pause(0.1)
                svg: str = app.export_screenshot(title="etcd-tree /demo")
                return svg

        svg = asyncio.run(main())
    (FIGURES / "viewer.svg").write_text(svg)
    print(f"wrote {FIGURES / 'viewer.svg'}")


# --- main ----------------------------------------------------------------------------------

FIGURE_NAMES = ("mount-states", "lock-queue", "benchmarks", "viewer")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("figures", nargs="*", help=f"some of {', '.join(FIGURE_NAMES)}")
    parser.add_argument(
        "--benchmarks", action="store_true", help="run the benchmarks (--quick) first"
    )
    args = parser.parse_args(argv)
    chosen = args.figures or FIGURE_NAMES
    unknown = set(chosen) - set(FIGURE_NAMES)
    if unknown:
        parser.error(f"no figure {', '.join(sorted(unknown))}; there are {', '.join(FIGURE_NAMES)}")
    FIGURES.mkdir(exist_ok=True)
    DATA.mkdir(exist_ok=True)
    if "mount-states" in chosen:
        render_dot("mount-states", mount_states_dot())
    if "lock-queue" in chosen:
        kvs = trio.run(lock_queue_kvs, clock=trio.testing.MockClock(autojump_threshold=0))
        render_dot("lock-queue", lock_queue_dot(kvs))
    if "benchmarks" in chosen:
        if args.benchmarks:
            run_benchmarks()
        for name in BENCHMARKS:
            plot_benchmark(name)
    if "viewer" in chosen:
        viewer_screenshot()


if __name__ == "__main__":
    main(sys.argv[1:])
