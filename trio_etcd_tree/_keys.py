"""Keys are bytes; these helpers turn what users pass into them."""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["KeyLike", "key_bytes", "key_text", "prefix_end", "range_end_for"]

KeyLike: TypeAlias = bytes | str
"""A key as users may give it: raw bytes, or text that is encoded as UTF-8."""


def key_bytes(key: KeyLike) -> bytes:
    """Return ``key`` as bytes: text is encoded as UTF-8, bytes are kept as they are."""
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytes):
        return key
    raise TypeError(f"a key must be bytes or str, not {type(key).__name__}")


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``.

    etcd's rule: add one to the last byte that is not 0xff and cut off what follows. A
    prefix of only 0xff bytes (or an empty one) has no such bound: ``b"\\0"`` then means
    "every key from ``prefix`` on".
    """
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\0"


def range_end_for(key: bytes, range_end: KeyLike | None, prefix: bool) -> bytes | None:
    """The range end for a request: ``range_end`` as given, or the prefix end, or none."""
    if prefix:
        if range_end is not None:
            raise ValueError("give either prefix=True or range_end, not both")
        return prefix_end(key)
    return None if range_end is None else key_bytes(range_end)


def key_text(key: bytes) -> str:
    """A key as text for messages and displays: UTF-8 where it decodes, backslash escapes
    for bytes that do not and for unprintable characters (never a ``b'...'`` repr)."""
    text = key.decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
