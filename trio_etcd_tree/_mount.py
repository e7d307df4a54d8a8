"""``mount()``: a live, writable mirror of an etcd subtree.

How the mirror stays exact, in etcd's terms:

1. The subtree is read page by page at one revision R (``Client.range_pages``), which is
   one consistent snapshot however long the paging takes.
2. The watch starts at R + 1, so nothing between the snapshot and the watch is lost, and
   it applies every later revision once, in order (``WatchStream`` resumes after broken
   connections and failover from the last complete revision).
3. When the watch cannot resume (its next revision was compacted, or the cluster was
   restored from a backup and its revision went backwards or its id changed), the mirror
   reads a fresh snapshot, compares it with the tree, and reports the differences to
   subscribers as changes (``Update.resync``), deletions included. Then it watches on.
4. Writes never touch the tree: they go to etcd as guarded transactions, and the call
   returns once the watch has brought the change back (read-your-writes).

The mount's watch covers ``[prefix, prefix + "0")``: the mount's own key and everything
under ``prefix + "/"``. Keys in that range that are not under the mount (``/cfg-old`` for
``/cfg``) are read and ignored.

A lazy mount (``lazy=True``) reads keys only in steps 1 and 3: the tree has its full shape
and every key's revisions, and ``Node.load`` reads the values of a subtree at the revision
the tree has applied (``Mirror.load``). Events carry values, so whatever the watch touches
is loaded; writes guard on ``mod_revision``, which is known for unloaded keys too.
"""

from __future__ import annotations

import enum
import heapq
import inspect
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

import trio

from ._client import Client, ConnectionState, Lease, WatchStream
from ._errors import (
    ClusterChangedError,
    CompactedError,
    ConflictError,
    EtcdError,
    MirrorError,
    TooLargeError,
    TreeClosedError,
)
from ._keys import KeyLike, key_bytes, prefix_end
from ._node import _PRIVATE, NOT_LOADED, Node, current_value, flatten
from ._registry import TypeRegistry
from ._subscribe import Subscription, Subscriptions
from ._tree import TreeCore, Update
from ._txn import Compare, Delete, Get, Op, Put
from ._types import KeyValue, RangeResult, WatchResponse
from ._util import Backoff, open_service_nursery

if TYPE_CHECKING:
    from ._codecs import Codec

__all__ = ["MountState", "MountStatistics", "Root", "mount"]

CONFIRM_AFTER = 1.0
"""Seconds ``wait_revision`` waits for the watch before it asks the server whether the
revision changed anything under the mount (then again with backoff, up to 32 times this)."""


class MountState(enum.Enum):
    """Where a mounted tree stands (``root.state``)."""

    SYNCED = "synced"  #: the watch is connected; the tree follows etcd
    DISCONNECTED = "disconnected"  #: the watch is reconnecting; the tree may be behind
    RESYNCING = "resyncing"  #: reading a fresh snapshot after the watch could not resume
    CLOSED = "closed"  #: the mount was left; the tree is a frozen snapshot


@dataclass(frozen=True, slots=True)
class MountStatistics:
    """What a mount has been through (``root.statistics()``)."""

    state: MountState
    since: float  #: trio time of the last state change
    revision: int  #: the revision the tree reflects
    keys: int  #: keys in the tree
    revisions_applied: int  #: watch revisions applied (progress notifications excluded)
    events_applied: int
    reconnects: int  #: how often the watch lost its connection (and reconnected)
    resyncs: int  #: fresh snapshots read after the watch could not resume
    subscribers: int
    overflows: int  #: subscriptions cut off because their subscriber fell behind


