"""Emitting: a subtree of etcd keys as YAML text that reads back to the same keys and bytes.

The form (every subtree has exactly one):

* The keys under the path are split at ``/``; each segment is a mapping key, so
  ``<path>/db/port`` is ``{"db": {"port": ...}}``. Empty segments are kept.
* A key that has a value *and* keys below it is a mapping whose ``null`` entry holds its
  own value: ``db: {null: primary, port: 5432}``. Segments are always strings (quoted when
  they could read as anything else) or ``!!binary``, so ``null`` never collides with one.
* Keys whose segments below a key are exactly ``0``, ``1``, ... ``n-1`` (and no value of
  its own) are written as a list, which reads back to the same keys.
* Values: see :func:`.scalars.render_value`.
"""

from __future__ import annotations

from .scalars import render_key, render_value

__all__ = ["Entry", "Node", "key_text", "order", "write"]

_LONG_KEY = 128  # longer keys are written as explicit "? key" entries


class Node:
    """A key with keys below it (being written): its own value (``None``: none) and the
    keys below, each a :class:`Node` or, for a key with nothing below it, its value."""

    __slots__ = ("children", "value")

    def __init__(self, value: bytes | None = None, children: dict[bytes, Entry] | None = None):
        self.value = value
        self.children: dict[bytes, Entry] = {} if children is None else children


Entry = Node | bytes
"""What a segment holds: a :class:`Node`, or the value of a key with nothing below it (a
dump of 100k keys makes no object per leaf)."""


def order(segment: bytes) -> bytes:
    """The order of a mapping's entries: the end of each segment's key range, which is the
    order in which paging completes them."""
    return segment + b"0"


_ORDER = b"%b0".__mod__
"""``order`` without a Python call (a sort key called once per entry written)."""


_KEY_TEXTS: dict[bytes, str] = {}


def key_text(segment: bytes) -> str:
    """``render_key`` remembered: the same segments recur under every parent (``port``,
    ``0``, ...). At most 4096 are kept."""
    text = _KEY_TEXTS.get(segment)
    if text is None:
        if len(_KEY_TEXTS) >= 4096:
            _KEY_TEXTS.clear()
        text = _KEY_TEXTS[segment] = render_key(segment)
    return text


def write(entry: Entry, key: str, indent: str, raw: bool, out: list[str]) -> None:
    """Append the YAML lines of ``key: entry`` (``key`` already rendered) at ``indent``."""
    if len(key) > _LONG_KEY:
        out.append(f"{indent}? {key}\n")
        key = ""
    if isinstance(entry, bytes):
        out.append(f"{indent}{key}: {render_value(entry, raw)}\n")
        return
    if not entry.children:
        assert entry.value is not None
        out.append(f"{indent}{key}: {render_value(entry.value, raw)}\n")
        return
    out.append(f"{indent}{key}:\n")
    _body(entry, indent + "  ", raw, out)


def _body(node: Node, indent: str, raw: bool, out: list[str]) -> None:
    """The entries (or items) of a node with children, at ``indent``."""
    items = _items(node)
    if items is not None:
        for item in items:
            if isinstance(item, bytes):
                out.append(f"{indent}- {render_value(item, raw)}\n")
                continue
            if not item.children:
                assert item.value is not None
                out.append(f"{indent}- {render_value(item.value, raw)}\n")
                continue
            first = len(out)
            _body(item, indent + "  ", raw, out)
            out[first] = f"{indent}- {out[first][len(indent) + 2 :]}"
        return
    if node.value is not None:
        out.append(f"{indent}null: {render_value(node.value, raw)}\n")
    children = node.children
    texts = _KEY_TEXTS
    for segment in sorted(children, key=_ORDER):
        entry = children[segment]
        key = texts.get(segment) or key_text(segment)
        if type(entry) is bytes and len(key) <= _LONG_KEY:  # (write's commonest case, inline)
            out.append(f"{indent}{key}: {render_value(entry, raw)}\n")
        else:
            write(entry, key, indent, raw, out)


def _items(node: Node) -> list[Entry] | None:
    """The node's children in order if they are a list: ``0`` to ``n-1``, no own value."""
    children = node.children
    if node.value is not None or b"0" not in children:
        return None
    items = [children.get(str(i).encode()) for i in range(len(children))]
    return None if None in items else items  # type: ignore[return-value]
