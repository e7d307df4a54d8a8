"""The client's own HTTP/2 framing against frames written by others: hyperframe's and raw
bytes on the server's side of the scripted connection (grpc_script.py, whose h2 server also
checks what the client writes), deterministically under trio's MockClock."""

from __future__ import annotations

import struct
from typing import Any

import h2.settings
import hpack
import pytest
import trio
import trio.testing
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PriorityFrame,
)

from trio_etcd_tree import UnavailableError
from trio_etcd_tree._wire.base import CallState, PutRequest, RangeRequest
from trio_etcd_tree._wire.grpc.calls import frame
from trio_etcd_tree._wire.grpc.connection import GrpcConnection
from trio_etcd_tree._wire.grpc.transport import GrpcTransport

from .grpc_script import EP, Network, Server, call, first_call, put_answer, scripted

S = h2.settings.SettingCodes


def raw(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """A frame as bytes, whatever it says."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream_id)
        + payload
    )


def setting(key: int, value: int) -> bytes:
    return raw(0x4, 0, 0, struct.pack(">HI", key, value))


def block(*headers: tuple[bytes, bytes]) -> bytes:
    """A header block of never-indexed literals: the client's HPACK table stays as the h2
    server's encoder left it."""
    fields = [hpack.NeverIndexedHeaderTuple(name, value) for name, value in headers]
    return bytes(hpack.Encoder().encode(fields, huffman=False))


async def send(server: Server, *frames: Frame | bytes) -> None:
    await server.flush()
    await server.stream.send_all(
        b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
    )


async def test_answer_in_continuation_frames_with_padding_priority_and_unknown_frames(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async def answer(server: Server, c: Any) -> None:
        sid = c.stream_id
        head = block((b":status", b"200"), (b"x-long", b"v" * 40_000))
        message = frame(put_answer(4))
        await send(
            server,
            HeadersFrame(
                sid, head[:100], flags=["PADDED", "PRIORITY"], pad_length=7, stream_weight=5
            ),
            ContinuationFrame(sid, head[100:16_000]),
            ContinuationFrame(sid, head[16_000:32_000]),
            ContinuationFrame(sid, head[32_000:], flags=["END_HEADERS"]),
            PriorityFrame(sid, stream_weight=3),
            raw(0xEE, 0, sid, b"an extension nobody knows"),
            raw(0xEF, 0xFF, 0, b"on the connection too"),
            raw(0x8, 0, sid + 200, b"\0\0\0\1"),  # (a stream we do not know)
            DataFrame(sid, message[:3], flags=["PADDED"], pad_length=20),
            DataFrame(sid, message[3:]),
            HeadersFrame(
                sid, block((b"grpc-status", b"0")), flags=["END_HEADERS", "END_STREAM", "PADDED"]
            ),
        )

    result = await scripted(grpc, net, PutRequest(b"/a", b"1"), answer, CallState())
    assert result.revision == 4

    async def plain(server: Server, c: Any) -> None:  # the table is still the server's
        await server.answer(c, put_answer(5))

    assert (await scripted(grpc, net, PutRequest(b"/a", b"1"), plain, CallState())).revision == 5
    assert len(net.servers) == 1


def _headers(sid: int) -> bytes:
    return raw(0x1, 0x4, sid, block((b":status", b"200")))


BREACHES: list[tuple[str, Any, str]] = [
    ("oversized", lambda sid: raw(0x0, 0, sid, b"x" * 16_385), "a frame of 16385 bytes"),
    ("data padding", lambda sid: raw(0x0, 0x8, sid, b"\x09abc"), "DATA frame with more padding"),
    ("empty padded", lambda sid: raw(0x1, 0xC, sid), "HEADERS frame with more padding"),
    ("data on 0", lambda sid: raw(0x0, 0, 0, b"x"), "a DATA frame on stream 0"),
    ("headers on 0", lambda sid: raw(0x1, 0x4, 0, b"\x88"), "a HEADERS frame on stream 0"),
    ("short priority", lambda sid: raw(0x1, 0x24, sid, b"\0\0"), "too short for a priority"),
    ("lone continuation", lambda sid: raw(0x9, 0x4, sid), "CONTINUATION frame without its HEADERS"),
    (
        "continuation of another stream",
        lambda sid: raw(0x1, 0, sid, b"\x88") + raw(0x9, 0x4, sid + 2),
        "CONTINUATION frame without its HEADERS",
    ),
    (
        "frame inside a block",
        lambda sid: raw(0x1, 0, sid, b"\x88") + raw(0x0, 0, sid),
        "a frame inside a header block",
    ),
    (
        "endless block",
        lambda sid: raw(0x1, 0, sid) + raw(0x9, 0, sid, b"\0" * 16_384) * 65,
        "a header block over 1 MiB",
    ),
    ("bad hpack", lambda sid: raw(0x1, 0x4, sid, b"\x80"), "an undecodable header block"),
    (
        "trailers not ending",
        lambda sid: _headers(sid) + raw(0x1, 0x4, sid, block((b"grpc-status", b"0"))),
        "trailers that do not end the stream",
    ),
    ("settings on a stream", lambda sid: raw(0x4, 0, sid), "a SETTINGS frame on a stream"),
    ("ack with payload", lambda sid: raw(0x4, 0x1, 0, b"\0" * 6), "a SETTINGS ACK with a payload"),
    ("partial setting", lambda sid: raw(0x4, 0, 0, b"\0" * 5), "a partial setting"),
    ("window too large", lambda sid: setting(0x4, 1 << 31), "an initial window of 2147483648"),
    ("frame size too small", lambda sid: setting(0x5, 16_383), "a maximum frame size of 16383"),
    ("frame size too large", lambda sid: setting(0x5, 1 << 24), "a maximum frame size of 16777216"),
    ("push enabled", lambda sid: setting(0x2, 2), "ENABLE_PUSH set to 2"),
    (
        "stream window overflow by settings",
        lambda sid: (
            raw(0x8, 0, sid, struct.pack(">I", (1 << 31) - 65_536)) + setting(0x4, 1_000_000)
        ),
        "a stream's window overflowed",
    ),
    ("short ping", lambda sid: raw(0x6, 0, 0, b"1234"), "a PING of 4 bytes"),
    ("ping on a stream", lambda sid: raw(0x6, 0, sid, b"12345678"), "a PING frame on a stream"),
    ("goaway on a stream", lambda sid: raw(0x7, 0, sid, b"\0" * 8), "a GOAWAY frame on a stream"),
    ("short goaway", lambda sid: raw(0x7, 0, 0, b"\0" * 4), "a GOAWAY of 4 bytes"),
    ("short window update", lambda sid: raw(0x8, 0, 0, b"\0" * 3), "a WINDOW_UPDATE of 3 bytes"),
    ("window update of 0", lambda sid: raw(0x8, 0, sid, b"\0" * 4), "a WINDOW_UPDATE of 0"),
    (
        "connection window overflow",
        lambda sid: raw(0x8, 0, 0, struct.pack(">I", (1 << 31) - 1)),
        "the connection's window overflowed",
    ),
    (
        "stream window overflow",
        lambda sid: raw(0x8, 0, sid, struct.pack(">I", (1 << 31) - 1)),
        "a stream's window overflowed",
    ),
    ("reset on 0", lambda sid: raw(0x3, 0, 0, b"\0" * 4), "a RST_STREAM frame on stream 0"),
    ("short reset", lambda sid: raw(0x3, 0, sid, b"\0"), "a RST_STREAM of 1 bytes"),
    ("push promise", lambda sid: raw(0x5, 0x4, sid, b"\0\0\0\2"), "a PUSH_PROMISE"),
]


@pytest.mark.parametrize(
    ("bytes_of", "expected"), [b[1:] for b in BREACHES], ids=[b[0] for b in BREACHES]
)
async def test_a_server_breaking_http2_ends_the_connection_with_a_clear_error(
    grpc: GrpcTransport,
    net: Network,
    bytes_of: Any,
    expected: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def breach(server: Server, c: Any) -> None:
        await send(server, bytes_of(c.stream_id))

    state = CallState()
    error = await scripted(grpc, net, PutRequest(b"/a", b"1"), breach, state)
    assert isinstance(error, UnavailableError) and "HTTP/2 protocol error" in str(error)
    assert expected in str(error)
    assert error.outcome_unknown and state.sent
    await trio.testing.wait_all_tasks_blocked()
    assert grpc.connection_count() == 0


async def test_settings_changed_mid_connection(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    server = await first_call(grpc, net)
    # a long token goes in a HEADERS frame and CONTINUATION frames (16 KiB frames)
    token = "t" * 40_000
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: grpc.call(EP, PutRequest(b"/t", b""), token=token, state=CallState())
        )
        c = await server.call(1)
        assert c.headers[b"token"] == token.encode()
        await server.answer(c, put_answer(2))
    async with trio.open_nursery() as nursery:  # (the token's field is kept for the next)
        nursery.start_soon(
            lambda: grpc.call(EP, PutRequest(b"/t", b""), token=token, state=CallState())
        )
        c = await server.call(2)
        assert c.headers[b"token"] == token.encode()
        await server.answer(c, put_answer(2))
    # larger frames, a smaller window, a table size: each used from the next frame on
    server.h2.update_settings(
        {S.MAX_FRAME_SIZE: 40_000, S.INITIAL_WINDOW_SIZE: 50_000, S.HEADER_TABLE_SIZE: 100}
    )
    await server.flush()
    # (h2 takes larger frames only from its next read on: the ACK comes alone, unasked)
    await server.wait_for(lambda: server.h2.local_settings.max_frame_size == 40_000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, grpc, PutRequest(b"/big", b"v" * 100_000))
        c = await server.call(3)
        assert c.sizes[0] == 40_000 and sum(c.sizes) == len(c.data) > 100_000
        assert c.headers[b":path"] == b"/etcdserverpb.KV/Put"
        await server.answer(c, put_answer(3))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, grpc, RangeRequest(b"/a"))
        c = await server.call(4)
        assert c.headers[b":path"] == b"/etcdserverpb.KV/Range"
        await server.answer(c, put_answer(4))
    assert len(net.servers) == 1


async def test_a_ping_of_the_server_is_acknowledged(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    server = await first_call(grpc, net)
    server.h2.ping(b"12345678")
    await server.flush()
    await server.wait_for(lambda: server.ping_acks == 1)
    assert grpc.connection_count() == 1


async def test_the_preface_goes_out_before_any_acknowledgement(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A TLS server sends its SETTINGS as soon as the handshake is done: read before the
    first write, its ACK must still follow our preface."""
    client, server = trio.testing.memory_stream_pair()
    await server.send_all(setting(0x3, 100) + raw(0x6, 0, 0, b"12345678"))
    connection = GrpcConnection(client, endpoint=EP, authority="etcd.test", scheme="http")
    nursery.start_soon(connection.run)
    await connection.started.wait()
    await trio.testing.wait_all_tasks_blocked()
    await trio.sleep(1)
    sent = await server.receive_some()
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    assert sent.startswith(preface + raw(0x4, 0, 0, b"\0\x02\0\0\0\0\0\x04\x01\0\0\0"))
    assert raw(0x4, 0x1, 0) in sent and raw(0x6, 0x1, 0, b"12345678") in sent
    connection.close()


async def test_a_connection_that_used_up_its_stream_ids_makes_way_for_a_new_one(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async def answer(server: Server, c: Any) -> None:
        await server.answer(c, put_answer(1))

    await scripted(grpc, net, PutRequest(b"/", b""), answer, CallState())
    old = grpc._endpoints[EP].connection
    old._next_id = 1 << 31
    # refused before anything was sent: the call goes out on a new connection
    result = await scripted(grpc, net, PutRequest(b"/", b""), answer, CallState())
    assert result.revision == 1 and len(net.servers) == 2
    await old.finished.wait()
    assert "used up its stream ids" in str(old._error)
    # with a stream still open, the old connection goes on until it ends
    state = CallState()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, grpc, RangeRequest(b"/slow"))
        server, slow = await net.unanswered()
        current = grpc._endpoints[EP].connection
        current._next_id = 1 << 31
        result = await scripted(grpc, net, PutRequest(b"/", b""), answer, state)
        assert result.revision == 1 and len(net.servers) == 3
        assert not current.usable and current._error is None
        await server.answer(slow, put_answer(2))
    await current.finished.wait()
