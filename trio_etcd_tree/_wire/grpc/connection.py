"""One HTTP/2 connection to one etcd member, carrying gRPC calls: trio + hyper-h2.

What etcd's client port accepts (probed on 3.4 and 3.5, see REFERENCE.md part 3): HTTP/2
with prior knowledge on a plaintext port (its cmux hands every HTTP/2 connection to grpc-go),
or TLS with ALPN ``h2``. A call is ``POST /<service>/<method>`` with ``content-type:
application/grpc`` and ``te: trailers``; each message is framed as one flag byte (0: not
compressed), a 4-byte big-endian length and the protobuf bytes. The answer ends with trailers
holding ``grpc-status`` (and a percent-encoded ``grpc-message``); an error of a unary call
usually comes "trailers-only": one HEADERS frame with the status and no body.

The connection owns three tasks:

* a **reader** that parses every frame and hands the messages to their streams (no call ever
  reads the socket for another: one stuck stream cannot hold up the others, the trap that
  makes httpx's HTTP/2 unusable for gRPC);
* a **writer** that sends what hyper-h2 has queued, so that calls (and cancellations, which
  must send RST_STREAM from a cancelled task) only queue frames and never block on the socket;
* a **keep-alive** that sends an HTTP/2 PING when nothing was read for ``keepalive_time``
  while a stream is open, and declares the connection dead when nothing at all comes back
  within ``keepalive_timeout``. A member that died without a FIN, or is frozen (SIGSTOP), is
  therefore noticed within ``keepalive_time + keepalive_timeout`` of the last frame read
  (default 6 + 4 = 10 s). etcd's ``--grpc-keepalive-min-time`` (5 s by default) is why the
  time is not shorter: grpc-go counts a ping sooner than that as a strike and answers the
  third with GOAWAY ENHANCE_YOUR_CALM; and it allows no pings at all on a connection without
  streams, so an idle connection is not pinged (its next call has its own deadline).

Flow control: we open our windows wide (16 MiB per stream and for the connection), because a
read of 100k keys arrives as ~530 DATA frames of 16 KiB, and acknowledge data as soon as it is
parsed (every consumer of ours drains its stream at once into bounded buffers). Outbound, a
message larger than the peer's window waits for its WINDOW_UPDATE. A new stream waits while
the peer's MAX_CONCURRENT_STREAMS (250 on etcd 3.5 over TLS) are in use.

For truthful outcomes of writes each call records on its :class:`CallState` whether request
bytes may have left (``sent``) and whether the answer's headers arrived (``answered``). A
stream the server refused before reading it (RST_STREAM REFUSED_STREAM, or an id above a
GOAWAY's last stream id) is reported as not sent, so it is safe to retry anywhere.
"""

from __future__ import annotations

import math
import ssl
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import hpack.hpack
import hpack.table
import hyperframe.frame
import trio

from ..._core.errors import EtcdError, ProtocolError, UnavailableError
from ..base import CallState
from ..errors import error_for, tls_failure

__all__ = ["GrpcConnection", "GrpcStream", "Method", "connect_endpoint"]

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


E = TypeVar("E", bound=EtcdError)


