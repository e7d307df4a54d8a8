"""One HTTP/2 server connection of the fake's gRPC front (hyper-h2, server side) over a trio
byte stream: the calls it receives, and the frames it sends back.

It does what grpc-go does on etcd's client port, and only that: answers each call with
response headers, its messages and trailers (``grpc-status`` 0), or with "trailers-only" for
an error; honours the client's flow-control windows; answers PINGs (unless told not to);
finishes the streams a GOAWAY left open and then closes. A frozen member neither reads nor
writes (the bytes wait in the stream, as in a stopped process's socket buffers).

What a call means is the :class:`~.grpc_front.GrpcFront`'s business: this module only hands
it each new call (:class:`ServerCall`) and sends what it is given.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame
import trio

from .grpc_dialect import frame, grpc_message

_READ_SIZE: Final = 65536
_RESPONSE_HEADERS: Final = [(b":status", b"200"), (b"content-type", b"application/grpc")]
MAX_STREAMS: Final = 2**32 - 1
"""etcd's ``--max-concurrent-streams`` default: no limit of its own."""


class _H2Server(h2.connection.H2Connection):
    """hyper-h2's server connection, which can be told to leave PINGs unanswered."""

    ignore_pings: Callable[[], bool] = staticmethod(lambda: False)

    def _receive_ping_frame(
        self, frame: hyperframe.frame.PingFrame
    ) -> tuple[list[hyperframe.frame.Frame], list[h2.events.Event]]:
        frames, events = super()._receive_ping_frame(frame)
        return ([] if self.ignore_pings() else frames), events


