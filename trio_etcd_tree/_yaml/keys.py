"""A document's keys: the etcd keys and bytes a parsed YAML document stands for.

* Mappings nest: under the path ``/cfg``, ``{"db": {"port": "5432"}}`` is the key
  ``/cfg/db/port``. Empty segments are kept (``{"a": {"": ...}}`` is ``/cfg/a/``).
* A ``null`` (``~``) mapping key holds the enclosing key's own value: ``{"db": {None:
  "primary", "port": "5432"}}`` is ``/cfg/db`` and ``/cfg/db/port``; at the top level it is
  the path's own key ``/cfg``.
* A list is a mapping of its indexes: ``hosts: [a, b]`` is ``hosts/0`` and ``hosts/1``
  (``etcd2yaml`` writes such keys back as a list).
* Values are stored losslessly (:mod:`.scalars`), except where a type registry gives the
  path a codec other than ``STR``/``BYTES``: then the value, typed by YAML 1.1's rules, is
  stored through that codec, and a mapping or list at such a path is one value
  (``JSON``). A quoted string is always stored as it is.

Refused, with the path: an empty mapping or list below the top (etcd has no directories:
it would write nothing), a segment containing ``/``, two keys giving the same segment, a
``null`` entry holding a mapping or list, a value the codec refuses, and any other type.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .._core.codecs import BYTES, STR, Codec
from .._core.errors import DocumentError
from .._core.keys import KeyLike, subtree_path
from .._core.util import gc_paused
from .document import MAX_KEYS, limit_error
from .scalars import Plain, at, encode_value, typed_value

__all__ = ["Types", "document_keys"]


class Types(Protocol):
    """What :func:`document_keys` needs of a type registry (``TypeRegistry`` has it)."""

    def codec_for(self, path: Sequence[str]) -> Codec: ...


def document_keys(
    document: object,
    prefix: KeyLike = b"",
    *,
    types: Types | None = None,
    max_keys: int = MAX_KEYS,
    source: str = "the document",
) -> dict[bytes, bytes]:
    """The etcd keys (full keys, under the path ``prefix``) and values a document stands
    for (see the module docs).

    Raises:
        DocumentError: the document is not a mapping or holds something without an
            encoding; the message names the path.
        DocumentLimitError: more than ``max_keys`` keys.
    """
    if not isinstance(document, dict):
        kind = "empty" if document is None else f"a {_kind(document)}"
        raise DocumentError(f"{source} is {kind}, not a mapping", source=source)
    collector = _Collector(subtree_path(prefix), types, max_keys, source)
    try:
        with gc_paused():
            collector.mapping(document, ())
    except RecursionError:
        raise DocumentError(f"{source} is nested too deeply", source=source) from None
    return collector.out


def _kind(value: object) -> str:
    return "list" if isinstance(value, list) else type(value).__name__


def _show_path(path: tuple[bytes, ...]) -> str:
    return "/".join(s.decode("utf-8", "backslashreplace") for s in path)


def _segment(key: object, where: str) -> bytes:
    if isinstance(key, str | bytes | int | float | datetime.date):
        segment = encode_value(key, where)
    else:
        raise DocumentError(f"{at(where)}a {_kind(key)} cannot be a key")
    if b"/" in segment:
        raise DocumentError(f"{at(where)}the key {key!r} contains '/'; nest mappings instead")
    return segment


class _Collector:
    def __init__(self, path: bytes, types: Types | None, max_keys: int, source: str) -> None:
        self.path = path
        self.types = types
        self.max_keys = max_keys
        self.source = source
        self.out: dict[bytes, bytes] = {}

    def mapping(self, mapping: Mapping[Any, Any], path: tuple[bytes, ...]) -> None:
        where = _show_path(path)
        if not mapping and path:
            raise DocumentError(
                f"{at(where)}an empty mapping or list writes no key (etcd has no "
                "directories); remove it or give it a value"
            )
        seen: set[bytes] = set()
        for key, value in mapping.items():
            if key is None:
                if isinstance(value, dict | list):
                    raise DocumentError(f"{at(where)}the null (~) entry must be a scalar")
                if not path and not self.path:
                    raise DocumentError(
                        "a null (~) key at the top level: the root path / has no value of its own"
                    )
                self.value(path, value)
                continue
            segment = _segment(key, where)
            child = (*path, segment)
            if segment in seen:
                raise DocumentError(f"{at(_show_path(child))}two keys give the same segment")
            seen.add(segment)
            if isinstance(value, dict | list) and self.codec(child) is None:
                if isinstance(value, list):
                    value = {str(i): item for i, item in enumerate(value)}
                self.mapping(value, child)
            else:
                self.value(child, value)

    def codec(self, path: tuple[bytes, ...]) -> Codec | None:
        """The registry's codec for ``path`` when it converts values (not STR or BYTES)."""
        if self.types is None:
            return None
        codec = self.types.codec_for([s.decode("utf-8", "surrogateescape") for s in path])
        return None if codec is STR or codec is BYTES else codec

    def value(self, path: tuple[bytes, ...], value: object) -> None:
        key = self.path + b"/" + b"/".join(path) if path else self.path
        codec = self.codec(path) if path else None
        if codec is None or (isinstance(value, str) and not isinstance(value, Plain)):
            self.out[key] = encode_value(value, _show_path(path))
        else:
            typed = typed_value(value)
            try:
                self.out[key] = codec.encode(typed)
            except (TypeError, ValueError) as exc:
                raise DocumentError(
                    f"{at(_show_path(path))}the {codec.name} codec refuses {typed!r}: {exc}"
                ) from None
        if len(self.out) > self.max_keys:
            raise limit_error(
                "max_keys", self.max_keys, f"more than {self.max_keys} keys", self.source
            )
