"""Parsing: one YAML document into Python values, losslessly and within limits.

The parser reads libyaml's events and builds the document itself (no recursion, so no
nesting depth breaks Python's stack), checking the limits as it goes: the document's
size before it starts, then the nesting depth, each value's size, the number of values
(each becomes a key) and how many values aliases add, so a "billion laughs" file fails at
the alias that crosses the limit, in microseconds, having built almost nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from .._core.errors import DocumentError, DocumentLimitError
from .._core.util import gc_paused
from .scalars import Plain, tagged_value

__all__ = ["MAX_KEYS", "MAX_REQUEST_BYTES", "Limits", "parse_yaml", "recorded_revision"]

MAX_REQUEST_BYTES = 1_572_864
"""etcd's default ``--max-request-bytes`` (1.5 MiB)."""
MAX_KEYS = 1_000_000
"""The default limit of keys in a document."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What a document may hold; over a limit is a :class:`DocumentLimitError` naming the
    file, the line and the limit. The tools take each as an option (``--max-depth``...)."""

    max_document_bytes: int = 64 * 1024 * 1024  #: the file's size
    max_depth: int = 100  #: mappings and lists inside each other
    max_keys: int = MAX_KEYS  #: values in the document, aliases expanded (one key each)
    max_alias_expansion: int = 10_000  #: values that aliases add, all aliases together
    max_value_bytes: int = MAX_REQUEST_BYTES  #: one scalar (etcd's --max-request-bytes)


_OPTIONS = {  # the tools' option for each limit, for the messages
    "max_document_bytes": "--max-document-bytes",
    "max_depth": "--max-depth",
    "max_keys": "--max-keys",
    "max_alias_expansion": "--max-alias-expansion",
    "max_value_bytes": "--max-request-bytes",
}

_HEADER_RE = re.compile(r"# etcd2yaml: prefix (?P<prefix>.*) revision (?P<revision>\d+)\r?$")
_STR = "tag:yaml.org,2002:str"
_BINARY = "tag:yaml.org,2002:binary"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_SCALAR_TAGS = {
    _BINARY,
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
}
_NULL_WORDS = frozenset(("", "~", "null", "Null", "NULL"))
_OPEN = object()  # an anchor whose collection is still being read; a key not read yet
_MERGE_KEY = object()  # a "<<" key
_Parser: Any = getattr(yaml, "CBaseLoader", yaml.BaseLoader)


def limit_error(
    limit: str, maximum: int, what: str, name: str, mark: Any = None
) -> DocumentLimitError:
    """The error for a document over ``limit``: ``f.yaml:3:5: <what> (limit: --max-x N)``."""
    line = column = None
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
    return DocumentLimitError(
        f"{_where(name, line, column)}: {what} (limit: {_OPTIONS[limit]} {maximum})",
        limit=limit,
        maximum=maximum,
        source=name,
        line=line,
        column=column,
    )


def _where(name: str, line: int | None, column: int | None) -> str:
    return name if line is None else f"{name}:{line}:{column}"


def _error(name: str, mark: Any, problem: str) -> DocumentError:
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    return DocumentError(
        f"{_where(name, line, column)}: {problem}", source=name, line=line, column=column
    )


