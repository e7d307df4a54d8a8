"""The type registry: which codec and which node class a path gets.

Patterns are paths relative to the mount, segment by segment:

* a literal segment matches itself (``db``, ``:config``);
* ``*`` matches any one segment that does not start with ``:``;
* ``**`` matches one or more segments, none of which starts with ``:``.

So a segment named ``:something`` is a type border: wildcards never match it or reach
through it; only a pattern that names it does. When several patterns match, the one with
the highest ``priority`` wins; among equal priorities the more specific one (more literal
segments, then fewer ``**``, then fewer ``*``), and among equals the one registered first.
The codec and the node class are chosen separately: the best match that sets each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, final

from .._core.codecs import STR, Codec
from .node import Node

__all__ = ["TypeRegistry"]

N = TypeVar("N", bound=type[Node])


@dataclass(frozen=True, slots=True)
class _Entry:
    pattern: tuple[str, ...]
    codec: Codec | None
    node_class: type[Node] | None
    rank: tuple[int, int, int, int, int]

    def matches(self, path: Sequence[str]) -> bool:
        return _match(self.pattern, 0, path, 0)


def _match(pattern: tuple[str, ...], i: int, path: Sequence[str], j: int) -> bool:
    if i == len(pattern):
        return j == len(path)
    if j == len(path):
        return False
    segment = pattern[i]
    if segment == "*":
        return not path[j].startswith(":") and _match(pattern, i + 1, path, j + 1)
    if segment == "**":
        k = j
        while k < len(path) and not path[k].startswith(":"):
            k += 1
            if _match(pattern, i + 1, path, k):
                return True
        return False
    return segment == path[j] and _match(pattern, i + 1, path, j + 1)


@final
class TypeRegistry:
    """Maps path patterns to codecs and node classes (see the module docs for the rules).

    Example::

        types = TypeRegistry()
        types.register("db/port", codec=INT)
        types.register("**/enabled", codec=BOOL)

        @types.node_class("services/*")
        class Service(Node):
            @property
            def port(self) -> int:
                return self["port"].value
    """

    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def register(
        self,
        pattern: str,
        *,
        codec: Codec | None = None,
        node_class: type[Node] | None = None,
        priority: int = 0,
    ) -> None:
        """Give the paths matching ``pattern`` a codec and/or a node class."""
        if codec is None and node_class is None:
            raise ValueError("register a codec, a node_class, or both")
        if codec is not None and not isinstance(codec, Codec):
            raise TypeError(f"not a codec (needs name, decode, encode): {codec!r}")
        if node_class is not None and not (
            isinstance(node_class, type) and issubclass(node_class, Node)
        ):
            raise TypeError(f"a node class must subclass Node: {node_class!r}")
        segments = tuple(pattern.strip("/").split("/")) if pattern.strip("/") else ()
        for segment in segments:
            if ("*" in segment and segment not in ("*", "**")) or segment == "":
                raise ValueError(f"bad pattern segment {segment!r} in {pattern!r}")
        literals = sum(s not in ("*", "**") for s in segments)
        rank = (
            -priority,
            -literals,
            segments.count("**"),
            segments.count("*"),
            len(self._entries),
        )
        self._entries.append(_Entry(segments, codec, node_class, rank))
        self._entries.sort(key=lambda e: e.rank)

    def node_class(self, pattern: str, *, priority: int = 0) -> Callable[[N], N]:
        """A class decorator: ``@types.node_class("services/*")``."""

        def decorate(cls: N) -> N:
            self.register(pattern, node_class=cls, priority=priority)
            return cls

        return decorate

    def codec_for(self, path: Sequence[str]) -> Codec:
        """The codec for a path (``STR`` when no pattern says otherwise)."""
        for entry in self._entries:
            if entry.codec is not None and entry.matches(path):
                return entry.codec
        return STR

    def node_class_for(self, path: Sequence[str]) -> type[Node] | None:
        """The node class for a path, or None for the default."""
        for entry in self._entries:
            if entry.node_class is not None and entry.matches(path):
                return entry.node_class
        return None

    def __bool__(self) -> bool:
        return bool(self._entries)