class ServerCall:
    """One stream of a :class:`ServerConnection`: the request's headers, the messages read
    so far, and whether the client ended or reset it."""

    def __init__(self, connection: ServerConnection, stream_id: int, headers: dict[bytes, bytes]):
        self.connection = connection
        self.id = stream_id
        self.path = headers.get(b":path", b"").decode()
        token = headers.get(b"token")
        self.token = None if token is None else token.decode()
        self.messages: deque[bytes] = deque()
        self.half_closed = False  # the client sent END_STREAM
        self.reset = False  # the client reset it (or the connection ended)
        self.refused = False  # above a GOAWAY's last stream id: must not be processed
        self.gone = trio.Event()  # set with ``reset``
        self.headers_sent = False
        self.done = False  # we ended it
        self._buffer = bytearray()
        self._changed = trio.Event()

    def feed(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        while len(buf) >= 5 and len(buf) >= 5 + int.from_bytes(buf[1:5], "big"):
            size = int.from_bytes(buf[1:5], "big")
            self.messages.append(bytes(buf[5 : 5 + size]))
            del buf[: 5 + size]
        self.notify()

    def notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def drop(self) -> None:
        """The client reset the stream, or the connection ended."""
        self.reset = True
        self.gone.set()
        self.notify()

    async def next_message(self) -> bytes | None:
        """The next request message; None once the client ended its side. (A reset
        stream waits: its server task is cancelled through ``gone``.)"""
        while not self.messages:
            if self.half_closed:
                return None
            await self._changed.wait()
        return self.messages.popleft()

    async def whole_request(self) -> bytes | None:
        """A unary call's request message, once the client ended its side; None if it
        reset the stream first (the request never arrived whole)."""
        while not (self.half_closed or self.reset):
            await self._changed.wait()
        if self.reset:
            return None
        return self.messages.popleft() if self.messages else b""

    def is_open(self) -> bool:
        return not (self.reset or self.done or self.connection.closed)


class ServerConnection:
    """The server side of one HTTP/2 connection; :meth:`run` serves it until it ends."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        member: int,
        on_call: Callable[[ServerCall], None],
        ignore_pings: Callable[[], bool],
        wait_thawed: Callable[[], Awaitable[None]],
    ) -> None:
        self.member = member
        self._stream = stream
        self._on_call = on_call
        self._wait_thawed = wait_thawed
        self.h2 = _H2Server(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.h2.ignore_pings = ignore_pings
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS},
        )
        self.calls: dict[int, ServerCall] = {}
        self.last_stream_id = 0  # the highest stream id received
        self.goaway_last: int | None = None  # GOAWAY sent: streams above it are ignored
        self.closed = False
        self._send_lock = trio.Lock()
        self._capacity = trio.Event()
        self._cancel = trio.CancelScope()

    # ---- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Read and dispatch frames until the client closes, or :meth:`abort`."""
        try:
            with self._cancel:
                self.h2.initiate_connection()
                await self.flush()
                await self._read()
        finally:
            self.closed = True
            for call in list(self.calls.values()):
                call.drop()
            self._capacity.set()
            await trio.aclose_forcefully(self._stream)

    def abort(self) -> None:
        """Drop the connection at once (the client sees it closed; nothing more is sent)."""
        self.closed = True
        self._cancel.cancel()

    async def _read(self) -> None:
        while True:
            data = await self._stream.receive_some(_READ_SIZE)  # (in memory: never fails)
            if not data:
                return
            await self._wait_thawed()  # a frozen member reads nothing
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                return  # not HTTP/2 (grpc-go closes such a connection)
            for event in events:
                self._event(event)
            await self.flush()

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self.last_stream_id = event.stream_id
            if self.goaway_last is not None and event.stream_id > self.goaway_last:
                return  # after GOAWAY: never processed (the client knows)
            call = self.calls[event.stream_id] = ServerCall(
                self, event.stream_id, dict(event.headers or [])
            )
            self._on_call(call)
            return
        found = self.calls.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if found is not None:
                found.feed(event.data or b"")
        elif isinstance(event, h2.events.StreamEnded) and found is not None:
            found.half_closed = True
            found.notify()
        elif isinstance(event, h2.events.StreamReset) and found is not None:
            found.drop()
            self._forget(found)
            self._close_if_drained()
            self._more_capacity()  # (a sender waiting for its window looks again)
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._more_capacity()

    def _more_capacity(self) -> None:
        self._capacity.set()
        self._capacity = trio.Event()

    # ---- sending ---------------------------------------------------------------------------

    async def flush(self, extra: bytes = b"") -> None:
        """Send what h2 has queued (and ``extra`` raw bytes after it); a frozen member
        sends nothing until it is thawed."""
        async with self._send_lock:
            await self._wait_thawed()
            data = self.h2.data_to_send() + extra
            if data and not self.closed:
                # once taken from h2 the bytes must go out (its header compression state
                # already counts them): a cancelled sender still sends them
                with trio.CancelScope(shield=True):
                    try:
                        await self._stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self.abort()

    def _headers(self, call: ServerCall) -> None:
        if not call.headers_sent:
            call.headers_sent = True
            self.h2.send_headers(call.id, _RESPONSE_HEADERS)

    async def send(self, call: ServerCall, message: bytes, *, last: bool = False) -> None:
        """Send one message on ``call`` (and end it with status 0 if ``last``); nothing
        if the call or the connection is gone. Waits for the client's flow-control window."""
        if not call.is_open():
            return
        self._headers(call)
        data, offset = frame(message), 0
        while offset < len(data):
            if not call.is_open():
                return
            window = self.h2.local_flow_control_window(call.id)
            size = min(window, self.h2.max_outbound_frame_size, len(data) - offset)
            if size <= 0:
                capacity = self._capacity
                await self.flush()
                await capacity.wait()
                continue
            self.h2.send_data(call.id, data[offset : offset + size])
            offset += size
        if last:
            self._end(call, [(b"grpc-status", b"0")])
        await self._flush_and_drain()

    async def finish(self, call: ServerCall, code: int, message: str) -> None:
        """End ``call`` with a status (trailers-only if nothing was sent on it)."""
        if not call.is_open():
            return
        status = [(b"grpc-status", str(code).encode()), (b"grpc-message", grpc_message(message))]
        self._end(call, status if call.headers_sent else [*_RESPONSE_HEADERS, *status])
        await self._flush_and_drain()

    def _end(self, call: ServerCall, headers: list[tuple[bytes, bytes]]) -> None:
        call.headers_sent = True
        self.h2.send_headers(call.id, headers, end_stream=True)
        self._done(call)

    async def reset(self, call: ServerCall, code: int) -> None:
        """RST_STREAM ``call`` with the HTTP/2 error ``code``."""
        if not call.is_open():
            return
        self.h2.reset_stream(call.id, code)
        self._done(call)
        await self._flush_and_drain()

    async def cut(self, call: ServerCall, message: bytes) -> None:
        """Send half of a DATA frame carrying ``message``, then drop the connection."""
        if call.is_open():
            await self.flush()
            self._headers(call)
            chunk = frame(message)[: self.h2.max_outbound_frame_size]
            self.h2.send_data(call.id, chunk)
            raw = self.h2.data_to_send()
            await self.flush(raw[: len(raw) - (len(chunk) + 1) // 2])
        self.abort()

    async def goaway(self, last_stream_id: int | None, code: int, debug: bytes) -> None:
        """Send GOAWAY: the streams up to ``last_stream_id`` (default: every one received)
        are finished, the ones above it are not processed; the connection closes once
        the finished ones are done."""
        last = self.last_stream_id if last_stream_id is None else last_stream_id
        self.goaway_last = last
        for call in list(self.calls.values()):
            if call.id > last:
                call.refused = True  # (the client fails it as never processed)
                call.drop()
                self._forget(call)
        goaway = hyperframe.frame.GoAwayFrame(
            0, last_stream_id=last, error_code=code, additional_data=debug
        )
        await self.flush(goaway.serialize())
        self._close_if_drained()

    def _done(self, call: ServerCall) -> None:
        """We ended ``call``: its server task ends too (through ``gone``)."""
        call.done = True
        call.gone.set()
        self._forget(call)

    def _forget(self, call: ServerCall) -> None:
        self.calls.pop(call.id, None)

    async def _flush_and_drain(self) -> None:
        await self.flush()
        self._close_if_drained()

    def _close_if_drained(self) -> None:
        """After GOAWAY, close once the last stream it let finish is done (grpc-go)."""
        if self.goaway_last is not None and not self.calls:
            self.abort()