@final
class Method:
    """A gRPC method's constant request headers, built once (``/etcdserverpb.KV/Range``)."""

    __slots__ = ("path", "raw_path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.raw_path = path.encode()


class _H2Connection(h2.connection.H2Connection):
    """hyper-h2's client connection, except that a GOAWAY does not end it at once, and
    that received frames are not formatted for a log nobody reads.

    h2 moves the whole connection to CLOSED on GOAWAY and then refuses every frame of the
    streams the server is still finishing (ids up to ``last_stream_id``), although
    RFC 9113 section 6.8 says they complete; grpc-go's graceful stop relies on it. So the
    connection stays open for reading: no new stream is started once GOAWAY came (the
    ``_draining`` flag of :class:`GrpcConnection`).

    h2 passes ``repr(frame)`` of every received frame to its (no-op) trace logger, and a
    DATA frame's repr hex-encodes its whole body: 15 us for a 16 KB frame, 8 ms of a
    100k-key read, and ~1 us for each small frame of every call. Each received frame is
    therefore turned into a subclass of its class whose repr is short (:data:`_QUIET`,
    dispatched like its base).
    """

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config)
        table = self._frame_dispatch_table
        for cls in list(table):
            quiet = _QUIET.get(cls) or _QUIET.setdefault(cls, _quiet_class(cls))
            table[quiet] = table[cls]

    def _receive_frame(self, frame: hyperframe.frame.Frame) -> list[h2.events.Event]:
        frame.__class__ = _QUIET[frame.__class__]
        return super()._receive_frame(frame)

    def _receive_goaway_frame(
        self, frame: hyperframe.frame.GoAwayFrame
    ) -> tuple[list[hyperframe.frame.Frame], list[h2.events.Event]]:
        frames, events = super()._receive_goaway_frame(frame)
        self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return frames, events


_QUIET: dict[type[hyperframe.frame.Frame], type[hyperframe.frame.Frame]] = {}
"""Each hyperframe frame class h2 dispatches on, and its subclass with a short repr."""


def _quiet_class(cls: type[hyperframe.frame.Frame]) -> type[hyperframe.frame.Frame]:
    def short_repr(frame: hyperframe.frame.Frame) -> str:
        return f"{cls.__name__}(stream_id={frame.stream_id})"

    return type(cls.__name__, (cls,), {"__repr__": short_repr})


class _HeaderDecoder(hpack.Decoder):
    """hpack's decoder, which remembers the header blocks that only refer to table entries.

    grpc-go sends the same response headers and trailers on every call, and from the
    second call on each is a block of one-byte indexed fields (``\x88\xc0``): decoding
    one again took ~3 us. Such a block changes nothing in the table, so its headers stay
    the same until a block that may change the table (any other kind) is decoded: then
    every remembered block is forgotten.
    """

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[tuple[bytes, bool], list[Any]] = {}

    def decode(self, data: bytes, raw: bool = False) -> Any:
        known = self._blocks.get((data, raw))
        if known is not None:
            return list(known)
        headers = super().decode(data, raw)
        if data.translate(None, _INDEXED):  # a field that is not a one-byte index
            self._blocks.clear()
        elif len(self._blocks) < 64:
            self._blocks[data, raw] = list(headers)
        return headers


_INDEXED: Final = bytes(range(0x80, 0x100))
"""The first bytes of HPACK's one-byte indexed fields (0x80, index 0, is invalid and
rejected by the decoder before anything is remembered)."""


_STATIC_NAMES: Final = {
    name: index
    for index, (name, _value) in reversed(
        list(enumerate(hpack.table.HeaderTable.STATIC_TABLE, start=1))
    )
}


class _HeaderEncoder(hpack.Encoder):
    """hpack's encoder without the dynamic table, each field encoded once.

    Every field is written as a "literal without indexing" (its name from the static table
    where it is there), so its bytes do not depend on what was sent before and are kept:
    the request headers of a method are the same on every call, and hpack's own encoder
    spent ~100 us a call searching its tables. The cost is a few bytes a request.
    ``grpc-timeout`` changes with every call and is not kept.
    """

    def __init__(self) -> None:
        super().__init__()
        self._fields: dict[tuple[bytes, bytes], bytes] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        block = []
        if self.header_table.resized:  # the peer changed its table size: say we saw it
            block.append(self._encode_table_size_change())
            self.header_table.resized = False
        fields = self._fields
        for header in headers:
            field = fields.get(header)
            if field is None:
                field = _literal(header[0], header[1])
                if header[0] != b"grpc-timeout":
                    fields[header] = field
            block.append(field)
        return b"".join(block)


def _literal(name: bytes, value: bytes) -> bytes:
    index = _STATIC_NAMES.get(name)
    if index is None:
        head = b"\0" + hpack.hpack.encode_integer(len(name), 7) + name
    else:
        head = bytes(hpack.hpack.encode_integer(index, 4))
    return head + hpack.hpack.encode_integer(len(value), 7) + value


