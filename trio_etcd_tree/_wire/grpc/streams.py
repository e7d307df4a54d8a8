"""The long-lived streams of a gRPC connection: every watch on one Watch stream, and the
lease keep-alives on one LeaseKeepAlive stream.

**Watches.** etcd's Watch call is a bidirectional stream that carries any number of watches:
each ``create_request`` gets a watch id, every answer names its watch, a ``cancel_request``
ends one, and a ``progress_request`` is answered once for the whole stream (watch id -1).
:class:`WatchMux` puts every watch of a connection (of every mount) on one such stream, as
etcd's Go client does. It chooses the watch ids itself (``create_request.watch_id``, kept by
etcd >= 3.4), so creates need not wait for each other.

A slow consumer must not stall the shared stream: the mux's reader hands each answer to its
watch's buffer at once and never waits for a consumer. A buffer holds at most
``max_buffered`` messages; a watch whose buffer is full is cancelled on the server and its
answers dropped, and when its consumer has taken every buffered message the mux creates it
again from the revision after the last one delivered (``statistics()["resumed"]`` counts
this). The consumer sees every revision once, in order, as if nothing had happened; if the
revision it needs was compacted meanwhile, it gets the canceled message with
``compact_revision``, as for any watch.

**Lease keep-alives.** LeaseKeepAlive is a bidirectional stream too: each request names a
lease and is answered with its remaining TTL (0 once it is gone). :class:`KeepAliveStream`
matches answers to callers by lease id.

When the stream ends (the server dropped it, the connection failed) every watch and every
waiting keep-alive fails with :class:`UnavailableError`; the next call opens a new stream.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any, Final, final

import trio

from ..._core.errors import EtcdError, UnavailableError
from ..._core.types import ResponseHeader
from ..base import WatchCreateRequest, WatchMessage, WatchSink
from ..errors import cancel_reason_fields, error_for
from . import codec
from .connection import GrpcConnection, GrpcStream, Method, copy_error

__all__ = ["KeepAliveStream", "MuxWatch", "WatchMux"]

WATCH: Final = Method("/etcdserverpb.Watch/Watch")
LEASE_KEEP_ALIVE: Final = Method("/etcdserverpb.Lease/LeaseKeepAlive")
MAX_BUFFERED: Final = 1024
"""Messages a watch may have waiting for its consumer before it is cancelled and resumed.
A catch-up message can hold up to ~1000 revisions, so this is a generous bound in events
but a bounded one in memory per watch."""
_PROGRESS_ID: Final = -1


@final
class MuxWatch:
    """One watch on a :class:`WatchMux` (a :class:`~trio_etcd_tree._wire.base.SinkWireWatch`).
    Get it from :meth:`WatchMux.watch`."""

    __slots__ = (
        "_buffer",
        "_closed",
        "_error",
        "_mux",
        "_silent_create",
        "_suspended",
        "_waiter",
        "create",
        "id",
        "next_revision",
        "resumed",
        "sink",
    )

    def __init__(self, mux: WatchMux, watch_id: int, create: WatchCreateRequest) -> None:
        self._mux = mux
        self.id = watch_id
        self.create = create
        self._buffer: deque[WatchMessage] | None = None  # (made when needed, dropped empty)
        self._error: EtcdError | None = None
        self._waiter: trio.lowlevel.Task | None = None  # the consumer, while receive waits
        self._silent_create = False  # a re-create's "created" is not shown to the consumer
        self._suspended = False  # fell behind: cancelled on the server, to be created again
        self._closed = False
        self.next_revision = create.start_revision
        """The first revision not yet handed to the consumer's buffer (0: not known yet)."""
        self.resumed = 0
        """How often the watch fell behind and was created again."""
        self.sink: WatchSink | None = None
        """Offered each message first while none is buffered (see ``SinkWireWatch``)."""

    # -- the consumer's side --

    async def receive(self) -> WatchMessage:
        """The next message: created, events, progress, or canceled (see ``WatchMessage``).

        Raises:
            UnavailableError: the stream or the connection ended.

        Cancellation: safe; a message is never lost to a cancelled receive.
        """
        waited = False
        while True:
            buffer = self._buffer
            if buffer:
                if not waited:  # (waiting for the message was this call's checkpoint)
                    await trio.lowlevel.checkpoint()
                message = buffer.popleft()
                if not buffer:
                    self._buffer = None
                return message
            if self._error is not None:
                raise copy_error(self._error)
            if self._suspended:
                await self._mux._recreate(self)
            else:
                assert self._waiter is None  # (one consumer)
                self._waiter = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(self._abort)
            waited = True

    async def request_progress(self) -> None:
        """Ask etcd how far the store has moved; every watch of the stream gets a progress
        message (once all of them caught up).

        Raises:
            UnavailableError: the stream or the connection is broken.
        """
        await self._mux._send(codec.WATCH_PROGRESS_REQUEST)

    # -- the mux's side --

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._waiter = None  # (a cancelled receive: what comes stays buffered)
        return trio.lowlevel.Abort.SUCCEEDED

    def _wake(self) -> None:
        """Wake the consumer if it waits in receive (it looks at the buffer, the error and
        the suspension before it waits: nothing is missed when it does not)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    def _fail(self, error: EtcdError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _append(self, message: WatchMessage) -> None:
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = deque()
        buffer.append(message)
        self._wake()

    def _push(self, message: WatchMessage, revision: int) -> bool:
        """Hand a message to the sink, or buffer it; False when the buffer is full (the
        watch must be suspended)."""
        buffer = self._buffer
        sink = self.sink
        if buffer or sink is None or not sink(message):
            if len(buffer or ()) >= self._mux.max_buffered:
                return False
            self._append(message)
        if revision:
            self.next_revision = revision + 1
        return True


@final
class WatchMux:
    """Every watch of one connection, on one Watch stream (opened on first use)."""

    def __init__(
        self,
        connection: GrpcConnection,
        *,
        token: str | None = None,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self.connection = connection
        self.token = token
        self.max_buffered = max_buffered
        self._stream: GrpcStream | None = None
        self._opening = trio.Lock()
        self._ids = itertools.count(1)  # 0 asks etcd to choose: ours start at 1
        self._watches: dict[int, MuxWatch] = {}
        self._creates: deque[MuxWatch] = deque()  # waiting for "created", oldest first

    async def watch(self, create: WatchCreateRequest) -> MuxWatch:
        """Send a create request; etcd's answer is the watch's first message.

        Raises:
            UnavailableError: the stream or the connection is broken.

        Cancellation: a watch whose create may have been sent is cancelled on the server.
        """
        watch = MuxWatch(self, next(self._ids), create)
        self._watches[watch.id] = watch
        self._creates.append(watch)
        try:
            await self._send(_create_request(watch.id, create, create.start_revision))
        except BaseException:
            await self.cancel(watch)
            raise
        return watch

    async def cancel(self, watch: MuxWatch) -> None:
        """Cancel the watch on the server (if the stream is still up) and forget it.

        Cancellation: the watch is forgotten at once; the cancel request is sent shielded
        (it only queues a frame).
        """
        if watch._closed:
            await trio.lowlevel.checkpoint()
            return
        watch._closed = True
        self._forget(watch)
        if watch._error is None and not watch._suspended:
            with trio.CancelScope(shield=True):
                await self._send_quietly(codec.watch_cancel_request(watch.id))
        else:
            await trio.lowlevel.checkpoint()
        watch._fail(UnavailableError("the watch was closed", kind="lost", endpoint=self._endpoint))

    # -- internals --

    @property
    def _endpoint(self) -> str:
        return self.connection.endpoint

    def _lost(self, why: str) -> UnavailableError:
        return UnavailableError(why, kind="lost", endpoint=self._endpoint)

    async def _send(self, message: bytes) -> None:
        async with self._opening:
            if self._stream is None:
                stream = await self.connection.open_stream(
                    WATCH, token=self.token, on_message=self._on_message
                )
                self._stream = stream
                self.connection.start_soon(lambda: self._read(stream))
            stream = self._stream
        await stream.send(message)

    def _on_message(self, data: bytes | bytearray) -> None:
        """A message of the stream, in the connection's reader: dispatched at once (the
        stream's task is not woken); a watch that fell behind is cancelled on the server by
        a task of its own. An error raised here fails the stream (see ``open_stream``)."""
        behind = self._dispatch(codec.watch_response(data))
        if behind:
            stream = self._stream
            assert stream is not None  # (the stream's messages come while it is ours)
            self.connection.start_soon(lambda: self._stop(stream, behind))

    async def _read(self, stream: GrpcStream) -> None:
        """The stream's task: its messages go to :meth:`_on_message`; it waits for the end."""
        self._end(stream, await stream.end("watch"))

    async def _stop(self, stream: GrpcStream, watch_ids: list[int]) -> None:
        """Cancel on the server the watches that fell behind (their answers are dropped)."""
        try:
            for watch_id in watch_ids:
                await stream.send(codec.watch_cancel_request(watch_id))
        except EtcdError:
            pass  # (the stream broke: the server dropped its watches; _read reports it)

    def _end(self, stream: GrpcStream, error: EtcdError) -> None:
        self._stream = None
        for watch in list(self._watches.values()):
            watch._fail(error)
        self._watches.clear()
        self._creates.clear()
        stream.close()

    def _dispatch(self, message: Any) -> list[int]:
        """Hand a message to its watch (a progress report to every watch); the ids of the
        watches that fell behind with it, to cancel on the server."""
        watch_id = message.watch_id
        behind: list[int] = []
        if watch_id == _PROGRESS_ID and not message.created:
            progress = WatchMessage(codec.header(message.header))
            for each in list(self._watches.values()):
                if not each._suspended and each not in self._creates:
                    self._deliver(each, progress, progress.header.revision, behind)
            return behind
        watch: MuxWatch | None
        if message.created:
            # etcd 3.4 answers a create it refuses with watch id -1: it is the oldest one due
            if watch_id == _PROGRESS_ID:
                watch = self._creates[0] if self._creates else None
            else:
                watch = self._watches.get(watch_id)
            if watch is not None and watch in self._creates:
                self._creates.remove(watch)
        else:
            watch = self._watches.get(watch_id)
        if watch is None:
            return behind  # a watch we cancelled already
        header = codec.header(message.header)
        if message.canceled:
            self._forget(watch)
            watch._append(self._canceled(message, header, watch))
            # after the canceled message, the watch is over
            watch._fail(self._lost("the server cancelled the watch"))
            return behind
        if message.created:
            if not watch.next_revision:
                watch.next_revision = header.revision + 1
            if watch._silent_create:
                watch._silent_create = False
                return behind
            self._deliver(watch, WatchMessage(header, created=True), 0, behind)
            return behind
        events = codec.events(message.events)
        revision = events[-1].kv.mod_revision if events else header.revision
        self._deliver(watch, WatchMessage(header, events), revision, behind)
        return behind

    def _deliver(
        self, watch: MuxWatch, message: WatchMessage, revision: int, behind: list[int]
    ) -> None:
        if watch._push(message, revision):
            return
        # the consumer fell behind: stop this id on the server (the caller does), drop
        # its answers, and create the watch again once the consumer has caught up
        watch._suspended = True
        self._watches.pop(watch.id, None)
        behind.append(watch.id)

    def _canceled(self, message: Any, header: ResponseHeader, watch: MuxWatch) -> WatchMessage:
        if message.compact_revision:
            return WatchMessage(header, canceled=True, compact_revision=message.compact_revision)
        what = watch.create.describe()
        if message.cancel_reason:
            code, text = cancel_reason_fields(message.cancel_reason)
            error = error_for(code, text, request=what, endpoint=self._endpoint)
        else:
            error = UnavailableError(
                "the server cancelled the watch",
                kind="server",
                request=what,
                endpoint=self._endpoint,
            )
        return WatchMessage(header, canceled=True, error=error)

    async def _recreate(self, watch: MuxWatch) -> None:
        watch._suspended = False
        watch._silent_create = True
        watch.resumed += 1
        watch.id = next(self._ids)
        self._watches[watch.id] = watch
        self._creates.append(watch)
        try:
            await self._send(_create_request(watch.id, watch.create, watch.next_revision))
        except EtcdError as error:
            watch._fail(error)

    def _forget(self, watch: MuxWatch) -> None:
        self._watches.pop(watch.id, None)
        if watch in self._creates:
            self._creates.remove(watch)

    async def _send_quietly(self, message: bytes) -> None:
        """Send a cancel; a broken stream needs none (the reader reports the break)."""
        stream = self._stream
        if stream is None:  # it could not even be opened
            await trio.lowlevel.checkpoint()
            return
        try:
            await stream.send(message)
        except EtcdError:
            pass


