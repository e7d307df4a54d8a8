"""The read-only part of a node: its place in the tree, its children, its key's revisions.

:class:`NodeView` holds a node's state in slots (a mount has one node per key and per
inner segment, so they are kept small). Only the apply core (``core.py``) writes them;
:class:`~trio_etcd_tree._tree.node.Node` adds what needs the mount: decoding, the key,
loading and writing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar, cast

from .._core.types import KeyValue
from .changes import NOT_LOADED
from .paths import Path, PathLike, encode_name, split_path

__all__ = ["NodeView"]

N = TypeVar("N", bound="NodeView[Any]")

SMALL = 8
"""Up to this many children are kept in a tuple, searched by name; more in a dict (an
empty dict is 64 bytes and one with a single entry 184, a tuple of four 72)."""


class Unmade(Protocol):
    """Children not made yet (``core._Unmade``): a mount's snapshot becomes nodes where
    the tree is first looked at."""

    def make(self, parent: Any) -> tuple[Any, ...] | dict[str, Any]:
        """Make the children, give them to ``parent`` and return them."""
        ...


class NodeView(Generic[N]):
    """A node's state and the tree's shape around it; no I/O, nothing decoded. ``N`` is the
    class of the nodes (``Node``)."""

    # Kept small: a mount has a node per key and per inner segment. ``_meta`` is None for
    # the usual key, written once and without a lease (create revision = mod revision,
    # version 1, lease 0), else ``(create_revision, version, lease)``.
    __slots__ = ("_children", "_meta", "_mod", "_name", "_parent", "_raw")

    def __init__(self, name: str, parent: N | None) -> None:
        self._name = name
        self._parent = parent
        self._children: tuple[N, ...] | dict[str, N] | Unmade | None = None
        self._raw: bytes | None = None
        self._mod = 0
        self._meta: tuple[int, int, int] | None = None

    # --- where it is ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The node's name: its last path segment (``""`` for the root)."""
        return self._name

    @property
    def parent(self) -> N | None:
        """The parent node; ``None`` for the root and for a node deleted from the tree."""
        parent = self._parent
        return parent if parent is not None and parent._child(self._name) is self else None

    @property
    def path(self) -> Path:
        """The names from the root down to this node (``()`` for the root); for a node
        deleted from the tree, the path it had."""
        names: list[str] = []
        node: NodeView[N] | None = self
        while node is not None and node._parent is not None:
            names.append(node._name)
            node = node._parent
        return tuple(reversed(names))

    # --- the key's state -------------------------------------------------------------------

    @property
    def has_value(self) -> bool:
        """Whether a key exists at this node (a node can exist only to hold children)."""
        return self._raw is not None

    @property
    def loaded(self) -> bool:
        """Whether the node's value is known: ``False`` only for a key of a lazy mount whose
        value has not been loaded (see :meth:`Node.load`)."""
        return self._raw is not NOT_LOADED

    @property
    def create_revision(self) -> int:
        """The revision that created the key (0 when there is no key)."""
        meta = self._meta
        return self._mod if meta is None else meta[0]

    @property
    def mod_revision(self) -> int:
        """The revision of the key's last change (0 when there is no key)."""
        return self._mod

    @property
    def version(self) -> int:
        """How often the key was written since it was created (0 when there is no key)."""
        meta = self._meta
        if meta is None:
            return 0 if self._raw is None else 1
        return meta[1]

    @property
    def lease(self) -> int:
        """The id of the lease the key is attached to (0 for none)."""
        meta = self._meta
        return 0 if meta is None else meta[2]

    def _kv(self, key: bytes) -> KeyValue:
        """The node's key as a KeyValue (``raw`` as it is, loaded or not)."""
        assert self._raw is not None
        meta = self._meta or (self._mod, 1, 0)
        return KeyValue(key, self._raw, meta[0], self._mod, meta[1], meta[2])

    # --- children --------------------------------------------------------------------------

    def _made(self) -> tuple[N, ...] | dict[str, N] | None:
        """The children, made first if they are not yet."""
        children = self._children
        if children is None or isinstance(children, (tuple, dict)):
            return children
        return cast("tuple[N, ...] | dict[str, N]", children.make(self))

    def _child(self, name: object) -> N | None:
        children = self._children
        if isinstance(children, tuple):
            for child in children:
                if child._name == name:
                    return child
            return None
        if isinstance(children, dict):
            return cast("dict[object, N]", children).get(name)
        if children is None:
            return None
        children.make(self)
        return self._child(name)

    def __getitem__(self, name: str) -> N:
        child = self._child(name)
        if child is None:
            raise KeyError(f"{self!r} has no child {name!r}")
        return child

    def get(self, name: str, default: N | None = None) -> N | None:
        child = self._child(name)
        return default if child is None else child

    def __contains__(self, name: object) -> bool:
        return self._child(name) is not None

    def __len__(self) -> int:
        children = self._made()
        return 0 if children is None else len(children)

    def __bool__(self) -> bool:
        return True  # a node with no children is still a node

    def __iter__(self) -> Iterator[str]:
        """Child names in key order (the order of their etcd keys)."""
        return iter([name for name, _ in self.items()])

    def keys(self) -> list[str]:
        return list(self)

    def values(self) -> list[N]:
        return [child for _, child in self.items()]

    def items(self) -> list[tuple[str, N]]:
        children = self._made()
        if children is None:
            return []
        pairs = children.items() if isinstance(children, dict) else ((c._name, c) for c in children)
        return sorted(pairs, key=lambda pair: encode_name(pair[0]))

    def lookup(self, path: PathLike) -> N:
        """The node at a relative path: ``"a/b"`` or ``("a", "b")``; ``""`` is this node.

        Raises:
            KeyError: a node on the way does not exist.
        """
        node = cast(N, self)
        for name in split_path(path):
            node = node[name]
        return node

    def find(self, path: PathLike) -> N | None:
        """The node at a relative path (as :meth:`lookup`), or ``None`` if there is none."""
        node: N | None = cast(N, self)
        for name in split_path(path):
            node = node.get(name) if node is not None else None
        return node

    def walk(self) -> Iterator[N]:
        """This node and everything below it, depth first, in key order."""
        yield cast(N, self)
        for child in self.values():
            yield from child.walk()
