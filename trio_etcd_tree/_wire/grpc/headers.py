"""gRPC's HTTP/2 headers: the request header blocks we send, the answers' blocks we decode,
and the ``grpc-status`` they end with (RFC 7541 for HPACK).

Requests: every field is "indexed" from the static table (``:method: POST``, ``:scheme``)
or a "literal without indexing" (its name from the static table where it is there), so a
block's bytes never depend on what was sent before. A method's block is therefore built once
per connection, and a call only appends ``grpc-timeout`` and ``token``; we never add to the
peer's dynamic table (the cost is a few bytes a request). When the peer announces a table
size, the next block starts by setting our table's size to 0, which every size allows.

Answers: hpack's decoder, which keeps the dynamic table in step with the server's encoder
(every block is decoded, also those of streams we already left), behind a memory of the
blocks made only of one-byte indexes (see :class:`HeaderDecoder`).
"""

from __future__ import annotations

import math
import urllib.parse
from typing import Final, final

import hpack
import hpack.hpack
import hpack.table

from .frames import COMPRESSION_ERROR, FrameError

__all__ = ["HeaderDecoder", "Method", "grpc_status", "literal", "request_block", "timeout_field"]


@final
class Method:
    """A gRPC method's path (``/etcdserverpb.KV/Range``); its header block is built once
    per connection (:func:`request_block`)."""

    __slots__ = ("path", "raw_path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.raw_path = path.encode()


_STATIC_NAMES: Final = {
    name: index
    for index, (name, _value) in reversed(
        list(enumerate(hpack.table.HeaderTable.STATIC_TABLE, start=1))
    )
}
TABLE_SIZE_ZERO: Final = b"\x20"
"""A dynamic table size update to 0 (RFC 7541 section 6.3)."""


def literal(name: bytes, value: bytes) -> bytes:
    """One field as a literal without indexing, not Huffman-coded."""
    index = _STATIC_NAMES.get(name)
    if index is None:
        head = b"\0" + hpack.hpack.encode_integer(len(name), 7) + name
    else:
        head = bytes(hpack.hpack.encode_integer(index, 4))
    return head + hpack.hpack.encode_integer(len(value), 7) + value


def request_block(scheme: bytes, authority: bytes, path: bytes) -> bytes:
    """The constant headers of a gRPC call of ``path`` (``/etcdserverpb.KV/Range``)."""
    scheme_field = {b"http": b"\x86", b"https": b"\x87"}.get(scheme) or literal(b":scheme", scheme)
    return b"".join(
        (
            b"\x83",  # :method: POST
            scheme_field,
            literal(b":path", path),
            literal(b":authority", authority),
            literal(b"content-type", b"application/grpc"),
            literal(b"te", b"trailers"),
        )
    )


def timeout_field(seconds: float) -> bytes:
    """``grpc-timeout``: at most 8 digits and a unit; rounded up so it never undercuts us."""
    millis = max(1, math.ceil(seconds * 1000))
    if millis < 100_000_000:
        return literal(b"grpc-timeout", b"%dm" % millis)
    return literal(b"grpc-timeout", b"%dS" % min(99_999_999, math.ceil(seconds)))


class HeaderDecoder:
    """hpack's decoder, which remembers the header blocks that only refer to table entries.

    grpc-go sends the same response headers and trailers on every call, and from the
    second call on each is a block of one-byte indexed fields (``\\x88\\xc0``): decoding
    one again took ~3 us. Such a block changes nothing in the table, so its headers stay
    the same until a block that may change the table (any other kind) is decoded: then
    every remembered block is forgotten. The dict returned is shared: read it only.
    """

    def __init__(self) -> None:
        self._decoder = hpack.Decoder()
        self._blocks: dict[bytes, dict[bytes, bytes]] = {}

    def decode(self, block: bytes) -> dict[bytes, bytes]:
        """The block's fields (the last of a repeated name wins).

        Raises:
            FrameError: the block cannot be decoded (COMPRESSION_ERROR: the table is lost).
        """
        known = self._blocks.get(block)
        if known is not None:
            return known
        try:
            fields = self._decoder.decode(block, raw=True)
        except hpack.HPACKError as exc:
            raise FrameError(COMPRESSION_ERROR, f"an undecodable header block: {exc}") from exc
        headers: dict[bytes, bytes] = dict(fields)
        if block.translate(None, _INDEXED):  # a field that is not a one-byte index
            self._blocks.clear()
        elif len(self._blocks) < 64:
            self._blocks[block] = headers
        return headers


_INDEXED: Final = bytes(range(0x80, 0x100))
"""The first bytes of HPACK's one-byte indexed fields (0x80, index 0, is invalid and
rejected by the decoder before anything is remembered)."""


def grpc_status(headers: dict[bytes, bytes]) -> tuple[int, str] | None:
    """``grpc-status`` and the (percent-decoded) ``grpc-message``, if the block has them."""
    raw = headers.get(b"grpc-status")
    if raw is None:
        return None
    message = headers.get(b"grpc-message", b"")
    text = urllib.parse.unquote(message.decode("utf-8", "replace")) if message else ""
    try:
        return int(raw), text
    except ValueError:
        return 2, f"unreadable grpc-status {raw!r}: {text}"
