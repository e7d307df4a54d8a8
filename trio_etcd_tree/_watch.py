"""Watch streams that do not die: resume, failover, stall detection, compaction.

One watch is one HTTP request to ``/v3/watch`` whose answer streams ``{"result": ...}``
lines for as long as it stays open (the gateway cannot add a watch to a running request:
httpx sends the whole body before it reads the answer). What we rely on:

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
* A member that lost quorum keeps a plain watch open and silent. The request header
  ``Grpc-Metadata-hasleader: true`` (what clientv3's WithRequireLeader sends) makes the
  gateway end such a stream with "no leader", so we fail over.
* A stream that is silent for ``heartbeat`` seconds is checked with a linearizable read on
  the same member; if that fails the stream is reopened elsewhere. ``stall_timeout``
  reopens a silent stream unconditionally (set it above the server's progress interval).
* A restored cluster shows up as a new ``cluster_id`` or as a revision below what we have
  already seen (confirmed with a linearizable read, as a lagging follower can briefly be
  behind): :class:`ClusterChangedError`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import NoReturn, cast, final

import httpx
import trio

from . import _gateway as gw
from ._connection import Connection
from ._errors import (
    AuthenticationError,
    ClusterChangedError,
    CompactedError,
    EtcdError,
    PermissionDeniedError,
    ProtocolError,
    UnavailableError,
)
from ._types import WatchResponse
from ._util import Backoff, open_service_nursery

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


class _Disconnect(Exception):
    """A connection ended in a way that calls for reopening it."""


class _Renew(Exception):
    """The server refused our token on the watch: get a new one, then reopen."""

    def __init__(self, error: EtcdError) -> None:
        super().__init__(str(error))
        self.error = error


# Ask the gateway to end the stream when the member loses its leader (clientv3's
# WithRequireLeader): otherwise a member cut off from the quorum keeps the watch silent.
_REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}


Probe = Callable[[str], Awaitable[int]]


@final
class WatchStream(trio.abc.ReceiveChannel[WatchResponse]):
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

    def __init__(
        self,
        receive: trio.MemoryReceiveChannel[WatchResponse],
        connection: Connection,
        create: Callable[[int], bytes],
        start_revision: int,
        heartbeat: float,
        stall_timeout: float | None,
        probe: Probe,
    ) -> None:
        self._receive = receive
        self._conn = connection
        self._create = create
        self._next = start_revision
        self._heartbeat = heartbeat
        self._stall_timeout = stall_timeout
        self._probe = probe
        self._error: EtcdError | None = None
        self._state = ConnectionState.CONNECTING
        self._since = trio.current_time()
        self._state_changed = trio.Event()
        self._endpoint = connection.endpoint
        self._reconnects = 0
        self._disconnects = 0
        self._stalls = 0
        self._responses = 0
        self._events = 0
        self._last_error: str | None = None
        self._last_activity = trio.current_time()
        self._sending = False
        self._silent: str | None = None
        self._scope = trio.CancelScope()  # the current connection's
        self._seen = 0  # the highest revision the server has shown us
        self._cluster_id: str | None = None  # as the server spells it

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
        self._silent = reason
        self._stalls += 1
        self._scope.cancel(reason=reason)

    async def wait_state_change(self, state: ConnectionState) -> ConnectionState:
        """Wait until the stream's state is not ``state`` and return the new one.

        Returns at once (after a checkpoint) if it already differs; rapid changes in
        between are not reported one by one (see ``statistics().reconnects``).

        Cancellation: a checkpoint; nothing to undo.
        """
        while self._state is state:
            await self._state_changed.wait()
        await trio.lowlevel.checkpoint()
        return self._state

    def _set_state(self, state: ConnectionState) -> None:
        if state is not self._state:
            self._state = state
            self._since = trio.current_time()
            self._state_changed.set()
            self._state_changed = trio.Event()

    # --- the task --------------------------------------------------------------------------

    async def _run(
        self,
        send: trio.MemorySendChannel[WatchResponse],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with send:
            try:
                await self._follow(send, task_status)
            except trio.BrokenResourceError:
                pass  # the consumer closed its end
            except EtcdError as exc:
                self._error = exc
                self._last_error = str(exc)
                if self._task_status is not None:
                    raise  # never established: the error comes out of `async with` entry
            finally:
                self._set_state(ConnectionState.CLOSED)

    async def _follow(
        self, send: trio.MemorySendChannel[WatchResponse], task_status: trio.TaskStatus[None]
    ) -> None:
        backoff = Backoff()
        renewed = False
        while True:
            if self._conn.credentials is not None and not self._conn.auth_headers():
                await self._conn.ensure_token()
            endpoint = self._endpoint = self._conn.endpoint
            token = self._conn.auth_headers().get("Authorization")
            try:
                async with open_service_nursery() as nursery:
                    self._silent = None
                    self._scope = nursery.cancel_scope
                    self._last_activity = trio.current_time()
                    nursery.start_soon(self._watchdog, endpoint, nursery.cancel_scope)
                    await self._connection(endpoint, send)
                    nursery.cancel_scope.cancel()
                reason = self._silent or "the server ended the stream"
            except _Renew as exc:
                if renewed:
                    raise exc.error from None
                renewed = True
                await self._conn.ensure_token(stale=token)
                continue
            except _Disconnect as exc:
                reason = str(exc)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if self._state is ConnectionState.CONNECTED:
                self._disconnects += 1
                renewed = False
                backoff.reset()
            self._last_error = reason
            self._reconnects += 1
            self._set_state(ConnectionState.CONNECTING)
            self._conn.endpoint_failed(endpoint)
            await backoff.wait()

    async def _connection(self, endpoint: str, send: trio.MemorySendChannel[WatchResponse]) -> None:
        """One HTTP request: read its stream until it ends."""
        body = self._create(self._next)
        async with self._conn.stream(endpoint, "/v3/watch", body, _REQUIRE_LEADER) as response:
            if response.status_code != 200:
                content = await response.aread()
                code, message = gw.error_fields(response.status_code, content)
                raise self._classify(
                    gw.error_for(
                        code,
                        message,
                        request=self._what,
                        endpoint=endpoint,
                        http_status=response.status_code,
                    )
                )
            parts: list[bytes] = []
            async with aclosing(cast("AsyncGenerator[bytes]", response.aiter_raw())) as chunks:
                async for chunk in chunks:
                    self._last_activity = trio.current_time()
                    start = 0
                    while (end := chunk.find(b"\n", start)) >= 0:
                        if parts:
                            parts.append(chunk[start:end])
                            line = b"".join(parts)
                            parts.clear()
                        else:
                            line = chunk[start:end]
                        start = end + 1
                        if line.strip():
                            await self._message(line, endpoint, send)
                    if start < len(chunk):
                        parts.append(chunk[start:])

    @property
    def _what(self) -> str:
        return f"watch from revision {self._next}"

    def _classify(self, error: EtcdError) -> BaseException:
        if isinstance(error, UnavailableError):
            return _Disconnect(str(error))
        if isinstance(error, AuthenticationError | PermissionDeniedError) and (
            self._conn.credentials is not None
        ):
            return _Renew(error)
        return error

    async def _message(
        self, line: bytes, endpoint: str, send: trio.MemorySendChannel[WatchResponse]
    ) -> None:
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise ProtocolError(
                f"a watch message is not JSON: {line[:200]!r}",
                request=self._what,
                endpoint=endpoint,
            ) from exc
        try:
            result = gw.stream_result(data, self._what, endpoint)
        except EtcdError as exc:
            raise self._classify(exc) from None
        h = result.get("header") or {}
        cluster = h.get("cluster_id")
        if cluster is not None and cluster != self._cluster_id:
            if self._cluster_id is not None:
                raise ClusterChangedError(
                    f"the cluster id changed from {int(self._cluster_id):x} to "
                    f"{int(cluster):x}: a different or restored cluster",
                    request=self._what,
                    endpoint=endpoint,
                )
            self._cluster_id = cluster
        if result.get("canceled"):
            self._canceled(result, endpoint)
        if result.get("created"):
            await self._created(int(h.get("revision", 0)), endpoint)
            return
        items = result.get("events")
        if items:
            events = gw.events(items)
            if events[0].kv.mod_revision < self._next:  # never deliver a revision twice
                events = [e for e in events if e.kv.mod_revision >= self._next]
                if not events:
                    return
            revision = events[-1].kv.mod_revision
            self._events += len(events)
        else:
            revision = int(h.get("revision", 0))
            if revision < self._next - 1:
                return  # an out-of-date progress report says nothing new
            events = []
        if revision > self._seen:
            self._seen = revision
        self._next = revision + 1
        self._responses += 1
        response = WatchResponse(gw.header(result), events, revision)
        try:
            send.send_nowait(response)  # the common case: no trip through the scheduler
        except trio.WouldBlock:
            self._sending = True
            await send.send(response)
            self._sending = False
            self._last_activity = trio.current_time()

    def _canceled(self, result: gw.Json, endpoint: str) -> None:
        if "compact_revision" in result:
            error = CompactedError(
                f"revision {self._next} is compacted (compacted up to "
                f"{result['compact_revision']})",
                request=self._what,
                endpoint=endpoint,
            )
            error.compact_revision = int(result["compact_revision"])
            raise error
        code, message = gw.cancel_reason_fields(str(result.get("cancel_reason", "")))
        raise self._classify(
            gw.error_for(
                code,
                message or "the server canceled the watch",
                request=self._what,
                endpoint=endpoint,
            )
        )

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
        self._set_state(ConnectionState.CONNECTED)
        if self._task_status is not None:
            self._task_status.started()
            self._task_status = None

    async def _watchdog(self, endpoint: str, scope: trio.CancelScope) -> None:
        """Check a silent stream: probe the member, or reopen after ``stall_timeout``."""
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
                self._silent = f"no message for {silent:g} s (stall_timeout)"
            else:
                try:
                    await self._probe(endpoint)
                except EtcdError as exc:
                    self._silent = f"silent for {silent:g} s and the member did not answer: {exc}"
            if self._silent is not None:
                self._stalls += 1
                scope.cancel(reason="the watch stream stalled")
                return
            alive = trio.current_time()

    _task_status: trio.TaskStatus[None] | None = None


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
    """The context manager behind ``Client.watch``."""
    if start_revision < 0:
        raise ValueError("start_revision must be >= 0")

    def create(revision: int) -> bytes:
        request = gw.watch_create_request(
            key,
            range_end,
            start_revision=revision,
            prev_kv=prev_kv,
            progress_notify=progress_notify,
            filters=filters,
        )
        return gw.dumps(request)

    send, receive = trio.open_memory_channel[WatchResponse](buffer)
    stream = WatchStream(
        receive, connection, create, start_revision, heartbeat, stall_timeout, probe
    )
    async with open_service_nursery() as nursery:
        await nursery.start(_start, stream, send)
        try:
            yield stream
        finally:
            nursery.cancel_scope.cancel(reason="the watch block was left")


async def _start(
    stream: WatchStream,
    send: trio.MemorySendChannel[WatchResponse],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    stream._task_status = task_status
    await stream._run(send)
