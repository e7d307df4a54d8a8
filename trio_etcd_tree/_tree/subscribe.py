"""Subscriptions: the tree's changes delivered through trio memory channels.

The mirror never waits for a subscriber. Each subscription has a bounded buffer that the
mirror fills with ``send_nowait``; a subscriber that lets it fill up is cut off: its
channel ends and its next ``receive`` raises :class:`SubscriptionOverflow` (after what was
delivered before). A debounced subscription instead merges what arrives while its
subscriber is busy, so it cannot overflow: it always ends up with one summary.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import final

import trio

from .._core.errors import SubscriptionOverflow, TreeClosedError
from .._core.util import open_service_nursery
from .changes import Change, ChangeKind, Update
from .paths import Path, encode_name, show

__all__ = ["Subscription", "Subscriptions"]


@final
class Subscription(trio.abc.ReceiveChannel[Update]):
    """The receiving end of ``node.subscribe()``: a trio ``ReceiveChannel`` of
    :class:`Update`.

    Each update holds the changes of one etcd revision at or below the subscribed node, in
    revision order (a debounced subscription: a summary of several). Changes found by a
    resync arrive as an update with ``resync`` set. The channel ends when the mount is
    left; :class:`SubscriptionOverflow` is raised instead if the subscriber fell behind.
    """

    def __init__(self, path: Path, buffer: int) -> None:
        self.path = path
        self._send, self._receive = trio.open_memory_channel[Update](buffer)
        self.overflowed = False
        self.delivered = 0
        self.received = 0
        # behind at this many updates not received: one more than the update handed over
        # in this pass of the scheduler (the subscriber gets it when it runs next), if it
        # has room for two
        self.behind_at = min(2, buffer)

    async def receive(self) -> Update:
        """The next update.

        Cancellation: a checkpoint; no update is lost when cancelled.
        """
        try:
            update = await self._receive.receive()
        except trio.EndOfChannel:
            if self.overflowed:
                raise SubscriptionOverflow(
                    f"the subscriber of {show(self.path)} fell behind "
                    f"by more than its buffer; re-read the tree and subscribe again"
                ) from None
            raise
        self.received += 1
        return update

    async def aclose(self) -> None:
        await self._receive.aclose()

    def _deliver(self, update: Update) -> bool:
        """Hand an update over without waiting; False if the subscriber is gone or full."""
        try:
            self._send.send_nowait(update)
        except trio.WouldBlock:
            self.overflowed = True
            self._send.close()
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        self.delivered += 1
        return True

    def _close(self) -> None:
        self._send.close()


def relevant(path: Path, changes: tuple[Change, ...]) -> tuple[Change, ...]:
    """The changes at or below ``path``."""
    if not path:
        return changes
    n = len(path)
    return tuple(c for c in changes if c.path[:n] == path)


def merge(older: dict[Path, Change], changes: tuple[Change, ...]) -> None:
    """Fold newer changes into a summary: per key the first ``old`` and the last ``new``."""
    for change in changes:
        first = older.get(change.path)
        if first is None:
            older[change.path] = change
            continue
        old, new = first.old, change.new
        if old is None and new is None:
            del older[change.path]  # created and deleted again: nothing happened
            continue
        kind = (
            ChangeKind.CREATED
            if old is None
            else ChangeKind.DELETED
            if new is None
            else ChangeKind.MODIFIED
        )
        older[change.path] = Change(change.path, kind, old, new, change.codec)


class Subscriptions:
    """The mirror's set of subscriptions."""

    __slots__ = (
        "_all",
        "closed",
        "overflows",
    )

    def __init__(self) -> None:
        # (a dict as an ordered set: an empty one is 64 bytes, an empty set 216)
        self._all: dict[Subscription, None] = {}
        self.overflows = 0
        self.closed = False

    def __len__(self) -> int:
        return len(self._all)

    def backlog(self) -> bool:
        """Whether a subscriber is behind: it has not received two updates handed to it
        (one only if its buffer holds one), so the next should wait for its turn."""
        return any(sub.delivered - sub.received >= sub.behind_at for sub in self._all)

    def publish(self, update: Update) -> None:
        for sub in list(self._all):
            changes = relevant(sub.path, update.changes)
            if changes and not sub._deliver(
                update
                if len(changes) == len(update.changes)
                else Update(update.revision, changes, update.resync)
            ):
                self._all.pop(sub, None)
                if sub.overflowed:
                    self.overflows += 1

    def close(self) -> None:
        self.closed = True
        for sub in self._all:
            sub._close()
        self._all.clear()

    @asynccontextmanager
    async def subscribe(
        self,
        path: Path,
        *,
        buffer: int,
        update_delay: float | None,
        max_update_delay: float | None,
    ) -> AsyncIterator[Subscription]:
        """The context manager behind ``Node.subscribe``."""
        if self.closed:
            raise TreeClosedError("the mount was left: nothing more to subscribe to")
        if buffer < 1:
            raise ValueError("buffer must be >= 1")
        if update_delay is None:
            sub = Subscription(path, buffer)
            self._all[sub] = None
            try:
                yield sub
            finally:
                self._all.pop(sub, None)
                sub._close()
            return
        if update_delay <= 0:
            raise ValueError("update_delay must be > 0")
        max_delay = 3 * update_delay if max_update_delay is None else max_update_delay
        if max_delay < update_delay:
            raise ValueError("max_update_delay must be >= update_delay")
        raw = Subscription(path, math.inf)  # type: ignore[arg-type]
        out = Subscription(path, buffer)
        self._all[raw] = None
        try:
            async with open_service_nursery() as nursery:
                nursery.start_soon(_debounce, raw, out, update_delay, max_delay)
                try:
                    yield out
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._all.pop(raw, None)
            raw._close()
            out._close()


async def _debounce(raw: Subscription, out: Subscription, delay: float, max_delay: float) -> None:
    """Forward quiet-period summaries of ``raw`` to ``out``."""
    pending: dict[Path, Change] = {}
    revision = 0
    resync = False
    async for update in raw:  # (counted as received: see Subscriptions.backlog)
        merge(pending, update.changes)
        revision, resync = update.revision, resync or update.resync
        forced_at = trio.current_time() + max_delay
        while True:
            with trio.move_on_at(min(trio.current_time() + delay, forced_at)):
                try:
                    update = await raw.receive()
                except trio.EndOfChannel:
                    break
                merge(pending, update.changes)
                revision, resync = update.revision, resync or update.resync
                continue
            break
        if pending:
            # waiting here is fine: the mirror keeps filling `raw`, which has no limit,
            # and whatever arrived meanwhile goes into the next summary
            try:
                await out._send.send(_summary(pending, revision, resync))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            out.delivered += 1
            pending, resync = {}, False
    out._close()


def _summary(pending: dict[Path, Change], revision: int, resync: bool) -> Update:
    changes = sorted(pending.values(), key=lambda c: [encode_name(n) for n in c.path])
    return Update(revision, tuple(changes), resync, coalesced=True)
