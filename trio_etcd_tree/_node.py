"""Nodes of the mirrored tree.

A node is one path segment below the mount. It may hold a value (then it mirrors one etcd
key: bytes plus ``create_revision``, ``mod_revision``, ``version`` and ``lease``) and it may
have children; in etcd v3 a key can have both (``/cfg/a`` and ``/cfg/a/b``). Nodes exist
while they hold a value or have children: deleting the last key below a node removes it.

Names are ``str``. Key segments that are not UTF-8 are decoded with ``surrogateescape``
(as Python does for file names), so every key maps to a name and back without loss. Empty
segments are names too: ``/cfg/a//b`` is ``root["a"][""]["b"]``, and a trailing ``/`` is a
child named ``""``. The mount's own key (``/cfg`` for a mount of ``/cfg``) is the root's value.

Reading a node never does I/O. In a lazy mount (``mount(..., lazy=True)``) a node can
hold a key whose value is not loaded yet: its revisions are known, ``value`` and ``raw``
raise :class:`NotLoadedError` until ``await node.load()`` reads it. Writing goes to etcd as
a guarded transaction and returns once the watch has brought the change back into the tree
(see ``Node.set``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

from ._codecs import Codec
from ._errors import DecodeError
from ._types import KeyValue

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from ._client import Lease
    from ._mount import Root
    from ._subscribe import Subscription

__all__ = ["Node", "NotLoadedError"]

_UNDECODED: Any = object()
_PRIVATE = object()


class _NotLoaded(bytes):
    """The type of ``NOT_LOADED``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<not loaded>"


#: The raw value of a node whose key exists but whose value a lazy mount has not loaded
#: yet (and the ``value`` of a :class:`KeyValue` in a :class:`Change` for such a key). It
#: is a ``bytes`` equal to ``b""``, so "has a key" stays ``_raw is not None``; tell it
#: apart by identity (``raw is NOT_LOADED``).
NOT_LOADED: bytes = _NotLoaded()


class NotLoadedError(LookupError):
    """The value of a node of a lazy mount is not loaded yet: ``await node.load()``."""


