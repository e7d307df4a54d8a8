#!/usr/bin/env python
"""Benchmark trio-etcd-tree's client against a bare httpx + trio baseline, side by side.

Usage::

    python benchmarks/bench_client.py [--keys 100000] [--repeat 5] [--endpoints URL] [--quick]

With no ``--endpoints`` it starts its own etcd 3.5 on loopback (``EtcdCluster``), loads the
data and measures, in one run:

1. a paged read of N keys into a ``dict[bytes, bytes]`` (ours: ``Client.range_pages``;
   baseline: the same pages with raw httpx at a fixed revision; plus the baseline's ONE
   unbounded range, for reference);
2. the watch receive rate and the watcher's CPU, with the watcher and the writer in
   separate processes (live: 100-op txns, and single puts from 16 tasks; replay: from an
   old start revision over the history those live runs wrote);
3. the put rate, sequential and from 16 concurrent tasks.

The baseline is the "raw httpx + trio" client of ``REFERENCE.md`` part 2, written inline
here: a plain ``httpx.AsyncClient``, ``json`` and ``base64``. Targets: our time within
1.2x of the baseline's, and our rate at least 0.83x of it.

The script re-runs itself for the watch processes (``_watcher`` and ``_writer``, internal).
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from trio_etcd_tree import Client, mount, open_client

Json = dict[str, Any]

READ_PREFIX = b"/bench/"
VALUE_SIZE = 40
TXN_OPS = 128  # keys per load txn (etcd's default --max-txn-ops)
LOAD_TASKS = 8
WATCH_TIMEOUT = 300.0  # seconds before a hung watcher process is killed


# --- shared helpers ------------------------------------------------------------------------


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def bench_key(k: int) -> bytes:
    i, j = divmod(k, 4)  # 4 fields per item
    return f"/bench/app{i % 100}/item{i}/field{j}".encode()


def value_for(k: int) -> bytes:
    return f"value-{k:0{VALUE_SIZE - 6}d}".encode()


def bare_http(connections: int = 100) -> httpx.AsyncClient:
    """The baseline's client: plain httpx, no time limits (like ours)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(None),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=32),
    )


async def bare_post(http: httpx.AsyncClient, url: str, body: Json) -> Json:
    response = await http.post(url, content=json.dumps(body).encode())
    if response.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {response.status_code} {response.text[:200]}")
    data: Json = json.loads(response.content)
    return data


def put_body(key: bytes, value: bytes) -> Json:
    return {"key": b64e(key), "value": b64e(value)}


async def run_tasks(count: int, tasks: int, job: Callable[[int], Awaitable[None]]) -> None:
    """Run ``job(i)`` for i in range(count) on ``tasks`` concurrent tasks."""

    async def worker(first: int) -> None:
        for i in range(first, count, tasks):
            await job(i)

    async with trio.open_nursery() as nursery:
        for t in range(min(tasks, count)):
            nursery.start_soon(worker, t)


