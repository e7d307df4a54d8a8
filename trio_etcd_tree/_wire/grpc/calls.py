"""One call's HTTP/2 stream on a :class:`~.connection.GrpcConnection`: what the reader
parsed for it (:class:`CallStream`), the bidirectional stream handed to the Watch and
LeaseKeepAlive users (:class:`GrpcStream`), gRPC's message framing, and the errors a call
ends with."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final, Protocol, TypeVar, final

import trio

from ..._core.errors import EtcdError, ProtocolError, UnavailableError
from ..base import CallState
from ..errors import error_for

__all__ = ["CallStream", "GrpcStream", "copy_error", "frame", "lost"]

E = TypeVar("E", bound=EtcdError)


PREALLOCATE: Final = 64 * 1024
"""A message announced longer than this is assembled in a buffer of its announced length
(a 100k-key read is one 8 MB message in ~530 DATA frames): each frame is copied once, into
place, instead of growing a buffer frame by frame."""
PREALLOCATE_MAX: Final = 64 * 1024 * 1024
"""The longest announced length allocated up front: a longer one (a broken or hostile
server's) grows with the bytes that actually arrive, as small messages do."""


def frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\0" + len(message).to_bytes(4, "big") + message


class CallStream:
    """One HTTP/2 stream of ours: its flow-control windows, the parsed messages and how
    it ended."""

    __slots__ = (
        "_buffer",
        "_changed",
        "_filled",
        "_large",
        "_need",
        "closed",
        "ended",
        "error",
        "headers",
        "id",
        "messages",
        "on_message",
        "send_window",
        "sent_end",
        "state",
        "status",
        "unacked",
    )

    def __init__(self, stream_id: int, state: CallState, send_window: int) -> None:
        self.id = stream_id
        self.state = state
        self.messages: deque[bytes | bytearray] = deque()
        self.on_message: Callable[[bytes | bytearray], None] | None = None
        """Set: the reader hands it each message instead (see ``GrpcConnection.open_stream``)."""
        self.headers: dict[bytes, bytes] | None = None
        self.status: tuple[int, str] | None = None  # grpc-status and grpc-message
        self.ended = False  # the server ended the stream (END_STREAM)
        self.sent_end = False  # we ended our side (END_STREAM)
        self.closed = False  # reset, by either side: nothing more goes either way
        self.error: EtcdError | None = None
        self.send_window = send_window  # bytes we may still send (the server's window)
        self.unacked = 0  # bytes received and not yet given back by a WINDOW_UPDATE
        self._buffer = bytearray()
        self._need = -1  # length of the message being assembled, -1 before its prefix
        self._large: bytearray | None = None  # a long message's buffer, of its full length
        self._filled = 0  # bytes of it received
        self._changed = trio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def wait(self) -> None:
        await self._changed.wait()
        self._changed = trio.Event()

    def feed(self, data: bytes) -> bool:
        """Add received bytes; True when they completed a message."""
        large = self._large
        if large is not None:  # (most of a large read: one copy into place per frame)
            filled = self._filled
            end = filled + len(data)
            if end < len(large):
                large[filled:end] = data
                self._filled = end
                return False
            rest = len(large) - filled
            large[filled:] = data[:rest]
            self.messages.append(large)  # (upb parses a bytearray as it does bytes)
            self._large = None
            self._need = -1
            data = data[rest:]
            if not data:
                return True
            self._assemble(data)
            return True
        return self._assemble(data)

    def _assemble(self, data: bytes) -> bool:
        buf = self._buffer
        buf += data
        need = self._need
        if need >= 0 and len(buf) < need:
            return False  # (the middle of a message too long to preallocate)
        complete = False
        while True:
            if need < 0:
                if len(buf) < 5:
                    break
                if buf[0]:
                    raise ProtocolError("the server sent a compressed gRPC message")
                need = int.from_bytes(buf[1:5], "big")
                del buf[:5]
                if len(buf) < need and PREALLOCATE < need <= PREALLOCATE_MAX:
                    large = self._large = bytearray(need)
                    large[: len(buf)] = buf
                    self._filled = len(buf)
                    buf.clear()
                    break
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

    def result(self, endpoint: str, request_desc: str, writes: bool) -> bytes | bytearray:
        """The one message of a finished unary stream, or its error."""
        status = self.status
        if self.error is not None and not (self.ended and status is not None):
            self.error.request = request_desc
            self.error.outcome_unknown = writes and self.state.sent
            raise self.error
        if status is None:
            raise lost(endpoint, "the answer ended without a grpc-status", request=request_desc)
        if status[0] != 0:
            raise error_for(
                status[0], status[1], request=request_desc, endpoint=endpoint, writes=writes
            )
        if len(self.messages) != 1:
            raise ProtocolError(
                f"a unary answer of {len(self.messages)} messages",
                request=request_desc,
                endpoint=endpoint,
            )
        return self.messages[0]


class Streams(Protocol):
    """What a :class:`GrpcStream` needs of its connection (a
    :class:`~.connection.GrpcConnection`)."""

    endpoint: str

    async def send(self, stream: CallStream, data: bytes, *, end_stream: bool) -> bool: ...

    def cancel(self, stream: CallStream) -> None: ...


@final
class GrpcStream:
    """A bidirectional gRPC stream on a :class:`~.connection.GrpcConnection`."""

    def __init__(self, connection: Streams, stream: CallStream) -> None:
        self._connection = connection
        self._stream = stream
        self._send_lock = trio.Lock()  # a message held up by flow control stays in one piece

    async def send(self, message: bytes) -> None:
        """Send one message.

        Raises:
            UnavailableError: the stream or the connection is broken.

        Cancellation: safe while it waits for the lock or for flow-control window; a
        message cut by a cancellation while held up by flow control leaves the stream
        unusable (close it).
        """
        async with self._send_lock:
            sent = await self._connection.send(self._stream, frame(message), end_stream=False)
        if not sent:
            raise lost(self._connection.endpoint, "the server ended the stream")

    async def receive(self, request_desc: str) -> bytes | bytearray:
        """The next message.

        Raises:
            EtcdError: the stream ended: with the server's ``grpc-status`` as its error, or
                :class:`UnavailableError` for a status of 0 (a stream of ours only ends when
                the server drops it) and for a broken stream or connection.

        Cancellation: safe; a message that arrives later is kept for the next call.
        """
        stream = self._stream
        while not stream.messages:
            if stream.error is not None or stream.ended:
                raise self._end_error(request_desc)
            await stream.wait()
        return stream.messages.popleft()

    async def end(self, request_desc: str) -> EtcdError:
        """Wait for the stream to end (one whose messages go to its ``on_message``); the
        error it ended with, as :meth:`receive` raises it.

        Cancellation: safe."""
        stream = self._stream
        while stream.error is None and not stream.ended:
            await stream.wait()
        return self._end_error(request_desc)

    def _end_error(self, request_desc: str) -> EtcdError:
        stream = self._stream
        if stream.error is not None:
            stream.error.request = request_desc
            return stream.error
        endpoint = self._connection.endpoint
        status = stream.status or (0, "")
        if status[0] != 0:
            return error_for(status[0], status[1], request=request_desc, endpoint=endpoint)
        return lost(endpoint, "the server ended the stream", request=request_desc)

    def close(self) -> None:
        """Reset the stream (RST_STREAM CANCEL) unless it already ended."""
        self._connection.cancel(self._stream)


def lost(
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
