"""The mirror's pure core: apply etcd changes to the node tree. No I/O, no trio.

This is the only code that changes a node's state (its value, revisions and children):
loading, following and resyncing all come down to ``add_sorted`` (or ``load``), ``apply``,
``replace``, ``fill`` and ``clear`` here, as client-go's Reflector only ever calls its store's
``Replace``/``Add``/``Delete``.

The reflector (``reflector.py``) feeds it a snapshot (``add_sorted`` page by page, whose
nodes are made where the tree is first looked at; ``load`` with node classes; on resync,
``replace``) and then the watch's events revision by revision (``apply``); each returns
the :class:`Change` list that subscribers get. Keys outside the mount are ignored (the range
read and watched is ``[prefix, prefix + "0")``, to include the mount's own key, so
``/cfg-old`` passes by).

A lazy mount loads and resyncs keys only (``keys_only``): such keys get the raw value
``NOT_LOADED`` with their revisions, and ``fill`` gives them their values later.
"""

from __future__ import annotations

import gc
import sys
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import islice
from operator import attrgetter, lt
from typing import Any

from .._core.codecs import STR, Codec
from .._core.errors import ProtocolError
from .._core.types import Event, EventType, KeyValue, KeyValueRow
from .._core.util import gc_paused
from .changes import NOT_LOADED, Change, ChangeKind
from .node import Node, make_node
from .paths import Path, encode_name
from .registry import TypeRegistry
from .view import SMALL

__all__ = ["TreeCore"]


_KEY = attrgetter("key")
_FIELDS = attrgetter("value", "create_revision", "mod_revision", "version", "lease")
_ALL_FIELDS = attrgetter(*KeyValue._fields)
_new_node = Node.__new__
PAUSE_ABOVE = 1000
"""Making the children of more than this many keys pauses the garbage collector."""


class _Snapshot:
    """The key-values of a mount's snapshot read, in ascending key order, for the nodes
    not made yet: ``records`` are KeyValues or the transport's own records (gRPC's
    messages, a field decoded when read), ``keys`` their keys."""

    __slots__ = ("keys", "keys_only", "records")

    def __init__(self, keys_only: bool) -> None:
        self.keys: list[bytes] = []
        self.records: list[Any] = []
        self.keys_only = keys_only


class _Unmade:
    """A node's children not made yet: the snapshot's keys ``[lo, hi)``, the keys that
    start with ``base`` (the node's key and a ``/``). They are made, one level at a time,
    where the tree is first looked at (``NodeView._made``)."""

    __slots__ = ("base", "hi", "lo", "snapshot")

    def __init__(self, snapshot: _Snapshot, base: bytes, lo: int, hi: int) -> None:
        self.snapshot = snapshot
        self.base = base
        self.lo = lo
        self.hi = hi

    def make(self, parent: Node) -> tuple[Node, ...] | dict[str, Node]:
        """Make ``parent``'s children (each with its own ``_Unmade`` below it) and give
        them to it. Keys are sorted, so a child's keys are one run: its end is found by
        bisection, and the keys below it are not looked at. A key sorts before the keys
        below it (``a`` < ``a-b`` < ``a/c``), so a node is looked for only for those."""
        snapshot = self.snapshot
        keys, records = snapshot.keys, snapshot.records
        not_loaded = NOT_LOADED if snapshot.keys_only else None
        start = len(self.base)
        i, hi = self.lo, self.hi
        made: dict[str, Node] = {}
        new, intern, fields = _new_node, sys.intern, _FIELDS
        paused = hi - i > PAUSE_ABOVE and gc.isenabled()  # (see gc_paused)
        if paused:
            gc.disable()
        try:
            while i < hi:
                key = keys[i]
                cut = key.find(b"/", start)
                if cut < 0:  # a key of a child
                    node = new(Node)
                    node._name = name = intern(key[start:].decode("utf-8", "surrogateescape"))
                    node._parent = parent
                    node._children = None
                    value, create, mod, version, lease = fields(records[i])
                    node._raw = value if not_loaded is None else not_loaded
                    node._mod = mod
                    node._meta = (  # (as _set does: inline, this runs once per node)
                        None
                        if create == mod and version == 1 and not lease
                        else (create, version, lease)
                    )
                    made[name] = node
                    i += 1
                    continue
                # the keys below a child: up to the first key >= its key + "0" ("/" + 1)
                name = key[start:cut].decode("utf-8", "surrogateescape")
                inner = made.get(name)
                if inner is None:
                    inner = new(Node)
                    inner._name = name = intern(name)
                    inner._parent = parent
                    inner._raw = inner._meta = None
                    inner._mod = 0
                    made[name] = inner
                end = bisect_left(keys, key[:cut] + b"0", i, hi)
                inner._children = _Unmade(snapshot, key[: cut + 1], i, end)
                i = end
        finally:
            if paused:
                gc.enable()
        children = made if len(made) > SMALL else tuple(made.values())
        parent._children = children
        return children