class RawHttp:
    """A minimal HTTP/1.1 client over one trio TCP stream (the writer; REFERENCE's 'raw')."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self._stream = stream
        self._host = host.encode()
        self._buf = bytearray()

    @classmethod
    async def connect(cls, endpoint: str) -> RawHttp:
        url = httpx.URL(endpoint)
        stream = await trio.open_tcp_stream(url.host, url.port or 2379)
        return cls(stream, f"{url.host}:{url.port}")

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def _fill(self) -> None:
        data = await self._stream.receive_some(65536)
        if not data:
            raise RuntimeError("the server closed the connection")
        self._buf += data

    async def post(self, path: str, body: bytes) -> bytes:
        head = (
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (path.encode(), self._host, len(body))
        )
        await self._stream.send_all(head + body)
        buf = self._buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            await self._fill()
        header = bytes(buf[:end]).lower()
        del buf[: end + 4]
        if header[9:12] != b"200":
            raise RuntimeError(f"HTTP {header[:40]!r}")
        if (at := header.find(b"content-length:")) >= 0:
            length = int(header[at + 15 :].split(b"\r\n", 1)[0])
            while len(buf) < length:
                await self._fill()
            content = bytes(buf[:length])
            del buf[:length]
            return content
        parts = []  # chunked
        while True:
            while (eol := buf.find(b"\r\n")) < 0:
                await self._fill()
            size = int(bytes(buf[:eol]).split(b";")[0], 16)
            del buf[: eol + 2]
            while len(buf) < size + 2:
                await self._fill()
            parts.append(bytes(buf[:size]))
            del buf[: size + 2]
            if not size:
                return b"".join(parts)


async def raw_puts(endpoint: str, keys: Sequence[bytes], value: bytes, tasks: int) -> list[int]:
    """Put every key with the raw client, one connection per task; the revisions."""
    revisions: list[int] = []
    conns = [await RawHttp.connect(endpoint) for _ in range(min(tasks, len(keys)))]

    async def worker(t: int) -> None:
        conn = conns[t]
        for i in range(t, len(keys), len(conns)):
            answer = json.loads(
                await conn.post("/v3/kv/put", json.dumps(put_body(keys[i], value)).encode())
            )
            revisions.append(int(answer["header"]["revision"]))

    try:
        async with trio.open_nursery() as nursery:
            for t in range(len(conns)):
                nursery.start_soon(worker, t)
    finally:
        for conn in conns:
            await conn.aclose()
    return revisions


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt(values: Sequence[float], digits: int) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{med(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@asynccontextmanager
async def mounts_held(client: Client, count: int) -> AsyncIterator[None]:
    """``count`` mounts of different (empty) prefixes on ``client``, each held by a task of
    its own, for the block (entered once every one is ready)."""
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
        try:
            yield
        finally:
            stop.set()


# --- data ----------------------------------------------------------------------------------


async def load_keys(endpoint: str, count: int) -> float:
    """Replace everything under READ_PREFIX by ``count`` keys; returns the seconds taken."""
    async with bare_http() as http:
        body = {"key": b64e(READ_PREFIX), "range_end": b64e(prefix_end(READ_PREFIX))}
        await bare_post(http, endpoint + "/v3/kv/deleterange", body)
        started = time.perf_counter()

        async def batch(b: int) -> None:
            ops = [
                {"request_put": put_body(bench_key(k), value_for(k))}
                for k in range(b * TXN_OPS, min(count, (b + 1) * TXN_OPS))
            ]
            await bare_post(http, endpoint + "/v3/kv/txn", {"success": ops})

        await run_tasks((count + TXN_OPS - 1) // TXN_OPS, LOAD_TASKS, batch)
        return time.perf_counter() - started


# --- (1) reads -----------------------------------------------------------------------------


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


async def read_ours(endpoint: str, page_size: int) -> dict[bytes, bytes]:
    result: dict[bytes, bytes] = {}
    async with open_client(endpoint) as client:
        async for page in client.range_pages(READ_PREFIX, prefix=True, page_size=page_size):
            for kv in page.kvs:
                result[kv.key] = kv.value
    return result


async def read_bare(endpoint: str, page_size: int) -> dict[bytes, bytes]:
    """The same pages as ours: a limit, the first page's revision, go on after the last key."""
    result: dict[bytes, bytes] = {}
    b64d = base64.b64decode
    url = endpoint + "/v3/kv/range"
    end = b64e(prefix_end(READ_PREFIX))
    start = READ_PREFIX
    revision = 0
    async with bare_http() as http:
        while True:
            body: Json = {"key": b64e(start), "range_end": end}
            if page_size:
                body["limit"] = page_size
            if revision:
                body["revision"] = revision
            data = await bare_post(http, url, body)
            revision = revision or int(data["header"]["revision"])
            kvs = data.get("kvs", ())
            for kv in kvs:
                result[b64d(kv["key"])] = b64d(kv["value"]) if "value" in kv else b""
            if not page_size or not data.get("more") or not kvs:
                return result
            start = b64d(kvs[-1]["key"]) + b"\0"


