"""How a watch stream's messages become responses: where the stream stands (the next
revision to deliver, the highest seen, the cluster), what a message delivers (never a
revision twice), and the two ways it is delivered: by the transport's reader straight to
the consumer (the sink, :meth:`Delivery._take`), or by the stream's task
(:meth:`Delivery._message`), which handles everything the sink leaves to it.

A response goes to the consumer's channel, or, for a watch opened with ``apply`` (the
mount's), to that function, wherever it is taken.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import NoReturn

import trio

from .._core.errors import ClusterChangedError, CompactedError
from .._core.types import WatchResponse
from .._wire import WatchMessage

__all__ = ["Apply", "Backlog", "Delivery"]

Apply = Callable[[WatchResponse], None]
Backlog = Callable[[], bool]


class Delivery:
    """The delivering half of a :class:`~trio_etcd_tree._client.watch.WatchStream` (its
    base class); the stream's task and connections are the other half."""

    # (slots: a dict of over 30 keys is no longer shared with the class's other instances)
    __slots__ = (
        "_apply",
        "_apply_error",
        "_backlog",
        "_busy",
        "_cluster_id",
        "_events",
        "_last_activity",
        "_next",
        "_receive",
        "_responses",
        "_seen",
        "_send",
        "_sending",
    )

    def __init__(
        self, buffer: int, start_revision: int, apply: Apply | None, backlog: Backlog | None
    ) -> None:
        if apply is None:  # (a stream with apply has no channel: see run_applied)
            self._send, self._receive = trio.open_memory_channel[WatchResponse](buffer)
        self._apply = apply
        self._backlog = backlog
        self._apply_error: Exception | None = None  # what ``apply`` raised
        self._next = start_revision
        self._seen = 0  # the highest revision the server has shown us
        self._cluster_id: int | None = None
        self._responses = 0
        self._events = 0
        self._last_activity = trio.current_time()
        self._sending = False  # the task waits for room in the consumer's channel
        self._busy = True  # the task is not waiting in the connection's receive()

    @abstractmethod
    def _leave(self, reason: str) -> None:
        """Leave the current connection."""

    @abstractmethod
    async def _created(self, revision: int, endpoint: str) -> None:
        """The server confirmed the watch at ``revision``."""

    @property
    def _what(self) -> str:
        return f"watch from revision {self._next}"

    def _take(self, message: WatchMessage) -> bool:
        """The connection's sink: take an ordinary message (events or progress) straight
        from the transport's reader, when the consumer has room for it and this task waits
        in ``receive`` (so nothing of this connection is in its hands). Everything else,
        and everything after it until the task caught up, goes through ``receive`` and
        :meth:`_message`. Never blocks, never raises."""
        cluster = message.header.cluster_id
        if (
            self._busy
            or message.created
            or message.canceled
            or (cluster and cluster != self._cluster_id)
        ):
            return False
        backlog = self._backlog
        if backlog is not None and backlog():
            # what apply feeds is behind: the task applies the next ones, one per pass of
            # the scheduler, so that those it feeds get their turns in between
            return False
        response = self._response(message)
        if response is not None:
            if self._apply is None:
                try:
                    self._send.send_nowait(response)
                except (trio.WouldBlock, trio.BrokenResourceError):
                    return False  # (receive and _message wait for room, or end the stream)
            elif not self._applied(response):
                return True
            self._delivered(response)
        self._last_activity = trio.current_time()
        return True

    async def _message(self, message: WatchMessage, endpoint: str) -> None:
        """A message the task received (all those the sink refused)."""
        h = message.header
        cluster = h.cluster_id
        if cluster and cluster != self._cluster_id:
            if self._cluster_id is not None:
                raise ClusterChangedError(
                    f"the cluster id changed from {self._cluster_id:x} to "
                    f"{cluster:x}: a different or restored cluster",
                    request=self._what,
                    endpoint=endpoint,
                )
            self._cluster_id = cluster
        if message.canceled:
            self._canceled(message, endpoint)
        if message.created:
            await self._created(h.revision, endpoint)
            return
        response = self._response(message)
        if response is None:
            return
        if self._apply is not None:
            if self._applied(response):
                self._delivered(response)
            return
        try:
            self._send.send_nowait(response)  # the common case: no trip through the scheduler
        except trio.WouldBlock:
            # the connection may be left while we wait: a send that is cancelled has not
            # happened, so the stream resumes from before this response
            self._sending = True
            try:
                await self._send.send(response)
            finally:
                self._sending = False
            self._last_activity = trio.current_time()
        self._delivered(response)

    def _applied(self, response: WatchResponse) -> bool:
        """Hand a response to ``apply``; False if it raised: then the stream ends, and
        ``receive`` raises that error (not the transport's reader that called us)."""
        assert self._apply is not None
        try:
            self._apply(response)
        except Exception as exc:
            self._apply_error = exc
            self._leave(f"applying a response failed: {exc!r}")
            return False
        return True

    def _response(self, message: WatchMessage) -> WatchResponse | None:
        """What an events or progress message delivers: None if nothing new."""
        events = message.events
        if events:
            if events[0].kv.mod_revision < self._next:  # never deliver a revision twice
                events = [e for e in events if e.kv.mod_revision >= self._next]
                if not events:
                    return None
            revision = events[-1].kv.mod_revision
        else:
            revision = message.header.revision
            if revision < self._next - 1:
                return None  # an out-of-date progress report says nothing new
        return WatchResponse(message.header, events, revision)

    def _delivered(self, response: WatchResponse) -> None:
        revision = response.revision
        self._events += len(response.events)
        if revision > self._seen:
            self._seen = revision
        self._next = revision + 1
        self._responses += 1

    def _canceled(self, message: WatchMessage, endpoint: str) -> NoReturn:
        if message.compact_revision:
            error = CompactedError(
                f"revision {self._next} is compacted (compacted up to {message.compact_revision})",
                request=self._what,
                endpoint=endpoint,
            )
            error.compact_revision = message.compact_revision
            raise error
        assert message.error is not None  # the transport says why
        raise message.error