def _timeout_header(seconds: float) -> bytes:
    """``grpc-timeout``: at most 8 digits and a unit; rounded up so it never undercuts us."""
    millis = max(1, math.ceil(seconds * 1000))
    if millis < 100_000_000:
        return b"%dm" % millis
    return b"%dS" % min(99_999_999, math.ceil(seconds))


def frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\0" + len(message).to_bytes(4, "big") + message


class _Stream:
    """The receiving side of one HTTP/2 stream: parsed messages and how it ended."""

    __slots__ = (
        "_buffer",
        "_changed",
        "_need",
        "ended",
        "error",
        "headers",
        "id",
        "messages",
        "state",
        "status",
    )

    def __init__(self, stream_id: int, state: CallState) -> None:
        self.id = stream_id
        self.state = state
        self.messages: deque[bytes] = deque()
        self.headers: dict[bytes, bytes] | None = None
        self.status: tuple[int, str] | None = None  # grpc-status and grpc-message
        self.ended = False
        self.error: EtcdError | None = None
        self._buffer = bytearray()
        self._need = -1  # length of the message being assembled, -1 before its prefix
        self._changed = trio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def wait(self) -> None:
        await self._changed.wait()
        self._changed = trio.Event()

    def feed(self, data: bytes) -> bool:
        """Add received bytes; True when they completed a message."""
        buf = self._buffer
        buf += data
        need = self._need
        if need >= 0 and len(buf) < need:
            return False  # (the middle of a large message: most of a large read)
        complete = False
        while True:
            if need < 0:
                if len(buf) < 5:
                    break
                if buf[0]:
                    raise ProtocolError("the server sent a compressed gRPC message")
                need = int.from_bytes(buf[1:5], "big")
                del buf[:5]
            if len(buf) < need:
                break
            if len(buf) == need:  # (mostly) the message is all there is: one copy
                self.messages.append(bytes(buf))
                buf.clear()
            else:
                with memoryview(buf) as view:
                    self.messages.append(bytes(view[:need]))
                del buf[:need]
            need = -1
            complete = True
        self._need = need
        return complete


def _status(headers: dict[bytes, bytes]) -> tuple[int, str] | None:
    raw = headers.get(b"grpc-status")
    if raw is None:
        return None
    message = urllib.parse.unquote(headers.get(b"grpc-message", b"").decode("utf-8", "replace"))
    try:
        return int(raw), message
    except ValueError:
        return 2, f"unreadable grpc-status {raw!r}: {message}"