async def bench_reads(endpoint: str, keys: int, page_size: int, repeat: int) -> dict[str, Samples]:
    """Each repeat runs every variant once, in alternating order; each opens its own client
    (as an application's initial sync would), so connection set-up is included."""
    variants: list[tuple[str, Callable[[], Awaitable[dict[bytes, bytes]]]]] = [
        ("ours", lambda: read_ours(endpoint, page_size)),
        ("bare", lambda: read_bare(endpoint, page_size)),
        ("bare_one", lambda: read_bare(endpoint, 0)),
    ]
    samples = {name: Samples() for name, _ in variants}
    for name, run in variants:  # warm-up: imports, server caches
        assert len(await run()) == keys, name
    for r in range(repeat):
        for name, run in variants if r % 2 == 0 else variants[::-1]:
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            result = await run()
            samples[name].wall.append(time.perf_counter() - wall)
            samples[name].cpu.append(time.process_time() - cpu)
            assert len(result) == keys, (name, len(result))
            del result
        log(
            f"  read repeat {r + 1}/{repeat}: "
            + ", ".join(f"{n} {s.wall[-1]:.3f}s" for n, s in samples.items())
        )
    return samples


# --- (3) puts ------------------------------------------------------------------------------


async def bench_puts(
    endpoint: str, count: int, tasks: int, kind: str, tag: str
) -> tuple[float, float]:
    """Puts/s and CPU ms per put for ``count`` puts on ``tasks`` tasks, warm connections."""
    value = b"v" * VALUE_SIZE
    keys = [f"/put/{tag}/{kind}/{i}".encode() for i in range(count)]
    warm = [f"/put/{tag}/{kind}/warm{i}".encode() for i in range(2 * tasks)]
    if kind == "raw":  # a connection per task, opened inside; the set-up is tiny
        wall, cpu = time.perf_counter(), time.process_time()
        await raw_puts(endpoint, keys, value, tasks)
        return count / (time.perf_counter() - wall), (time.process_time() - cpu) / count * 1e3
    timing: list[float] = []

    async def measured(put: Callable[[bytes], Awaitable[None]]) -> None:
        await run_tasks(len(warm), tasks, lambda i: put(warm[i]))
        gc.collect()
        timing.extend((time.perf_counter(), time.process_time()))
        await run_tasks(count, tasks, lambda i: put(keys[i]))
        timing.extend((time.perf_counter(), time.process_time()))

    if kind == "ours":
        async with open_client(endpoint) as client:

            async def put_ours(key: bytes) -> None:
                await client.put(key, value)

            await measured(put_ours)
    else:
        async with bare_http() as http:
            url = endpoint + "/v3/kv/put"

            async def put_bare(key: bytes) -> None:
                data = await bare_post(http, url, put_body(key, value))
                int(data["header"]["revision"])

            await measured(put_bare)
    wall0, cpu0, wall1, cpu1 = timing
    return count / (wall1 - wall0), (cpu1 - cpu0) / count * 1e3


# --- (2) watch: the watcher and writer processes -------------------------------------------


async def watcher_ours(endpoint: str, prefix: bytes, events: int, start: int) -> Json:
    stats: Json = {"events": 0, "messages": 0}
    async with open_client(endpoint) as client:
        opened, cpu = time.perf_counter(), time.process_time()
        async with client.watch(prefix, prefix=True, start_revision=start) as stream:
            if not start:
                print("READY", flush=True)
                cpu = time.process_time()
            async for response in stream:
                got = len(response.events)
                if not got:
                    continue
                if not stats["messages"]:
                    stats["first"] = time.perf_counter()
                    stats["first_events"] = got
                    stats["first_revision"] = response.events[0].kv.mod_revision
                stats["messages"] += 1
                stats["events"] += got
                if stats["events"] >= events:
                    break
    stats.update(last=time.perf_counter(), cpu=time.process_time() - cpu, opened=opened)
    return stats


