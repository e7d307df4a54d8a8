"""The endpoints of a cluster and their health.

An endpoint that fails (no connection, a broken connection, no answer within the attempt
timeout) is marked unhealthy and skipped for a backoff period: 1 s after its first failure,
doubling with each failure in a row up to 30 s. Requests go to the healthy endpoints first,
starting with the current one; the unhealthy ones are tried last (soonest retry first), so
a cluster whose every member failed is still tried. An endpoint that answers is healthy
again at once.

Watches hold on to one endpoint; each one registers with :meth:`Endpoints.on_failure` of
its endpoint (a call, not a task waiting: a thousand watches cost no task each) and moves
when it is called, so one failed request moves every watch off a member that stopped
answering.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

__all__ = ["Endpoints"]

FIRST_PENALTY = 1.0
"""Seconds an endpoint is skipped after its first failure in a row."""
MAX_PENALTY = 30.0
"""The longest an endpoint is skipped, however often it failed."""


@dataclass
class _Health:
    failures: int = 0  # in a row
    retry_at: float = 0.0  # trio time from which it is tried in turn again
    watchers: set[Callable[[], None]] = field(default_factory=set)  # called at its next failure


class Endpoints:
    """The endpoints, in the order requests try them, with their health."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("at least one endpoint is needed")
        self.urls = list(urls)
        self._health = {url: _Health() for url in self.urls}
        self._current = 0

    @property
    def current(self) -> str:
        """The endpoint in use: requests go to it first while it is healthy (a failed one
        is left at once). Needs no trio context."""
        return self.urls[self._current]

    def healthy(self, url: str) -> bool:
        return self._health[url].retry_at <= trio.current_time()

    def order(self) -> list[str]:
        """Every endpoint, healthy ones first (from the current one round), then the
        unhealthy ones, soonest retry first."""
        n = len(self.urls)
        if n == 1:
            return list(self.urls)
        rotation = [self.urls[(self._current + i) % n] for i in range(n)]
        now = trio.current_time()
        good = [u for u in rotation if self._health[u].retry_at <= now]
        bad = sorted(
            (u for u in rotation if self._health[u].retry_at > now),
            key=lambda u: self._health[u].retry_at,
        )
        return good + bad

    def failed(self, url: str) -> None:
        """``url`` failed: skip it for a while, move on from it, and tell its watchers
        (:meth:`on_failure`). Not a checkpoint."""
        health = self._health[url]
        now = trio.current_time()
        if health.retry_at > now:
            return  # already skipped: the same failure, seen by another request
        health.failures += 1
        penalty = min(FIRST_PENALTY * 2 ** min(health.failures - 1, 16), MAX_PENALTY)
        health.retry_at = now + penalty
        if self.urls[self._current] == url:
            self._current = (self._current + 1) % len(self.urls)
        watchers, health.watchers = health.watchers, set()
        for watcher in watchers:
            watcher()

    def succeeded(self, url: str) -> None:
        """``url`` answered: healthy again. Not a checkpoint."""
        health = self._health[url]
        if health.failures:
            health.failures = 0
            health.retry_at = 0.0

    def on_failure(self, url: str, watcher: Callable[[], None]) -> None:
        """Call ``watcher`` (once) when ``url`` is next marked failed, within :meth:`failed`
        (so it must neither block nor raise), unless :meth:`forget` comes first."""
        self._health[url].watchers.add(watcher)

    def forget(self, url: str, watcher: Callable[[], None]) -> None:
        """Call ``watcher`` no more (nothing if it was called already)."""
        self._health[url].watchers.discard(watcher)
