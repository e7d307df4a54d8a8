"""How a stream assembles gRPC messages from DATA payloads (``CallStream.feed``): a long
message goes into a buffer of its announced length, a short one through a growing buffer."""

from __future__ import annotations

import pytest

from trio_etcd_tree import ProtocolError
from trio_etcd_tree._wire.base import CallState
from trio_etcd_tree._wire.grpc import calls
from trio_etcd_tree._wire.grpc.calls import CallStream, frame

LONG = bytes(range(256)) * 1000  # 256 kB, over calls.PREALLOCATE


def _stream() -> CallStream:
    return CallStream(1, CallState(), 65_535)


def _feed(stream: CallStream, data: bytes, size: int) -> list[bool]:
    return [stream.feed(data[i : i + size]) for i in range(0, len(data), size)]


def test_a_long_message_in_frames_is_assembled_in_place_and_kept_whole() -> None:
    stream = _stream()
    completed = _feed(stream, frame(LONG), 16_384)
    assert completed == [False] * (len(completed) - 1) + [True]
    assert list(stream.messages) == [LONG]
    assert isinstance(stream.messages[0], bytearray)  # (handed over without a copy)


@pytest.mark.parametrize("size", [16_384, 1000, 7])
def test_messages_after_a_long_one_in_the_same_payload_are_kept(size: int) -> None:
    stream = _stream()
    data = frame(b"a") + frame(LONG) + frame(b"bc") + frame(LONG[:70_000]) + frame(b"") + b"\0\0"
    _feed(stream, data, size)
    assert list(stream.messages) == [b"a", LONG, b"bc", LONG[:70_000], b""]
    assert stream.feed(b"\0\0\0") is True  # the last prefix completed: an empty message
    assert stream.messages[-1] == b""


def test_a_long_message_ending_a_payload_exactly_leaves_nothing_behind() -> None:
    stream = _stream()
    assert stream.feed(frame(LONG)[:100_000]) is False
    assert stream.feed(frame(LONG)[100_000:]) is True
    assert stream.feed(frame(b"x")) is True
    assert list(stream.messages) == [LONG, b"x"]


def test_a_truncated_long_message_is_no_message() -> None:
    stream = _stream()
    _feed(stream, frame(LONG)[:-1], 16_384)
    assert not stream.messages
    with pytest.raises(ProtocolError, match="a unary answer of 0 messages"):
        stream.status = (0, "")
        stream.ended = True
        stream.result("ep", "range", writes=False)


def test_a_length_over_the_preallocation_limit_grows_with_what_arrives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(calls, "PREALLOCATE_MAX", 100_000)
    stream = _stream()
    _feed(stream, frame(LONG)[:150_000], 16_384)
    assert not stream.messages
    assert len(stream._buffer) == 150_000 - 5  # nothing allocated ahead of the bytes
    _feed(stream, frame(LONG)[150_000:], 16_384)
    assert list(stream.messages) == [LONG]
    assert type(stream.messages[0]) is bytes


def test_a_compressed_long_message_is_refused() -> None:
    with pytest.raises(ProtocolError, match="compressed"):
        _stream().feed(b"\1" + frame(LONG)[1:20_000])
