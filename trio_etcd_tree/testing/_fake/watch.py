"""The watch service of the fake: ``/v3/watch`` streams, their watchers, catch-up from history,
progress notifications, and the ways a stream can end (cleanly, cut mid-line, or with an
in-stream error)."""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Literal, TypeAlias

import httpx
import trio

from .auth import Auth
from .cluster import Cluster
from .gateway import Ctx, Fields, Json, dumps, event_json, parse_stream, result_line
from .store import Event, FakeError, in_range

FILTER_TYPES = ("NOPUT", "NODELETE")
WATCH_PERMISSION_DENIED = "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
BROKEN_BODY = (
    "peer closed connection without sending complete message body (incomplete chunked read)"
)
STREAM_ERROR_CODE, STREAM_ERROR_TEXT = 14, "error reading from server: EOF"
STREAM_ERROR = {
    "grpc_code": STREAM_ERROR_CODE,
    "http_code": 503,
    "message": STREAM_ERROR_TEXT,
    "http_status": "Service Unavailable",
}
"""The in-stream error a broken watch stream ends with (``Break`` "error")."""

Break: TypeAlias = Literal["mid-line", "eof", "error"]


@dataclass
class _Watcher:
    id: int
    key: bytes
    range_end: bytes
    next_rev: int
    prev_kv: bool
    progress_notify: bool
    filters: frozenset[int]
    quiet: bool = True  # no events sent since the last progress tick

    def select(self, events: list[Event]) -> list[Event]:
        return [
            ev
            for ev in events
            if in_range(ev.kv.key, self.key, self.range_end)
            and (0 if ev.type == "PUT" else 1) not in self.filters
        ]


class Watches:
    """The open watch streams of every member, fed by the store's commits."""

    def __init__(
        self, cluster: Cluster, auth: Auth, nursery: trio.Nursery, progress_interval: float
    ) -> None:
        self.cluster = cluster
        self._auth = auth
        self._nursery = nursery
        self._progress_interval = progress_interval
        self.streams: set[WatchStream] = set()
        self.chunk_size: int | None = None
        cluster.store.listeners.append(self._on_commit)

    def _on_commit(self, revision: int, events: list[Event]) -> None:
        for stream in list(self.streams):
            stream.on_commit(revision, events)

    async def open(self, ctx: Ctx, body: bytes, request: httpx.Request) -> httpx.Response:
        """``/v3/watch``: serve the requests of the body; answer once the first message is out."""
        requests = parse_stream(body)
        try:
            first = next(requests, None)
        except FakeError as exc:
            raise FakeError(2, exc.message) from None
        stream = self.new_stream(ctx.member)
        try:
            for obj in itertools.chain([first] if first is not None else [], requests):
                self.request(ctx, stream, Fields(obj))
        except FakeError:
            pass  # the gateway stops reading the body; the stream goes on
        await stream.wait_first(request)
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=stream)

    def new_stream(self, member: int) -> WatchStream:
        """A new watch stream of ``member`` (its progress ticker started); the gateway's
        ``/v3/watch`` body and the gRPC Watch call each have one."""
        stream = WatchStream(self, member)
        self.streams.add(stream)
        self._nursery.start_soon(stream.tick_progress, self._progress_interval)
        return stream

    def request(self, ctx: Ctx, stream: WatchStream, f: Fields) -> None:
        """Serve one WatchRequest: create, cancel, or ask for progress."""
        if (create := f.msg("create_request")) is not None:
            stream.create(create, self._permitted(ctx, create))
        elif (cancel := f.msg("cancel_request")) is not None:
            stream.cancel(cancel)
        elif f.msg("progress_request") is not None:
            stream.emit({"header": stream.header(), "watch_id": "-1"})

    def _permitted(self, ctx: Ctx, create: Fields) -> bool:
        try:
            self._auth.check(
                ctx, [(create.get_bytes("key"), create.get_bytes("range_end"), "read")]
            )
        except FakeError:
            return False
        return True


