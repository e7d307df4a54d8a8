"""etcdmon: print every change under a path, one line each, across reconnects."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

import trio

from .._client import Client, ConnectionState, WatchStream
from .._core.errors import CompactedError, UnavailableError
from .._core.keys import show_bytes, subtree_path, subtree_range, subtree_segments
from .._core.types import Event, EventType
from . import common, output

EXAMPLES = """\
  etcdmon /cfg                        # from now on: REVISION ACTION KEY VALUE
  etcdmon /cfg --prev                 # with the old value of every change: ... (was OLD)
  etcdmon /cfg --from-revision 1200   # replay the history from revision 1200 first
  etcdmon /cfg -w json                # JSON lines: revision, action, key, value, prev_value

PATH /cfg covers the key /cfg and every key under /cfg/, never /cfgother.
output: one line per change, full keys; a DELETE shows the old value. A key or value that
is not a plain word is double-quoted with escapes ("hello world", "a\\nb", "\\xff" for a
byte that is not UTF-8), so every line reads one way. In JSON a key or value that is not
UTF-8 is given as key_base64 / value_base64 instead.
stderr: where it connected and the revision it starts at; each failed attempt to connect;
connection loss and reconnection, with the revision it resumes at; a compacted start
revision (or a gap after a long outage) is reported and the watch continues from the
current revision. No change is printed twice.
"""


def _parser() -> common.Parser:
    p = common.parser(
        "etcdmon",
        "Print every change of the keys under PATH.",
        EXAMPLES,
        outputs=("simple", "json"),
    )
    p.add_argument("prefix", metavar="PATH", help='the subtree, e.g. "/cfg"')
    p.add_argument("--json", action="store_true", help="the same as -w json")
    p.add_argument(
        "--from-revision",
        type=common.positive("revision"),
        default=0,
        metavar="N",
        help="replay from N",
    )
    p.add_argument("--prev", action="store_true", help="show old values of changes too")
    return p


def format_event(event: Event, revision: int, *, prev: bool = False, as_json: bool = False) -> str:
    """One change as etcdmon prints it."""
    old = event.prev_kv.value if event.prev_kv is not None else None
    action = event.type.name
    if as_json:
        record: dict[str, object] = {"revision": revision, "action": action}
        output.json_field(record, "key", event.kv.key)
        if event.type is EventType.PUT:
            output.json_field(record, "value", event.kv.value)
        if prev or event.type is EventType.DELETE:
            output.json_field(record, "prev_value", old)
        return json.dumps(record, ensure_ascii=False)
    head = f"{revision} {action} {show_bytes(event.kv.key)}"
    if event.type is EventType.DELETE:
        return head if old is None else f"{head} {show_bytes(old)}"
    line = f"{head} {show_bytes(event.kv.value)}"
    if prev:
        line += " (new)" if old is None else f" (was {show_bytes(old)})"
    return line


def _say(err: TextIO, text: str) -> None:
    print(f"etcdmon: {text}", file=err, flush=True)


async def _report(stream: WatchStream, err: TextIO) -> None:
    state = stream.state
    while True:
        state = await stream.wait_state_change(state)
        st = stream.statistics()
        if state is ConnectionState.CONNECTING:
            _say(
                err,
                f"connection lost ({st.last_error}); "
                f"reconnecting, to resume at revision {st.next_revision}",
            )
        elif state is ConnectionState.CONNECTED:
            _say(err, f"reconnected to {st.endpoint}, resumed at revision {st.next_revision}")
        else:
            return


async def _current_revision(client: Client, start: tuple[bytes, bytes], err: TextIO) -> int:
    """The store's revision, asking until a server answers (saying so each time not)."""
    delay = 1.0
    while True:
        try:
            result = await client.range(start[0], start[1], count_only=True)
        except UnavailableError as exc:
            _say(err, f"cannot connect: {common.one_line(exc)}; trying again in {delay:.0f} s")
            await trio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        return result.header.revision


async def monitor(
    client: Client,
    prefix: bytes | str,
    out: TextIO,
    err: TextIO,
    *,
    from_revision: int = 0,
    prev: bool = False,
    as_json: bool = False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Print every change under the path ``prefix`` until cancelled (see the module docs)."""
    path = subtree_path(prefix)
    start, end = subtree_range(path)
    revision = await _current_revision(client, (start, end), err)
    next_revision = from_revision or revision + 1
    shown = show_bytes(path or b"/")
    started = False
    while True:
        try:
            async with client.watch(
                start, end, prev_kv=True, start_revision=next_revision
            ) as stream:
                if not started:
                    started = True
                    _say(
                        err,
                        f"connected to {stream.statistics().endpoint}; watching {shown} "
                        f"from revision {next_revision}",
                    )
                    task_status.started()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_report, stream, err)
                    async for response in stream:
                        for event in response.events:
                            rev = event.kv.mod_revision
                            if subtree_segments(path, event.kv.key) is not None:
                                print(
                                    format_event(event, rev, prev=prev, as_json=as_json), file=out
                                )
                            next_revision = rev + 1
                        out.flush()
        except CompactedError as exc:
            if exc.compact_revision is not None:
                resume = exc.compact_revision + 1
            else:  # pragma: no cover -- watches always say where the history starts
                resume = (await client.range(start, end, count_only=True)).header.revision + 1
            _say(
                err,
                f"revision {next_revision} is compacted (up to {exc.compact_revision}); "
                f"resync: continuing at revision {resume}, changes before it are not shown",
            )
            next_revision = resume


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup = common.usage("etcdmon", lambda: common.settings(args))
    form = common.usage(
        "etcdmon", lambda: common.write_out(args, "json" if args.json else "simple")
    )

    async def run() -> int:
        async with common.connect(setup) as client:
            await monitor(
                client,
                args.prefix,
                sys.stdout,
                sys.stderr,
                from_revision=args.from_revision,
                prev=args.prev,
                as_json=form == "json",
            )
        return 0  # pragma: no cover -- monitor runs until interrupted or an error

    return common.run("etcdmon", run, endpoints=setup.endpoints)
