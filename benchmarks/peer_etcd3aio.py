#!/usr/bin/env python
"""etcd3aio's side of ``bench_peers.py``, one measurement per process.

etcd3aio's generated ``_pb2`` modules register the same protobuf names as aetcd's, so the two
cannot be imported into one process; ``bench_peers.py`` runs this script once per round
and row instead, between its in-process rows, and reads one JSON line from its output::

    python benchmarks/peer_etcd3aio.py read ENDPOINT
    python benchmarks/peer_etcd3aio.py puts ENDPOINT COUNT TASKS
    python benchmarks/peer_etcd3aio.py latency ENDPOINT COUNT
    python benchmarks/peer_etcd3aio.py watch ENDPOINT COUNT

``watch`` prints ``ready`` once its watch is created, then counts COUNT single-event
messages written by the parent (another process: this process's CPU is the watcher's
alone, grpc's C-core threads included) and prints its CPU per message.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

# (not a project dependency: imported by name, so that type checks run without it)
etcd3aio: Any = importlib.import_module("etcd3aio")

PREFIX = b"/bench/"
END = b"/bench0"
WATCH_PREFIX = b"/watchbench/"


def _client(endpoint: str) -> Any:
    client = etcd3aio.Etcd3Client([endpoint.removeprefix("http://")])
    # a 100k-key range is ~8 MB, over grpc's default 4 MiB receive limit (as for aetcd)
    client._manager.grpc_options.append(("grpc.max_receive_message_length", 64 << 20))
    return client


async def read(endpoint: str) -> dict[str, float]:
    async with _client(endpoint) as client:
        await client.kv.get(b"/warm-up")
        gc.collect()
        started = time.perf_counter()
        result = await client.kv.get(PREFIX, range_end=END)
        data = {kv.key: kv.value for kv in result.kvs}
        return {"seconds": time.perf_counter() - started, "keys": len(data)}


async def puts(endpoint: str, count: str, tasks: str) -> dict[str, float]:
    n, t = int(count), int(tasks)
    async with _client(endpoint) as client:
        await client.kv.put(b"/put-warm", b"x")
        started = time.perf_counter()

        async def worker(first: int) -> None:
            for i in range(first, n, t):
                await client.kv.put(b"/putbench/%d" % i, b"x" * 40)

        await asyncio.gather(*(worker(first) for first in range(t)))
        return {"rate": n / (time.perf_counter() - started)}


async def latency(endpoint: str, count: str) -> dict[str, list[float]]:
    key = WATCH_PREFIX + b"elat"
    out: list[float] = []
    async with _client(endpoint) as client:
        revision = (await client.kv.put(key, b"start")).header.revision
        events = client.watch.watch(key, start_revision=revision + 1)
        assert (await events.__anext__()).created
        for i in range(int(count)):
            started = time.perf_counter()
            await client.kv.put(key, b"%d" % i)
            await events.__anext__()
            out.append(time.perf_counter() - started)
        await events.aclose()
    return {"seconds": out}


async def watch(endpoint: str, count: str) -> dict[str, float]:
    key = WATCH_PREFIX + b"ecpu"
    n = int(count)
    async with _client(endpoint) as client:
        revision = (await client.kv.put(key, b"start")).header.revision
        events = client.watch.watch(key, start_revision=revision + 1)
        assert (await events.__anext__()).created
        cpu = time.process_time()
        print("ready", flush=True)
        messages = received = 0
        while received < n:
            received += len((await events.__anext__()).events)
            messages += 1
        cpu = time.process_time() - cpu
        await events.aclose()
        return {"cpu_per_message": cpu / messages, "messages": messages}


def main() -> None:
    row, *args = sys.argv[1:]
    rows: dict[str, Callable[..., Coroutine[Any, Any, object]]] = {
        "read": read,
        "puts": puts,
        "latency": latency,
        "watch": watch,
    }
    fn = rows[row]
    print(json.dumps(asyncio.run(fn(*args))), flush=True)


if __name__ == "__main__":
    main()
