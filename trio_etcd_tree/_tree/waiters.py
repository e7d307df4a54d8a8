"""Tasks waiting for the tree: for a revision to be applied, or for a path to change.

The reflector releases them as it applies changes; closing the mount releases them all
(each then checks the mount's state and raises ``TreeClosedError`` if it still waits).
"""

from __future__ import annotations

import heapq
import itertools

import trio

from .changes import Update
from .paths import Path

__all__ = ["Waiters"]


class Waiters:
    """The revision waiters (a heap, soonest first) and the value waiters (by path)."""

    __slots__ = (
        "_counter",
        "_revisions",
        "_values",
    )

    def __init__(self) -> None:
        self._revisions: list[tuple[int, int, trio.Event]] = []
        self._values: dict[Path, list[trio.Event]] = {}
        self._counter = itertools.count()

    def for_revision(self, revision: int) -> trio.Event:
        """An event set once the tree has applied ``revision``."""
        event = trio.Event()
        heapq.heappush(self._revisions, (revision, next(self._counter), event))
        return event

    def for_change(self, path: Path) -> trio.Event:
        """An event set at the next change of the key at ``path``."""
        event = trio.Event()
        self._values.setdefault(path, []).append(event)
        return event

    def applied(self, revision: int) -> None:
        """The tree has applied ``revision``: wake who waited for it (or an earlier one)."""
        waiters = self._revisions
        while waiters and waiters[0][0] <= revision:
            heapq.heappop(waiters)[2].set()

    def changed(self, update: Update) -> None:
        """Wake who waited for a change of the keys in ``update``."""
        waiters = self._values
        if waiters:
            for change in update.changes:
                for event in waiters.pop(change.path, ()):
                    event.set()

    def history_replaced(self) -> None:
        """Wake every revision waiter: the revisions they wait for are of a history the
        cluster no longer has (each then finds the history changed and raises)."""
        for _, _, event in self._revisions:
            event.set()
        self._revisions.clear()

    def close(self) -> None:
        """Wake everyone (the mount was left)."""
        for _, _, event in self._revisions:
            event.set()
        for events in self._values.values():
            for event in events:
                event.set()