async def watcher_bare(endpoint: str, prefix: bytes, events: int, start: int) -> Json:
    """REFERENCE's raw httpx watcher: read lines, json, base64-decode keys and values."""
    stats: Json = {"events": 0, "messages": 0}
    b64d = base64.b64decode
    create: Json = {"key": b64e(prefix), "range_end": b64e(prefix_end(prefix))}
    if start:
        create["start_revision"] = start
    body = json.dumps({"create_request": create}).encode()
    async with bare_http() as http:
        opened, cpu = time.perf_counter(), time.process_time()
        async with http.stream("POST", endpoint + "/v3/watch", content=body) as response:
            parts: list[bytes] = []
            async for chunk in response.aiter_raw():
                begin = 0
                while (end := chunk.find(b"\n", begin)) >= 0:
                    parts.append(chunk[begin:end])
                    begin = end + 1
                    line = b"".join(parts)
                    parts.clear()
                    result = json.loads(line)["result"]
                    if result.get("created"):
                        if not start:
                            print("READY", flush=True)
                            cpu = time.process_time()
                        continue
                    items = result.get("events")
                    if not items:
                        continue
                    decoded = [
                        (
                            e.get("type", "PUT"),
                            b64d(e["kv"]["key"]),
                            b64d(e["kv"].get("value", "")),
                            int(e["kv"]["mod_revision"]),
                        )
                        for e in items
                    ]
                    if not stats["messages"]:
                        stats["first"] = time.perf_counter()
                        stats["first_events"] = len(decoded)
                        stats["first_revision"] = decoded[0][3]
                    stats["messages"] += 1
                    stats["events"] += len(decoded)
                    if stats["events"] >= events:
                        stats.update(last=time.perf_counter(), cpu=time.process_time() - cpu)
                        stats["opened"] = opened
                        return stats
                if begin < len(chunk):
                    parts.append(chunk[begin:])
    raise RuntimeError(f"the watch ended after {stats['events']} events")


async def writer(endpoint: str, prefix: bytes, events: int, mode: str) -> Json:
    value = b"w" * VALUE_SIZE
    keys = [prefix + f"key{i}".encode() for i in range(events)]
    started = time.perf_counter()
    if mode == "txn":  # 100-op txns from 4 tasks, plain httpx (20k puts/s is plenty)
        async with bare_http() as http:

            async def txn(b: int) -> None:
                ops = [{"request_put": put_body(k, value)} for k in keys[b * 100 : b * 100 + 100]]
                await bare_post(http, endpoint + "/v3/kv/txn", {"success": ops})

            await run_tasks((events + 99) // 100, 4, txn)
    else:  # single puts from 16 tasks, with the raw client (httpx would be the bottleneck)
        await raw_puts(endpoint, keys, value, 16)
    return {"elapsed": time.perf_counter() - started}


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["_watcher", "_writer"])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--client", choices=["ours", "bare"], default="ours")
    parser.add_argument("--start-revision", type=int, default=0)
    parser.add_argument("--mode", choices=["txn", "single"], default="txn")
    args = parser.parse_args(argv)
    prefix = args.prefix.encode()
    result: Json
    if args.role == "_writer":
        result = trio.run(writer, args.endpoint, prefix, args.events, args.mode)
    else:
        watcher = watcher_ours if args.client == "ours" else watcher_bare
        result = trio.run(watcher, args.endpoint, prefix, args.events, args.start_revision)
    print(json.dumps(result), flush=True)


# --- (2) watch: the orchestration ----------------------------------------------------------


@dataclass
class WatchRun:
    rate: float  # events/s
    cpu_per_event: float  # µs
    cpu_per_message: float  # µs
    messages: int
    first_revision: int


@contextmanager
def child(
    args: list[str], *, script: str = __file__, timeout: float = WATCH_TIMEOUT
) -> Iterator[subprocess.Popen[str]]:
    """``script`` (this one by default) as a child process; killed (by its PID) if it runs
    past ``timeout`` seconds or we fail."""
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(script), *args], stdout=subprocess.PIPE, text=True
    )
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        yield process
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
        process.wait()


def last_json(process: subprocess.Popen[str]) -> Json:
    assert process.stdout is not None
    out = process.stdout.read()
    if process.wait() != 0 or not out.strip():
        raise RuntimeError(f"child {process.args!r} failed (exit {process.returncode})")
    data: Json = json.loads(out.strip().splitlines()[-1])
    return data