@final
class Root(Node):
    """The root node of a mounted tree, with the mount's state and its writes.

    Besides everything a :class:`Node` offers: ``revision`` (the revision the tree
    reflects), ``state`` and ``state_since``, :meth:`statistics`, :meth:`wait_revision`,
    :meth:`transaction` and :meth:`retry_transaction`.
    """

    __slots__ = ("_mirror",)

    def __init__(self, mirror: Mirror, _token: object = None) -> None:
        super().__init__("", None, _token)
        self._mirror = mirror

    @property
    def revision(self) -> int:
        """The etcd revision the tree reflects: everything up to it has been applied."""
        return self._mirror.core.revision

    @property
    def prefix(self) -> bytes:
        """The mounted prefix (the root's own key)."""
        return self._mirror.core.prefix

    @property
    def state(self) -> MountState:
        return self._mirror.state

    @property
    def state_since(self) -> float:
        """The trio time of the last change of ``state``."""
        return self._mirror.since

    def statistics(self) -> MountStatistics:
        return self._mirror.statistics()

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

        Cancellation: a checkpoint; nothing to undo.
        """
        await self._mirror.wait_revision(revision)

    def transaction(
        self, path: str | Sequence[str] = ()
    ) -> AbstractAsyncContextManager[Transaction]:
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
        names = tuple(path.split("/")) if isinstance(path, str) and path else tuple(path)
        return self._mirror.transaction(names)

    async def retry_transaction(
        self,
        fn: Callable[[Transaction], object],
        *,
        path: str | Sequence[str] = (),
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
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.transaction(path) as txn:
                    result = fn(txn)
                    if inspect.isawaitable(result):
                        await result
            except ConflictError as exc:
                if attempt >= attempts:
                    raise
                await self._mirror.catch_up(exc)
            else:
                return txn.revision

    def _key_of(self, names: tuple[str, ...]) -> bytes:
        return self._mirror.core.key_of(names)

    def _codec_for(self, names: tuple[str, ...]) -> Codec:
        return self._mirror.core.codec_for(names)


@final
class Transaction:
    """Writes collected by ``root.transaction()``; committed when the block ends."""

    def __init__(self, mirror: Mirror, base: tuple[str, ...]) -> None:
        self._mirror = mirror
        self._base = base
        self.revision = mirror.core.revision  #: the guard's revision; the commit's after
        self._writes: dict[tuple[str, ...], tuple[bytes, int]] = {}
        self._deletes: list[tuple[tuple[str, ...], bool]] = []

    def set(self, path: str | Sequence[str], value: object, *, lease: Lease | int = 0) -> None:
        """Write ``value`` (a mapping writes a subtree) at ``path`` below the transaction's
        node; encoded now with the target's codec."""
        names = self._base + _names(path)
        for sub, leaf in flatten(value):
            full = names + sub
            self._writes[full] = (self._mirror.encode(full, leaf), _lease_id(lease))

    def delete(self, path: str | Sequence[str], *, recursive: bool = False) -> None:
        """Delete the key at ``path`` (with ``recursive``, everything below it too)."""
        names = self._base + _names(path)
        n = len(names)
        for written in list(self._writes):  # a later delete wins over earlier writes
            if written == names or (recursive and written[:n] == names):
                del self._writes[written]
        self._deletes.append((names, recursive))

    def _ops(self) -> list[Op]:
        """The deletes, then the puts. etcd refuses a transaction that deletes and puts the
        same key ("duplicate key"), so a deleted range is cut around the keys put into it:
        the effect is the same as deleting everything first."""
        core = self._mirror.core
        puts = sorted(core.key_of(names) for names in self._writes)
        ops: list[Op] = []
        for names, recursive in self._deletes:
            key = core.key_of(names)
            if key and key not in puts:
                ops.append(Delete(key))
            if recursive:
                ops.extend(_cut(key + b"/", prefix_end(key + b"/"), puts))
        for names, write in self._writes.items():
            ops.append(Put(core.key_of(names), write[0], lease=write[1]))
        return ops


def _cut(start: bytes, end: bytes, keys: list[bytes]) -> list[Op]:
    """Deletes covering [start, end) except the given (sorted) keys."""
    ops: list[Op] = []
    for key in keys:
        if start <= key < end:
            if start < key:
                ops.append(Delete(start, range_end=key))
            start = key + b"\0"
    ops.append(Delete(start, range_end=end))  # a key in the range is below `end`, so is start
    return ops


