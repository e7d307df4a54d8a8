"""The reflector: keeps a tree equal to etcd, revision by revision.

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

The range read and watched is ``[prefix, prefix + "0")``: the mount's own key and
everything under ``prefix + "/"`` (keys in it that are not under the mount, ``/cfg-old``
for ``/cfg``, are ignored). A user whose role grants only the subtree (etcd's usual
``--prefix readwrite /cfg/``) may not read that range: then the mount reads and watches
``[prefix + "/", prefix + "0")`` alone, and the root's own key is not part of it.

A lazy mount reads keys only in steps 1 and 3; ``load`` reads the values of a subtree at
the revision the tree has applied. Every change goes through the apply core.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from itertools import islice
from typing import Any

import trio

from .._client import Client, ConnectionState, WatchStream
from .._core.errors import (
    ClusterChangedError,
    CompactedError,
    DecodeError,
    EtcdError,
    MirrorError,
    PermissionDeniedError,
    TreeClosedError,
)
from .._core.keys import prefix_end, show_bytes
from .._core.types import Event, KeyValue, Page, WatchResponse, records, rows, undecoded
from .._core.util import Backoff, gc_paused, open_service_nursery
from .changes import MountState, MountStatistics, Update
from .core import TreeCore
from .node import Node
from .paths import Path
from .subscribe import Subscriptions
from .waiters import Waiters

__all__ = ["CONFIRM_AFTER", "Reflector", "current_value"]

LOAD_STEP = 2000
"""Keys a mount adds to its tree between two checkpoints while it loads."""
CONFIRM_AFTER = 1.0
"""Seconds ``wait_revision`` waits for the watch before it asks the server whether the
revision changed anything under the mount (then again with backoff, up to 32 times this)."""


class Reflector:
    """Loads a tree, follows the watch, resyncs, lazy-loads, and wakes the waiters."""

    __slots__ = (
        "_earlier_reconnects",
        "_since",
        "_state",
        "_stream",
        "client",
        "closed",
        "core",
        "events_applied",
        "histories",
        "lazy",
        "page_size",
        "resyncs",
        "revisions_applied",
        "subscriptions",
        "waiters",
        "with_root_key",
    )

    def __init__(self, client: Client, core: TreeCore, *, page_size: int, lazy: bool) -> None:
        self.client = client
        self.core = core
        self.page_size = page_size
        self.lazy = lazy
        self.subscriptions = Subscriptions()
        self.waiters = Waiters()
        self.with_root_key = bool(core.prefix)  #: the range includes the root's own key
        self._state = MountState.RESYNCING
        self._since = trio.current_time()
        self._stream: WatchStream | None = None
        self._earlier_reconnects = 0
        self.resyncs = 0
        self.histories = 0  # how often the cluster's history was replaced (a restore)
        self.revisions_applied = 0
        self.events_applied = 0
        self.closed = False

    # --- the range -------------------------------------------------------------------------

    @property
    def range(self) -> tuple[bytes, bytes]:
        """What is read and watched: with the root's own key, or the subtree alone."""
        prefix = self.core.prefix
        end = prefix_end(prefix + b"/")
        return (prefix if self.with_root_key else prefix + b"/") or b"/", end

    async def _pages(self, *, revision: int = 0) -> AsyncGenerator[Page, None]:
        """The range's pages at one revision; falls back to the subtree alone if the user
        may not read the range with the root's key (``restart`` then: start again)."""
        start, end = self.range
        pages = self.client.range_pages(
            start, end, page_size=self.page_size, revision=revision, keys_only=self.lazy
        )
        try:
            async with aclosing(pages):
                async for page in pages:
                    yield page
        except PermissionDeniedError:
            if not self.with_root_key:
                raise
            self.with_root_key = False
            raise _Restart from None

    # --- state -----------------------------------------------------------------------------

    def set_state(self, state: MountState) -> None:
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

    def statistics(self) -> MountStatistics:
        stream = self._stream
        current = 0 if stream is None else stream.statistics().disconnects
        return MountStatistics(
            self.state,
            self.since,
            self.core.revision,
            self.core.keys,
            self.revisions_applied,
            self.events_applied,
            self._earlier_reconnects + current,
            self.resyncs,
            len(self.subscriptions),
            self.subscriptions.overflows,
        )

    # --- the task --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # (trio's task status holds the nursery that started this task: kept until then)
        status: trio.TaskStatus[None] | None = task_status
        del task_status

        def ready() -> None:  # the tree is loaded and the watch confirmed: mount() yields
            nonlocal status
            if status is not None:
                status.started()
                status = None

        try:
            await self._load()
            while True:
                try:
                    await self._follow(ready)
                except (CompactedError, ClusterChangedError) as exc:
                    self.set_state(MountState.RESYNCING)
                    self.resyncs += 1
                    kvs, revision = await self._snapshot()
                    changes = self.core.replace(kvs, revision, keys_only=self.lazy)
                    del kvs
                    if changes:
                        self._publish(Update(revision, tuple(changes), resync=True))
                    if isinstance(exc, ClusterChangedError):
                        # revisions waited for are of a history the tree no longer shows
                        self.histories += 1
                        self.waiters.history_replaced()
                    self.advance(revision)
        except EtcdError as exc:
            raise MirrorError(
                f"the mirror of {show_bytes(self.core.prefix)} cannot go on: {exc}"
            ) from exc

    async def _load(self) -> None:
        """Fill the empty tree page by page.

        The pages are read by a task of their own, one ahead: it asks for the next page as
        soon as it has handed one over (a channel of one page: it does not wait for the
        tree to take it), so while a page goes into the tree the server is already at the
        next one. A plain mount only keeps a page's keys and records (its nodes are made
        where the tree is first looked at: ``TreeCore.add_sorted``); one with a registry
        makes them at once, in steps of ``LOAD_STEP`` keys with a checkpoint between them
        (the garbage collector paused while a page goes in: it runs once per page instead
        of after every step, each time over the whole tree grown so far).
        """
        while True:
            try:
                async with open_service_nursery() as nursery:
                    send, receive = trio.open_memory_channel[Page](1)
                    nursery.start_soon(self._read_ahead, send)
                    async with receive:
                        async for page in receive:
                            await self._load_page(page)
            except (CompactedError, _Restart):
                self.core.clear()  # compacted while paging: read again at the new revision
                continue
            self.core.end_sorted()
            return

    async def _load_page(self, page: Page) -> None:
        kvs = undecoded(page)
        if not self.core.registry:  # (nodes made where the tree is looked at: see add_sorted)
            self.core.add_sorted(records(kvs), page.revision, keys_only=self.lazy)
            return
        keys = iter(rows(kvs))
        with gc_paused():
            for _ in range(0, len(kvs) or 1, LOAD_STEP):  # (once for an empty page: its revision)
                self.core.load(islice(keys, LOAD_STEP), page.revision, keys_only=self.lazy)
                await trio.lowlevel.checkpoint()

    async def _read_ahead(self, send: trio.MemorySendChannel[Page]) -> None:
        # (closed explicitly: cancelled in the middle, the generators end here and now)
        async with send, aclosing(self._pages()) as pages:
            async for page in pages:
                await send.send(page)

    async def _snapshot(self) -> tuple[list[KeyValue], int]:
        """Every key of the mount at one revision (retried if compacted while paging)."""
        while True:
            kvs: list[KeyValue] = []
            revision = 0
            try:
                async for page in self._pages():
                    kvs.extend(page.kvs)
                    revision = page.revision
            except (CompactedError, _Restart):
                continue  # compacted while paging: read again at the new current revision
            return kvs, revision

    async def _follow(self, ready: Callable[[], None]) -> None:
        """Apply the watch's responses until it ends (with the error raised here).

        They are applied as they arrive, by the task that receives them from the server
        (``Client._applied_watch``): no task switch between the connection and the tree,
        and none of their order, gaps or resumption changes; ``_apply`` never waits. While
        a subscriber has updates waiting, this task (it runs the stream) applies them one
        per pass of the scheduler instead, so that a burst of messages read at once reaches a
        subscriber that keeps up at its own pace, rather than all at once into its buffer.
        """
        start, end = self.range
        stream = self.client._applied_watch(
            start,
            end,
            start_revision=self.core.revision + 1,
            apply=self._apply,
            backlog=self.subscriptions.backlog,
        )

        def established() -> None:
            self._stream = stream
            self.set_state(MountState.SYNCED)
            ready()

        try:
            await stream.run_applied(established)  # only raises: what ended the watch
        finally:
            self._stream = None
            self._earlier_reconnects += stream.statistics().disconnects

    def _apply(self, response: WatchResponse) -> None:
        events = response.events
        if events:
            revision = events[0].kv.mod_revision
            if events[-1].kv.mod_revision == revision:  # one revision: a live message
                self._apply_revision(events, revision)
            else:  # a catch-up message: revision by revision
                start = 0
                for i in range(1, len(events) + 1):
                    if i == len(events) or events[i].kv.mod_revision != revision:
                        self._apply_revision(events[start:i], revision)
                        if i < len(events):
                            start, revision = i, events[i].kv.mod_revision
        self.advance(response.revision)

    def _apply_revision(self, events: list[Event], revision: int) -> None:
        changes = self.core.apply(events, revision)
        self.revisions_applied += 1
        self.events_applied += len(events)
        if changes:
            self._publish(Update(revision, tuple(changes)))

    def _publish(self, update: Update) -> None:
        self.subscriptions.publish(update)
        self.waiters.changed(update)

    def advance(self, revision: int) -> None:
        """The tree shows ``revision``: nothing under the mount changed up to it."""
        if revision > self.core.revision:  # (a stale progress report after a confirmation)
            self.core.revision = revision
        self.waiters.applied(revision)

    def close(self) -> None:
        """Freeze the tree: wake every waiter, end every subscription."""
        self.closed = True
        self.set_state(MountState.CLOSED)
        self.subscriptions.close()
        self.waiters.close()

    def check_open(self) -> None:
        if self.closed:
            raise TreeClosedError(
                f"the mount of {show_bytes(self.core.prefix)} was left: the tree is a frozen"
                " snapshot"
            )

    # --- loading (lazy mounts) -------------------------------------------------------------

    async def load(self, names: Path, *, subtree: bool = True) -> None:
        """Load every unloaded value at and below ``names`` (see ``Node.load``); without
        ``subtree`` only the node's own.

        Each round reads the subtree at the tree's revision and fills the nodes still
        unloaded with the same ``mod_revision``. What a round leaves unloaded changed after
        the read (a fallback read at the current revision, or a resync meanwhile): its
        event, or the resync, advances the tree, and the next round starts from there.
        """
        last = -1
        while _unloaded(self.core.root.find(names), subtree):
            self.check_open()
            if self.core.revision <= last:
                await self.wait_revision(last + 1)
                continue
            last = self.core.revision
            await self._read_values(names, last, subtree)
        await trio.lowlevel.checkpoint()

    async def _read_values(self, names: Path, revision: int, subtree: bool) -> None:
        key = self.core.key_of(names)
        # the key and everything under it (the root of "/" has no key), or the key alone
        start, end = (key or b"/", prefix_end(key + b"/")) if subtree else (key, key + b"\0")
        if not names and not self.with_root_key:
            start = key + b"/"  # (a root whose own key the user may not read)
        at = revision
        while True:
            try:
                async for page in self.client.range_pages(
                    start, end, page_size=self.page_size, revision=at
                ):
                    self.core.fill(page.kvs, names)
            except CompactedError:
                at = 0  # the tree's revision is compacted: read the current one
                continue
            return

    # --- waiting ---------------------------------------------------------------------------

    async def wait_revision(self, revision: int, *, history: int | None = None) -> None:
        """Wait until the tree shows ``revision`` (see ``Root.wait_revision``). With
        ``history`` (``self.histories`` when the revision was made), raise
        ClusterChangedError if the cluster's history was replaced since: the revision is
        then of a history the tree no longer shows."""
        if self.core.revision >= revision and history in (None, self.histories):
            await trio.lowlevel.checkpoint()
            return
        # a revision of a change elsewhere brings no event: when none comes, ask the server
        backoff = Backoff(base=CONFIRM_AFTER, cap=CONFIRM_AFTER * 32)
        changed_at = -1  # the tree's revision when the server last said "changed since"
        while True:
            if history not in (None, self.histories):
                raise ClusterChangedError(
                    f"the cluster was restored or replaced while waiting for revision "
                    f"{revision}: the tree now shows another history, in which that revision"
                    " means nothing",
                    outcome_unknown=True,
                )
            if self.core.revision >= revision:
                return
            self.check_open()
            event = self.waiters.for_revision(revision)
            with trio.move_on_after(backoff.next_delay()):
                await event.wait()
            if event.is_set():
                continue  # applied, or the history replaced, or the mount left
            unchanged = await self._unchanged_until(revision)
            if unchanged and self._state is MountState.SYNCED:  # (a resync sets its own)
                self.advance(revision)
            elif unchanged is False:
                stream = self._stream
                if changed_at == self.core.revision and stream is not None:
                    # asked twice, and the watch brought none of those changes meanwhile
                    stream.reopen("the server has changes the watch did not deliver")
                changed_at = self.core.revision

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
        if self.with_root_key:
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

    async def wait_value(self, path: Path, predicate: object) -> Any:
        test: Callable[[Any], bool] = (
            predicate if callable(predicate) else (lambda value: value == predicate)
        )
        while True:
            node = self.core.root.find(path)
            if node is not None and not node.loaded:
                await self.load(path, subtree=False)  # lazy: load the value, look again
                continue
            value = current_value(node)
            if test(value):
                await trio.lowlevel.checkpoint()
                return value
            self.check_open()
            await self.waiters.for_change(path).wait()


class _Restart(Exception):
    """The range changed (the user may not read the root's key): read it again."""


def _unloaded(node: Node | None, subtree: bool) -> bool:
    if node is None:
        return False
    return any(not n.loaded for n in (node.walk() if subtree else (node,)))


def current_value(node: Node | None) -> Any:
    """What ``wait_value`` compares: the decoded value, ``None``, or the decode error."""
    if node is None or not node.has_value:
        return None
    try:  # an unloaded value raises NotLoadedError: wait_value loads first
        return node.value
    except DecodeError as exc:
        return exc
