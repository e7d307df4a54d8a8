"""etcdmon: print every change under a prefix, one line each, across reconnects."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Sequence
from typing import TextIO

import trio

from .._client import Client, ConnectionState, WatchStream
from .._errors import CompactedError
from .._types import Event, EventType
from .._yaml import show
from . import common

EXAMPLES = """\
  etcdmon /cfg/                       # from now on: REVISION ACTION KEY VALUE
  etcdmon /cfg/ --prev                # with the old value of every change: ... (was OLD)
  etcdmon /cfg/ --from-revision 1200  # replay the history from revision 1200 first
  etcdmon /cfg/ --json                # JSON lines: revision, action, key, value, prev_value

output: one line per change, keys relative to PREFIX; a DELETE shows the old value.
Keys and values that are not printable are quoted with escapes ("a b", b'\\xff'); in JSON
a non-UTF-8 key or value is given as key_base64 / value_base64 instead.
stderr: connection loss and reconnection, with the revision it resumes at; a compacted
start revision (or a gap after a long outage) is reported and the watch continues from
the current revision. No change is printed twice.
"""


def _parser() -> argparse.ArgumentParser:
    p = common.parser("etcdmon", "Print every change of the keys under PREFIX.", EXAMPLES)
    p.add_argument("prefix", metavar="PREFIX", help='the key prefix, e.g. "/cfg/"')
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--from-revision", type=int, default=0, metavar="N", help="replay from N")
    p.add_argument("--prev", action="store_true", help="show old values of changes too")
    return p


def _field(record: dict[str, object], name: str, data: bytes | None) -> None:
    if data is None:
        record[name] = None
        return
    try:
        record[name] = data.decode()
    except UnicodeDecodeError:
        record[f"{name}_base64"] = base64.b64encode(data).decode()


def format_event(
    event: Event, revision: int, prefix: bytes, *, prev: bool = False, as_json: bool = False
) -> str:
    """One change as etcdmon prints it."""
    key = event.kv.key[len(prefix) :]
    old = event.prev_kv.value if event.prev_kv is not None else None
    action = event.type.name
    if as_json:
        record: dict[str, object] = {"revision": revision, "action": action}
        _field(record, "key", key)
        if event.type is EventType.PUT:
            _field(record, "value", event.kv.value)
        if prev or event.type is EventType.DELETE:
            _field(record, "prev_value", old)
        return json.dumps(record, ensure_ascii=False)
    head = f"{revision} {action} {show(key)}"
    if event.type is EventType.DELETE:
        return head if old is None else f"{head} {show(old)}"
    line = f"{head} {show(event.kv.value)}"
    if prev:
        line += " (new)" if old is None else f" (was {show(old)})"
    return line


async def _report(stream: WatchStream, err: TextIO) -> None:
    state = stream.state
    while True:
        state = await stream.wait_state_change(state)
        st = stream.statistics()
        if state is ConnectionState.CONNECTING:
            print(
                f"etcdmon: connection lost ({st.last_error}); "
                f"reconnecting, to resume at revision {st.next_revision}",
                file=err,
                flush=True,
            )
        elif state is ConnectionState.CONNECTED:
            print(
                f"etcdmon: reconnected to {st.endpoint}, resumed at revision {st.next_revision}",
                file=err,
                flush=True,
            )
        else:
            return


async def monitor(
    client: Client,
    prefix: bytes,
    out: TextIO,
    err: TextIO,
    *,
    from_revision: int = 0,
    prev: bool = False,
    as_json: bool = False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Print every change under ``prefix`` until cancelled (see the module docs)."""
    start = from_revision
    started = False
    while True:
        try:
            async with client.watch(prefix, prefix=True, prev_kv=True, start_revision=start) as s:
                if not started:
                    started = True
                    task_status.started()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_report, s, err)
                    async for response in s:
                        for event in response.events:
                            rev = event.kv.mod_revision
                            print(
                                format_event(event, rev, prefix, prev=prev, as_json=as_json),
                                file=out,
                            )
                            start = rev + 1
                        out.flush()
        except CompactedError as exc:
            if exc.compact_revision is not None:
                resume = exc.compact_revision + 1
            else:  # pragma: no cover -- watches always say where the history starts
                resume = (await client.range(prefix, count_only=True)).header.revision + 1
            print(
                f"etcdmon: revision {start} is compacted (up to {exc.compact_revision}); "
                f"resync: continuing at revision {resume}, changes before it are not shown",
                file=err,
                flush=True,
            )
            start = resume


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    async def run() -> int:
        async with common.connect(args) as client:
            await monitor(
                client,
                args.prefix.encode(),
                sys.stdout,
                sys.stderr,
                from_revision=args.from_revision,
                prev=args.prev,
                as_json=args.json,
            )
        return 0  # pragma: no cover -- monitor runs until interrupted or an error

    return common.run("etcdmon", run)
