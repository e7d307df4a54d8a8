#!/usr/bin/env python
"""etcd3aio's read and puts rows of ``bench_peers.py``, one measurement per process.

etcd3aio's generated ``_pb2`` modules register the same protobuf names as aetcd's, so the two
cannot be imported into one process; ``bench_peers.py`` runs this script once per round
and row instead (beside its in-process rows; its watch and latency rows run every watcher
in a process of its own anyway) and reads one JSON line from its output::

    python benchmarks/peer_etcd3aio.py read ENDPOINT
    python benchmarks/peer_etcd3aio.py puts ENDPOINT COUNT TASKS
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


def main() -> None:
    row, *args = sys.argv[1:]
    rows: dict[str, Callable[..., Coroutine[Any, Any, object]]] = {
        "read": read,
        "puts": puts,
    }
    fn = rows[row]
    print(json.dumps(asyncio.run(fn(*args))), flush=True)


if __name__ == "__main__":
    main()