@final
class GrpcConnection:
    """One HTTP/2 connection to an etcd member; open it with :func:`open_connection`.

    Every call made on it runs on its own HTTP/2 stream. When the connection fails (the
    socket breaks, a PING goes unanswered, the server sends GOAWAY), every stream still open
    fails with :class:`UnavailableError` and new calls fail at once; the client layer opens a
    new connection.
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
        self.endpoint = endpoint
        self._transport = stream
        self._scheme = scheme.encode()
        self._authority = authority.encode()
        self._headers: dict[Method, list[tuple[bytes, bytes]]] = {}
        self._keepalive_time = keepalive_time
        self._keepalive_timeout = keepalive_timeout
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self._h2 = _H2Connection(config)
        self._h2.encoder = _HeaderEncoder()
        decoder = _HeaderDecoder()
        decoder.max_header_list_size = self._h2.decoder.max_header_list_size
        self._h2.decoder = decoder
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
            },
        )
        self._streams: dict[int, _Stream] = {}
        self._error: EtcdError | None = None  # once set, the connection is done
        self._draining = False  # GOAWAY received: no new streams
        self._write_wanted = trio.Event()
        self._deferred = bytearray()  # acknowledgements waiting for the next write
        self._ack_wanted = trio.Event()
        self._capacity = trio.Event()  # a stream slot or flow-control window opened
        self._last_read = 0.0
        self._ping_sent: float | None = None
        self._nursery: trio.Nursery | None = None
        self.closed = trio.Event()
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
    ) -> bytes:
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
            # answer below is the checkpoint; answered early, _send made one)
            complete = await self._send(stream, frame(request), end_stream=True, checkpoint=False)
            while not stream.ended and stream.error is None:
                await stream.wait()
        except BaseException:
            self._cancel(stream)
            raise
        if stream.error is None and complete:
            self._forget(stream)
        else:  # the server may still be sending on it, or we on it
            self._cancel(stream)
        return self._result(stream, request_desc, writes)

    async def open_stream(
        self, method: Method, *, state: CallState | None = None, token: str | None = None
    ) -> GrpcStream:
        """Open a bidirectional stream (Watch, LeaseKeepAlive); close it with ``aclose``."""
        state = state if state is not None else CallState()
        stream = await self._start(method, state, token, deadline=False)
        return GrpcStream(self, stream)

    def close(self) -> None:
        """Close the connection: every open call fails with :class:`UnavailableError`."""
        self._fail(_lost(self.endpoint, "the connection was closed"))

    # -- starting and running --

    async def run(self) -> None:
        """Run the connection's reader, writer and keep-alive until it ends. Never raises
        (it runs in the transport's nursery): an unexpected error ends the connection, and is
        reported to the calls on it, instead of crashing the program."""
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(WINDOW - 65535)
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
            self._fail(_lost(self.endpoint, f"the connection failed: {exc!r}", exc))
        finally:
            self._fail(_lost(self.endpoint, "the connection was closed"))
            try:  # raises Cancelled when the transport is cancelled (the socket is closed)
                await trio.aclose_forcefully(self._transport)
            finally:
                self.finished.set()

    def _fail(self, error: EtcdError) -> None:
        """End the connection: every stream fails with ``error``; the tasks stop."""
        if self._error is not None:
            return
        self._error = error
        for stream in list(self._streams.values()):
            stream.error = stream.error or copy_error(error)
            stream.notify()
        self._more_capacity()
        self.closed.set()

    def _kick(self) -> None:
        self._write_wanted.set()

    async def _writer(self) -> None:
        while True:
            await self._write_wanted.wait()
            self._write_wanted = trio.Event()
            data = self._h2.data_to_send()
            if self._deferred:
                data = bytes(self._deferred) + data
                self._deferred.clear()
            if data:
                try:
                    await self._transport.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self._fail(_lost(self.endpoint, f"writing failed: {exc!r}", exc))
                    return

    async def _reader(self) -> None:
        transport = self._transport
        while True:
            try:
                data = await transport.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._fail(_lost(self.endpoint, f"reading failed: {exc!r}", exc))
                return
            if not data:
                self._fail(_lost(self.endpoint, "the server closed the connection"))
                return
            self._last_read = trio.current_time()
            self._ping_sent = None
            try:
                events = self._h2.receive_data(data)
                for event in events:
                    self._handle(event)
            except (h2.exceptions.ProtocolError, ProtocolError) as exc:
                self._fail(_lost(self.endpoint, f"HTTP/2 protocol error: {exc}", exc))
                return
            # What reading makes h2 send is acknowledgements (PING and SETTINGS ACK) and
            # WINDOW_UPDATEs of our wide windows: nothing waits on them. grpc-go pings every
            # connection that receives data (its BDP estimator), so acking at once would
            # double the packets of every call; the ack goes out with the next request, or
            # after ACK_DELAY at the latest.
            self._deferred += self._h2.data_to_send()
            if self._deferred:
                self._ack_wanted.set()

    async def _delayed_acks(self) -> None:
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
                    self._h2.ping(_PING_DATA)
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

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self._streams.get(event.stream_id)
            # (h2 drops frames of streams we reset; the consumer is woken for whole messages)
            if stream is not None and stream.feed(event.data):
                stream.notify()
        elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:  # pragma: no branch  (h2 drops frames of streams we reset)
                headers = dict(event.headers)
                if isinstance(event, h2.events.ResponseReceived):
                    stream.headers = headers
                    stream.state.mark_answered()
                    if headers.get(b":status") != b"200":
                        stream.error = UnavailableError(
                            kind="server",
                            message=f"HTTP status {headers.get(b':status', b'?').decode()} "
                            "instead of a gRPC answer",
                            endpoint=self.endpoint,
                        )
                stream.status = _status(headers) or stream.status
                stream.notify()
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None:  # pragma: no branch  (h2 drops frames of streams we reset)
                stream.ended = True
                stream.notify()
            self._more_capacity()
        elif isinstance(event, h2.events.StreamReset):
            stream = self._streams.get(event.stream_id)
            if stream is not None:  # pragma: no branch  (h2 drops frames of streams we reset)
                code = event.error_code
                if code == h2.errors.ErrorCodes.REFUSED_STREAM:
                    stream.state.sent = False
                if not stream.ended:  # (grpc-go resets a stream it answered early: ignore)
                    stream.error = _lost(
                        self.endpoint, f"the server reset the stream ({_code_name(code)})"
                    )
                stream.notify()
            self._more_capacity()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._more_capacity()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway(event)

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        """GOAWAY: streams the server took (ids up to ``last_stream_id``) run to their end;
        the rest were never processed, so they fail as not sent (safe to retry)."""
        self._draining = True
        last = event.last_stream_id or 0
        reason = _code_name(event.error_code)
        if event.additional_data:
            reason += f": {event.additional_data.decode('utf-8', 'replace')}"
        for stream in list(self._streams.values()):
            if stream.id > last:
                stream.state.sent = False
                stream.error = _lost(self.endpoint, f"the server is going away ({reason})")
                stream.notify()
        if not self._streams or all(s.id > last for s in self._streams.values()):
            self._fail(_lost(self.endpoint, f"the server is going away ({reason})"))
        self._more_capacity()

    # -- streams --

    async def _start(
        self, method: Method, state: CallState, token: str | None, *, deadline: bool = True
    ) -> _Stream:
        h2c = self._h2
        while True:
            if self._error is not None:
                raise copy_error(self._error)
            if self._draining:
                raise _lost(self.endpoint, "the connection is going away")
            if h2c.open_outbound_streams < h2c.remote_settings.max_concurrent_streams:
                break
            await self._wait_capacity()
        await trio.lowlevel.checkpoint_if_cancelled()
        headers = self._headers.get(method) or self._method_headers(method)
        if deadline:
            when = trio.current_effective_deadline()
            if when != math.inf:
                headers = [*headers, (b"grpc-timeout", _timeout_header(when - trio.current_time()))]
        if token is not None:
            headers = [*headers, (b"token", token.encode())]
        stream_id = h2c.get_next_available_stream_id()
        stream = _Stream(stream_id, state)
        self._streams[stream_id] = stream
        h2c.send_headers(stream_id, headers)
        state.mark_sent()
        self._kick()
        return stream

    def _method_headers(self, method: Method) -> list[tuple[bytes, bytes]]:
        """A method's request headers on this connection, built on its first call."""
        headers = self._headers[method] = [
            (b":method", b"POST"),
            (b":scheme", self._scheme),
            (b":path", method.raw_path),
            (b":authority", self._authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
        return headers

    async def _wait_capacity(self) -> None:
        await self._capacity.wait()

    def _more_capacity(self) -> None:
        """Wake every task waiting for a stream slot or flow-control window to look again."""
        self._capacity.set()
        self._capacity = trio.Event()

    async def _send(
        self, stream: _Stream, data: bytes, *, end_stream: bool, checkpoint: bool = True
    ) -> bool:
        """Queue ``data`` on the stream, waiting for flow-control window as needed; False
        when the server answered (and ended the stream) before all of it was sent, as
        grpc-go does for a message over its size limit. Without ``checkpoint`` it is a
        checkpoint only if it has to wait (the caller then makes one)."""
        h2c = self._h2
        offset, total = 0, len(data)
        while True:
            self._check(stream)
            if stream.ended:
                await trio.lowlevel.checkpoint()
                return False
            window = h2c.local_flow_control_window(stream.id)
            size = min(window, h2c.max_outbound_frame_size, total - offset)
            if size <= 0 and offset < total:
                self._kick()  # the frames queued so far must go out for the window to reopen
                await self._wait_capacity()
                continue
            end = offset + size
            h2c.send_data(stream.id, data[offset:end], end_stream=end_stream and end == total)
            offset = end
            if offset >= total:
                break
        self._kick()
        if checkpoint:
            await trio.lowlevel.checkpoint()
        return True

    def _check(self, stream: _Stream) -> None:
        if stream.error is not None:  # (a failed connection sets it on every stream)
            raise stream.error

    def _cancel(self, stream: _Stream) -> None:
        """Forget a stream we leave early; tell the server with RST_STREAM CANCEL."""
        self._streams.pop(stream.id, None)
        if self._error is None:
            try:
                self._h2.reset_stream(stream.id, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.ProtocolError:
                pass  # closed on both sides already (ended, or reset by the server)
            else:
                self._kick()
        if stream.error is None:
            stream.error = _lost(self.endpoint, "the stream was closed")
        stream.notify()
        self._more_capacity()
        if self._draining and not self._streams:
            self._fail(_lost(self.endpoint, "the server went away"))

    def _forget(self, stream: _Stream) -> None:
        self._streams.pop(stream.id, None)
        self._more_capacity()
        if self._draining and not self._streams:
            self._fail(_lost(self.endpoint, "the server went away"))

    def _result(self, stream: _Stream, request_desc: str, writes: bool) -> bytes:
        """The one message of a finished unary stream, or its error."""
        status = stream.status
        if stream.error is not None and not (stream.ended and status is not None):
            _describe(stream.error, request_desc)
            stream.error.outcome_unknown = writes and stream.state.sent
            raise stream.error
        if status is None:
            raise _lost(
                self.endpoint, "the answer ended without a grpc-status", request=request_desc
            )
        if status[0] != 0:
            raise error_for(
                status[0], status[1], request=request_desc, endpoint=self.endpoint, writes=writes
            )
        if len(stream.messages) != 1:
            raise ProtocolError(
                f"a unary answer of {len(stream.messages)} messages",
                request=request_desc,
                endpoint=self.endpoint,
            )
        return stream.messages[0]


@final
class GrpcStream:
    """A bidirectional gRPC stream on a :class:`GrpcConnection`."""

    def __init__(self, connection: GrpcConnection, stream: _Stream) -> None:
        self._connection = connection
        self._stream = stream
        self._send_lock = trio.Lock()  # a message held up by flow control stays in one piece

    async def send(self, message: bytes) -> None:
        """Send one message.

        Raises:
            UnavailableError: the stream or the connection is broken.
        """
        async with self._send_lock:
            sent = await self._connection._send(self._stream, frame(message), end_stream=False)
        if not sent:
            raise _lost(self._connection.endpoint, "the server ended the stream")

    async def receive(self, request_desc: str) -> bytes:
        """The next message.

        Raises:
            EtcdError: the stream ended: with the server's ``grpc-status`` as its error, or
                :class:`UnavailableError` for a status of 0 (a stream of ours only ends when
                the server drops it) and for a broken stream or connection.

        Cancellation: safe; a message that arrives later is kept for the next call.
        """
        stream = self._stream
        while not stream.messages:
            if stream.error is not None:
                _describe(stream.error, request_desc)
                raise stream.error
            if stream.ended:
                status = stream.status or (0, "")
                if status[0] != 0:
                    raise error_for(
                        status[0], status[1], request=request_desc, endpoint=stream_endpoint(self)
                    )
                raise _lost(
                    stream_endpoint(self), "the server ended the stream", request=request_desc
                )
            await stream.wait()
        return stream.messages.popleft()

    def close(self) -> None:
        """Reset the stream (RST_STREAM CANCEL) unless it already ended."""
        self._connection._cancel(self._stream)


def stream_endpoint(stream: GrpcStream) -> str:
    return stream._connection.endpoint


def _code_name(code: int | None) -> str:
    try:
        return h2.errors.ErrorCodes(code or 0).name
    except ValueError:
        return f"error code {code}"


def _lost(
    endpoint: str, why: str, cause: BaseException | None = None, request: str = ""
) -> UnavailableError:
    error = UnavailableError(why, kind="lost", endpoint=endpoint, request=request)
    error.__cause__ = cause
    return error


def copy_error(error: E) -> E:
    """A fresh instance of ``error``, of its own type, for each failed call (one exception
    object must not be raised from several tasks: each raise rewrites its traceback)."""
    copy = type(error).__new__(type(error), *error.args)
    copy.__dict__.update(error.__dict__)
    copy.__cause__ = error.__cause__
    return copy


def _describe(error: EtcdError, request_desc: str) -> None:
    error.request = request_desc


async def _connect_stream(
    host: str, port: int, ssl_context: ssl.SSLContext | None
) -> trio.abc.Stream:
    tcp = await trio.open_tcp_stream(host, port)
    if ssl_context is None:
        return tcp
    tls = trio.SSLStream(tcp, ssl_context, server_hostname=host)
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    if tls.selected_alpn_protocol() != "h2":
        await trio.aclose_forcefully(tls)
        raise UnavailableError(
            "the server did not agree to HTTP/2 (ALPN h2) over TLS",
            kind="tls",
            endpoint=f"{host}:{port}",
        )
    return tls


def h2_ssl_context(context: ssl.SSLContext | None) -> ssl.SSLContext:
    """``context`` (or a default one) offering ALPN ``h2``; its certificates are kept."""
    context = context or ssl.create_default_context()
    context.set_alpn_protocols(["h2"])
    return context


async def connect_endpoint(
    endpoint: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    keepalive_time: float = KEEPALIVE_TIME,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    connect: Callable[[], trio.abc.Stream] | None = None,
    dial_timeout: float | None = None,
) -> GrpcConnection:
    """Connect to ``endpoint`` (``http://host:port`` or ``https://host:port``); the
    connection works once its :meth:`GrpcConnection.run` task runs.

    ``https`` uses TLS with ALPN ``h2`` and ``ssl_context`` (its CA and client certificate);
    ``http`` speaks HTTP/2 with prior knowledge. ``connect`` replaces the TCP connection
    with a stream of the caller's (the in-memory etcd).

    Raises:
        UnavailableError: the connection could not be made (``kind`` "connect" or "tls"),
            or not within ``dial_timeout`` seconds (``kind`` "connect").
    """
    url = urllib.parse.urlsplit(endpoint)
    scheme = url.scheme or "http"
    host = url.hostname or "127.0.0.1"
    port = url.port or (443 if scheme == "https" else 2379)
    try:
        with trio.fail_after(math.inf if dial_timeout is None else dial_timeout):
            if connect is not None:  # (refused: it raises OSError, as TCP does)
                stream = connect()
            else:
                stream = await _connect_stream(
                    host, port, h2_ssl_context(ssl_context) if scheme == "https" else None
                )
    except trio.TooSlowError as exc:
        raise UnavailableError(
            f"could not connect within {dial_timeout:g} s", kind="connect", endpoint=endpoint
        ) from exc
    except (OSError, trio.BrokenResourceError) as exc:
        tls = tls_failure(exc)
        if tls is not None:
            raise UnavailableError(
                f"the TLS handshake failed: {tls}", kind="tls", endpoint=endpoint
            ) from exc
        cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
        raise UnavailableError(
            f"could not connect: {cause or exc!r}", kind="connect", endpoint=endpoint
        ) from exc
    return GrpcConnection(
        stream,
        endpoint=endpoint,
        authority=url.netloc or host,
        scheme=scheme,
        keepalive_time=keepalive_time,
        keepalive_timeout=keepalive_timeout,
    )