class TreeCore:
    """The tree of a mount and the revision it reflects."""

    __slots__ = (
        "_skip",
        "_snapshot",
        "_sub",
        "keys",
        "prefix",
        "registry",
        "revision",
        "root",
    )

    def __init__(self, root: Node, prefix: bytes, registry: TypeRegistry) -> None:
        self.root = root
        self.prefix = prefix
        self.registry = registry
        self.revision = 0
        self.keys = 0
        self._sub = prefix + b"/"
        self._skip = len(self._sub)
        self._snapshot: _Snapshot | None = None  # (while a snapshot is added page by page)

    # --- keys and paths --------------------------------------------------------------------

    def names_of(self, key: bytes) -> Path | None:
        """The path of a key, or ``None`` if the key is not under the mount."""
        if key.startswith(self._sub):
            # "/" is ASCII and surrogateescape works byte by byte: decoding first is the same
            return tuple(key[self._skip :].decode("utf-8", "surrogateescape").split("/"))
        if key == self.prefix and key:
            return ()
        return None

    def key_of(self, names: Path) -> bytes:
        if not names:
            return self.prefix
        return self._sub + b"/".join(encode_name(n) for n in names)

    # --- applying ----------------------------------------------------------------------------

    def load(self, kvs: Iterable[KeyValueRow], revision: int, *, keys_only: bool = False) -> None:
        """Add keys read at ``revision`` to the tree, in any order, nodes of the registry's
        classes made at once (a mount with a registry loads its snapshot so; a plain one
        uses ``add_sorted``). ``kvs`` are KeyValues or plain tuples of their fields. With
        ``keys_only`` the values are left unloaded."""
        parent_names: Path | None = None
        parent = self.root
        with gc_paused():
            for kv in map(KeyValue._make, kvs):
                names = self.names_of(kv.key)
                if names is None:
                    continue
                if names[:-1] != parent_names or not names:  # (neighbours share a parent)
                    parent_names = names[:-1]
                    parent = self._make_path(parent_names)
                node = self._make_path(names[-1:], parent, names) if names else self.root
                self._set(node, kv, keys_only)
                self.keys += 1
        self.revision = revision

    def add_sorted(self, records: Sequence[Any], revision: int, *, keys_only: bool = False) -> None:
        """Add a page of a snapshot read at ``revision`` (its key-values in ascending key
        order, after those of the pages before it) to a tree that holds only those pages.

        Nothing is decoded or made here but the keys: a node's children are made when the
        tree is first looked at there (``_Unmade``), so a mount is ready as soon as its
        last page arrived, and a subtree nobody looks at costs no nodes. ``records`` are
        KeyValues or the transport's records (``KeyValueSource.records``).

        Raises:
            ProtocolError: the keys are not in ascending order.
        """
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = self._snapshot = _Snapshot(keys_only)
        keys = list(map(_KEY, records))
        if not all(map(lt, keys, islice(keys, 1, None))) or (
            keys and snapshot.keys and keys[0] <= snapshot.keys[-1]
        ):
            raise ProtocolError("the keys of a range answer are not in ascending order")
        sub = self._sub
        first, end = bisect_left(keys, sub), bisect_left(keys, self.prefix + b"0")
        for i in range(first):  # before the subtree: the mount's own key, or /cfg-x for /cfg
            if keys[i] == self.prefix and keys[i]:
                self._set(self.root, KeyValue._make(_ALL_FIELDS(records[i])), keys_only)
                self.keys += 1
        if first < end:
            if first or end < len(keys):
                keys, records = keys[first:end], records[first:end]
            snapshot.keys += keys
            snapshot.records += records
            self.keys += end - first
            self.root._children = _Unmade(snapshot, sub, 0, len(snapshot.keys))
        self.revision = revision

    def end_sorted(self) -> None:
        """The snapshot ``add_sorted`` was given is complete (the tree keeps what it needs
        of it for the nodes not made yet, and no more)."""
        self._snapshot = None

    def fill(self, kvs: Iterable[KeyValue], base: Path) -> int:
        """Give unloaded nodes at or below ``base`` their values from a read, where the
        read's key has the node's ``mod_revision`` (the same write, so the same value);
        return how many were filled. Nodes changed since are left as they are."""
        filled = 0
        n = len(base)
        for kv in kvs:
            names = self.names_of(kv.key)
            if names is None or names[:n] != base:
                continue
            node = self.root.find(names)
            if node is not None and node._raw is NOT_LOADED and node._mod == kv.mod_revision:
                node._raw = kv.value
                filled += 1
        return filled

    def clear(self) -> None:
        """Forget a partly loaded snapshot."""
        root = self.root
        root._children = root._raw = None
        root._mod = 0
        root._meta = None
        self.keys = 0
        self._snapshot = None

    def apply(self, events: Iterable[Event], revision: int) -> list[Change]:
        """Apply the events of one revision; return the changes, in event order."""
        changes = []
        for event in events:
            names = self.names_of(event.kv.key)
            if names is None:
                continue
            if event.type is EventType.PUT:
                change = self._put(names, event.kv)
            else:
                change = self._delete(names)
            if change is not None:
                changes.append(change)
        self.revision = revision
        return changes

    def replace(
        self, kvs: Iterable[KeyValue], revision: int, *, keys_only: bool = False
    ) -> list[Change]:
        """Make the tree equal to a fresh snapshot; return the differences as changes
        (deletions of keys the snapshot lacks included), in key order.

        With ``keys_only`` (a lazy mount) a key whose revisions are unchanged keeps its node
        as it is, loaded or not; a new or changed key is left unloaded and its change's
        ``new.value`` is ``NOT_LOADED``."""
        with gc_paused():
            fresh: dict[Path, KeyValue] = {}
            for kv in kvs:
                names = self.names_of(kv.key)
                if names is not None:
                    fresh[names] = kv
            changes: list[Change] = []
            for node in list(self.root.walk()):
                if node._raw is not None:
                    path = node.path
                    if path not in fresh:
                        change = self._delete(path)
                        assert change is not None
                        changes.append(change)
            for names, kv in fresh.items():
                change = self._put(names, kv, keys_only)
                if change is not None:
                    changes.append(change)
        changes.sort(key=lambda c: self.key_of(c.path))
        self.revision = revision
        return changes

    def _put(self, names: Path, kv: KeyValue, keys_only: bool = False) -> Change | None:
        node = self._make_path(names)
        if keys_only:
            kv = kv._replace(value=NOT_LOADED)
        if node._raw is None:
            self._set(node, kv)
            self.keys += 1
            return Change(names, ChangeKind.CREATED, None, kv, self.codec_for(names))
        old = node._kv(kv.key)
        if (old[2:] == kv[2:]) if keys_only else (old == kv):
            return None  # unchanged (a resync finding the same key; keys only: same revisions)
        self._set(node, kv)
        return Change(names, ChangeKind.MODIFIED, old, kv, self.codec_for(names))

    def _delete(self, names: Path) -> Change | None:
        node = self.root.find(names)
        if node is None or node._raw is None:
            return None  # not in the tree: nothing to do
        old = node._kv(self.key_of(names))
        codec = self.codec_for(names)
        node._raw = None
        node._mod = 0
        node._meta = None
        self.keys -= 1
        self._prune(node)
        return Change(names, ChangeKind.DELETED, old, None, codec)

    def _prune(self, node: Node) -> None:
        """Remove nodes that hold neither a value nor children, upwards."""
        while node._parent is not None and node._raw is None and not node._children:
            parent = node._parent
            children = parent._made()  # (made: the node is one of them)
            if isinstance(children, dict):
                del children[node._name]
            else:
                assert children is not None
                children = tuple(c for c in children if c is not node)
            parent._children = children or None
            node = parent  # (the node keeps its parent: its path, key and root stay known)

    def _make_path(self, names: Path, start: Node | None = None, full: Path = ()) -> Node:
        """The node at ``names`` below ``start`` (the root), made if missing; ``full`` is
        the whole path when ``start`` is not the root (for the registry)."""
        node = self.root if start is None else start
        full = full or names
        base = len(full) - len(names)
        registry = self.registry
        for depth, name in enumerate(names, base + 1):
            child = node._child(name)
            if child is None:
                cls = (registry.node_class_for(full[:depth]) if registry else None) or Node
                child = make_node(cls, sys.intern(name), node)
                self._attach(node, child)
            node = child
        return node

    @staticmethod
    def _attach(parent: Node, child: Node) -> None:
        """Add a child: to the parent's tuple while it is small, else to its dict."""
        children = parent._made()
        if isinstance(children, dict):
            children[child._name] = child
        elif children is None:
            parent._children = (child,)
        elif len(children) < SMALL:
            parent._children = (*children, child)
        else:
            parent._children = {c._name: c for c in (*children, child)}

    def codec_for(self, names: Path) -> Codec:
        return self.registry.codec_for(names) if self.registry else STR

    @staticmethod
    def _set(node: Node, kv: KeyValue, keys_only: bool = False) -> None:
        node._raw = NOT_LOADED if keys_only else kv.value
        mod = kv.mod_revision
        node._mod = mod
        create, version, lease = kv.create_revision, kv.version, kv.lease
        node._meta = (
            None if create == mod and version == 1 and not lease else (create, version, lease)
        )