def watch_run(
    endpoint: str, client: str, prefix: str, events: int, writer_mode: str | None, start: int
) -> WatchRun:
    """Live (``writer_mode`` given: the watcher first, then the writer) or replay from
    ``start``. Live rates run from the first to the last event message, so they leave out
    the process start-ups; replay rates run from opening the watch."""
    common = ["--endpoint", endpoint, "--prefix", prefix, "--events", str(events)]
    watcher_args = ["_watcher", *common, "--client", client, "--start-revision", str(start)]
    with child(watcher_args) as watcher:
        if writer_mode is not None:
            assert watcher.stdout is not None
            if watcher.stdout.readline().strip() != "READY":
                raise RuntimeError("the watcher did not start")
            with child(["_writer", *common, "--mode", writer_mode]) as write:
                last_json(write)
        stats = last_json(watcher)
    if writer_mode is not None:
        counted = stats["events"] - stats["first_events"]
        rate = counted / max(stats["last"] - stats["first"], 1e-9)
    else:
        rate = stats["events"] / (stats["last"] - stats["opened"])
    return WatchRun(
        rate,
        stats["cpu"] / stats["events"] * 1e6,
        stats["cpu"] / stats["messages"] * 1e6,
        stats["messages"],
        stats["first_revision"],
    )


@dataclass
class WatchSamples:
    rate: list[float] = field(default_factory=list)
    cpu_event: list[float] = field(default_factory=list)
    cpu_message: list[float] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)

    def add(self, run: WatchRun) -> None:
        self.rate.append(run.rate)
        self.cpu_event.append(run.cpu_per_event)
        self.cpu_message.append(run.cpu_per_message)
        self.messages.append(run.messages)


WATCH_CASES = ["live txn", "live single x16", "replay 100 ev/rev", "replay 1 ev/rev"]


def bench_watch(endpoint: str, events: int, repeat: int) -> dict[tuple[str, str], WatchSamples]:
    samples = {(case, c): WatchSamples() for case in WATCH_CASES for c in ("ours", "bare")}
    tag = f"{os.getpid()}-{time.time_ns()}"
    for r in range(repeat):
        for c in ("ours", "bare") if r % 2 == 0 else ("bare", "ours"):
            starts: dict[str, tuple[str, int]] = {}
            for case, mode in (("live txn", "txn"), ("live single x16", "single")):
                prefix = f"/watch/{tag}/{r}/{c}/{mode}/"
                run = watch_run(endpoint, c, prefix, events, mode, 0)
                samples[case, c].add(run)
                starts[mode] = (prefix, run.first_revision)
            for case, mode in (("replay 100 ev/rev", "txn"), ("replay 1 ev/rev", "single")):
                prefix, first = starts[mode]
                samples[case, c].add(watch_run(endpoint, c, prefix, events, None, first))
            log(
                f"  watch repeat {r + 1}/{repeat} {c}: "
                + ", ".join(
                    f"{case} {samples[case, c].rate[-1]:.0f} ev/s "
                    f"{samples[case, c].cpu_event[-1]:.1f} us/ev"
                    for case in WATCH_CASES
                )
            )
    return samples


# --- the report ----------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    ours: Sequence[float]
    bare: Sequence[float]
    digits: int
    kind: str  # "time": lower is better (target 1.2); "rate": higher (0.83); "info"

    def ratio(self) -> float | None:
        if not self.ours or not self.bare:
            return None
        return med(self.ours) / med(self.bare)

    def verdict(self) -> str:
        ratio = self.ratio()
        if ratio is None or self.kind == "info":
            return "(info)"
        if self.kind == "time":
            return f"<= 1.20 {'ok' if ratio <= 1.2 else 'MISS'}"
        return f">= 0.83 {'ok' if ratio >= 0.83 else 'MISS'}"