def encode_name(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


class Node:
    """One node of a mounted tree (see the module docs). Nodes are made by the tree only.

    Reading (never I/O): ``node["db"]``, ``"db" in node``, ``len(node)``, iteration over
    child names in key order, ``get``, ``keys``/``values``/``items``, ``lookup("a/b")``,
    ``walk()``, and the value: ``value`` (decoded with the node's codec), ``raw``,
    ``create_revision``, ``mod_revision``, ``version``, ``lease``.

    Subclass it to give structured parts of the tree properties, and register the class for
    a path pattern in a :class:`TypeRegistry`.
    """

    __slots__ = (
        "_children",
        "_create",
        "_decoded",
        "_lease",
        "_mod",
        "_name",
        "_parent",
        "_raw",
        "_version",
    )

    def __init__(self, name: str, parent: Node | None, _token: object = None) -> None:
        if _token is not _PRIVATE:
            raise TypeError("nodes are made by the tree; use mount() and index it")
        self._name = name
        self._parent = parent
        self._children: dict[str, Node] | None = None
        self._raw: bytes | None = None
        self._create = 0
        self._mod = 0
        self._version = 0
        self._lease = 0
        self._decoded: Any = _UNDECODED

    # --- where it is ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The node's name: its last path segment (``""`` for the root)."""
        return self._name

    @property
    def parent(self) -> Node | None:
        """The parent node; ``None`` for the root and for a node deleted from the tree."""
        return self._parent

    @property
    def path(self) -> tuple[str, ...]:
        """The names from the root down to this node (``()`` for the root)."""
        names: list[str] = []
        node: Node | None = self
        while node is not None and node._parent is not None:
            names.append(node._name)
            node = node._parent
        return tuple(reversed(names))

    @property
    def root(self) -> Root:
        """The root of the tree this node is (or was) in."""
        node = self
        while node._parent is not None:
            node = node._parent
        return node  # type: ignore[return-value]

    @property
    def key(self) -> bytes:
        """The etcd key this node mirrors (or would, if it has no value)."""
        return self.root._key_of(self.path)

    # --- the value -----------------------------------------------------------------------

    @property
    def has_value(self) -> bool:
        """Whether a key exists at this node (a node can exist only to hold children)."""
        return self._raw is not None

    @property
    def loaded(self) -> bool:
        """Whether the node's value is known: ``False`` only for a key of a lazy mount whose
        value has not been loaded (see :meth:`load`)."""
        return self._raw is not NOT_LOADED

    @property
    def raw(self) -> bytes | None:
        """The value's bytes as etcd holds them, or ``None`` when there is no key here.

        Raises:
            NotLoadedError: a lazy mount has not loaded the value yet.
        """
        if self._raw is NOT_LOADED:
            raise self._not_loaded()
        return self._raw

    @property
    def value(self) -> Any:
        """The value, decoded with the node's codec (``str`` unless the registry says
        otherwise).

        Raises:
            LookupError: the node has no value (only children).
            NotLoadedError: a lazy mount has not loaded the value yet.
            DecodeError: the bytes do not decode; ``raw`` still has them.
        """
        if self._raw is None:
            raise LookupError(f"{self._describe()} has no value, only children")
        if self._raw is NOT_LOADED:
            raise self._not_loaded()
        if self._decoded is _UNDECODED:
            codec = self.codec
            try:
                self._decoded = codec.decode(self._raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise DecodeError(
                    f"{self._describe()} does not decode as {codec.name}: {exc}",
                    key=self.key,
                    raw=self._raw,
                    codec=codec.name,
                ) from exc
        return self._decoded

    @property
    def decode_error(self) -> DecodeError | None:
        """The error decoding the value raises, or ``None`` if it decodes (or is absent or
        not loaded)."""
        try:
            self.value  # noqa: B018
        except DecodeError as exc:
            return exc
        except LookupError:
            return None
        return None

    @property
    def codec(self) -> Codec:
        """The codec the type registry gives this node's path."""
        return self.root._codec_for(self.path)

    @property
    def create_revision(self) -> int:
        """The revision that created the key (0 when there is no key)."""
        return self._create

    @property
    def mod_revision(self) -> int:
        """The revision of the key's last change (0 when there is no key)."""
        return self._mod

    @property
    def version(self) -> int:
        """How often the key was written since it was created (0 when there is no key)."""
        return self._version

    @property
    def lease(self) -> int:
        """The id of the lease the key is attached to (0 for none)."""
        return self._lease

    @property
    def kv(self) -> KeyValue | None:
        """The key as a :class:`KeyValue`, or ``None`` when there is no key here.

        Raises:
            NotLoadedError: a lazy mount has not loaded the value yet.
        """
        if self._raw is None:
            return None
        if self._raw is NOT_LOADED:
            raise self._not_loaded()
        return KeyValue(self.key, self._raw, self._create, self._mod, self._version, self._lease)

    # --- children --------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Node:
        children = self._children
        if children is None or name not in children:
            raise KeyError(f"{self._describe()} has no child {name!r}")
        return children[name]

    def get(self, name: str, default: Node | None = None) -> Node | None:
        children = self._children
        if children is None:
            return default
        return children.get(name, default)

    def __contains__(self, name: object) -> bool:
        return self._children is not None and name in self._children

    def __len__(self) -> int:
        return 0 if self._children is None else len(self._children)

    def __bool__(self) -> bool:
        return True  # a node with no children is still a node

    def __iter__(self) -> Iterator[str]:
        """Child names in key order (the order of their etcd keys)."""
        if self._children is None:
            return iter(())
        return iter(sorted(self._children, key=encode_name))

    def keys(self) -> list[str]:
        return list(self)

    def values(self) -> list[Node]:
        children = self._children or {}
        return [children[name] for name in self]

    def items(self) -> list[tuple[str, Node]]:
        children = self._children or {}
        return [(name, children[name]) for name in self]

    def lookup(self, path: str | Sequence[str]) -> Node:
        """The node at a relative path: ``"a/b"`` or ``("a", "b")``.

        Raises:
            KeyError: a node on the way does not exist.
        """
        names = path.split("/") if isinstance(path, str) else path
        node = self
        for name in names:
            node = node[name]
        return node

    def walk(self) -> Iterator[Node]:
        """This node and everything below it, depth first, in key order."""
        yield self
        for child in self.values():
            yield from child.walk()

    def __repr__(self) -> str:
        if self._raw is None:
            return f"<{type(self).__name__} {self._describe()} children={len(self)}>"
        raw = self._raw if len(self._raw) <= 40 else self._raw[:37] + b"..."
        return f"<{type(self).__name__} {self._describe()} mod_revision={self._mod} raw={raw!r}>"

    def _describe(self) -> str:
        return repr(self.key.decode("utf-8", "backslashreplace"))

    def _not_loaded(self) -> NotLoadedError:
        return NotLoadedError(
            f"the value of {self._describe()} is not loaded (a lazy mount): await node.load() first"
        )

    # --- loading ---------------------------------------------------------------------------

    async def load(self) -> Node:
        """Load the values of this node and of everything below it that a lazy mount has
        not loaded yet; return the node. A no-op checkpoint when all are loaded (always,
        in a mount that is not lazy).

        The values are read at the revision the tree has applied when the load starts, so
        they are consistent with the rest of the tree; a value that a watch event brought
        in meanwhile is newer and stays. If that revision was compacted, they are read at
        the current revision, and a key that changed since the tree's revision gets its
        value from its event instead (the call waits for it). Once it returns, every key
        at and below the node has its value (unless a resync added unloaded keys since).

        Raises:
            TreeClosedError: the mount was left and values are still to be loaded.

        Cancellation: a checkpoint; cancelled, the values read so far stay loaded (each is
        the right one for its key's ``mod_revision``) and the rest stay unloaded.
        """
        await self.root._mirror.load(self)
        return self

    # --- writing ---------------------------------------------------------------------------

    @overload
    async def set(
        self, value: object, /, *, lease: Lease | int = 0, unguarded: bool = False
    ) -> int: ...

    @overload
    async def set(
        self, name: str, value: object, /, *, lease: Lease | int = 0, unguarded: bool = False
    ) -> int: ...

    async def set(self, *args: object, lease: Lease | int = 0, unguarded: bool = False) -> int:
        """Write this node's value (``node.set(value)``) or a child's (``node.set(name,
        value)``); a ``dict`` value writes a whole subtree of keys.

        The value is encoded with the target's codec (a value it cannot encode raises
        ``TypeError``/``ValueError`` before anything is sent). The write is one etcd
        transaction guarded by what the tree knows: each existing key's ``mod_revision``,
        "must not exist" for each new key. The tree is not changed here: the call returns
        the write's revision once the watch has applied it, so the tree shows it then.

        Args:
            lease: attach the keys to this lease (a :class:`Lease` or a lease id).
            unguarded: write whatever is there (last writer wins).

        Raises:
            ConflictError: a guard failed; ``current`` is what the server holds now.
            TooLargeError: more keys than one transaction may hold; nothing was written.
            TreeClosedError: the mount was left.

        Cancellation: a checkpoint. Cancelled before the request is sent, nothing is
        written; after, the write may have been applied (the tree will show it if so).
        """
        if len(args) == 1:
            return await self.root._mirror.set_values(
                self, [((), args[0])], lease=lease, unguarded=unguarded
            )
        if len(args) == 2 and isinstance(args[0], str):
            return await self.root._mirror.set_values(
                self, [((args[0],), args[1])], lease=lease, unguarded=unguarded
            )
        raise TypeError("use node.set(value) or node.set(name, value)")

    async def delete(self, *, recursive: bool = False, unguarded: bool = False) -> int:
        """Delete this node's key, or with ``recursive`` every key at and below it.

        One transaction, guarded by the key's ``mod_revision`` and, for a recursive delete,
        by "no key below was created or changed since the revision the tree has applied".
        Returns the revision once the tree shows the deletion.

        Raises:
            ConflictError: the key or the subtree changed meanwhile.
            LookupError: a non-recursive delete of a node without a value.
            TreeClosedError: the mount was left.

        Cancellation: a checkpoint; cancelled after the request is sent, the delete may
        have been applied.
        """
        return await self.root._mirror.delete_node(self, recursive=recursive, unguarded=unguarded)

    def subscribe(
        self,
        *,
        buffer: int = 100,
        update_delay: float | None = None,
        max_update_delay: float | None = None,
    ) -> AbstractAsyncContextManager[Subscription]:
        """``async with node.subscribe() as updates:`` the changes at and below this node.

        See :class:`Subscription`. With ``update_delay`` changes are coalesced until the
        subtree has been quiet that long (but at most ``max_update_delay``, default three
        times ``update_delay``) and delivered as one summary update.
        """
        return self.root._mirror.subscribe(
            self.path, buffer=buffer, update_delay=update_delay, max_update_delay=max_update_delay
        )

    async def wait_value(self, predicate: Callable[[Any], bool] | object) -> Any:
        """Wait until this node's value satisfies ``predicate`` (or equals it, if it is not
        callable) and return that value. The node's absence counts as the value ``None``;
        a value that does not decode counts as its :class:`DecodeError`.

        Level-triggered: returns at once (after a checkpoint) if the value already
        matches; values that come and go while nobody looks may be missed. For every
        change use :meth:`subscribe`.

        Cancellation: a checkpoint; nothing to undo.
        """
        return await self.root._mirror.wait_value(self.path, predicate)


def current_value(node: Node | None) -> Any:
    """What ``wait_value`` compares: the decoded value, ``None``, or the decode error."""
    if node is None or node._raw is None:
        return None
    try:  # an unloaded value raises NotLoadedError: Mirror.wait_value loads first
        return node.value
    except DecodeError as exc:
        return exc


def make_node(cls: type[Node], name: str, parent: Node | None) -> Node:
    return cls(name, parent, _PRIVATE)


def flatten(value: object, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    """(relative path, leaf value) pairs of a value: nested mappings become paths."""
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(
                f"an empty mapping at {'/'.join(path) or 'the node'} cannot be written: "
                "etcd has no empty directories"
            )
        for name, child in value.items():
            if not isinstance(name, str):
                raise TypeError(f"names must be str, not {type(name).__name__}: {name!r}")
            yield from flatten(child, (*path, name))
    else:
        yield path, value
