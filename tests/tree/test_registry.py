"""Codecs and the type registry."""

from __future__ import annotations

import math

import pytest

import trio_etcd_tree as et


@pytest.mark.parametrize(
    ("codec", "value", "raw"),
    [
        (et.STR, "hé", "hé".encode()),
        (et.BYTES, b"\x00\xff", b"\x00\xff"),
        (et.INT, -42, b"-42"),
        (et.FLOAT, 0.1, b"0.1"),
        (et.FLOAT, 3.0, b"3.0"),
        (et.BOOL, True, b"true"),
        (et.BOOL, False, b"false"),
        (et.JSON, {"a": [1, None]}, b'{"a":[1,null]}'),
    ],
)
def test_round_trips(codec: et.Codec, value: object, raw: bytes) -> None:
    assert codec.encode(value) == raw
    assert codec.decode(raw) == value
    assert repr(codec) == f"<codec {codec.name}>"


@pytest.mark.parametrize(
    ("codec", "raw", "value"),
    [
        (et.INT, b" 7\n", 7),
        (et.FLOAT, b"5", 5.0),
        (et.FLOAT, b"inf", math.inf),
        (et.BOOL, b"YES", True),
        (et.BOOL, b"off", False),
        (et.BOOL, b"0", False),
        (et.BYTES, b"", b""),
    ],
)
def test_lenient_reading(codec: et.Codec, raw: bytes, value: object) -> None:
    assert codec.decode(raw) == value


@pytest.mark.parametrize(
    ("codec", "value"),
    [
        (et.STR, 1),
        (et.BYTES, "x"),
        (et.INT, True),
        (et.INT, 1.5),
        (et.FLOAT, "1"),
        (et.FLOAT, False),
        (et.BOOL, 1),
    ],
)
def test_encoding_rejects_other_types(codec: et.Codec, value: object) -> None:
    with pytest.raises(TypeError, match=f"a.? {codec.name} node takes"):
        codec.encode(value)


def test_encoding_rejects_unrepresentable() -> None:
    with pytest.raises(ValueError):
        et.JSON.encode(math.nan)
    assert et.BYTES.encode(bytearray(b"x")) == b"x"


@pytest.mark.parametrize(("codec", "raw"), [(et.INT, b"x"), (et.BOOL, b"maybe"), (et.JSON, b"{")])
def test_decoding_errors(codec: et.Codec, raw: bytes) -> None:
    with pytest.raises(ValueError):
        codec.decode(raw)


def test_matching_rules() -> None:
    types = et.TypeRegistry()
    assert not types
    types.register("a/*/c", codec=et.INT)
    types.register("a/**", codec=et.JSON)
    types.register("x/:tag/y", codec=et.BOOL)
    types.register("", codec=et.BYTES)
    assert types
    assert types.codec_for(("a", "b", "c")) is et.INT  # more literal segments win
    assert types.codec_for(("a", "b")) is et.JSON
    assert types.codec_for(("a", "b", "c", "d")) is et.JSON
    assert types.codec_for(("a",)) is et.STR  # ** needs at least one segment
    assert types.codec_for(("a", ":t", "c")) is et.STR  # wildcards do not cross a :border
    assert types.codec_for(("a", "b", ":t")) is et.STR
    assert types.codec_for(("x", ":tag", "y")) is et.BOOL
    assert types.codec_for(()) is et.BYTES
    assert types.codec_for(("z",)) is et.STR


def test_priority_beats_specificity_and_order_breaks_ties() -> None:
    types = et.TypeRegistry()
    types.register("a/b", codec=et.INT)
    types.register("a/*", codec=et.JSON, priority=1)
    assert types.codec_for(("a", "b")) is et.JSON
    types.register("*/*", codec=et.BOOL, priority=1)
    types.register("*/*", codec=et.BYTES, priority=1)
    assert types.codec_for(("c", "d")) is et.BOOL


def test_codec_and_node_class_are_chosen_separately() -> None:
    types = et.TypeRegistry()

    class Service(et.Node):
        pass

    types.register("s/*", node_class=Service)
    types.register("s/**", codec=et.JSON)
    assert types.codec_for(("s", "web")) is et.JSON
    assert types.node_class_for(("s", "web")) is Service
    assert types.node_class_for(("t",)) is None


def test_registration_errors() -> None:
    types = et.TypeRegistry()
    with pytest.raises(ValueError, match="a codec, a node_class, or both"):
        types.register("a")
    with pytest.raises(TypeError, match="not a codec"):
        types.register("a", codec="int")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must subclass Node"):
        types.register("a", node_class=int)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad pattern segment"):
        types.register("a/b*", codec=et.INT)
    with pytest.raises(ValueError, match="bad pattern segment"):
        types.register("a//b", codec=et.INT)
