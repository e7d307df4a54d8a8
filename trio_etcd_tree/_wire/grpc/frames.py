"""HTTP/2 frames as the gRPC client writes and reads them (RFC 9113 section 4 and 6).

Every frame is a 9-byte header (24-bit length, type, flags, 31-bit stream id) and a payload.
This module knows their layout only: what a frame means to a connection is
:mod:`.connection`'s business. What the client sends is built from :data:`HEAD` in one
``pack``; what it receives is cut by :class:`FrameReader`, which refuses a frame longer
than :data:`MAX_FRAME_SIZE` (the size we accept: we never raise it in our SETTINGS).
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "CONNECTION_PREFACE",
    "SETTINGS_ACK",
    "FrameError",
    "FrameReader",
    "code_name",
    "data_frame",
    "headers_frames",
    "ping_frame",
    "rst_stream_frame",
    "settings_frame",
    "unpadded",
    "window_update_frame",
]

# frame types
DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

# flags
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20

# settings
HEADER_TABLE_SIZE: Final = 0x1
ENABLE_PUSH: Final = 0x2
MAX_CONCURRENT_STREAMS: Final = 0x3
INITIAL_WINDOW_SIZE: Final = 0x4
MAX_FRAME_SIZE_SETTING: Final = 0x5

# error codes
NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
FLOW_CONTROL_ERROR: Final = 0x3
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9

_CODE_NAMES: Final = (
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
)

MAX_FRAME_SIZE: Final = 16_384
"""The largest frame payload we accept (HTTP/2's default, which we never raise) and the
smallest a peer may allow us."""
LARGEST_FRAME_SIZE: Final = (1 << 24) - 1
"""The largest SETTINGS_MAX_FRAME_SIZE a peer may announce."""
MAX_WINDOW: Final = (1 << 31) - 1
"""The largest flow-control window HTTP/2 allows."""
CONNECTION_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

HEAD: Final = struct.Struct(">IBI")
"""A frame header: length << 8 | type (the first four bytes), flags, stream id."""
_SETTING: Final = struct.Struct(">HI")
_U32: Final = struct.Struct(">I")


class FrameError(Exception):
    """The peer broke HTTP/2: the connection cannot go on (``code`` is the error code a
    GOAWAY of ours would carry)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} ({code_name(code)})")
        self.code = code


def code_name(code: int) -> str:
    """An HTTP/2 error code's name (``REFUSED_STREAM``), or ``error code N``."""
    if 0 <= code < len(_CODE_NAMES):
        return _CODE_NAMES[code]
    return f"error code {code}"


def _head(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return HEAD.pack(length << 8 | kind, flags, stream_id)


def settings_frame(settings: dict[int, int]) -> bytes:
    payload = b"".join(_SETTING.pack(key, value) for key, value in settings.items())
    return _head(len(payload), SETTINGS, 0, 0) + payload


SETTINGS_ACK: Final = _head(0, SETTINGS, ACK, 0)


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return _head(4, WINDOW_UPDATE, 0, stream_id) + _U32.pack(increment)


def ping_frame(data: bytes, *, ack: bool) -> bytes:
    return _head(8, PING, ACK if ack else 0, 0) + data


def rst_stream_frame(stream_id: int, code: int) -> bytes:
    return _head(4, RST_STREAM, 0, stream_id) + _U32.pack(code)


def data_frame(stream_id: int, data: bytes, *, end_stream: bool) -> bytes:
    return _head(len(data), DATA, END_STREAM if end_stream else 0, stream_id) + data


def headers_frames(stream_id: int, block: bytes, *, end_stream: bool, max_size: int) -> bytes:
    """A HEADERS frame carrying ``block``, followed by CONTINUATION frames when it is longer
    than ``max_size`` (the peer's SETTINGS_MAX_FRAME_SIZE)."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_size:
        return _head(len(block), HEADERS, flags | END_HEADERS, stream_id) + block
    out = [_head(max_size, HEADERS, flags, stream_id), block[:max_size]]
    for start in range(max_size, len(block), max_size):
        piece = block[start : start + max_size]
        last = start + max_size >= len(block)
        out += (_head(len(piece), CONTINUATION, END_HEADERS if last else 0, stream_id), piece)
    return b"".join(out)


def unpadded(payload: bytes, flags: int, kind: str) -> bytes:
    """A DATA or HEADERS payload without its padding (when the PADDED flag is set)."""
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise FrameError(PROTOCOL_ERROR, f"a {kind} frame with more padding than payload")
    return payload[1 : len(payload) - payload[0]]


class FrameReader:
    """Cuts received bytes into frames; keeps an incomplete frame for the next bytes."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes | bytearray) -> list[tuple[int, int, int, bytes]]:
        """The frames completed by ``data``: (type, flags, stream id, payload) each.

        Raises:
            FrameError: a frame longer than :data:`MAX_FRAME_SIZE`.
        """
        if self._pending:
            data = self._pending + data
        elif type(data) is not bytes:  # (TLS reads are bytearrays: payloads are keys)
            data = bytes(data)
        frames = []
        unpack = HEAD.unpack_from
        pos, end = 0, len(data)
        while end - pos >= 9:
            word, flags, stream_id = unpack(data, pos)
            length = word >> 8
            if length > MAX_FRAME_SIZE:
                raise FrameError(
                    FRAME_SIZE_ERROR,
                    f"a frame of {length} bytes, larger than the {MAX_FRAME_SIZE} we accept",
                )
            stop = pos + 9 + length
            if stop > end:
                break
            frames.append((word & 0xFF, flags, stream_id & MAX_WINDOW, data[pos + 9 : stop]))
            pos = stop
        self._pending = data[pos:] if pos < end else b""
        return frames