def _names(path: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(path, str):
        return tuple(path.split("/")) if path else ()
    return tuple(path)


def _lease_id(lease: Lease | int) -> int:
    return lease.id if isinstance(lease, Lease) else lease


class Mirror:
    """The async shell around a :class:`TreeCore`: loading, watching, writing."""

    def __init__(
        self,
        client: Client,
        prefix: bytes,
        registry: TypeRegistry,
        *,
        page_size: int,
        max_txn_ops: int,
        lazy: bool = False,
    ) -> None:
        self.client = client
        self.lazy = lazy
        self.root = Root(self, _PRIVATE)
        self.core = TreeCore(self.root, prefix, registry)
        self.page_size = page_size
        self.max_txn_ops = max_txn_ops
        self.subscriptions = Subscriptions()
        self._state = MountState.RESYNCING
        self._since = trio.current_time()
        self._stream: WatchStream | None = None
        self._earlier_reconnects = 0
        self.resyncs = 0
        self.revisions_applied = 0
        self.events_applied = 0
        self.closed = False
        self._revision_waiters: list[tuple[int, int, trio.Event]] = []
        self._value_waiters: dict[tuple[str, ...], list[trio.Event]] = {}
        self._counter = itertools.count()
        self._closed_event = trio.Event()

    # --- the range -------------------------------------------------------------------------

    @property
    def _range(self) -> tuple[bytes, bytes]:
        prefix = self.core.prefix
        return (prefix or b"/", prefix_end(prefix + b"/"))

    # --- state -----------------------------------------------------------------------------

    def _set_state(self, state: MountState) -> None:
        if state is not self._state:
            self._state = state
            self._since = trio.current_time()

    @property
    def state(self) -> MountState:
        """The mount's state; SYNCED turns DISCONNECTED while the watch reconnects (read
        off the watch stream, so no task has to keep it up to date)."""
        stream = self._stream
        if (
            self._state is MountState.SYNCED
            and stream is not None
            and stream.state is ConnectionState.CONNECTING
        ):
            return MountState.DISCONNECTED
        return self._state

    @property
    def since(self) -> float:
        stream = self._stream
        if self._state is MountState.SYNCED and stream is not None:
            return max(self._since, stream.statistics().since)
        return self._since

    @property
    def reconnects(self) -> int:
        stream = self._stream
        current = 0 if stream is None else stream.statistics().disconnects
        return self._earlier_reconnects + current

    def statistics(self) -> MountStatistics:
        return MountStatistics(
            self.state,
            self.since,
            self.core.revision,
            self.core.keys,
            self.revisions_applied,
            self.events_applied,
            self.reconnects,
            self.resyncs,
            len(self.subscriptions),
            self.subscriptions.overflows,
        )

    # --- the task --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False

        def ready() -> None:  # the tree is loaded and the watch confirmed: mount() yields
            nonlocal started
            if not started:
                started = True
                task_status.started()

        try:
            await self._load()
            while True:
                try:
                    await self._follow(ready)
                except (CompactedError, ClusterChangedError):
                    self._set_state(MountState.RESYNCING)
                    self.resyncs += 1
                    kvs, revision = await self._snapshot()
                    changes = self.core.replace(kvs, revision, keys_only=self.lazy)
                    del kvs
                    if changes:
                        self._publish(Update(revision, tuple(changes), resync=True))
                    self._advance(revision)
        except EtcdError as exc:
            raise MirrorError(f"the mirror of {self.core.prefix!r} cannot go on: {exc}") from exc

    async def _load(self) -> None:
        """Fill the empty tree page by page (parsing overlaps with the server's work)."""
        start, end = self._range
        while True:
            try:
                async for page in self.client.range_pages(
                    start, end, page_size=self.page_size, keys_only=self.lazy
                ):
                    self.core.load(page.kvs, page.revision, keys_only=self.lazy)
            except CompactedError:
                self.core.clear()  # compacted while paging: read again at the new revision
                continue
            return

    async def _snapshot(self) -> tuple[list[KeyValue], int]:
        """Every key of the mount at one revision (retried if compacted while paging)."""
        start, end = self._range
        while True:
            kvs: list[KeyValue] = []
            revision = 0
            try:
                async for page in self.client.range_pages(
                    start, end, page_size=self.page_size, keys_only=self.lazy
                ):
                    kvs.extend(page.kvs)
                    revision = page.revision
            except CompactedError:
                continue  # compacted while paging: read again at the new current revision
            return kvs, revision

    async def _follow(self, ready: Callable[[], None]) -> None:
        start, end = self._range
        async with self.client.watch(
            start, end, start_revision=self.core.revision + 1, buffer=16
        ) as stream:
            self._stream = stream
            self._set_state(MountState.SYNCED)
            ready()
            try:
                while True:
                    self._apply(await stream.receive())
                    while True:  # a burst: apply all of it before waiting again
                        try:
                            self._apply(stream.receive_nowait())
                        except trio.WouldBlock:
                            break
            finally:
                self._stream = None
                self._earlier_reconnects += stream.statistics().disconnects

    def _apply(self, response: WatchResponse) -> None:
        events = response.events
        if events:
            start = 0
            for i in range(1, len(events) + 1):
                if i == len(events) or events[i].kv.mod_revision != events[start].kv.mod_revision:
                    revision = events[start].kv.mod_revision
                    changes = self.core.apply(events[start:i], revision)
                    self.revisions_applied += 1
                    self.events_applied += i - start
                    if changes:
                        self._publish(Update(revision, tuple(changes)))
                    start = i
        self._advance(response.revision)

    def _publish(self, update: Update) -> None:
        self.subscriptions.publish(update)
        waiters = self._value_waiters
        if waiters:
            for change in update.changes:
                for event in waiters.pop(change.path, ()):
                    event.set()

    def _advance(self, revision: int) -> None:
        if revision > self.core.revision:  # (a stale progress report after a confirmation)
            self.core.revision = revision
        waiters = self._revision_waiters
        while waiters and waiters[0][0] <= revision:
            heapq.heappop(waiters)[2].set()

    def close(self) -> None:
        """Freeze the tree: wake every waiter, end every subscription."""
        self.closed = True
        self._set_state(MountState.CLOSED)
        self.subscriptions.close()
        for _, _, event in self._revision_waiters:
            event.set()
        for events in self._value_waiters.values():
            for event in events:
                event.set()
        self._closed_event.set()

    def _check_open(self) -> None:
        if self.closed:
            raise TreeClosedError(
                f"the mount of {self.core.prefix!r} was left: the tree is a frozen snapshot"
            )

    # --- loading (lazy mounts) -------------------------------------------------------------

    async def load(self, node: Node, *, subtree: bool = True) -> None:
        """Load every unloaded value at and below ``node`` (see ``Node.load``); without
        ``subtree`` only the node's own.

        Each round reads the subtree at the tree's revision and fills the nodes still
        unloaded with the same ``mod_revision``. What a round leaves unloaded changed after
        the read (a fallback read at the current revision, or a resync meanwhile): its
        event, or the resync, advances the tree, and the next round starts from there.
        """
        last = -1
        while any(n._raw is NOT_LOADED for n in (node.walk() if subtree else (node,))):
            self._check_open()
            if self.core.revision <= last:
                await self.wait_revision(last + 1)
                continue
            last = self.core.revision
            await self._read_values(node, last, subtree)
        await trio.lowlevel.checkpoint()

    async def _read_values(self, node: Node, revision: int, subtree: bool) -> None:
        key = self.core.key_of(node.path)
        # the key and everything under it (the root of "/" has no key), or the key alone
        start, end = (key or b"/", prefix_end(key + b"/")) if subtree else (key, key + b"\0")
        at = revision
        while True:
            try:
                async for page in self.client.range_pages(
                    start, end, page_size=self.page_size, revision=at
                ):
                    self.core.fill(page.kvs, node.path)
            except CompactedError:
                at = 0  # the tree's revision is compacted: read the current one
                continue
            return

    # --- waiting ---------------------------------------------------------------------------

    async def wait_revision(self, revision: int) -> None:
        if self.core.revision >= revision:
            await trio.lowlevel.checkpoint()
            return
        self._check_open()
        event = trio.Event()
        heapq.heappush(self._revision_waiters, (revision, next(self._counter), event))
        # a revision of a change elsewhere brings no event: when none comes, ask the server
        backoff = Backoff(base=CONFIRM_AFTER, cap=CONFIRM_AFTER * 32)
        changed_at = -1  # the tree's revision when the server last said "changed since"
        while not event.is_set():
            with trio.move_on_after(backoff.next_delay()):
                await event.wait()
            if event.is_set():
                break
            unchanged = await self._unchanged_until(revision)
            if unchanged and self._state is MountState.SYNCED:  # (a resync sets its own)
                self._advance(revision)
            elif unchanged is False:
                stream = self._stream
                if changed_at == self.core.revision and stream is not None:
                    # asked twice, and the watch brought none of those changes meanwhile
                    stream.reopen("the server has changes the watch did not deliver")
                changed_at = self.core.revision
        if self.core.revision < revision:
            self._check_open()

    async def _unchanged_until(self, revision: int) -> bool | None:
        """Whether no key under the mount changed after the tree's revision up to
        ``revision``: then the tree shows ``revision`` already. One keys-only read at
        ``revision`` of the keys changed since (none) and of how many there are (as many
        as the tree holds, so none was deleted). None when it cannot tell (a revision
        not written yet, compacted, no server): the caller asks again later."""
        core = self.core
        since, keys = core.revision, core.keys
        sub = core.prefix + b"/"
        ranges = [(sub, prefix_end(sub))]
        if core.prefix:
            ranges.append((core.prefix, core.prefix + b"\0"))  # the root's own key
        count = 0
        for start, end in ranges:
            try:
                read = await self.client.range(
                    start, end, revision=revision, keys_only=True, min_mod_revision=since + 1
                )
            except EtcdError:
                return None
            if read.kvs:
                return False
            count += read.count
        return count == keys

    async def wait_value(self, path: tuple[str, ...], predicate: object) -> Any:
        test: Callable[[Any], bool] = (
            predicate if callable(predicate) else (lambda value: value == predicate)
        )
        while True:
            try:
                node: Node | None = self.root.lookup(path)
            except KeyError:
                node = None
            if node is not None and node._raw is NOT_LOADED:
                await self.load(node, subtree=False)  # lazy: load the value, look again
                continue
            value = current_value(node)
            if test(value):
                await trio.lowlevel.checkpoint()
                return value
            self._check_open()
            event = trio.Event()
            self._value_waiters.setdefault(path, []).append(event)
            await event.wait()

    def subscribe(
        self,
        path: tuple[str, ...],
        *,
        buffer: int,
        update_delay: float | None,
        max_update_delay: float | None,
    ) -> AbstractAsyncContextManager[Subscription]:
        return self.subscriptions.subscribe(
            path, buffer=buffer, update_delay=update_delay, max_update_delay=max_update_delay
        )

    # --- writing ---------------------------------------------------------------------------

    def encode(self, names: tuple[str, ...], value: object) -> bytes:
        if not names and not self.core.prefix:
            raise ValueError("the root of a mount of the whole keyspace has no key to write")
        return self.core.codec_for(names).encode(value)

    def _known(self, names: tuple[str, ...]) -> int:
        """The mod_revision the tree knows for a path, 0 if it holds no key there."""
        node: Node | None = self.root
        for name in names:
            node = node.get(name) if node is not None else None
        return 0 if node is None else node._mod

    async def set_values(
        self,
        node: Node,
        items: list[tuple[tuple[str, ...], object]],
        *,
        lease: Lease | int,
        unguarded: bool,
    ) -> int:
        self._check_open()
        base = node.path
        writes: dict[tuple[str, ...], bytes] = {}
        for rel, value in items:
            for sub, leaf in flatten(value, rel):
                writes[base + sub] = self.encode(base + sub, leaf)
        lease_id = _lease_id(lease)
        ops: list[Op] = [Put(self.core.key_of(n), raw, lease=lease_id) for n, raw in writes.items()]
        guarded = [] if unguarded else list(writes)
        return await self._commit(ops, guarded, None, what=f"set {_show(base)}")

    async def delete_node(self, node: Node, *, recursive: bool, unguarded: bool) -> int:
        self._check_open()
        names = node.path
        key = self.core.key_of(names)
        if node._raw is None and not recursive:
            raise LookupError(f"{node._describe()} has no value to delete (use recursive=True)")
        ops: list[Op] = [Delete(key)] if key else []
        if recursive:
            ops.append(Delete(key + b"/", prefix=True))
        guarded = [] if unguarded or not key else [names]
        subtree = names if recursive and not unguarded else None
        return await self._commit(ops, guarded, subtree, what=f"delete {_show(names)}")

    @asynccontextmanager
    async def transaction(self, base: tuple[str, ...]) -> AsyncIterator[Transaction]:
        self._check_open()
        txn = Transaction(self, base)
        yield txn
        ops = txn._ops()
        if not ops:
            await trio.lowlevel.checkpoint()
            return
        guarded = [n for n in txn._writes if self.core.key_of(n)]
        guarded += [n for n, _ in txn._deletes if self.core.key_of(n) and n not in guarded]
        txn.revision = await self._commit(
            ops, guarded, base, what=f"transaction on {_show(base)}", since=txn.revision
        )

    async def _commit(
        self,
        ops: list[Op],
        guarded: list[tuple[str, ...]],
        subtree: tuple[str, ...] | None,
        *,
        what: str,
        since: int | None = None,
    ) -> int:
        """Send one guarded transaction; return its revision once the tree shows it.

        Guards: each path in ``guarded`` must be as the tree knows it (its mod_revision, or
        absent); with ``subtree``, no key at or below it may be newer than ``since`` (the
        tree's revision by default). What the failure branch reads tells the caller what
        changed, and lets ``retry_transaction`` wait for the tree to catch up with it.
        """
        core = self.core
        since = core.revision if since is None else since
        compares: list[Compare] = []
        failure: list[Op] = []
        known_revisions: list[int] = []
        for names in guarded:
            key = core.key_of(names)
            known = self._known(names)
            known_revisions.append(known)
            compares.append(
                Compare.mod_revision(key) == known if known else Compare.create_revision(key) == 0
            )
            failure.append(Get(key))
        if subtree is not None:
            key = core.key_of(subtree)
            compares.append(Compare.mod_revision(key + b"/", prefix=True) < since + 1)
            failure.append(
                Get(key + b"/", prefix=True, limit=1, sort_target="MOD", sort_order="DESCEND")
            )
            if key and subtree not in guarded:
                compares.append(Compare.mod_revision(key) < since + 1)
                failure.append(Get(key))
        limit = self.max_txn_ops
        if len(ops) > limit or len(compares) > limit:
            raise TooLargeError(
                f"{len(ops)} operations and {len(compares)} compares exceed the limit of "
                f"{limit} per transaction (max_txn_ops, the server's --max-txn-ops); "
                "nothing was written",
                request=what,
            )
        result = await self.client.txn(compares, ops, failure)
        if not result.succeeded:
            raise self._conflict(
                result.responses, guarded, known_revisions, since, what, result.revision
            )
        await self.wait_revision(result.revision)
        return result.revision

    def _conflict(
        self,
        responses: Sequence[object],
        guarded: list[tuple[str, ...]],
        known: list[int],
        since: int,
        what: str,
        revision: int,
    ) -> ConflictError:
        """What the failure branch's reads say changed, against what the guards expected
        (not against the tree, which may have caught up in the meantime)."""
        conflicts: dict[bytes, KeyValue | None] = {}
        reads = [r for r in responses if isinstance(r, RangeResult)]
        for names, expected, read in zip(guarded, known, reads, strict=False):
            current = read.kvs[0] if read.kvs else None
            if (current.mod_revision if current else 0) != expected:
                conflicts[self.core.key_of(names)] = current
        for read in reads[len(guarded) :]:
            for kv in read.kvs:
                if kv.mod_revision > since:
                    conflicts.setdefault(kv.key, kv)
        described = ", ".join(
            f"{k!r} ({'gone' if v is None else f'now at revision {v.mod_revision}'})"
            for k, v in conflicts.items()
        )
        return ConflictError(
            f"refused: changed since the tree read it: {described or 'the subtree'}",
            conflicts=conflicts,
            revision=revision,
            request=what,
        )

    async def catch_up(self, conflict: ConflictError) -> None:
        """Wait until the tree shows what made ``conflict`` happen."""
        for key, kv in conflict.conflicts.items():
            if kv is not None:
                await self.wait_revision(kv.mod_revision)
            else:
                names = self.core.names_of(key)
                assert names is not None
                await self.wait_value(names, None)
        await trio.lowlevel.checkpoint()


def _show(names: tuple[str, ...]) -> str:
    return "/".join(names) or "the root"


@asynccontextmanager
async def mount(
    client: Client,
    prefix: KeyLike,
    *,
    types: TypeRegistry | None = None,
    page_size: int = 10_000,
    max_txn_ops: int = 128,
    lazy: bool = False,
) -> AsyncIterator[Root]:
    """Mirror the etcd subtree at ``prefix`` for the life of the ``async with`` block.

    ``async with mount(client, "/cfg") as root:`` yields the root :class:`Node` once the
    whole subtree is loaded, consistent at one revision; from then on a task in the
    block's own nursery applies every change, revision by revision, surviving broken
    connections, failover, compaction and restored clusters (see the module docs).

    Args:
        prefix: the subtree; ``"/cfg"`` covers the key ``/cfg`` (the root's value) and every
            key under ``/cfg/``. ``"/"`` or ``""`` mirrors every key that starts with ``/``.
        types: the :class:`TypeRegistry` giving paths their codecs and node classes.
        page_size: keys per page of the snapshot reads.
        max_txn_ops: the server's ``--max-txn-ops``; larger writes are refused before
            anything is sent.
        lazy: read keys only (with their revisions): values are loaded when awaited,
            ``await node.load()`` for a subtree, and by the watch for what it changes;
            until then ``value`` and ``raw`` raise :class:`NotLoadedError`.

    Raises:
        MirrorError: the mirror cannot go on (lost permission, say); out of the block.
        Whatever the block raises comes out unchanged.

    After the block the tree is a frozen snapshot: reads work, writes raise
    :class:`TreeClosedError`, subscriptions have ended.

    Cancellation: entering waits for the snapshot (cancellable; nothing is left behind);
    leaving cancels the watch at once and never blocks on the network.
    """
    raw = key_bytes(prefix)
    raw = raw.rstrip(b"/") if raw.strip(b"/") else b""
    if page_size < 1:
        raise ValueError("page_size must be >= 1")
    mirror = Mirror(
        client,
        raw,
        types or TypeRegistry(),
        page_size=page_size,
        max_txn_ops=max_txn_ops,
        lazy=lazy,
    )
    try:
        async with open_service_nursery() as nursery:
            await nursery.start(mirror.run)
            try:
                yield mirror.root
            finally:
                nursery.cancel_scope.cancel(reason="the mount block was left")
    finally:
        mirror.close()