def parse_yaml(
    text: str | bytes, name: str = "<document>", *, limits: Limits | None = None
) -> object:
    """Parse one YAML document, losslessly: a plain scalar is a :class:`Plain` string of
    the text written (``NO``, ``0755``, ``~`` stay text; a plain key ``~``/``null`` is
    ``None``, the entry for the enclosing key's own value), a quoted one a ``str``,
    ``!!binary`` bytes, and a scalar with another standard tag that tag's value (``!!int
    0755`` is 493). ``<<`` merge keys are applied. Bytes are read as UTF-8.

    Raises:
        DocumentError: one line with the file name, line and column: invalid YAML or
            UTF-8, a key given twice in one mapping, an alias that contains itself, a
            list or mapping as a key, an unknown tag, more than one document.
        DocumentLimitError: over one of ``limits`` (the defaults of :class:`Limits`).
    """
    limits = limits or Limits()
    size = len(text)
    if size > limits.max_document_bytes:
        raise limit_error(
            "max_document_bytes", limits.max_document_bytes, f"the document is {size} bytes", name
        )
    if isinstance(text, bytes):
        text = _decode(text, name)
    parser = _Parser(text)
    try:
        with gc_paused():
            return _Builder(parser, name, limits).document()
    except yaml.MarkedYAMLError as exc:
        if "maximum nesting depth" in str(exc.problem):  # libyaml's own limit (1000 levels)
            raise limit_error(
                "max_depth", limits.max_depth, "nested too deeply", name, exc.problem_mark
            ) from None
        problem = "invalid YAML: " + " ".join(p for p in (exc.context, exc.problem) if p)
        raise _error(name, exc.problem_mark, problem) from None
    except yaml.YAMLError as exc:
        raise DocumentError(
            f"{name}: invalid YAML: {' '.join(str(exc).split())}", source=name
        ) from None
    finally:
        parser.dispose()


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DocumentError(
            f"{name}:{line}:{column}: not UTF-8 text (byte 0x{data[exc.start]:02x})",
            source=name,
            line=line,
            column=column,
        ) from None


class _Collection:
    """A mapping or list being read."""

    __slots__ = ("anchor", "is_map", "key", "key_mark", "leaves", "merges", "value")

    def __init__(self, is_map: bool, anchor: str | None, leaves: int) -> None:
        self.is_map = is_map
        self.anchor = anchor
        self.leaves = leaves  # the builder's count of values when it started
        self.value: Any = {} if is_map else []
        self.key: Any = _OPEN  # a mapping's key waiting for its value
        self.key_mark: Any = None
        self.merges: list[Any] = []


