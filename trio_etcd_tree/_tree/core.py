"""The mirror's pure core: apply etcd changes to the node tree. No I/O, no trio.

This is the only code that changes a node's state (its value, revisions and children):
loading, following and resyncing all come down to ``load``, ``apply``, ``replace``,
``fill`` and ``clear`` here, as client-go's Reflector only ever calls its store's
``Replace``/``Add``/``Delete``.

The reflector (``reflector.py``) feeds it a snapshot (``load`` or, on resync, ``replace``) and
then the watch's events revision by revision (``apply``); each returns the
:class:`Change` list that subscribers get. Keys outside the mount are ignored (the range
read and watched is ``[prefix, prefix + "0")``, to include the mount's own key, so
``/cfg-old`` passes by).

A lazy mount loads and resyncs keys only (``keys_only``): such keys get the raw value
``NOT_LOADED`` with their revisions, and ``fill`` gives them their values later.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from .._core.codecs import STR, Codec
from .._core.types import Event, EventType, KeyValue, KeyValueRow
from .._core.util import gc_paused
from .changes import NOT_LOADED, Change, ChangeKind
from .node import Node, make_node
from .paths import Path, encode_name
from .registry import TypeRegistry
from .view import SMALL

__all__ = ["TreeCore"]


def _child_of(parent: Node, segment: bytes) -> Node:
    """The plain child of ``parent`` for a key segment, made (without a value) if missing."""
    name = segment.decode("utf-8", "surrogateescape")
    node = parent._child(name)
    if node is None:
        node = _new_child(parent, name)
        TreeCore._attach(parent, node)
    return node


def _new_child(parent: Node, name: str) -> Node:
    """A new plain node without a value (not given to ``parent`` yet)."""
    node = _new_node(Node)
    node._name = sys.intern(name)
    node._parent = parent
    node._children = node._raw = node._meta = None
    node._mod = 0
    return node


def _adopt(parent: Node, run: list[Node]) -> None:
    """Give ``parent`` new children (none of them has a name it has already)."""
    if parent._children is None:
        parent._children = tuple(run) if len(run) <= SMALL else {c._name: c for c in run}
    else:
        for node in run:
            TreeCore._attach(parent, node)


_new_node = Node.__new__


class TreeCore:
    """The tree of a mount and the revision it reflects."""

    __slots__ = (
        "_last",
        "_skip",
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
        # the greatest key loaded while every key came in ascending order since the tree was
        # empty, else None: a key after it has no node yet (see _load_plain)
        self._last: bytes | None = b""

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
        """Add keys of a snapshot read at ``revision`` to the (empty) tree; call it once per
        page or part of one. Keys come sorted, so neighbours share their parent: it is
        looked up once. ``kvs`` are KeyValues or plain tuples of their fields. With
        ``keys_only`` the values are left unloaded."""
        with gc_paused():
            if self.registry:
                self._load_typed(kvs, keys_only)
            else:
                self._load_plain(kvs, keys_only)
        self.revision = revision

    def _load_typed(self, kvs: Iterable[KeyValueRow], keys_only: bool) -> None:
        """``load`` where the registry may give nodes their own classes."""
        parent_names: Path | None = None
        parent = self.root
        for kv in map(KeyValue._make, kvs):
            names = self.names_of(kv.key)
            if names is None:
                continue
            if names[:-1] != parent_names or not names:
                parent_names = names[:-1]
                parent = self._make_path(parent_names)
            node = self._make_path(names[-1:], parent, names) if names else self.root
            self._set(node, kv, keys_only)
            self.keys += 1

    def _load_plain(self, kvs: Iterable[KeyValueRow], keys_only: bool) -> None:
        """``load`` with plain nodes: the hot path of a mount, a few steps per key.

        A key's parent is found by the bytes before its last ``/`` (the previous key's
        parent, mostly; else from a table of the parents seen, made on the way), and only
        the last segment is decoded (``/`` is ASCII and surrogateescape works byte by byte,
        so the names are those of ``names_of``). Nodes are made with their state at once.

        While the keys ascend (all of them, since the tree was empty: etcd sends them
        sorted), a key has no node yet: a node exists only for a key loaded before or for
        a prefix of one, and both sort before a greater key. So its node is made without
        looking for it, and the new children of a parent are given to it together when the
        keys move on to another parent. A key out of order is looked for, and so is every
        key after it until the tree is emptied (``clear``) again.
        """
        sub, prefix, root = self._sub, self.prefix, self.root
        parents: dict[bytes, Node] = {prefix: root}

        def node_at(key: bytes, last: bytes | None) -> Node:  # a parent key's, made if missing
            node = parents.get(key)
            if node is None:
                cut = key.rfind(b"/")
                up = node_at(key[:cut], last)
                if last is not None and key > last:  # (as a key's node: it has none yet)
                    node = _new_child(up, key[cut + 1 :].decode("utf-8", "surrogateescape"))
                    TreeCore._attach(up, node)
                else:
                    node = _child_of(up, key[cut + 1 :])
                parents[key] = node
            return node

        new, intern, not_loaded = _new_node, sys.intern, NOT_LOADED
        names: dict[bytes, str] = {}  # decoded segments (leaf names recur under each parent)
        last = self._last
        parent_key = prefix
        parent = root
        run: list[Node] = []  # new children of parent, not given to it yet
        added = 0
        for kv in kvs:
            key, value, create, mod, version, lease = kv
            if not key.startswith(sub):
                if key == prefix and key:  # the mount's own key (else: not under it)
                    self._set(root, KeyValue._make(kv), keys_only)
                    added += 1
                continue
            cut = key.rfind(b"/")
            if key[:cut] != parent_key:
                if run:
                    _adopt(parent, run)
                    run = []
                parent_key = key[:cut]
                parent = node_at(parent_key, last)
            if last is not None and key > last:
                last = key
                segment = key[cut + 1 :]
                name = names.get(segment)
                if name is None:
                    name = names[segment] = intern(segment.decode("utf-8", "surrogateescape"))
                node = new(Node)
                node._name = name
                node._parent = parent
                node._children = None
                run.append(node)
            else:  # out of order: the node may exist
                if run:
                    _adopt(parent, run)
                    run = []
                last = None
                node = _child_of(parent, key[cut + 1 :])
            node._raw = not_loaded if keys_only else value
            node._mod = mod
            node._meta = (
                None if create == mod and version == 1 and not lease else (create, version, lease)
            )
            added += 1
        if run:
            _adopt(parent, run)
        self._last = last
        self.keys += added

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
        self._last = b""

    def apply(self, events: Iterable[Event], revision: int) -> list[Change]:
        """Apply the events of one revision; return the changes, in event order."""
        self._last = None  # (keys loaded after these are looked for)
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
        self._last = None
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
            children = parent._children
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
        children = parent._children
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
