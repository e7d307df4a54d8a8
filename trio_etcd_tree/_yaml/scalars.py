"""Scalars: the bytes a YAML value is stored as, and the YAML a stored value is written as.

Loading is lossless: a plain scalar (:class:`Plain`) is stored as the text written
(``NO``, ``0755``, ``1.10``, ``yes``, ``~`` stay as they are), a quoted one as its string.
A value is converted by type only where a type registry gives its path a codec other than
``STR`` or ``BYTES`` (:func:`typed_value` reads a plain scalar by YAML 1.1's rules first),
or where the document itself tags it (``!!int 0755`` is 493). Python values given to the
library directly (not parsed from YAML) are stored by :func:`encode_value`'s table.
"""

from __future__ import annotations

import base64
import datetime
import math
import re
from typing import Any

import yaml

from .._core.errors import DocumentError

__all__ = [
    "Plain",
    "decode_value",
    "encode_value",
    "render_key",
    "render_value",
    "typed_value",
]

_TYPED_TAGS = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
}
_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()

# What etcd2yaml writes plain: a word that any YAML reader reads back as that string (not
# a bool or null); anything else is double-quoted, with escapes for what a reader would not
# keep. The canonical renderings of ints, floats, bools and dates are written plain too.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_NOT_PLAIN = frozenset(  # YAML 1.1's bool and null words, as PyYAML resolves them
    form
    for word in ("yes", "no", "true", "false", "on", "off", "null", "y", "n")
    for form in (word, word.title(), word.upper())
)
_ESCAPE = re.compile(
    '[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]|["\\\\]'
)
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\\0"}


class Plain(str):
    """A plain (unquoted, untagged) YAML scalar: a ``str`` equal to the text written, which
    a type registry may read as a typed value (:func:`typed_value`)."""

    __slots__ = ()


def at(where: str) -> str:
    """``"at 'a/b': "`` for messages about a path in a document."""
    return f"at {where!r}: " if where else ""


def encode_value(value: object, where: str = "") -> bytes:
    """The bytes stored for a value: a string (plain or quoted) as its UTF-8 text, bytes as
    they are; and for Python values given directly: ``None`` the empty value, bools
    ``true``/``false``, ints in decimal, floats as ``repr`` (``.inf``, ``-.inf``,
    ``.nan``), dates and timestamps in ISO 8601.

    Raises:
        DocumentError: the value has no encoding (a set, a pair, ...).
    """
    if isinstance(value, str):
        try:
            return value.encode()
        except UnicodeEncodeError as exc:
            raise DocumentError(f"{at(where)}a string that is not valid Unicode: {exc}") from None
    if isinstance(value, bytes):
        return value
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        if math.isnan(value):
            return b".nan"
        if math.isinf(value):
            return b".inf" if value > 0 else b"-.inf"
        return repr(value).encode()
    if isinstance(value, datetime.date):  # datetime.datetime included
        return value.isoformat().encode()
    raise DocumentError(f"{at(where)}a {type(value).__name__} value has no etcd encoding")


def typed_value(value: object) -> object:
    """A document's value as YAML 1.1 types it: a :class:`Plain` scalar becomes the int,
    float, bool, null or date it spells (``0755`` -> 493, ``NO`` -> False, else the
    string); lists and mappings are converted throughout; anything else is kept."""
    if isinstance(value, Plain):
        tag = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
        return _CONSTRUCTOR.construct_object(yaml.ScalarNode(tag, str(value)))
    if isinstance(value, list):
        return [typed_value(item) for item in value]
    if isinstance(value, dict):
        return {typed_value(k): typed_value(v) for k, v in value.items()}
    return value


def tagged_value(node: yaml.ScalarNode) -> Any:
    """A scalar with an explicit standard tag (``!!int 0755``, ``!!binary AA==``) as that
    tag's constructor makes it."""
    return _CONSTRUCTOR.construct_object(node)


def decode_value(raw: bytes, *, as_text: bool = False) -> object:
    """The value etcd2yaml writes for a key's bytes: ``bytes`` if they are not UTF-8; a
    bool, int, float or date if the bytes are exactly that scalar's encoding (not with
    ``as_text``); else the string."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return raw
    if as_text or not text:
        return text
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    if tag not in _TYPED_TAGS:
        return text
    value = typed_value(Plain(text))
    return value if encode_value(value) == raw else text


def render_value(raw_value: bytes, raw: bool) -> str:
    """Bytes as YAML that reads back to them (whatever reader, typed or not):
    ``!!binary`` if not UTF-8, a plain word, the canonical rendering of a typed scalar
    (not with ``raw``), or a double-quoted string."""
    try:
        text = raw_value.decode()
    except UnicodeDecodeError:
        return '!!binary "' + base64.b64encode(raw_value).decode("ascii") + '"'
    if _PLAIN.match(text) and text not in _NOT_PLAIN:
        return text
    if not raw and text and not isinstance(decode_value(raw_value), str):
        return text  # the canonical rendering of an int, float, bool or date: plain
    return '"' + _ESCAPE.sub(_escape, text) + '"'


def render_key(segment: bytes) -> str:
    """A key segment: always a string (or ``!!binary``), never a typed scalar."""
    return render_value(segment, raw=True)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    known = _ESCAPES.get(char)
    if known is not None:
        return known
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