class WatchStream(httpx.AsyncByteStream):
    """One ``/v3/watch`` response: its watchers and the channel of lines waiting to be read."""

    def __init__(self, watches: Watches, member: int) -> None:
        self.watches = watches
        self.member = member
        self.watchers: dict[int, _Watcher] = {}
        self.next_id = 0
        self.stalled = False
        self.frozen: list[Json] | None = None  # held while the member is frozen
        self.ended = False
        self.send, self.receive = trio.open_memory_channel[Json | Break](math.inf)
        """The answers (``WatchResponse`` as proto3 JSON) and, last, how the stream ends."""
        self.first: Json | Break | None = None
        self.ticker = trio.CancelScope()

    # -- producing

    def emit(self, result: Json) -> None:
        if self.frozen is not None:
            self.frozen.append(result)
        elif not (self.stalled or self.ended):
            self.send.send_nowait(result)

    def freeze(self) -> None:
        """Hold every message from now on, until :meth:`thaw`."""
        if self.frozen is None:
            self.frozen = []

    def thaw(self) -> None:
        held, self.frozen = self.frozen or [], None
        for result in held:  # (an ended stream is no longer among the open streams)
            self.send.send_nowait(result)

    def end(self, how: Break | None) -> None:
        """Stop serving: drop the watchers, and end the body the given way (None = plain EOF)."""
        if self.ended:
            return
        self.ended = True
        self.watches.streams.discard(self)
        self.ticker.cancel()
        self.send.send_nowait(how or "eof")
        self.send.close()

    def header(self, revision: int | None = None) -> Json:
        return self.watches.cluster.header(self.member, revision)

    def create(self, f: Fields, auth_ok: bool) -> None:
        """Handle a ``create_request``."""
        key, end = f.get_bytes("key"), f.get_bytes("range_end")
        wid, start = f.get_int("watch_id"), f.get_int("start_revision")
        prev_kv, progress = f.get_bool("prev_kv"), f.get_bool("progress_notify")
        filters = frozenset(
            Fields({"filter": x}).enum("filter", FILTER_TYPES, "WatchCreateRequest.FilterType")
            for x in f.raw("filters") or []
        )
        out: Json = {"header": self.header()}
        if not auth_ok:
            if wid:
                out["watch_id"] = str(wid)
            reason = WATCH_PERMISSION_DENIED
            self.emit({**out, "created": True, "canceled": True, "cancel_reason": reason})
            return
        if wid and wid in self.watchers:
            reason = "mvcc: duplicate watch ID provided on the WatchStream"
            out |= {"watch_id": "-1", "created": True, "canceled": True, "cancel_reason": reason}
            self.emit(out)
            return
        if wid == 0:
            while self.next_id in self.watchers:
                self.next_id += 1
            wid = self.next_id
            self.next_id += 1
        store = self.watches.cluster.store
        w = _Watcher(wid, key, end, start or store.revision + 1, prev_kv, progress, filters)
        if wid:
            out["watch_id"] = str(wid)
        self.emit({**out, "created": True})
        if w.next_rev < store.compact_revision:
            compacted: Json = {"header": self.header()}
            del compacted["header"]["revision"]
            if wid:
                compacted["watch_id"] = str(wid)
            compacted |= {"canceled": True, "compact_revision": str(store.compact_revision)}
            self.emit(compacted)
            return
        self.watchers[wid] = w
        self.catch_up(w)

    def catch_up(self, w: _Watcher) -> None:
        """Send the history from ``w.next_rev`` on, at most 1000 revisions a message."""
        store = self.watches.cluster.store
        batch: list[Event] = []
        revs = 0
        for _rev, events in store.events(w.next_rev, store.revision):
            mine = [ev for ev in events if in_range(ev.kv.key, w.key, w.range_end)]
            if not mine:
                continue
            batch += mine
            revs += 1
            if revs == 1000:
                self.deliver(w, batch, store.revision)
                batch, revs = [], 0
        self.deliver(w, batch, store.revision)
        w.next_rev = max(w.next_rev, store.revision + 1)

    def deliver(self, w: _Watcher, events: list[Event], revision: int) -> None:
        """Send ``events`` (already in range) to ``w``, after its filters."""
        events = w.select(events)
        if not events:
            return
        compact = self.watches.cluster.store.compact_revision
        out: Json = {"header": self.header(revision)}
        if w.id:
            out["watch_id"] = str(w.id)
        out["events"] = [
            event_json(
                ev,
                ev.prev_kv
                if w.prev_kv
                and ev.prev_kv is not None
                and not (ev.type == "PUT" and ev.kv.version == 1)
                and ev.kv.mod_revision - 1 >= compact
                else None,
            )
            for ev in events
        ]
        w.quiet = False
        self.emit(out)

    def on_commit(self, revision: int, events: list[Event]) -> None:
        for w in list(self.watchers.values()):
            if w.next_rev <= revision:
                self.deliver(w, events, revision)
                w.next_rev = revision + 1

    def cancel(self, f: Fields) -> None:
        wid = f.get_int("watch_id")
        if self.watchers.pop(wid, None) is not None:
            out: Json = {"header": self.header()}
            if wid:
                out["watch_id"] = str(wid)
            self.emit({**out, "canceled": True})

    async def tick_progress(self, interval: float) -> None:
        """Every ``interval`` seconds, a progress notification to each quiet watcher that asked."""
        with self.ticker:
            while True:
                await trio.sleep(interval)
                for w in list(self.watchers.values()):
                    if w.progress_notify and w.quiet:
                        out: Json = {"header": self.header()}
                        if w.id:
                            out["watch_id"] = str(w.id)
                        self.emit(out)
                    w.quiet = True

    # -- consuming

    async def wait_first(self, request: httpx.Request) -> None:
        """Wait for the first message: the response headers only go out with it."""
        self.first = await self.receive.receive()  # a stream always ends with a Break item
        if not isinstance(self.first, dict):
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )

    def _chunks(self, data: bytes) -> Iterator[bytes]:
        size = self.watches.chunk_size
        if not size:
            yield data
            return
        for i in range(0, len(data), size):
            yield data[i : i + size]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        item = self.first
        while item != "eof":
            if item == "mid-line":
                yield b'{"result":{"header":{"cluster_id":"'
                raise httpx.RemoteProtocolError(BROKEN_BODY)
            if item == "error":
                yield dumps({"error": STREAM_ERROR}) + b"\n"
                return
            assert isinstance(item, dict)
            for chunk in self._chunks(result_line(item)):
                yield chunk
            item = await self.receive.receive()

    async def aclose(self) -> None:
        self.end(None)
        self.receive.close()
