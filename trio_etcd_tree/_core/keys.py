"""Keys are bytes; these helpers turn what users pass into them, and say what a path covers.

The path model (the same for ``mount``, the YAML tools, etcdmon and the viewer): a path
``/cfg`` covers the key ``/cfg`` itself and every key under ``/cfg/``, never ``/cfgother``
nor ``/cfg-old``; ``/cfg/`` is the same path, and ``/`` (or the empty path) covers every
key that starts with ``/``.
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = [
    "KeyLike",
    "key_bytes",
    "prefix_end",
    "range_end_for",
    "show_bytes",
    "subtree_path",
    "subtree_range",
    "subtree_segments",
]

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


def subtree_path(path: KeyLike) -> bytes:
    """A path as the path model takes it: ``"/cfg/"`` and ``"/cfg"`` are ``b"/cfg"``;
    ``"/"`` and ``""`` are ``b""`` (every key starting with ``/``)."""
    raw = key_bytes(path)
    return raw.rstrip(b"/") if raw.strip(b"/") else b""


def subtree_range(path: bytes) -> tuple[bytes, bytes]:
    """One key range holding ``path`` (from :func:`subtree_path`) and every key under it.

    The range also holds keys that are not under the path (``/cfg-old`` for ``/cfg``):
    filter them out with :func:`subtree_segments`.
    """
    return (path or b"/", prefix_end(path + b"/"))


def subtree_segments(path: bytes, key: bytes) -> tuple[bytes, ...] | None:
    """Where ``key`` is under ``path`` (from :func:`subtree_path`): its segments below the
    path (``()`` for the path's own key), or ``None`` if it is not under the path."""
    if key == path and path:
        return ()
    below = path + b"/"
    if key.startswith(below):
        return tuple(key[len(below) :].split(b"/"))
    return None


def show_bytes(data: bytes) -> str:
    """Bytes for a message or a one-line display, never a Python repr: a plain word as it
    is (``/cfg/db``, ``5432``); anything else double-quoted, with ``\\``, ``\\"``,
    ``\\n``, ``\\t``, ``\\r``, ``\\xNN`` for bytes that are not UTF-8 and for control
    characters, and ``\\uNNNN`` for other unprintable characters (``"a b"``,
    ``"\\xff"``, ``""``)."""
    text = data.decode("utf-8", "surrogateescape")
    if text and text.isprintable() and not _SPECIAL.intersection(text):
        return text
    return '"' + "".join(_escape(c) for c in text) + '"'


_SPECIAL = frozenset(" \"'\\")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(char: str) -> str:
    known = _ESCAPES.get(char)
    if known is not None:
        return known
    if char.isprintable():
        return char
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