def print_table(rows: list[Row]) -> None:
    header = ("metric", "ours", "baseline (raw httpx + trio)", "ours/base", "target")
    cells = [header]
    for row in rows:
        ratio = row.ratio()
        cells.append(
            (
                row.metric,
                fmt(row.ours, row.digits),
                fmt(row.bare, row.digits),
                "-" if ratio is None else f"{ratio:.2f}",
                row.verdict(),
            )
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for n, c in enumerate(cells):
        print("  ".join(text.ljust(w) for text, w in zip(c, widths, strict=True)).rstrip())
        if n == 0:
            print(line)
    print(line)


def print_misses(rows: Sequence[Row]) -> None:
    """The count of the rows that missed their target, each named (a detail row with the
    row above it that it details)."""
    misses, parent = [], ""
    for row in rows:
        parent = parent if row.metric.startswith(" ") else row.metric
        if "MISS" in row.verdict():
            sub = row.metric.strip()
            misses.append(sub if sub == parent else f"{parent}: {sub}")
    print(f"{len(misses)} target(s) missed" + (": " + "; ".join(misses) if misses else ""))


@contextmanager
def bench_etcd(endpoints: str | None) -> Iterator[tuple[str, str]]:
    """The endpoint to measure and the server's description, for the block: the first of
    ``endpoints``, or (None) an etcd 3.5 this script starts on loopback and stops after."""
    if endpoints:
        endpoint = endpoints.split(",")[0].rstrip("/")
        yield endpoint, f"etcd at {endpoint}"
        return
    from trio_etcd_tree.testing import EtcdCluster, find_etcd

    binary = find_etcd("3.5")
    log(f"starting etcd {binary.version_string} ({binary.path})")
    with EtcdCluster.start(binary, extra_args=["--quota-backend-bytes", "8589934592"]) as cluster:
        yield cluster.endpoints[0], f"etcd {binary.version_string}, started by this script"


def json_option(argv: list[str]) -> Path | None:
    """The ``--json FILE`` of a benchmark's command line (each parser lists it too)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--json", type=Path)
    path: Path | None = parser.parse_known_args(argv)[0].json
    return path


JSON_HELP = "also write the table as JSON to FILE (docs/make_figures.py plots it)"


def write_json(path: Path, script: str, title: str, settings: object, rows: Sequence[Row]) -> None:
    """The table as data: each row's samples, median ratio and verdict (for the plots)."""
    data = {
        "script": script,
        "title": title,
        "settings": vars(settings),
        "python": sys.version.split()[0],
        "trio": trio.__version__,
        "httpx": httpx.__version__,
        "cpus": os.cpu_count(),
        "rows": [
            {
                "metric": row.metric,
                "ours": list(row.ours),
                "baseline": list(row.bare),
                "kind": row.kind,
                "ratio": row.ratio(),
                "verdict": row.verdict(),
            }
            for row in rows
        ],
    }
    path.write_text(json.dumps(data, indent=1) + "\n")
    log(f"wrote {path}")


# --- main ----------------------------------------------------------------------------------


@dataclass
class Settings:
    keys: int
    repeat: int
    side_repeat: int  # watch and put runs (each is longer)
    page_size: int
    events: int
    seq_puts: int
    conc_puts: int


def parse_args(argv: list[str]) -> tuple[Settings, str | None, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, help="keys to read (default 100000, --quick 10000)")
    parser.add_argument("--repeat", type=int, help="read repeats (default 5, --quick 3)")
    parser.add_argument(
        "--side-repeat", type=int, help="watch and put repeats (default min(3, --repeat), quick 1)"
    )
    parser.add_argument("--page-size", type=int, default=10000, help="keys per page (10000)")
    parser.add_argument("--events", type=int, help="watch events per run (20000, --quick 4000)")
    parser.add_argument("--endpoints", help="use this etcd instead of starting one")
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument(
        "--only", default="read,watch,put", help="comma-separated parts to run (read,watch,put)"
    )
    parser.add_argument("--json", metavar="FILE", help=JSON_HELP)
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    repeat = args.repeat or (3 if quick else 5)
    settings = Settings(
        keys=args.keys or (10_000 if quick else 100_000),
        repeat=repeat,
        side_repeat=args.side_repeat or (1 if quick else min(3, repeat)),
        page_size=args.page_size,
        events=args.events or (4_000 if quick else 20_000),
        seq_puts=500 if quick else 2_000,
        conc_puts=1_000 if quick else 4_000,
    )
    return settings, args.endpoints, args.only.split(",")


def run_all(endpoint: str, s: Settings, parts: list[str]) -> list[Row]:
    rows: list[Row] = []
    if "read" in parts:
        log(f"loading {s.keys} keys ({TXN_OPS}-op txns, {LOAD_TASKS} tasks) ...")
        took = trio.run(load_keys, endpoint, s.keys)
        log(f"  {took:.2f} s, {s.keys / took:.0f} keys/s")
        log(f"(1) paged read, {s.keys} keys, pages of {s.page_size}, {s.repeat} repeats")
        reads = trio.run(bench_reads, endpoint, s.keys, s.page_size, s.repeat)
        ours, bare, one = reads["ours"], reads["bare"], reads["bare_one"]
        rows += [
            Row(f"read {s.keys} keys, pages of {s.page_size} (s)", ours.wall, bare.wall, 3, "time"),
            Row("  same, process CPU (s)", ours.cpu, bare.cpu, 3, "info"),
            Row("  ours paged vs bare ONE range (s)", ours.wall, one.wall, 3, "info"),
        ]
    if "watch" in parts:
        log(f"(2) watch, {s.events} events per run, {s.side_repeat} repeats")
        watch = bench_watch(endpoint, s.events, s.side_repeat)
        for case in WATCH_CASES:
            o, b = watch[case, "ours"], watch[case, "bare"]
            rows.append(Row(f"watch {case} (events/s)", o.rate, b.rate, 0, "rate"))
            rows.append(Row("  watcher CPU per event (us)", o.cpu_event, b.cpu_event, 1, "time"))
            if case == "replay 1 ev/rev" or case.startswith("live"):
                kind = "info" if case.startswith("replay") else "time"
                rows.append(
                    Row("  watcher CPU per message (us)", o.cpu_message, b.cpu_message, 1, kind)
                )
    if "put" in parts:
        log(f"(3) puts: {s.seq_puts} sequential, {s.conc_puts} from 16 tasks")
        rates: dict[tuple[str, int], list[float]] = {}
        cpus: dict[tuple[str, int], list[float]] = {}
        for r in range(s.side_repeat):
            for tasks, count in ((1, s.seq_puts), (16, s.conc_puts)):
                for kind in ("ours", "bare", "raw") if r % 2 == 0 else ("raw", "bare", "ours"):
                    rate, cpu = trio.run(bench_puts, endpoint, count, tasks, kind, f"{r}-{tasks}")
                    rates.setdefault((kind, tasks), []).append(rate)
                    cpus.setdefault((kind, tasks), []).append(cpu)
            log(
                f"  put repeat {r + 1}: "
                + ", ".join(f"{k}x{t} {v[-1]:.0f}/s" for (k, t), v in rates.items())
            )
        for tasks, label in ((1, "sequential"), (16, "16 tasks")):
            count = s.seq_puts if tasks == 1 else s.conc_puts
            ours_r, bare_r = rates["ours", tasks], rates["bare", tasks]
            rows += [
                Row(f"put {label}, {count} (puts/s)", ours_r, bare_r, 0, "rate"),
                Row(
                    "  client CPU per put (ms)", cpus["ours", tasks], cpus["bare", tasks], 3, "time"
                ),
                Row(
                    "  ours vs minimal raw HTTP client (puts/s)",
                    ours_r,
                    rates["raw", tasks],
                    0,
                    "info",
                ),
            ]
    return rows


def main(argv: list[str]) -> None:
    if argv and argv[0].startswith("_"):
        child_main(argv)
        return
    settings, endpoints, parts = parse_args(argv)
    started = time.perf_counter()
    with bench_etcd(endpoints) as (endpoint, server):
        rows = run_all(endpoint, settings, parts)
    print()
    print(
        f"trio-etcd-tree vs raw httpx + trio; {server}; python {sys.version.split()[0]}, "
        f"trio {trio.__version__}, httpx {httpx.__version__}, {os.cpu_count()} CPUs"
    )
    print(
        f"keys={settings.keys} read repeats={settings.repeat} watch/put repeats="
        f"{settings.side_repeat} events={settings.events}; median (min-max); "
        "targets: time ratio <= 1.2, rate ratio >= 0.83"
    )
    print_table(rows)
    print_misses(rows)
    print(f"total {time.perf_counter() - started:.1f} s")
    json_file = json_option(argv)
    if json_file is not None:
        write_json(
            json_file, "bench_client.py", f"client vs raw httpx + trio; {server}", settings, rows
        )


if __name__ == "__main__":
    main(sys.argv[1:])
