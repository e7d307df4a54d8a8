"""One HTTP/2 connection to one etcd member, carrying gRPC calls: trio and our own framing.

What etcd's client port accepts (probed on 3.4 and 3.5, see REFERENCE.md part 3): HTTP/2
with prior knowledge on a plaintext port (its cmux hands every HTTP/2 connection to grpc-go),
or TLS with ALPN ``h2``. A call is ``POST /<service>/<method>`` with ``content-type:
application/grpc`` and ``te: trailers``; each message is framed as one flag byte (0: not
compressed), a 4-byte big-endian length and the protobuf bytes. The answer ends with trailers
holding ``grpc-status`` (and a percent-encoded ``grpc-message``); an error of a unary call
usually comes "trailers-only": one HEADERS frame with the status and no body.

The client side of HTTP/2 is ours (:mod:`.frames`, :mod:`.headers`): a gRPC client needs a
small part of it, and hyper-h2's general state machine cost half the client CPU of a small
call. What it does: the preface and SETTINGS (and their ACK), the peer's
MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE and MAX_FRAME_SIZE, flow control both ways, HEADERS
with CONTINUATION and padding, PING and PING ACK, RST_STREAM both ways, GOAWAY. What it does
not, as a gRPC server does not use it: server push (refused in our SETTINGS, a PUSH_PROMISE
is a protocol error), priorities (ignored), informational (1xx) answers (an answer that is
not ``200`` fails its call). Unknown frame types and settings are ignored (RFC 9113 section
4.1 and 6.5.2). Any other breach of the protocol by the peer ends the connection with an
``HTTP/2 protocol error`` (every call on it fails as lost): it never hangs a call.

The connection owns three tasks:

* a **reader** that parses every frame and hands the messages to their streams (no call ever
  reads the socket for another: one stuck stream cannot hold up the others, the trap that
  makes httpx's HTTP/2 unusable for gRPC);
* a **writer** that sends the queued frames, so that calls (and cancellations, which must
  send RST_STREAM from a cancelled task) only queue frames and never block on the socket;
* a **keep-alive** that sends an HTTP/2 PING when nothing was read for ``keepalive_time``
  while a stream is open, and declares the connection dead when nothing at all comes back
  within ``keepalive_timeout``. A member that died without a FIN, or is frozen (SIGSTOP), is
  therefore noticed within ``keepalive_time + keepalive_timeout`` of the last frame read
  (default 6 + 4 = 10 s). etcd's ``--grpc-keepalive-min-time`` (5 s by default) is why the
  time is not shorter: grpc-go counts a ping sooner than that as a strike and answers the
  third with GOAWAY ENHANCE_YOUR_CALM; and it allows no pings at all on a connection without
  streams, so an idle connection is not pinged (its next call has its own deadline).

Flow control: we open our windows wide (16 MiB per stream and for the connection), because a
read of 100k keys arrives as ~530 DATA frames of 16 KiB, and give received data back as it
is parsed (every consumer of ours drains its stream at once into bounded buffers), in
WINDOW_UPDATEs of half a window. Outbound, a message larger than the peer's window waits for
its WINDOW_UPDATE. A new stream waits while the peer's MAX_CONCURRENT_STREAMS (250 on etcd
3.5 over TLS) are in use.

For truthful outcomes of writes each call records on its :class:`CallState` whether request
bytes may have left (``sent``) and whether the answer's headers arrived (``answered``). A
stream the server refused before reading it (RST_STREAM REFUSED_STREAM, or an id above a
GOAWAY's last stream id) is reported as not sent, so it is safe to retry anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Final, final

import trio

from ..._core.errors import ProtocolError, UnavailableError
from ..base import CallState
from . import frames as f
from .calls import CallStream, GrpcStream, copy_error, frame, lost
from .headers import TABLE_SIZE_ZERO, Method, literal, request_block, timeout_field
from .receiver import Receiver

__all__ = ["GrpcConnection", "GrpcStream", "Method", "copy_error"]

KEEPALIVE_TIME: Final = 6.0
"""Seconds without a frame read before a PING is sent (while a stream is open)."""
KEEPALIVE_TIMEOUT: Final = 4.0
"""Seconds a PING may go unanswered (with nothing else read) before the connection is dead."""
WINDOW: Final = 16 * 1024 * 1024
"""Our receive window, per stream and for the connection."""
ACK_DELAY: Final = 0.002
"""Seconds an acknowledgement (PING ACK, SETTINGS ACK, WINDOW_UPDATE) may wait for a write."""
_READ_SIZE: Final = 256 * 1024
_PING_DATA: Final = b"trioetcd"
_LAST_STREAM_ID: Final = f.MAX_WINDOW


@final
class GrpcConnection(Receiver):
    """One HTTP/2 connection to an etcd member; open it with :func:`.dial.connect_endpoint`.

    Every call made on it runs on its own HTTP/2 stream. When the connection fails (the
    socket breaks, a PING goes unanswered, the server breaks the protocol or sends GOAWAY),
    every stream still open fails with :class:`UnavailableError` and new calls fail at once;
    the client layer opens a new connection.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        endpoint: str,
        authority: str,
        scheme: str,
        keepalive_time: float = KEEPALIVE_TIME,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    ) -> None:
        super().__init__(endpoint, WINDOW)
        self._transport = stream
        self._scheme = scheme.encode()
        self._authority = authority.encode()
        self._blocks: dict[Method, bytes] = {}
        self._token: tuple[str | None, bytes] = (None, b"")  # the last token, its field
        self._keepalive_time = keepalive_time
        self._keepalive_timeout = keepalive_timeout
        self._next_id = 1
        self._out = bytearray()  # frames waiting for the writer
        self._write_wanted = trio.Event()
        self._last_read = 0.0
        self._ping_sent: float | None = None
        self._nursery: trio.Nursery | None = None
        self.started = trio.Event()
        self.finished = trio.Event()

    # -- the public surface --

    @property
    def usable(self) -> bool:
        return self._error is None and not self._draining

    def start_soon(self, fn: Callable[[], Awaitable[object]]) -> None:
        """Run ``fn`` in the connection's nursery: it is cancelled when the connection ends."""
        assert self._nursery is not None
        self._nursery.start_soon(fn)

    async def unary(
        self,
        method: Method,
        request: bytes,
        *,
        request_desc: str,
        state: CallState | None = None,
        token: str | None = None,
        writes: bool = False,
    ) -> bytes | bytearray:
        """Make one unary call and return the answer's message.

        The deadline of the surrounding cancel scope goes to the server as ``grpc-timeout``.

        Raises:
            UnavailableError: the connection failed or the stream was reset (``state`` says
                whether the request may have been sent).
            EtcdError: the server's ``grpc-status`` as the matching error.

        Cancellation: cancelling before the request went out sends nothing; cancelling after
        it resets the stream (RST_STREAM CANCEL), and the server may have applied a write.
        """
        state = state if state is not None else CallState()
        stream = await self._start(method, state, token)
        try:
            # (no checkpoint of its own: sent whole, the stream is open and the wait for the
            # answer below is the checkpoint; answered early, send made one)
            complete = await self.send(stream, frame(request), end_stream=True, checkpoint=False)
            while not stream.ended and stream.error is None:
                await stream.wait()
        except BaseException:
            self.cancel(stream)
            raise
        if stream.error is None and complete:
            self._forget(stream)
        else:  # the server may still be sending on it, or we on it
            self.cancel(stream)
        return stream.result(self.endpoint, request_desc, writes)

    async def open_stream(
        self,
        method: Method,
        *,
        state: CallState | None = None,
        token: str | None = None,
        on_message: Callable[[bytes | bytearray], None] | None = None,
    ) -> GrpcStream:
        """Open a bidirectional stream (Watch, LeaseKeepAlive); close it with its ``close``.

        With ``on_message``, the reader calls it with each message of the stream, in order,
        as soon as it is parsed, instead of keeping it for ``receive`` (no task is woken per
        message); wait for the stream's end with its ``end``. It runs in the connection's
        reader, so it must never block and should be quick; an exception it raises fails
        the stream with it (an :class:`EtcdError` as itself, anything else as
        :class:`UnavailableError`), and the stream's later messages are dropped.

        Cancellation: safe; cancelled before its headers were queued, no stream is opened.
        """
        state = state if state is not None else CallState()
        stream = await self._start(method, state, token, deadline=False)
        stream.on_message = on_message
        return GrpcStream(self, stream)

    def close(self) -> None:
        """Close the connection: every open call fails with :class:`UnavailableError`."""
        self._fail(lost(self.endpoint, "the connection was closed"))

    # -- starting and running --

    async def run(self) -> None:
        """Run the connection's reader, writer and keep-alive until it ends. Never raises
        (it runs in the transport's nursery): an unexpected error ends the connection, and is
        reported to the calls on it, instead of crashing the program."""
        # (ahead of the acknowledgements, which the writer sends first: a TLS server sends its
        # SETTINGS at once, and could be acknowledged before we said who we are)
        self._deferred[:0] = (
            f.CONNECTION_PREFACE
            + f.settings_frame({f.ENABLE_PUSH: 0, f.INITIAL_WINDOW_SIZE: WINDOW})
            + f.window_update_frame(0, WINDOW - 65_535)
        )
        self._last_read = trio.current_time()
        # the readers of long-lived streams run in the outer nursery: when the connection
        # fails they see the error on their stream and end by themselves
        try:
            async with trio.open_nursery() as streams:
                self._nursery = streams
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader)
                    nursery.start_soon(self._writer)
                    nursery.start_soon(self._keepalive)
                    nursery.start_soon(self._delayed_acks)
                    self._kick()
                    self.started.set()
                    await self.closed.wait()
                    nursery.cancel_scope.cancel()
        except Exception as exc:  # a bug of ours: fail the calls, keep the program
            self._fail(lost(self.endpoint, f"the connection failed: {exc!r}", exc))
        finally:
            self._fail(lost(self.endpoint, "the connection was closed"))
            try:  # raises Cancelled when the transport is cancelled (the socket is closed)
                await trio.aclose_forcefully(self._transport)
            finally:
                self.finished.set()

    def _kick(self) -> None:
        self._write_wanted.set()

    async def _writer(self) -> None:
        while True:
            await self._write_wanted.wait()
            self._write_wanted = trio.Event()
            data = self._out
            if self._deferred:
                data = self._deferred + data
                self._deferred = bytearray()
            self._out = bytearray()
            if data:
                try:
                    await self._transport.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self._fail(lost(self.endpoint, f"writing failed: {exc!r}", exc))
                    return

    async def _reader(self) -> None:
        transport = self._transport
        while True:
            try:
                data = await transport.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._fail(lost(self.endpoint, f"reading failed: {exc!r}", exc))
                return
            if not data:
                self._fail(lost(self.endpoint, "the server closed the connection"))
                return
            self._last_read = trio.current_time()
            self._ping_sent = None
            try:
                self.receive(data)
            except (f.FrameError, ProtocolError) as exc:
                self._fail(lost(self.endpoint, f"HTTP/2 protocol error: {exc}", exc))
                return

    async def _delayed_acks(self) -> None:
        # What reading makes us send is acknowledgements (PING and SETTINGS ACK) and
        # WINDOW_UPDATEs of our wide windows: nothing waits on them. grpc-go pings every
        # connection that receives data (its BDP estimator), so acking at once would double
        # the packets of every call; the ack goes out with the next request, or after
        # ACK_DELAY at the latest.
        while True:
            await self._ack_wanted.wait()
            self._ack_wanted = trio.Event()
            await trio.sleep(ACK_DELAY)
            self._kick()

    async def _keepalive(self) -> None:
        while True:
            if self._ping_sent is None:
                await trio.sleep_until(self._last_read + self._keepalive_time)
                # (the same expression as the deadline: a difference of floats could fall
                # short of keepalive_time by a rounding error and spin this loop)
                due = trio.current_time() >= self._last_read + self._keepalive_time
                if due and self._streams:
                    self._out += f.ping_frame(_PING_DATA, ack=False)
                    self._ping_sent = trio.current_time()
                    self._kick()
                elif due:
                    # nothing open: grpc-go refuses pings on an idle connection; look again
                    # a keepalive_time from now
                    self._last_read = trio.current_time()
            else:
                await trio.sleep_until(self._ping_sent + self._keepalive_timeout)
                if self._ping_sent is not None:
                    self._fail(
                        UnavailableError(
                            kind="lost",
                            message="no answer to an HTTP/2 PING within "
                            f"{self._keepalive_timeout:g} s: the server is dead or frozen",
                            endpoint=self.endpoint,
                        )
                    )
                    return

    # -- streams --

    async def _start(
        self, method: Method, state: CallState, token: str | None, *, deadline: bool = True
    ) -> CallStream:
        while True:
            if self._error is not None:
                raise copy_error(self._error)
            if self._draining:
                raise lost(self.endpoint, "the connection is going away")
            if len(self._streams) < self._max_streams:
                break
            await self._wait_capacity()
        await trio.lowlevel.checkpoint_if_cancelled()
        stream_id = self._next_id
        if stream_id > _LAST_STREAM_ID:  # (after a billion calls: a new connection)
            self._draining = True
            if not self._streams:
                self._fail(lost(self.endpoint, "the connection used up its stream ids"))
            raise lost(self.endpoint, "the connection used up its stream ids")
        self._next_id = stream_id + 2
        block = self._blocks.get(method) or self._method_block(method)
        if deadline:
            when = trio.current_effective_deadline()
            if when != math.inf:
                block += timeout_field(when - trio.current_time())
        if token is not None:
            if self._token[0] != token:
                self._token = (token, literal(b"token", token.encode()))
            block += self._token[1]
        if self._table_update:  # the peer announced a table size: say ours is 0
            block = TABLE_SIZE_ZERO + block
            self._table_update = False
        stream = CallStream(stream_id, state, self._initial_window)
        self._streams[stream_id] = stream
        self._out += f.headers_frames(stream_id, block, end_stream=False, max_size=self._max_frame)
        state.mark_sent()
        self._kick()
        return stream

    def _method_block(self, method: Method) -> bytes:
        """A method's request header block on this connection, built on its first call."""
        block = self._blocks[method] = request_block(self._scheme, self._authority, method.raw_path)
        return block

    async def send(
        self, stream: CallStream, data: bytes, *, end_stream: bool, checkpoint: bool = True
    ) -> bool:
        """Queue ``data`` on the stream, waiting for flow-control window as needed; False
        when the server answered (and ended the stream) before all of it was sent, as
        grpc-go does for a message over its size limit. Without ``checkpoint`` it is a
        checkpoint only if it has to wait (the caller then makes one).

        Cancellation: while it waits for window, part of ``data`` may have been queued."""
        offset, total = 0, len(data)
        while True:
            if stream.error is not None:  # (a failed connection sets it on every stream)
                raise stream.error
            if stream.ended:
                await trio.lowlevel.checkpoint()
                return False
            size = min(self._send_window, stream.send_window, self._max_frame, total - offset)
            if size <= 0 and offset < total:
                self._kick()  # the frames queued so far must go out for the window to reopen
                await self._wait_capacity()
                continue
            size = max(size, 0)
            end = offset + size
            last = end == total
            self._out += f.data_frame(stream.id, data[offset:end], end_stream=end_stream and last)
            self._send_window -= size
            stream.send_window -= size
            offset = end
            if last:
                break
        stream.sent_end = end_stream
        self._kick()
        if checkpoint:
            await trio.lowlevel.checkpoint()
        return True

    def cancel(self, stream: CallStream) -> None:
        """Forget a stream we leave early; tell the server with RST_STREAM CANCEL."""
        self._streams.pop(stream.id, None)
        if self._error is None and not stream.closed and not (stream.ended and stream.sent_end):
            self._out += f.rst_stream_frame(stream.id, f.CANCEL)
            self._kick()
        stream.closed = True
        if stream.error is None:
            stream.error = lost(self.endpoint, "the stream was closed")
        stream.notify()
        self._more_capacity()
        if self._draining and not self._streams:
            self._fail(lost(self.endpoint, "the server went away"))

    def _forget(self, stream: CallStream) -> None:
        del self._streams[stream.id]
        if self._waiting:
            self._more_capacity()
        if self._draining and not self._streams:
            self._fail(lost(self.endpoint, "the server went away"))