def _create_request(watch_id: int, create: WatchCreateRequest, start_revision: int) -> bytes:
    return codec.watch_create_request(
        watch_id,
        create.key,
        create.range_end,
        start_revision=start_revision,
        prev_kv=create.prev_kv,
        progress_notify=create.progress_notify,
        filters=create.filters,
    )


@final
class KeepAliveStream:
    """Lease keep-alives on one LeaseKeepAlive stream (opened on first use)."""

    def __init__(self, connection: GrpcConnection, *, token: str | None = None) -> None:
        self.connection = connection
        self.token = token
        self._stream: GrpcStream | None = None
        self._opening = trio.Lock()
        self._waiting: dict[int, deque[_Answer]] = {}

    async def keep_alive_once(self, lease_id: int) -> int:
        """Refresh a lease once; the remaining TTL in seconds (0 or less: the lease is gone).

        Raises:
            UnavailableError: the stream or the connection is broken.

        Cancellation: safe; the answer, if it comes, is dropped.
        """
        stream = await self._open()
        answer = _Answer()
        self._waiting.setdefault(lease_id, deque()).append(answer)
        try:
            await stream.send(codec.lease_id_request(lease_id))
            await answer.done.wait()
        finally:
            queue = self._waiting.get(lease_id)
            if queue is not None and answer in queue:
                queue.remove(answer)
        if answer.error is not None:
            raise answer.error
        return answer.ttl

    async def _open(self) -> GrpcStream:
        async with self._opening:
            if self._stream is None:
                stream = await self.connection.open_stream(LEASE_KEEP_ALIVE, token=self.token)
                self._stream = stream
                self.connection.start_soon(lambda: self._read(stream))
            return self._stream

    async def _read(self, stream: GrpcStream) -> None:
        try:
            while True:
                lease_id, ttl = codec.lease_keep_alive(await stream.receive("lease keep-alive"))
                queue = self._waiting.get(lease_id)
                if queue:
                    answer = queue.popleft()
                    answer.ttl = ttl
                    answer.done.set()
        except EtcdError as error:
            self._stream = None
            for queue in self._waiting.values():
                for answer in queue:
                    answer.error = error
                    answer.done.set()
            self._waiting.clear()
            stream.close()


@final
class _Answer:
    __slots__ = ("done", "error", "ttl")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.ttl = 0
        self.error: EtcdError | None = None
