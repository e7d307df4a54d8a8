"""Codecs: how a node's bytes become a Python value and back.

A codec is any object with ``decode(raw: bytes) -> value`` and ``encode(value) -> bytes``
and a ``name``. ``encode`` must reject what it cannot represent (``TypeError`` or
``ValueError``) rather than write something else; ``decode`` raises ``ValueError`` for bytes
it cannot read, and the tree then keeps the raw bytes and reports the error on the node.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, final, runtime_checkable

__all__ = ["BOOL", "BYTES", "FLOAT", "INT", "JSON", "STR", "Codec"]


@runtime_checkable
class Codec(Protocol):
    """What the type registry needs of a codec."""

    name: str

    def decode(self, raw: bytes) -> Any: ...

    def encode(self, value: Any) -> bytes: ...


@final
class _Str:
    name = "str"

    def __repr__(self) -> str:
        return "<codec str>"

    def decode(self, raw: bytes) -> str:
        return raw.decode()

    def encode(self, value: object) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"a str node takes str, not {type(value).__name__}")
        return value.encode()


@final
class _Bytes:
    name = "bytes"

    def __repr__(self) -> str:
        return "<codec bytes>"

    def decode(self, raw: bytes) -> bytes:
        return raw

    def encode(self, value: object) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"a bytes node takes bytes, not {type(value).__name__}")
        return bytes(value)


@final
class _Int:
    name = "int"

    def __repr__(self) -> str:
        return "<codec int>"

    def decode(self, raw: bytes) -> int:
        return int(raw.decode("ascii").strip())

    def encode(self, value: object) -> bytes:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"an int node takes int, not {type(value).__name__}")
        return str(value).encode()


@final
class _Float:
    name = "float"

    def __repr__(self) -> str:
        return "<codec float>"

    def decode(self, raw: bytes) -> float:
        return float(raw.decode("ascii").strip())

    def encode(self, value: object) -> bytes:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"a float node takes float, not {type(value).__name__}")
        return repr(float(value)).encode()


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@final
class _Bool:
    name = "bool"

    def __repr__(self) -> str:
        return "<codec bool>"

    def decode(self, raw: bytes) -> bool:
        text = raw.decode("ascii").strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"not a boolean: {raw!r} (true/false, 1/0, yes/no, on/off)")

    def encode(self, value: object) -> bytes:
        if not isinstance(value, bool):
            raise TypeError(f"a bool node takes bool, not {type(value).__name__}")
        return b"true" if value else b"false"


@final
class _Json:
    name = "json"

    def __repr__(self) -> str:
        return "<codec json>"

    def decode(self, raw: bytes) -> Any:
        return json.loads(raw)

    def encode(self, value: object) -> bytes:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


STR: Codec = _Str()
"""UTF-8 text; the default."""
BYTES: Codec = _Bytes()
"""The raw bytes, unchanged."""
INT: Codec = _Int()
"""A decimal integer."""
FLOAT: Codec = _Float()
"""A float as Python writes it (``repr``), so it reads back exactly."""
BOOL: Codec = _Bool()
"""``true``/``false`` (reads 1/0, yes/no, on/off too, in any case)."""
JSON: Codec = _Json()
"""A JSON document (compact when written)."""
