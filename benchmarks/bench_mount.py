#!/usr/bin/env python
"""Benchmark ``mount()`` (the live mirrored tree) against a bare httpx + trio baseline.

Usage::

    python benchmarks/bench_mount.py [--keys 100000] [--events 20000] [--endpoints URL] [--quick]

With no ``--endpoints`` it starts its own etcd 3.5 on loopback (``EtcdCluster``), loads the
same data as ``bench_client.py`` (``/bench/app{i%100}/item{i}/field{j}``, 40-byte values)
and measures, in one run:

1. the time to mount N keys (``async with mount(client, "/bench")`` until it yields) vs the
   bare paged read into a ``dict[bytes, bytes]`` (same page size), and the resident memory
   of the tree (every node made, by a walk) vs the dict, each built in a fresh process;
2. the watch apply rate and the mounting process's CPU per event (a subscriber on the root
   counts the changes) vs the bare gateway watch of ``bench_client.py``, with the writer
   in another process (100-op txns, and single puts from 16 tasks);
3. the change-to-subscriber latency: a writer process puts ``time.monotonic()`` every
   10 ms; the subscriber (ours: ``root.subscribe()``; bare: the raw watch) subtracts it
   from its own ``time.monotonic()`` when it has the value.

Targets: mount time <= 1.5x the bare read, memory <= 2x the dict (resident) and <= 1.3x
(the live heap, tracemalloc: the objects the tree keeps, without the allocator's free
space), apply rate >= 0.9x the bare watch's, p99 latency within 2 ms of the bare p99.

Shared helpers (data loading, the bare read and watcher, the writers, the table) come from
``bench_client.py``. The script re-runs itself for the child processes (``_mounter``,
``_memory``, ``_latency``, ``_ticker``; internal). ``BENCH_PROFILE=DIR`` makes those
children write cProfile statistics to ``DIR`` (for profiling only: it slows them down).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import bench_client as bc
import httpx
import trio
from bench_client import READ_PREFIX, Json, Row, WatchRun, WatchSamples, log, med

import trio_etcd_tree as et

MOUNT_PREFIX = READ_PREFIX.rstrip(b"/").decode()  # "/bench": the keys of bench_client
CHILD_TIMEOUT = 300.0  # seconds before a hung child process is killed


# --- child processes -----------------------------------------------------------------------


def child(args: list[str]) -> AbstractContextManager[subprocess.Popen[str]]:
    """This script as a child process (bench_client's ``child``)."""
    return bc.child(args, script=__file__, timeout=CHILD_TIMEOUT)


def wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    if process.stdout.readline().strip() != "READY":
        raise RuntimeError(f"child {process.args!r} did not start")


def rss() -> int:
    """Resident set size of this process, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def baseline(traced: bool) -> int:
    """The RSS to measure growth from; starts tracemalloc too with ``traced``."""
    gc.collect()
    before = rss()
    if traced:
        tracemalloc.start()
    return before


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def trimmed_rss() -> int:
    """The RSS once glibc has given its free heap pages back (``malloc_trim(0)``): what is
    left is what the objects hold, plus the free space inside Python's own arenas."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss()


async def wait_synced(root: et.Root) -> None:
    """Until the mount's watch is confirmed (the bare watchers wait for ``created``)."""
    while root.state is not et.MountState.SYNCED:  # noqa: ASYNC110 -- Root has no event
        await trio.sleep(0.001)


# --- (1) mount time ------------------------------------------------------------------------


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


async def mount_keys(endpoint: str, page_size: int) -> int:
    """Mount /bench with a fresh client (``open_client`` does no I/O, so the connection is
    made inside, as the bare read's is); the time is the mount's entry."""
    async with (
        et.open_client(endpoint) as client,
        et.mount(client, MOUNT_PREFIX, page_size=page_size) as root,
    ):
        return root.statistics().keys


async def read_dict(endpoint: str, page_size: int) -> int:
    return len(await bc.read_bare(endpoint, page_size))


async def bench_mount_time(
    endpoint: str, keys: int, page_size: int, repeat: int
) -> dict[str, Samples]:
    variants: list[tuple[str, Callable[[], Awaitable[int]]]] = [
        ("ours", lambda: mount_keys(endpoint, page_size)),
        ("bare", lambda: read_dict(endpoint, page_size)),
    ]
    samples = {name: Samples() for name, _ in variants}
    for name, run in variants:  # warm-up: imports, server caches
        assert await run() == keys, name
    for r in range(repeat):
        for name, run in variants if r % 2 == 0 else variants[::-1]:
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            got = await run()
            samples[name].wall.append(time.perf_counter() - wall)
            samples[name].cpu.append(time.process_time() - cpu)
            assert got == keys, (name, got)
            gc.collect()
        log(
            f"  mount repeat {r + 1}/{repeat}: "
            + ", ".join(f"{n} {s.wall[-1]:.3f}s" for n, s in samples.items())
        )
    return samples


# --- (1) memory, each in a fresh process -----------------------------------------------------


async def memory_child(endpoint: str, kind: str, page_size: int, traced: bool) -> Json:
    """RSS growth from building the tree (ours, every node made by a walk) or the dict
    (bare), after gc.collect().

    Both first make one small request, so lazily imported HTTP code is already resident.
    With ``traced``, ``heap`` is what tracemalloc counts as still allocated at the end
    (the live objects only, without the allocator's free space; slower).
    """
    if kind == "ours":
        async with et.open_client(endpoint) as client:
            await client.get(READ_PREFIX + b"warm-up")
            before = baseline(traced)
            async with et.mount(client, MOUNT_PREFIX, page_size=page_size) as root:
                for _ in root.walk():  # every node made (else the snapshot's records are kept)
                    pass
                gc.collect()
                after, keys = rss(), root.statistics().keys
                peak, heap = peak_rss(), tracemalloc.get_traced_memory()[0]
                trimmed = trimmed_rss()
    else:
        async with bc.bare_http() as http:
            await bc.bare_post(http, endpoint + "/v3/kv/range", {"key": bc.b64e(b"/warm-up")})
        before = baseline(traced)
        result = await bc.read_bare(endpoint, page_size)
        gc.collect()
        after, keys = rss(), len(result)
        peak, heap = peak_rss(), tracemalloc.get_traced_memory()[0]
        trimmed = trimmed_rss()
    return {
        "before": before,
        "after": after,
        "trimmed": trimmed,
        "peak": peak,
        "keys": keys,
        "heap": heap,
    }


def bench_memory(
    endpoint: str, page_size: int, repeat: int
) -> tuple[dict[str, list[Json]], dict[str, float]]:
    """RSS runs (``repeat`` each, alternating), then one tracemalloc run each."""
    results: dict[str, list[Json]] = {"ours": [], "bare": []}
    heap: dict[str, float] = {}
    for r in range(repeat + 1):
        for kind in ("ours", "bare") if r % 2 == 0 else ("bare", "ours"):
            args = ["_memory", "--endpoint", endpoint, "--kind", kind]
            args += ["--page-size", str(page_size)]
            with child([*args, "--traced"] if r == repeat else args) as process:
                result = bc.last_json(process)
            if r == repeat:
                heap[kind] = result["heap"]
            else:
                results[kind].append(result)
        if r == repeat:
            break
        log(
            f"  memory repeat {r + 1}/{repeat}: "
            + ", ".join(
                f"{k} {(v[-1]['after'] - v[-1]['before']) / 2**20:.1f} MB"
                for k, v in results.items()
            )
        )
    return results, heap


# --- (2) watch apply rate ------------------------------------------------------------------


async def mounter(endpoint: str, prefix: bytes, events: int) -> Json:
    """A mount of ``prefix`` with a subscriber on its root that counts the changes; the
    same statistics as bench_client's watchers (messages are updates, one per revision)."""
    stats: Json = {"events": 0, "messages": 0}
    async with et.open_client(endpoint) as client:
        opened, cpu = time.perf_counter(), time.process_time()
        async with et.mount(client, prefix.rstrip(b"/")) as root:
            await wait_synced(root)
            async with root.subscribe(buffer=events + 16) as updates:
                print("READY", flush=True)
                cpu = time.process_time()
                async for update in updates:
                    got = len(update.changes)
                    if not stats["messages"]:
                        stats["first"] = time.perf_counter()
                        stats["first_events"] = got
                        stats["first_revision"] = update.revision
                    stats["messages"] += 1
                    stats["events"] += got
                    if stats["events"] >= events:
                        break
            stats.update(last=time.perf_counter(), cpu=time.process_time() - cpu, opened=opened)
            stats["applied"] = root.statistics().events_applied
    return stats


def mount_watch_run(endpoint: str, prefix: str, events: int, mode: str) -> WatchRun:
    """As ``bench_client.watch_run`` (live), with our mounting process as the watcher."""
    common = ["--endpoint", endpoint, "--prefix", prefix, "--events", str(events)]
    with child(["_mounter", *common]) as watcher:
        wait_ready(watcher)
        with bc.child(["_writer", *common, "--mode", mode]) as write:
            bc.last_json(write)
        stats = bc.last_json(watcher)
    counted = stats["events"] - stats["first_events"]
    return WatchRun(
        counted / max(stats["last"] - stats["first"], 1e-9),
        stats["cpu"] / stats["events"] * 1e6,
        stats["cpu"] / stats["messages"] * 1e6,
        stats["messages"],
        stats["first_revision"],
    )


WATCH_CASES = [("live txn", "txn"), ("live single x16", "single")]


def bench_watch(endpoint: str, events: int, repeat: int) -> dict[tuple[str, str], WatchSamples]:
    samples = {(case, c): WatchSamples() for case, _ in WATCH_CASES for c in ("ours", "bare")}
    tag = f"{os.getpid()}-{time.time_ns()}"
    for r in range(repeat):
        for c in ("ours", "bare") if r % 2 == 0 else ("bare", "ours"):
            for case, mode in WATCH_CASES:
                prefix = f"/mwatch/{tag}/{r}/{c}/{mode}/"
                if c == "ours":
                    run = mount_watch_run(endpoint, prefix, events, mode)
                else:
                    run = bc.watch_run(endpoint, "bare", prefix, events, mode, 0)
                samples[case, c].add(run)
            log(
                f"  watch repeat {r + 1}/{repeat} {c}: "
                + ", ".join(
                    f"{case} {samples[case, c].rate[-1]:.0f} ev/s "
                    f"{samples[case, c].cpu_event[-1]:.1f} us/ev"
                    for case, _ in WATCH_CASES
                )
            )
    return samples


# --- (3) change-to-subscriber latency ------------------------------------------------------


async def latency_ours(endpoint: str, prefix: bytes, samples: int) -> list[float]:
    latencies: list[float] = []
    async with (
        et.open_client(endpoint) as client,
        et.mount(client, prefix.rstrip(b"/")) as root,
    ):
        await wait_synced(root)
        async with root.subscribe(buffer=samples + 16) as updates:
            print("READY", flush=True)
            async for update in updates:
                now = time.monotonic()
                latencies.extend(now - float(c.new.value) for c in update.changes if c.new)
                if len(latencies) >= samples:
                    return latencies
    raise RuntimeError("the subscription ended early")


async def latency_bare(endpoint: str, prefix: bytes, samples: int) -> list[float]:
    """bench_client's bare watcher, stamping each event when its value is decoded."""
    latencies: list[float] = []
    b64d = base64.b64decode
    create: Json = {"key": bc.b64e(prefix), "range_end": bc.b64e(bc.prefix_end(prefix))}
    body = json.dumps({"create_request": create}).encode()
    async with (
        bc.bare_http() as http,
        http.stream("POST", endpoint + "/v3/watch", content=body) as response,
    ):
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
                    print("READY", flush=True)
                    continue
                values = [b64d(e["kv"].get("value", "")) for e in result.get("events", ())]
                now = time.monotonic()
                latencies.extend(now - float(v) for v in values if v)
                if len(latencies) >= samples:
                    return latencies
            if begin < len(chunk):
                parts.append(chunk[begin:])
    raise RuntimeError("the watch ended early")


async def ticker(endpoint: str, prefix: bytes, samples: int, interval: float) -> Json:
    """Put ``time.monotonic()`` (taken just before the put) every ``interval`` seconds,
    over one raw HTTP/1.1 connection (the same writer for both subscribers)."""
    conn = await bc.RawHttp.connect(endpoint)
    late = 0
    try:
        start = trio.current_time()
        for i in range(samples):
            due = start + i * interval
            if trio.current_time() > due + interval:
                late += 1
            await trio.sleep_until(due)
            key = prefix + f"k{i % 100}".encode()
            stamp = repr(time.monotonic()).encode()
            await conn.post("/v3/kv/put", json.dumps(bc.put_body(key, stamp)).encode())
    finally:
        await conn.aclose()
    return {"late": late}


def latency_run(endpoint: str, prefix: str, samples: int, interval: float) -> dict[str, Json]:
    """Both subscribers (separate processes) at once on the same prefix, so the same puts
    (and any stall of the server or the writer) reach both."""
    common = ["--endpoint", endpoint, "--prefix", prefix, "--samples", str(samples)]
    with (
        child(["_latency", *common, "--client", "ours"]) as ours,
        child(["_latency", *common, "--client", "bare"]) as bare,
    ):
        wait_ready(ours)
        wait_ready(bare)
        with child(["_ticker", *common, "--interval", str(interval)]) as tick:
            ticks = bc.last_json(tick)
        results = {"ours": bc.last_json(ours), "bare": bc.last_json(bare)}
    for result in results.values():
        result["late"] = ticks["late"]
    return results


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def bench_latency(
    endpoint: str, samples: int, interval: float, repeat: int
) -> dict[str, list[float]]:
    """``repeat`` runs of ``samples`` each; the samples are pooled (ms)."""
    tag = f"{os.getpid()}-{time.time_ns()}"
    out: dict[str, list[float]] = {"ours": [], "bare": []}
    for r in range(repeat):
        results = latency_run(endpoint, f"/mlat/{tag}/{r}/", samples, interval)
        for c, result in results.items():
            got = [x * 1e3 for x in result["latencies"]]
            out[c] += got
            log(
                f"  latency {r + 1}/{repeat} {c}: p50 {percentile(got, 50):.2f} ms, p99 "
                f"{percentile(got, 99):.2f} ms, max {max(got):.2f} ms "
                f"({result['late']} late ticks)"
            )
    return out


# --- children's entry ----------------------------------------------------------------------


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["_mounter", "_memory", "_latency", "_ticker"])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--samples", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--kind", choices=["ours", "bare"], default="ours")
    parser.add_argument("--client", choices=["ours", "bare"], default="ours")
    parser.add_argument("--page-size", type=int, default=10_000)
    parser.add_argument("--traced", action="store_true")
    args = parser.parse_args(argv)
    prefix = args.prefix.encode()
    profile_dir = os.environ.get("BENCH_PROFILE")
    profiler = cProfile.Profile() if profile_dir else None
    if profiler is not None:
        profiler.enable()
    result: Json
    if args.role == "_mounter":
        result = trio.run(mounter, args.endpoint, prefix, args.events)
    elif args.role == "_memory":
        result = trio.run(memory_child, args.endpoint, args.kind, args.page_size, args.traced)
    elif args.role == "_ticker":
        result = trio.run(ticker, args.endpoint, prefix, args.samples, args.interval)
    else:
        measure = latency_ours if args.client == "ours" else latency_bare
        result = {"latencies": trio.run(measure, args.endpoint, prefix, args.samples)}
    if profiler is not None and profile_dir:
        profiler.disable()
        name = f"{args.role.strip('_')}-{args.client}-{args.kind}-{os.getpid()}.prof"
        profiler.dump_stats(os.path.join(profile_dir, name))
    print(json.dumps(result), flush=True)


