"""Watch streams that do not die: resume, failover, stall detection, compaction.

A :class:`WatchStream` follows one watch across connections: the transport
(:mod:`trio_etcd_tree._wire`) carries one connection's messages, this module decides where
to (re)open it and from which revision. What we rely on:

* Revisions are global and monotonic, and events of one revision arrive in one message.
  After a break we reopen the watch at the last *complete* revision + 1: the last event's
  revision + 1, or a progress notification's revision + 1. Never the header revision of an
  event message: during a catch-up etcd stamps it with the store's current revision while
  older events are still to come.
* Periodic progress notifications (``progress_notify``) are sent only to watchers that are
  up to date, so their revision is a safe resume point. The answer to a
  ``progress_request`` is not (etcd before 3.4.24/3.5.8 sends it at once, ahead of pending
  events), so we never ask for one.
* A compacted start revision is reported as ``canceled`` with ``compact_revision`` after
  ``created``, and the stream stays open: we close it and raise :class:`CompactedError`.
* A member that lost quorum keeps a plain watch open and silent; the transports ask the
  server to end such a stream with "no leader" (clientv3's WithRequireLeader), so we fail
  over.
* The member must confirm a new watch within the client's ``attempt_timeout``. A stream
  that is silent for ``heartbeat`` seconds is checked with a linearizable read on the same
  member; if that fails the stream is reopened elsewhere. ``stall_timeout`` reopens a
  silent stream unconditionally (set it above the server's progress interval).
* When any request marks the stream's endpoint unhealthy (no answer within
  ``attempt_timeout``, a refused or broken connection), the stream moves at once. So a
  member that stops answering is left within ``attempt_timeout`` of the first request that
  meets it, and within ``heartbeat + attempt_timeout`` by a watch on its own.
* A restored cluster shows up as a new ``cluster_id`` or as a revision below what we have
  already seen (confirmed with a linearizable read, as a lagging follower can briefly be
  behind): :class:`ClusterChangedError`.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import NoReturn, final

import trio

from .._core.errors import (
    AuthenticationError,
    ClusterChangedError,
    EtcdError,
    PermissionDeniedError,
    UnavailableError,
)
from .._core.types import WatchResponse
from .._core.util import Backoff, open_service_nursery
from .._wire import SinkWireWatch, WatchCreateRequest
from .connection import Connection
from .watch_delivery import Apply, Backlog, Delivery

__all__ = ["ConnectionState", "WatchStatistics", "WatchStream", "open_watch"]


class ConnectionState(enum.Enum):
    """Where a watch stream stands."""

    CONNECTING = "connecting"  #: opening, or reopening after a break
    CONNECTED = "connected"  #: the server confirmed the watch
    CLOSED = "closed"  #: ended for good (an error, or the block was left)


@dataclass(frozen=True, slots=True)
class WatchStatistics:
    """What a watch stream has been through (``WatchStream.statistics()``)."""

    state: ConnectionState
    since: float  #: trio time of the last state change
    endpoint: str  #: the endpoint of the current (or last) connection
    next_revision: int  #: the revision the stream would resume at
    reconnects: int  #: attempts to reopen the stream after a break (failed ones included)
    disconnects: int  #: how often an established stream broke
    stalls: int  #: of those, how many because it fell silent
    responses: int  #: responses delivered (progress notifications included)
    events: int  #: events delivered
    last_error: str | None  #: why the last connection ended


class _Renew(Exception):
    """The server refused our token on the watch: get a new one, then reopen."""

    def __init__(self, error: EtcdError) -> None:
        super().__init__(str(error))
        self.error = error


Probe = Callable[[str], Awaitable[int]]


@final
class WatchStream(Delivery, trio.abc.ReceiveChannel[WatchResponse]):
    """The receiving end of a watch (from ``Client.watch``): a trio ``ReceiveChannel`` of
    :class:`WatchResponse`.

    Every revision under the watched range is delivered once, in order, across broken
    connections, failover to other endpoints and stalls. A progress notification is a
    response without events. The stream ends with an error raised from :meth:`receive`
    (after every response received before it) when it cannot go on:

    * :class:`CompactedError` (``compact_revision`` set): the next revision to deliver was
      compacted. Read the current state and watch again from there.
    * :class:`ClusterChangedError`: the cluster was replaced or restored from a backup.
    * :class:`AuthenticationError` / :class:`PermissionDeniedError`.

    Unreachable servers are not an error: the stream keeps trying (with jittered backoff)
    and says so in ``state`` and :meth:`statistics`.
    """

    __slots__ = (
        "_confirmed",
        "_conn",
        "_create",
        "_disconnects",
        "_endpoint",
        "_error",
        "_heartbeat",
        "_last_error",
        "_moved",
        "_probe",
        "_probing",
        "_reconnects",
        "_scope",
        "_silent",
        "_since",
        "_stall_timeout",
        "_stalls",
        "_started",
        "_state",
        "_state_changed",
    )

    def __init__(
        self,
        buffer: int,
        connection: Connection,
        create: WatchCreateRequest,
        start_revision: int,
        heartbeat: float,
        stall_timeout: float | None,
        probe: Probe,
        apply: Apply | None = None,
        backlog: Backlog | None = None,
    ) -> None:
        super().__init__(buffer, start_revision, apply, backlog)
        self._conn = connection
        self._create = create  # (its start_revision: the stream's next, per connection)
        self._heartbeat = heartbeat
        self._stall_timeout = stall_timeout
        self._probe = probe
        self._error: EtcdError | None = None
        self._state = ConnectionState.CONNECTING
        self._since = trio.current_time()
        self._state_changed: trio.Event | None = None  # (made once someone waits)
        self._endpoint = connection.endpoints.current
        self._reconnects = 0
        self._disconnects = 0
        self._stalls = 0
        self._last_error: str | None = None
        self._silent: str | None = None  # why the current connection is being left
        self._moved = False  # ... because its endpoint was marked unhealthy
        self._confirmed = trio.Event()  # the current connection's watch was created
        self._scope = trio.CancelScope()  # the current connection's
        self._started: Callable[[], None] | None = None  # called once it is established
        self._probing: trio.lowlevel.Task | None = None  # the watchdog, while it probes

    # --- the consumer's side ---------------------------------------------------------------

    async def receive(self) -> WatchResponse:
        """The next response. Raises the error that ended the stream once all responses
        before it were received; ``trio.EndOfChannel`` once the block was left.

        Cancellation: a checkpoint; no response is lost when cancelled.
        """
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            self._raise_end()

    def receive_nowait(self) -> WatchResponse:
        """The next response if one is waiting, else ``trio.WouldBlock``; at the end, as
        :meth:`receive`. Draining with it after an ``await receive()`` handles a burst in
        one go."""
        try:
            return self._receive.receive_nowait()
        except trio.EndOfChannel:
            self._raise_end()

    def _raise_end(self) -> NoReturn:
        if self._apply_error is not None:
            raise self._apply_error
        if self._error is not None:
            raise self._error from None
        raise trio.EndOfChannel

    async def aclose(self) -> None:
        """Stop receiving; the stream's task ends at its next response."""
        await self._receive.aclose()

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def next_revision(self) -> int:
        """The revision the stream would resume at: one past the last complete revision it
        has read from the server (responses may still wait in the buffer)."""
        return self._next

    def statistics(self) -> WatchStatistics:
        return WatchStatistics(
            self._state,
            self._since,
            self._endpoint,
            self._next,
            self._reconnects,
            self._disconnects,
            self._stalls,
            self._responses,
            self._events,
            self._last_error,
        )

    def reopen(self, reason: str) -> None:
        """Reopen the stream now, from the last complete revision, on the next endpoint:
        for a consumer that learned from the server that changes exist which the stream
        has not delivered (a stream stuck on a live member). Counted as a stall."""
        self._leave(reason)
        self._stalls += 1

    async def wait_state_change(self, state: ConnectionState) -> ConnectionState:
        """Wait until the stream's state is not ``state`` and return the new one.

        Returns at once (after a checkpoint) if it already differs; rapid changes in
        between are not reported one by one (see ``statistics().reconnects``).

        Cancellation: a checkpoint; nothing to undo.
        """
        while self._state is state:
            changed = self._state_changed
            if changed is None:
                changed = self._state_changed = trio.Event()
            await changed.wait()
        await trio.lowlevel.checkpoint()
        return self._state

    def _set_state(self, state: ConnectionState) -> None:
        if state is not self._state:
            self._state = state
            self._since = trio.current_time()
            changed = self._state_changed
            if changed is not None:
                changed.set()
                self._state_changed = None

    # --- the task --------------------------------------------------------------------------

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The task of a stream with a channel (``open_watch``)."""
        self._started = task_status.started  # (dropped once called: see _created)
        del task_status  # (it holds the nursery that started this task)
        with self._send:
            try:
                await self._follow()
            except trio.BrokenResourceError:
                pass  # the consumer closed its end
            except EtcdError as exc:
                self._ended(exc)
                if self._started is not None:
                    raise  # never established: the error comes out of `async with` entry
            finally:
                self._set_state(ConnectionState.CLOSED)

    async def run_applied(self, established: Callable[[], None]) -> NoReturn:
        """(A stream of ``Client._applied_watch``, which hands its responses to ``apply``.)
        Follow the watch in this task, the owner's: no task and no channel of its own.
        ``established`` is called (in here, and once) when the server first confirmed
        the watch. Returns only by raising what ended the stream: what ``apply`` raised,
        or the stream's error (as ``receive`` does for other streams).

        Cancellation: the stream ends (its watch is cancelled on the server).
        """
        self._started = established
        try:
            await self._follow()  # (returns once apply raised)
        except EtcdError as exc:
            self._ended(exc)
        finally:
            self._set_state(ConnectionState.CLOSED)
        self._raise_end()

    def _ended(self, error: EtcdError) -> None:
        self._error = error
        self._last_error = str(error)

    async def _follow(self) -> None:
        backoff = Backoff()
        renewed = False
        while True:
            if self._conn.credentials is not None and self._conn.token is None:
                await self._conn.ensure_token()
            endpoints = self._conn.endpoints
            endpoint = self._endpoint = endpoints.current
            token = self._conn.token
            try:
                async with open_service_nursery() as nursery:
                    self._silent = None
                    self._moved = False
                    self._confirmed = trio.Event()
                    self._scope = nursery.cancel_scope
                    self._last_activity = trio.current_time()
                    nursery.start_soon(self._watchdog, endpoint)
                    endpoints.on_failure(endpoint, self._endpoint_failed)
                    try:
                        await self._connection(endpoint)
                    finally:
                        endpoints.forget(endpoint, self._endpoint_failed)
                # only a cancellation by _leave() ends a connection without an error
                reason = str(self._silent)
            except _Renew as exc:
                if renewed:
                    raise exc.error from None
                renewed = True
                await self._conn.ensure_token(stale=token)
                continue
            except UnavailableError as exc:
                reason = str(exc)
            if self._apply_error is not None:
                return  # (receive raises it)
            if self._state is ConnectionState.CONNECTED:
                self._disconnects += 1
                renewed = False
                backoff.reset()
            if not self._moved:
                self._conn.endpoint_failed(endpoint)
            self._last_error = reason
            self._reconnects += 1
            self._set_state(ConnectionState.CONNECTING)
            await backoff.wait()

    def _leave(self, reason: str) -> None:
        """Leave the current connection (the first reason given is the one kept)."""
        if self._silent is None:
            self._silent = reason
        self._scope.cancel(reason=reason)

    def _endpoint_failed(self) -> None:
        """The current connection's endpoint was marked unhealthy (``Endpoints.failed``:
        a request to it failed): leave it (called in that request's task). Not when that
        request is the watchdog's probe: the watchdog leaves, with its own reason."""
        if self._probing is trio.lowlevel.current_task():
            return
        self._moved = self._silent is None
        self._leave("the endpoint was marked unhealthy")

    async def _connection(self, endpoint: str) -> None:
        """One connection: read its messages until it ends (always with an error)."""
        try:
            create = replace(self._create, start_revision=self._next)
            async with self._conn.watch(endpoint, create) as watch:
                direct = watch if isinstance(watch, SinkWireWatch) else None
                if direct is not None:
                    direct.sink = self._take
                try:
                    while True:
                        self._busy = False
                        message = await watch.receive()
                        self._busy = True
                        self._last_activity = trio.current_time()
                        await self._message(message, endpoint)
                finally:
                    self._busy = True
                    if direct is not None:
                        direct.sink = None
        except (AuthenticationError, PermissionDeniedError) as exc:
            if self._conn.credentials is not None:
                raise _Renew(exc) from None
            raise

    async def _created(self, revision: int, endpoint: str) -> None:
        if self._next == 0:
            self._next = revision + 1  # "from now on"
        if revision < self._seen:
            # a lagging follower can be briefly behind; a linearizable read settles it
            current = await self._probe(endpoint)
            if current < self._seen:
                raise ClusterChangedError(
                    f"the server is at revision {current}, but revision {self._seen} "
                    "was seen before: the cluster was restored from a backup",
                    request=self._what,
                    endpoint=endpoint,
                )
        self._seen = max(self._seen, revision)
        self._confirmed.set()
        self._set_state(ConnectionState.CONNECTED)
        if self._started is not None:
            self._started()
            self._started = None

    async def _watchdog(self, endpoint: str) -> None:
        """Leave a connection whose watch is not confirmed within ``attempt_timeout``;
        then check it when silent: probe the member, or reopen after ``stall_timeout``."""
        timeout = self._conn.attempt_timeout
        with trio.move_on_after(timeout):
            await self._confirmed.wait()
        if not self._confirmed.is_set():
            self._stalls += 1
            self._leave(f"the watch was not confirmed within {timeout:g} s (attempt_timeout)")
            return
        alive = trio.current_time()  # when the member last proved alive
        while True:
            due = max(self._last_activity, alive) + self._heartbeat
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            if self._sending:  # waiting for our consumer, not for the server
                alive = trio.current_time()
                continue
            silent = trio.current_time() - self._last_activity
            if self._stall_timeout is not None and silent >= self._stall_timeout:
                self._stalls += 1
                self._leave(f"no message for {silent:g} s (stall_timeout)")
                return
            self._probing = trio.lowlevel.current_task()
            try:
                await self._probe(endpoint)
            except EtcdError as exc:
                self._stalls += 1
                self._leave(f"silent for {silent:g} s and the member did not answer: {exc}")
                return
            finally:
                self._probing = None
            alive = trio.current_time()


@asynccontextmanager
async def open_watch(
    connection: Connection,
    key: bytes,
    range_end: bytes | None,
    *,
    start_revision: int,
    prev_kv: bool,
    progress_notify: bool,
    filters: Sequence[str],
    buffer: int,
    heartbeat: float,
    stall_timeout: float | None,
    probe: Probe,
) -> AsyncIterator[WatchStream]:
    """The context manager behind ``Client.watch``: the stream's task runs in a nursery of
    its own (``Client._applied_watch``'s stream runs in its owner's task instead)."""
    if start_revision < 0:
        raise ValueError("start_revision must be >= 0")
    stream = WatchStream(
        buffer,
        connection,
        WatchCreateRequest(key, range_end, 0, prev_kv, progress_notify, tuple(filters)),
        start_revision,
        heartbeat,
        stall_timeout,
        probe,
    )
    async with open_service_nursery() as nursery:
        await nursery.start(stream._run)
        try:
            yield stream
        finally:
            nursery.cancel_scope.cancel(reason="the watch block was left")