class _Builder:
    def __init__(self, parser: Any, name: str, limits: Limits) -> None:
        self.parser = parser
        self.name = name
        self.limits = limits
        self.anchors: dict[str, tuple[object, int]] = {}  # anchor -> (value, values in it)
        self.leaves = 0  # values so far, aliases expanded
        self.expanded = 0  # of those, values added by aliases

    def document(self) -> object:
        get = self.parser.get_event
        get()  # the stream's start
        event = get()
        if isinstance(event, yaml.StreamEndEvent):
            return None
        result = self.node(get)
        get()  # the document's end
        event = get()
        if not isinstance(event, yaml.StreamEndEvent):
            raise _error(self.name, event.start_mark, "a second document (give one per file)")
        return result

    def node(self, get: Any) -> object:
        """Read events up to the end of the document's root node and return its value."""
        stack: list[_Collection] = []
        limits = self.limits
        while True:
            event = get()
            kind = event.__class__
            if kind is yaml.ScalarEvent:
                value: object = self.scalar(event, stack)
                anchor = event.anchor
                if anchor is not None:
                    self.anchors[anchor] = (value, 1)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                is_map = kind is yaml.MappingStartEvent
                tag = event.tag
                if tag is not None and tag != "!" and tag != (_MAP if is_map else _SEQ):
                    what = "mapping" if is_map else "list"
                    raise _error(
                        self.name, event.start_mark, f"the tag {tag} does not fit a {what}"
                    )
                if stack and stack[-1].is_map and stack[-1].key is _OPEN:
                    what = "mapping" if is_map else "list"
                    raise _error(self.name, event.start_mark, f"a {what} cannot be a key")
                if len(stack) >= limits.max_depth:
                    raise limit_error(
                        "max_depth",
                        limits.max_depth,
                        "nested too deeply",
                        self.name,
                        event.start_mark,
                    )
                if event.anchor is not None:
                    self.anchors[event.anchor] = (_OPEN, 0)
                stack.append(_Collection(is_map, event.anchor, self.leaves))
                continue
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                done = stack.pop()
                value = done.value
                if done.merges:
                    value = self.merge(done)
                if done.anchor is not None:
                    self.anchors[done.anchor] = (value, self.leaves - done.leaves)
            else:  # an alias
                value = self.alias(event, stack)
            if not stack:
                return value
            self.add(stack[-1], value, event)

    def scalar(self, event: Any, stack: list[_Collection]) -> object:
        tag, text = event.tag, event.value
        as_key = bool(stack) and stack[-1].is_map and stack[-1].key is _OPEN
        limit = self.limits.max_value_bytes
        if len(text) * 4 > limit and (len(text) > limit or len(text.encode()) > limit):
            raise limit_error(
                "max_value_bytes",
                limit,
                f"a value of {len(text.encode())} bytes",
                self.name,
                event.start_mark,
            )
        if not as_key:
            self.count(1, event)
        if tag is None:
            if not event.implicit[0]:
                return text  # quoted, or a block scalar
            if as_key and text in _NULL_WORDS:
                return None
            if as_key and text == "<<":
                return _MERGE_KEY
            return Plain(text)
        if tag in ("!", _STR):
            return text
        if tag in _SCALAR_TAGS:
            try:
                return tagged_value(yaml.ScalarNode(tag, text))
            except (yaml.YAMLError, ValueError) as exc:
                raise _error(
                    self.name, event.start_mark, f"not a {tag.rsplit(':', 1)[1]}: {exc}"
                ) from None
        if tag == _MERGE and as_key:
            return _MERGE_KEY
        raise _error(self.name, event.start_mark, f"a value tagged {tag} has no etcd form")

    def alias(self, event: Any, stack: list[_Collection]) -> object:
        found = self.anchors.get(event.anchor)
        if found is None:
            raise _error(self.name, event.start_mark, f"the alias *{event.anchor} has no anchor")
        value, leaves = found
        if value is _OPEN:
            raise _error(self.name, event.start_mark, "an alias contains itself")
        if stack and stack[-1].is_map and stack[-1].key is _OPEN:
            if isinstance(value, dict | list):
                what = "mapping" if isinstance(value, dict) else "list"
                raise _error(self.name, event.start_mark, f"a {what} cannot be a key")
            return value
        self.expanded += leaves
        if self.expanded > self.limits.max_alias_expansion:
            raise limit_error(
                "max_alias_expansion",
                self.limits.max_alias_expansion,
                f"aliases expand to more than {self.limits.max_alias_expansion} values",
                self.name,
                event.start_mark,
            )
        self.count(leaves, event)
        return value

    def count(self, leaves: int, event: Any) -> None:
        self.leaves += leaves
        if self.leaves > self.limits.max_keys:
            raise limit_error(
                "max_keys",
                self.limits.max_keys,
                f"more than {self.limits.max_keys} values",
                self.name,
                event.start_mark,
            )

    def add(self, top: _Collection, value: object, event: Any) -> None:
        if not top.is_map:
            top.value.append(value)
            return
        if top.key is _OPEN:
            top.key, top.key_mark = value, event.start_mark
            return
        key, top.key = top.key, _OPEN
        if key is _MERGE_KEY:
            top.merges.append((value, top.key_mark))
        elif key in top.value:
            raise _error(self.name, top.key_mark, f"the key {_show(key)} is given twice")
        else:
            top.value[key] = value

    def merge(self, done: _Collection) -> dict[Any, Any]:
        """A mapping with ``<<`` entries: the merged mappings' entries (the first mapping
        to have a key gives it), then the mapping's own (which win)."""
        merged: dict[Any, Any] = {}
        for value, mark in done.merges:
            sources = value if isinstance(value, list) else [value]
            for source in sources:
                if not isinstance(source, dict):
                    raise _error(self.name, mark, "a merge (<<) takes a mapping or a list of them")
                for key, item in source.items():
                    merged.setdefault(key, item)
        merged.update(done.value)
        return merged


def _show(key: object) -> str:
    if key is None:
        return "null (~)"
    return repr(str(key)) if isinstance(key, str) else repr(key)


def recorded_revision(text: str | bytes) -> int | None:
    """The revision an ``etcd2yaml`` dump records in its header comment, if any."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    match = _HEADER_RE.match(text.split("\n", 1)[0])
    return int(match["revision"]) if match else None