# --- the report ----------------------------------------------------------------------------


@dataclass
class Check(Row):
    """A table row with its own target: ``time`` ratio <= limit, ``rate`` ratio >= limit,
    ``diff``: ours - baseline <= limit (in the row's unit)."""

    limit: float = 0.0

    def verdict(self) -> str:
        ratio = self.ratio()
        if ratio is None or self.kind == "info":
            return "(info)"
        if self.kind == "time":
            ok, text = ratio <= self.limit, f"<= {self.limit:.2f}"
        elif self.kind == "rate":
            ok, text = ratio >= self.limit, f">= {self.limit:.2f}"
        else:
            ok, text = med(self.ours) - med(self.bare) <= self.limit, f"+{self.limit:g} max"
        return f"{text} {'ok' if ok else 'MISS'}"


@dataclass
class Settings:
    keys: int
    repeat: int  # mount-time repeats
    side_repeat: int  # watch and memory runs
    page_size: int
    events: int
    samples: int
    interval: float


def parse_args(argv: list[str]) -> tuple[Settings, str | None, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, help="keys to mount (default 100000, --quick 10000)")
    parser.add_argument("--repeat", type=int, help="mount-time repeats (default 5, --quick 3)")
    parser.add_argument("--side-repeat", type=int, help="watch/memory repeats (2, --quick 1)")
    parser.add_argument(
        "--page-size", type=int, default=10_000, help="keys per page, both sides (mount's)"
    )
    parser.add_argument("--events", type=int, help="watch events per run (20000, --quick 4000)")
    parser.add_argument("--samples", type=int, help="latency samples (1000, --quick 300)")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between puts")
    parser.add_argument("--endpoints", help="use this etcd instead of starting one")
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--json", metavar="FILE", help=bc.JSON_HELP)
    parser.add_argument(
        "--only",
        default="mount,memory,watch,latency",
        help="comma-separated parts to run (mount,memory,watch,latency)",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    settings = Settings(
        keys=args.keys or (10_000 if quick else 100_000),
        repeat=args.repeat or (3 if quick else 5),
        side_repeat=args.side_repeat or (1 if quick else 2),
        page_size=args.page_size,
        events=args.events or (4_000 if quick else 20_000),
        samples=args.samples or (300 if quick else 1_000),
        interval=args.interval,
    )
    return settings, args.endpoints, args.only.split(",")


def run_all(endpoint: str, s: Settings, parts: list[str]) -> list[Row]:
    rows: list[Row] = []
    if "mount" in parts or "memory" in parts:
        log(f"loading {s.keys} keys ({bc.TXN_OPS}-op txns, {bc.LOAD_TASKS} tasks) ...")
        took = trio.run(bc.load_keys, endpoint, s.keys)
        log(f"  {took:.2f} s, {s.keys / took:.0f} keys/s")
    if "mount" in parts:
        log(f"(1) mount vs bare paged read, {s.keys} keys, pages of {s.page_size}")
        times = trio.run(bench_mount_time, endpoint, s.keys, s.page_size, s.repeat)
        ours, bare = times["ours"], times["bare"]
        rows += [
            Check(f"mount {s.keys} keys vs paged read (s)", ours.wall, bare.wall, 3, "time", 1.5),
            Check("  same, process CPU (s)", ours.cpu, bare.cpu, 3, "info"),
        ]
    if "memory" in parts:
        log(f"(1) memory: tree vs dict of {s.keys} keys, fresh processes")
        mem, heap = bench_memory(endpoint, s.page_size, s.side_repeat)
        grown = {k: [(m["after"] - m["before"]) / 2**20 for m in v] for k, v in mem.items()}
        per_key = {k: [(m["after"] - m["before"]) / m["keys"] for m in v] for k, v in mem.items()}
        trim = {k: [(m["trimmed"] - m["before"]) / m["keys"] for m in v] for k, v in mem.items()}
        peak = {k: [(m["peak"] - m["before"]) / 2**20 for m in v] for k, v in mem.items()}
        rows += [
            Check("resident memory, tree vs dict (MB)", grown["ours"], grown["bare"], 1, "time", 2),
            Check("  bytes per key", per_key["ours"], per_key["bare"], 0, "info"),
            Check("  bytes per key after malloc_trim(0)", trim["ours"], trim["bare"], 0, "info"),
            Check("  peak RSS growth while loading (MB)", peak["ours"], peak["bare"], 1, "info"),
            Check(
                "  live heap, tracemalloc (bytes/key)",
                [heap["ours"] / s.keys],
                [heap["bare"] / s.keys],
                0,
                "time",
                1.3,
            ),
        ]
    if "watch" in parts:
        log(f"(2) watch apply, {s.events} events per run, {s.side_repeat} repeats")
        watch = bench_watch(endpoint, s.events, s.side_repeat)
        for case, _ in WATCH_CASES:
            o, b = watch[case, "ours"], watch[case, "bare"]
            rows += [
                Check(f"apply {case} (events/s)", o.rate, b.rate, 0, "rate", 0.9),
                Check("  CPU per event (us)", o.cpu_event, b.cpu_event, 1, "info"),
                Check("  CPU per message/update (us)", o.cpu_message, b.cpu_message, 1, "info"),
            ]
    if "latency" in parts:
        log(f"(3) latency, {s.side_repeat} x {s.samples} puts every {s.interval * 1e3:g} ms")
        lat = bench_latency(endpoint, s.samples, s.interval, s.side_repeat)
        for p in (50, 90, 99):
            ours_p, bare_p = [percentile(lat["ours"], p)], [percentile(lat["bare"], p)]
            kind = "diff" if p == 99 else "info"
            rows.append(Check(f"latency p{p} (ms)", ours_p, bare_p, 2, kind, 2.0))
        rows.append(Check("latency max (ms)", [max(lat["ours"])], [max(lat["bare"])], 2, "info"))
    return rows


def main(argv: list[str]) -> None:
    if argv and argv[0].startswith("_"):
        child_main(argv)
        return
    settings, endpoints, parts = parse_args(argv)
    started = time.perf_counter()
    with bc.bench_etcd(endpoints) as (endpoint, server):
        rows = run_all(endpoint, settings, parts)
    print()
    print(
        f"trio-etcd-tree mount() vs raw httpx + trio; {server}; python "
        f"{sys.version.split()[0]}, trio {trio.__version__}, httpx {httpx.__version__}, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"keys={settings.keys} page={settings.page_size} mount repeats={settings.repeat} "
        f"watch/memory repeats={settings.side_repeat} events={settings.events} "
        f"latency samples={settings.samples}; median (min-max)"
    )
    bc.print_table(rows)
    bc.print_misses(rows)
    print(f"total {time.perf_counter() - started:.1f} s")
    json_file = bc.json_option(argv)
    if json_file is not None:
        bc.write_json(
            json_file, "bench_mount.py", f"mount() vs raw httpx + trio; {server}", settings, rows
        )


if __name__ == "__main__":
    main(sys.argv[1:])
