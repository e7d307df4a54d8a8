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
revision it needs was compacted meanwhile, it gets :class:`CompactedError` as for any watch.

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

from ..._errors import CompactedError, EtcdError, UnavailableError
from ..._gateway import cancel_reason_fields
from ..._types import WatchResponse
from . import codec
from .connection import GrpcConnection, GrpcStream, Method, copy_error
from .errors import grpc_error

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
    """One watch on a :class:`WatchMux`. Get it from :meth:`WatchMux.watch`."""

    def __init__(
        self, mux: WatchMux, watch_id: int, request: dict[str, Any], start_revision: int
    ) -> None:
        self._mux = mux
        self.id = watch_id
        self._request = request
        self._buffer: deque[WatchResponse] = deque()
        self._error: EtcdError | None = None
        self._changed = trio.Event()
        self._creating = True  # the "created" answer of the current id is still due
        self._suspended = False  # fell behind: cancelled on the server, to be created again
        self._closed = False
        self.created_revision = 0
        """The store's revision when etcd created the watch."""
        self.next_revision = start_revision
        """The first revision not yet handed to the consumer's buffer."""
        self.resumed = 0
        """How often the watch fell behind and was created again."""

    # -- the consumer's side --

    async def receive(self) -> WatchResponse:
        """The next message: events of one or more revisions, or a progress notification.

        Raises:
            CompactedError: the revision the watch needs was compacted (``compact_revision``).
            UnavailableError: the stream or the connection ended.
            EtcdError: the server cancelled the watch (``cancel_reason``, e.g. permission).

        Cancellation: safe; a message is never lost to a cancelled receive.
        """
        while True:
            if self._buffer:
                await trio.lowlevel.checkpoint()
                return self._buffer.popleft()
            if self._error is not None:
                raise copy_error(self._error)
            if self._suspended and not self._closed:
                await self._mux._recreate(self)
                continue
            await self._changed.wait()
            self._changed = trio.Event()

    async def aclose(self) -> None:
        """Cancel the watch on the server (if the stream is still up) and forget it.

        Cancellation: the watch is forgotten even when this is cancelled.
        """
        if not self._closed:
            self._closed = True
            await self._mux._cancel(self)
        else:
            await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> MuxWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the mux's side --

    def _fail(self, error: EtcdError) -> None:
        if self._error is None:
            self._error = error
        self._changed.set()

    def _push(self, response: WatchResponse) -> bool:
        """Buffer a message; False when the buffer is full (the watch must be suspended)."""
        if len(self._buffer) >= self._mux.max_buffered:
            return False
        self._buffer.append(response)
        self.next_revision = response.revision + 1
        self._changed.set()
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

    @property
    def watch_count(self) -> int:
        return len(self._watches)

    async def watch(
        self,
        key: bytes,
        range_end: bytes | None = None,
        *,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        filters: tuple[str, ...] = (),
    ) -> MuxWatch:
        """Create a watch and wait until etcd confirms it.

        Raises:
            UnavailableError: the stream or the connection is broken.
            EtcdError: etcd refused the watch (``cancel_reason``).

        Cancellation: a watch whose create was sent is cancelled on the server.
        """
        request: dict[str, Any] = {
            "key": key,
            "range_end": range_end,
            "prev_kv": prev_kv,
            "progress_notify": progress_notify,
            "filters": filters,
        }
        stream = await self._open()
        watch = MuxWatch(self, next(self._ids), request, start_revision)
        self._watches[watch.id] = watch
        self._creates.append(watch)
        try:
            await stream.send(
                codec.watch_create_request(watch.id, start_revision=start_revision, **request)
            )
            while watch._creating and watch._error is None:
                await watch._changed.wait()
                watch._changed = trio.Event()
        except BaseException:
            watch._closed = True
            with trio.CancelScope(shield=True):
                await self._cancel(watch)
            raise
        if watch._error is not None:
            self._forget(watch)
            raise copy_error(watch._error)
        return watch

    async def request_progress(self) -> None:
        """Ask etcd for a progress report: every watch gets a message with no events at the
        store's revision (once all watches of the stream caught up).

        Raises:
            UnavailableError: the stream or the connection is broken.
        """
        stream = await self._open()
        await stream.send(codec.WATCH_PROGRESS_REQUEST)

    async def aclose(self) -> None:
        """End every watch and the stream.

        Cancellation: the stream is closed even when this is cancelled.
        """
        self._end(UnavailableError("the watch stream was closed", endpoint=self._endpoint))
        await trio.lowlevel.checkpoint()

    # -- internals --

    @property
    def _endpoint(self) -> str:
        return self.connection.endpoint

    async def _open(self) -> GrpcStream:
        async with self._opening:
            if self._stream is None:
                stream = await self.connection.open_stream(WATCH, token=self.token)
                self._stream = stream
                self.connection.start_soon(lambda: self._read(stream))
            return self._stream

    async def _read(self, stream: GrpcStream) -> None:
        try:
            while True:
                data = await stream.receive("watch")
                await self._dispatch(codec.watch_response(data))
        except EtcdError as error:
            if self._stream is stream:
                self._end(error)

    def _end(self, error: EtcdError) -> None:
        stream, self._stream = self._stream, None
        for watch in list(self._watches.values()):
            watch._fail(error)
        self._watches.clear()
        self._creates.clear()
        if stream is not None:
            stream.close()

    async def _dispatch(self, message: Any) -> None:
        watch_id = message.watch_id
        if watch_id == _PROGRESS_ID and not message.created:
            response = codec.watch_result(message)
            for each in set(self._watches.values()):
                if not each._creating and not each._suspended:
                    await self._deliver(each, response)
            return
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
            return  # a watch we cancelled already
        if message.created:
            watch._creating = False
            watch.created_revision = message.header.revision
            if not watch.next_revision:
                watch.next_revision = message.header.revision + 1
            watch._changed.set()
        if message.canceled:
            self._watches.pop(watch.id, None)
            watch._fail(self._cancel_error(message, watch))
        elif not message.created or message.events:
            await self._deliver(watch, codec.watch_result(message))

    async def _deliver(self, watch: MuxWatch, response: WatchResponse) -> None:
        if watch._suspended or watch._push(response):
            return
        # the consumer fell behind: stop this id on the server, drop its answers, and
        # create the watch again once the consumer has caught up
        watch._suspended = True
        self._watches.pop(watch.id, None)
        await self._send_quietly(codec.watch_cancel_request(watch.id))

    def _cancel_error(self, message: Any, watch: MuxWatch) -> EtcdError:
        what = f"watch {watch._request['key']!r}"
        if message.compact_revision:
            error = CompactedError(
                f"the watch's start revision was compacted (up to {message.compact_revision})",
                request=what,
                endpoint=self._endpoint,
            )
            error.compact_revision = message.compact_revision
            return error
        code, text = cancel_reason_fields(message.cancel_reason)
        if not message.cancel_reason:
            return UnavailableError("the server cancelled the watch", request=what)
        return grpc_error(code or 2, text, request=what, endpoint=self._endpoint)

    async def _recreate(self, watch: MuxWatch) -> None:
        watch._suspended = False
        watch._creating = True
        watch.resumed += 1
        watch.id = next(self._ids)
        self._watches[watch.id] = watch
        self._creates.append(watch)
        try:
            stream = await self._open()
            await stream.send(
                codec.watch_create_request(
                    watch.id, start_revision=watch.next_revision, **watch._request
                )
            )
        except EtcdError as error:
            watch._fail(error)

    async def _cancel(self, watch: MuxWatch) -> None:
        self._forget(watch)
        if watch._error is None and not watch._suspended:
            await self._send_quietly(codec.watch_cancel_request(watch.id))
        else:
            await trio.lowlevel.checkpoint()
        watch._fail(UnavailableError("the watch was closed", endpoint=self._endpoint))

    def _forget(self, watch: MuxWatch) -> None:
        self._watches.pop(watch.id, None)
        if watch in self._creates:
            self._creates.remove(watch)

    async def _send_quietly(self, message: bytes) -> None:
        """Send a cancel; a broken stream needs none (the reader reports the break)."""
        stream = self._stream
        if stream is not None:
            try:
                await stream.send(message)
            except EtcdError:
                pass


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
