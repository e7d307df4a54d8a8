#!/usr/bin/env python
"""Where a mount's memory goes: ``tracemalloc`` around N mounts of empty prefixes.

Usage::

    python benchmarks/mem_per_mount.py [--mounts 1000] [--top 25]

It starts its own etcd 3.5 on loopback, opens one client (gRPC), mounts one prefix and
leaves it (imports and caches warmed), then holds ``--mounts`` mounts of different empty
prefixes at once, each in a task of its own (as ``bench_peers.py --only many`` does), and
compares two ``tracemalloc`` snapshots: before the mounts and with all of them held.

It prints the bytes per mount still allocated, with and without the benchmark's own task
per mount, then the largest sites: each allocation is charged to the innermost function
of ``trio_etcd_tree`` on its stack (what trio allocates for a task, a nursery or a cancel
scope goes to the function of ours that made it). Unlike RSS (``bench_peers.py --only
many``), this does not depend on what the process freed before (RSS grows less where
freed memory is reused). Totals vary by ~0.3 KB between runs (tables of the interpreter
and of trio that grow in steps).
"""

from __future__ import annotations

import argparse
import ast
import collections
import functools
import gc
import sys
import tracemalloc
from pathlib import Path

import trio
import trio.testing
from bench_client import mounts_held

from trio_etcd_tree import mount, open_client
from trio_etcd_tree.testing._launcher import EtcdCluster, find_etcd

PACKAGE = str(Path(__file__).resolve().parent.parent / "trio_etcd_tree")
OWN = "(the benchmark's task per mount, with the mount's context manager)"


@functools.cache
def _functions(path: str) -> tuple[tuple[int, int, str], ...]:
    """The functions of a source file: (first line, last line, qualified name)."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError):
        return ()
    found: list[tuple[int, int, str]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                found.append((child.lineno, child.end_lineno or child.lineno, name))
                walk(child, f"{name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return tuple(found)


def _site(frame: tracemalloc.Frame) -> str:
    """``module.py:Class.function`` of a frame (the innermost function holding its line)."""
    name = str(frame.lineno)
    for first, last, function in _functions(frame.filename):
        if first <= frame.lineno <= last:
            name = function  # (later ones are nested deeper)
    return f"{Path(frame.filename).relative_to(Path(PACKAGE).parent)}:{name}"


def _charge(traceback: tracemalloc.Traceback) -> str:
    for frame in reversed(traceback):  # the innermost first
        if frame.filename.startswith(PACKAGE):
            return _site(frame)
        if frame.filename == __file__:
            return OWN
    return "(elsewhere)"


async def measure(endpoint: str, mounts: int) -> collections.Counter[str]:
    """Bytes still allocated with ``mounts`` mounts held, by site."""
    async with open_client(endpoint, transport="grpc") as client:
        await client.get("/warm-up")
        async with mount(client, "/warm/"):
            pass
        gc.collect()
        tracemalloc.start(100)
        before = tracemalloc.take_snapshot()
        async with mounts_held(client, mounts):
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            held = tracemalloc.take_snapshot()
            tracemalloc.stop()
    sites: collections.Counter[str] = collections.Counter()
    ignored = (tracemalloc.Filter(False, tracemalloc.__file__),)
    for stat in held.filter_traces(ignored).compare_to(before.filter_traces(ignored), "traceback"):
        sites[_charge(stat.traceback)] += stat.size_diff
    return sites


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mounts", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    with EtcdCluster.start(find_etcd("3.5")) as cluster:
        sites = trio.run(measure, cluster.endpoints[0], args.mounts)
    n = args.mounts
    total = sum(sites.values())
    print(
        f"{n} mounts over one client: {total / n:.0f} bytes per mount traced, "
        f"{(total - sites[OWN]) / n:.0f} without the benchmark's own task"
    )
    for site, size in sites.most_common(args.top):
        print(f"{size / n:7.0f}  {site}")


if __name__ == "__main__":
    main(sys.argv[1:])
