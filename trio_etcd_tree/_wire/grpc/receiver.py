"""What the server's frames do to a gRPC connection: the streams table, the windows, the
server's settings, GOAWAY (the frame-by-frame half of :class:`.connection.GrpcConnection`).

Every violation of HTTP/2 that matters to us raises :class:`.frames.FrameError`, which ends
the whole connection (also for what RFC 9113 calls a stream error, such as a stream's window
overflowing: a server that breaks the protocol on one stream is not trusted with the others).
The server's use of our windows is not policed: they are given back at half their size, so
no frame could overflow them (a server ignoring flow control costs us memory, as any server
sending a large answer does). Frames of a stream we already left (a call that was cancelled,
or answered while we were still sending) are ignored, except that their header blocks are
decoded: the HPACK table is shared by the whole connection.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

import trio

from ..._core.errors import EtcdError, UnavailableError
from . import frames as f
from .calls import CallStream, copy_error, lost
from .headers import HeaderDecoder, grpc_status

__all__ = ["Receiver"]

_SETTING: Final = struct.Struct(">HI")
_MAX_HEADER_BLOCK: Final = 1 << 20
"""The longest header block we assemble from CONTINUATION frames."""


class Receiver:
    """A connection's state as the server's frames change it; see :meth:`receive`."""

    def __init__(self, endpoint: str, window: int) -> None:
        self.endpoint = endpoint
        self._window = window  # ours, per stream and for the connection
        self._streams: dict[int, CallStream] = {}
        self._error: EtcdError | None = None  # once set, the connection is done
        self._draining = False  # GOAWAY received: no new streams
        self._frames = f.FrameReader()
        self._decoder = HeaderDecoder()
        self._block: tuple[int, int, bytearray] | None = None  # a block awaiting CONTINUATION
        self._max_streams = 1 << 31  # the server's settings
        self._initial_window = 65_535
        self._max_frame = f.MAX_FRAME_SIZE
        self._table_update = False
        self._send_window = 65_535  # bytes we may still send on the connection
        self._unacked = 0  # bytes received on the connection and not yet given back
        self._deferred = bytearray()  # acknowledgements waiting for the next write
        self._ack_wanted = trio.Event()
        self._capacity = trio.Event()  # a stream slot or flow-control window opened
        self._waiting = 0  # tasks waiting for it
        self.closed = trio.Event()

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

    async def _wait_capacity(self) -> None:
        self._waiting += 1
        try:
            await self._capacity.wait()
        finally:
            self._waiting -= 1

    def _more_capacity(self) -> None:
        """Wake every task waiting for a stream slot or flow-control window to look again."""
        self._capacity.set()
        self._capacity = trio.Event()

    def _acknowledge(self, frame: bytes) -> None:
        """Queue an acknowledgement: it goes out with the next write, or soon after."""
        self._deferred += frame
        self._ack_wanted.set()

    def receive(self, data: bytes | bytearray) -> None:
        """Take in bytes read from the server.

        Raises:
            FrameError: the server broke HTTP/2.
            ProtocolError: the server broke gRPC's message framing.
        """
        for kind, flags, stream_id, payload in self._frames.feed(data):
            if self._block is not None and kind != f.CONTINUATION:
                raise f.FrameError(f.PROTOCOL_ERROR, "a frame inside a header block")
            if kind == f.DATA:
                self._data(flags, stream_id, payload)
            elif kind == f.HEADERS:
                self._headers(flags, stream_id, payload)
            elif kind == f.CONTINUATION:
                self._continuation(flags, stream_id, payload)
            elif stream_id and kind in _CONNECTION_FRAMES:
                raise f.FrameError(f.PROTOCOL_ERROR, f"a {_CONNECTION_FRAMES[kind]} on a stream")
            elif kind == f.SETTINGS:
                self._settings(flags, payload)
            elif kind == f.PING:
                self._ping(flags, payload)
            elif kind == f.WINDOW_UPDATE:
                self._window_update(stream_id, payload)
            elif kind == f.RST_STREAM:
                self._reset(stream_id, payload)
            elif kind == f.GOAWAY:
                self._goaway(payload)
            elif kind == f.PUSH_PROMISE:
                raise f.FrameError(f.PROTOCOL_ERROR, "a PUSH_PROMISE although push is disabled")
            # PRIORITY and unknown types: nothing to do (RFC 9113 sections 5.5 and 6.3)

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise f.FrameError(f.PROTOCOL_ERROR, "a DATA frame on stream 0")
        size = len(payload)  # (padding counts against the windows)
        unacked = self._unacked + size
        if unacked >= self._window // 2:
            self._acknowledge(f.window_update_frame(0, unacked))
            unacked = 0
        self._unacked = unacked
        payload = f.unpadded(payload, flags, "DATA")
        stream = self._streams.get(stream_id)
        if stream is None or stream.ended or stream.closed:
            return
        end = flags & f.END_STREAM
        stream.unacked += size
        if stream.unacked >= self._window // 2 and not end:
            self._acknowledge(f.window_update_frame(stream_id, stream.unacked))
            stream.unacked = 0
        complete = stream.feed(payload)  # (the consumer is woken for whole messages)
        if complete and stream.on_message is not None:
            complete = self._hand_over(stream, stream.on_message)
        if end:
            self._ended(stream)
        elif complete:
            stream.notify()

    def _hand_over(
        self, stream: CallStream, on_message: Callable[[bytes | bytearray], None]
    ) -> bool:
        """Hand the stream's messages to its ``on_message``, in order, here in the reader (no
        task is woken for them); True if it raised: then the stream fails with that error
        (its task is woken to end it) and drops whatever else comes."""
        messages = stream.messages
        try:
            while messages:
                on_message(messages.popleft())
        except Exception as exc:
            messages.clear()
            stream.on_message = _drop
            if isinstance(exc, EtcdError):
                stream.error = stream.error or exc
            else:
                why = f"handling a message of the stream failed: {exc!r}"
                stream.error = stream.error or lost(self.endpoint, why, exc)
            return True
        return False

    def _ended(self, stream: CallStream) -> None:
        stream.ended = True
        stream.notify()
        if self._waiting:  # (a request held up by flow control need not wait any more)
            self._more_capacity()

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise f.FrameError(f.PROTOCOL_ERROR, "a HEADERS frame on stream 0")
        payload = f.unpadded(payload, flags, "HEADERS")
        if flags & f.PRIORITY_FLAG:
            if len(payload) < 5:
                raise f.FrameError(f.FRAME_SIZE_ERROR, "a HEADERS frame too short for a priority")
            payload = payload[5:]
        if flags & f.END_HEADERS:
            self._header_block(flags, stream_id, payload)
        else:
            self._block = (stream_id, flags, bytearray(payload))

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        block = self._block
        if block is None or block[0] != stream_id:
            raise f.FrameError(f.PROTOCOL_ERROR, "a CONTINUATION frame without its HEADERS")
        block[2].extend(payload)
        if len(block[2]) > _MAX_HEADER_BLOCK:
            raise f.FrameError(f.PROTOCOL_ERROR, "a header block over 1 MiB")
        if flags & f.END_HEADERS:
            self._block = None
            self._header_block(block[1], stream_id, bytes(block[2]))

    def _header_block(self, flags: int, stream_id: int, block: bytes) -> None:
        headers = self._decoder.decode(block)  # (always: the table is the connection's)
        stream = self._streams.get(stream_id)
        if stream is None or stream.ended or stream.closed:
            return
        end = flags & f.END_STREAM
        if stream.headers is None:
            stream.headers = headers
            stream.state.mark_answered()
            if headers.get(b":status") != b"200":
                stream.error = UnavailableError(
                    kind="server",
                    message=f"HTTP status {headers.get(b':status', b'?').decode()} "
                    "instead of a gRPC answer",
                    endpoint=self.endpoint,
                )
        elif not end:
            raise f.FrameError(f.PROTOCOL_ERROR, "trailers that do not end the stream")
        status = grpc_status(headers)
        if status is not None:
            stream.status = status
        if end:
            self._ended(stream)
        else:
            stream.notify()

    def _settings(self, flags: int, payload: bytes) -> None:
        if flags & f.ACK:
            if payload:
                raise f.FrameError(f.FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise f.FrameError(f.FRAME_SIZE_ERROR, "a SETTINGS frame of a partial setting")
        for pos in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, pos)
            if key == f.HEADER_TABLE_SIZE:
                self._table_update = True
            elif key == f.MAX_CONCURRENT_STREAMS:
                self._max_streams = value
            elif key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise f.FrameError(f.FLOW_CONTROL_ERROR, f"an initial window of {value}")
                delta = value - self._initial_window
                self._initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > f.MAX_WINDOW:
                        raise f.FrameError(f.FLOW_CONTROL_ERROR, "a stream's window overflowed")
            elif key == f.MAX_FRAME_SIZE_SETTING:
                if not f.MAX_FRAME_SIZE <= value <= f.LARGEST_FRAME_SIZE:
                    raise f.FrameError(f.PROTOCOL_ERROR, f"a maximum frame size of {value}")
                self._max_frame = value
            elif key == f.ENABLE_PUSH and value > 1:
                raise f.FrameError(f.PROTOCOL_ERROR, f"ENABLE_PUSH set to {value}")
        self._acknowledge(f.SETTINGS_ACK)
        self._more_capacity()

    def _ping(self, flags: int, payload: bytes) -> None:
        if len(payload) != 8:
            raise f.FrameError(f.FRAME_SIZE_ERROR, f"a PING of {len(payload)} bytes")
        if not flags & f.ACK:  # (an ACK answers ours: reading anything ended the wait)
            self._acknowledge(f.ping_frame(payload, ack=True))

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise f.FrameError(f.FRAME_SIZE_ERROR, f"a WINDOW_UPDATE of {len(payload)} bytes")
        increment = int.from_bytes(payload, "big") & f.MAX_WINDOW
        if not increment:
            raise f.FrameError(f.PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
        if not stream_id:
            self._send_window += increment
            if self._send_window > f.MAX_WINDOW:
                raise f.FrameError(f.FLOW_CONTROL_ERROR, "the connection's window overflowed")
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                return
            stream.send_window += increment
            if stream.send_window > f.MAX_WINDOW:
                raise f.FrameError(f.FLOW_CONTROL_ERROR, "a stream's window overflowed")
        if self._waiting:
            self._more_capacity()

    def _reset(self, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise f.FrameError(f.PROTOCOL_ERROR, "a RST_STREAM frame on stream 0")
        if len(payload) != 4:
            raise f.FrameError(f.FRAME_SIZE_ERROR, f"a RST_STREAM of {len(payload)} bytes")
        stream = self._streams.get(stream_id)
        if stream is None or stream.closed:
            return
        stream.closed = True
        code = int.from_bytes(payload, "big")
        if code == f.REFUSED_STREAM:
            stream.state.sent = False
        if not stream.ended:  # (grpc-go resets a stream it answered early: ignore)
            why = f"the server reset the stream ({f.code_name(code)})"
            stream.error = lost(self.endpoint, why)
        stream.notify()
        self._more_capacity()

    def _goaway(self, payload: bytes) -> None:
        """GOAWAY: streams the server took (ids up to ``last_stream_id``) run to their end;
        the rest were never processed, so they fail as not sent (safe to retry)."""
        if len(payload) < 8:
            raise f.FrameError(f.FRAME_SIZE_ERROR, f"a GOAWAY of {len(payload)} bytes")
        last = int.from_bytes(payload[:4], "big") & f.MAX_WINDOW
        reason = f.code_name(int.from_bytes(payload[4:8], "big"))
        if len(payload) > 8:
            reason += f": {payload[8:].decode('utf-8', 'replace')}"
        self._draining = True
        for stream in list(self._streams.values()):
            if stream.id > last:
                stream.state.sent = False
                stream.error = lost(self.endpoint, f"the server is going away ({reason})")
                stream.notify()
        if all(stream.id > last for stream in self._streams.values()):
            self._fail(lost(self.endpoint, f"the server is going away ({reason})"))
        self._more_capacity()


def _drop(message: bytes | bytearray) -> None:
    """The ``on_message`` of a stream whose handler failed: what comes after is dropped."""


_CONNECTION_FRAMES: Final = {
    f.SETTINGS: "SETTINGS frame",
    f.PING: "PING frame",
    f.GOAWAY: "GOAWAY frame",
}
"""The frame types only stream 0 may carry (and their names, for the error)."""
