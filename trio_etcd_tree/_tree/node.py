"""Nodes of the mirrored tree: the view users hold.

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

Who changes what: only the apply core (``core.py``) writes a node's state; a node reads
its own and reaches the rest of the mount through the small :class:`TreeHandle` its root
holds (the mount implements it).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, final, overload

from .._core.codecs import Codec
from .._core.errors import DecodeError, NotLoadedError
from .._core.types import KeyValue
from .changes import NOT_LOADED, MountState, MountStatistics
from .handle import TreeHandle
from .paths import Path, PathLike, split_path
from .subscribe import Subscription
from .transaction import Transaction
from .view import NodeView

if TYPE_CHECKING:
    from .._client import Lease

__all__ = ["Node", "Root", "make_node"]

PRIVATE = object()
"""The token that lets the tree (and only the tree) make nodes."""


class Node(NodeView["Node"]):
    """One node of a mounted tree (see the module docs). Nodes are made by the tree only.

    Reading (never I/O): ``node["db"]``, ``"db" in node``, ``len(node)``, iteration over
    child names in key order, ``get``, ``keys``/``values``/``items``, ``lookup("a/b")``,
    ``walk()``, and the value: ``value`` (decoded with the node's codec), ``raw``,
    ``create_revision``, ``mod_revision``, ``version``, ``lease``.

    Subclass it to give structured parts of the tree properties, and register the class for
    a path pattern in a :class:`TypeRegistry`.
    """

    __slots__ = ()

    def __init__(self, name: str, parent: Node | None, _token: object = None) -> None:
        if _token is not PRIVATE:
            raise TypeError("nodes are made by the tree; use mount() and index it")
        super().__init__(name, parent)

    @property
    def root(self) -> Root:
        """The root of the tree this node is (or was) in."""
        node = self
        while node._parent is not None:
            node = node._parent
        assert isinstance(node, Root)  # a node's chain of parents ends at its mount's root
        return node

    @property
    def key(self) -> bytes:
        """The etcd key this node mirrors (or would, if it has no value)."""
        return self.root._mirror.key_of(self.path)

    # --- the value -----------------------------------------------------------------------

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
        otherwise). The tree keeps the bytes: each read decodes them.

        Raises:
            LookupError: the node has no value (only children).
            NotLoadedError: a lazy mount has not loaded the value yet.
            DecodeError: the bytes do not decode; ``raw`` still has them.
        """
        raw = self._raw
        if raw is None:
            raise LookupError(f"{self._describe()} has no value, only children")
        if raw is NOT_LOADED:
            raise self._not_loaded()
        codec = self.codec
        try:
            return codec.decode(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DecodeError(
                f"{self._describe()} does not decode as {codec.name}: {exc}",
                key=self.key,
                raw=raw,
                codec=codec.name,
            ) from exc

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
        return self.root._mirror.codec_for(self.path)

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
        return self._kv(self.key)

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
        await self.root._mirror.load(self.path)
        return self

    # --- writing ---------------------------------------------------------------------------

    @overload
    async def set(
        self, value: object, /, *, lease: Lease | int = 0, unguarded: bool = False
    ) -> int: ...

    @overload
    async def set(
        self, path: PathLike, value: object, /, *, lease: Lease | int = 0, unguarded: bool = False
    ) -> int: ...

    async def set(self, *args: object, lease: Lease | int = 0, unguarded: bool = False) -> int:
        """Write this node's value (``node.set(value)``) or the value at a path below it
        (``node.set("a/b", value)``, or a sequence of names); a ``dict`` value writes a
        whole subtree of keys.

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
            ClusterChangedError: the cluster was restored or replaced after the write was
                applied and before the tree showed it: the write is not in the history the
                tree now shows (``outcome_unknown`` is set).

        Cancellation: a checkpoint. Cancelled before the request is sent, nothing is
        written; after, the write may have been applied (the tree will show it if so).
        """
        if len(args) == 1:
            item: tuple[Path, object] = ((), args[0])
        elif len(args) == 2 and isinstance(args[0], str | tuple | list):
            item = (split_path(args[0]), args[1])
        else:
            raise TypeError("use node.set(value) or node.set(path, value)")
        return await self.root._mirror.set_values(
            self.path, [item], lease=lease, unguarded=unguarded
        )

    async def delete(
        self, path: PathLike = (), /, *, recursive: bool = False, unguarded: bool = False
    ) -> int:
        """Delete this node's key (or the key at ``path`` below it), or with ``recursive``
        every key at and below it.

        One transaction, guarded by the key's ``mod_revision`` and, for a recursive delete,
        by "no key below was created or changed since the revision the tree has applied".
        Returns the revision once the tree shows the deletion.

        Raises:
            ConflictError: the key or the subtree changed meanwhile.
            LookupError: a non-recursive delete where the tree holds no key.
            TreeClosedError: the mount was left.

        Cancellation: a checkpoint; cancelled after the request is sent, the delete may
        have been applied.
        """
        return await self.root._mirror.delete_path(
            self.path + split_path(path), recursive=recursive, unguarded=unguarded
        )

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


@final
class Root(Node):
    """The root node of a mounted tree, with the mount's state and its writes.

    Besides everything a :class:`Node` offers: ``revision`` (the revision the tree
    reflects), ``prefix``, ``state`` and ``state_since``, :meth:`statistics`,
    :meth:`key_of`, :meth:`wait_revision`, :meth:`transaction` and
    :meth:`retry_transaction`. ``root.set(path, value)`` and ``root.delete(path)`` write
    anywhere in the mount by path (see :meth:`Node.set` and :meth:`Node.delete`).
    """

    __slots__ = ("_mirror",)

    def __init__(self, mirror: TreeHandle, _token: object = None) -> None:
        super().__init__("", None, _token)
        self._mirror = mirror

    @property
    def revision(self) -> int:
        """The etcd revision the tree reflects: everything up to it has been applied."""
        return self._mirror.revision

    @property
    def prefix(self) -> bytes:
        """The mounted prefix (the root's own key)."""
        return self._mirror.prefix

    @property
    def state(self) -> MountState:
        return self._mirror.state

    @property
    def state_since(self) -> float:
        """The trio time of the last change of ``state``."""
        return self._mirror.since

    def statistics(self) -> MountStatistics:
        return self._mirror.statistics()

    def key_of(self, path: PathLike) -> bytes:
        """The etcd key of a path in this mount (``root.key_of("db/port")`` is
        ``b"/cfg/db/port"`` for a mount of ``/cfg``), whether or not the key exists."""
        return self._mirror.key_of(split_path(path))

    async def wait_revision(self, revision: int) -> None:
        """Wait until the tree has applied ``revision`` (it shows every change up to it).

        Revisions of changes under the mount arrive with their events. A revision of a
        change elsewhere brings no event: when none has come after a second, the tree
        asks the server whether any key under the mount changed between its revision and
        ``revision`` (a keys-only read at ``revision`` that returns only changed keys);
        if none did, the tree is at ``revision`` already. Otherwise it waits for those
        events and asks again later, with backoff up to 32 seconds; if the watch has
        brought nothing in between, it is reopened (a stream stuck on a live member).

        Raises:
            TreeClosedError: the mount was left before the revision arrived.
            ClusterChangedError: the cluster was restored from a backup or replaced
                meanwhile (the tree resynced to it): ``revision`` belongs to a history the
                tree no longer shows.

        Cancellation: a checkpoint; nothing to undo.
        """
        await self._mirror.wait_revision(revision)

    def transaction(self, path: PathLike = ()) -> AbstractAsyncContextManager[Transaction]:
        """``async with root.transaction() as txn:`` collect writes, commit them atomically.

        ``txn.set(path, value)`` and ``txn.delete(path, recursive=...)`` take paths
        relative to ``path`` (the transaction's subtree, the whole mount by default). When
        the block ends without an error, the writes go to etcd in one transaction guarded
        by "no key in the subtree was created or changed since ``txn.revision``" and by each
        written key's own state, and the block exits once the tree shows them. An error in
        the block writes nothing.

        Raises (on exit):
            ConflictError: something in the subtree changed; nothing was written.
            TooLargeError: more operations than ``max_txn_ops``; nothing was written.

        Cancellation: the exit is a checkpoint; cancelled after the request is sent, the
        transaction may have been applied.
        """
        return self._mirror.transaction(split_path(path))

    async def retry_transaction(
        self,
        fn: Callable[[Transaction], object],
        *,
        path: PathLike = (),
        attempts: int = 10,
    ) -> int:
        """Run ``fn(txn)`` in a :meth:`transaction` until it commits; return the revision.

        ``fn`` reads the tree and calls ``txn.set``/``txn.delete``; on a conflict the
        tree is brought up to date with the revision that caused it and ``fn`` runs again
        on the fresh state (etcd's software transactional memory, trio style). ``fn`` may
        be a plain or an async function.

        Raises:
            ConflictError: still conflicting after ``attempts`` tries.

        Cancellation: a checkpoint; cancelled while committing, the last attempt may have
        been applied.
        """
        return await self._mirror.retry_transaction(fn, split_path(path), attempts)


def make_node(cls: type[Node], name: str, parent: Node) -> Node:
    """A new node (for the apply core)."""
    return cls(name, parent, PRIVATE)
