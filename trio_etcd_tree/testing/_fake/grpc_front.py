"""The fake's gRPC front: etcd's gRPC API over trio's in-memory streams, served by the same
services as the gateway (there is one etcd model, with two fronts).

``GrpcTransport(connect=fake.grpc.open_grpc_stream)`` reaches it: each connection the
transport opens is an in-memory stream pair whose server half a
:class:`~.grpc_connection.ServerConnection` serves in the fake's nursery. Every method the
client uses is there: KV Range/Put/DeleteRange/Txn/Compact, Lease
Grant/Revoke/TimeToLive/Leases and the KeepAlive stream, the Watch stream (creates, cancels
and progress requests for any number of watches on one stream), Auth Authenticate,
Maintenance Status and Cluster MemberList; the auth token comes from the ``token`` metadata.

Faults act as on the gateway, by the gateway's path (``fail_next("/v3/kv/put", ...)`` fails
the next put on either front): errors come as ``grpc-status`` trailers, delayed requests are
served in their own time, a lost answer drops the connection, a member that is down refuses
connections (:class:`ConnectionRefusedError`) and drops the ones it had, a frozen member
accepts connections but reads and answers nothing (PINGs included) until it is thawed. A
watch stream broken "mid-line" sends half a message and drops its connection; "eof" ends it
with status 0, "error" with etcd's UNAVAILABLE "error reading from server: EOF". And what
only gRPC has: :meth:`GrpcFront.cut_next`, :meth:`GrpcFront.reset_next`,
:meth:`GrpcFront.reset_streams`, :meth:`GrpcFront.goaway` and
:meth:`GrpcFront.ignore_pings`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import h2.errors
import trio
import trio.testing

from .cluster import FakeCall
from .faults import Faults
from .gateway import Ctx, Fields, Json, dumps
from .grpc_connection import ServerCall, ServerConnection
from .grpc_dialect import METHODS, GrpcMethod, answer_bytes, method_of, request_json
from .store import FakeError
from .watch import STREAM_ERROR_CODE, STREAM_ERROR_TEXT, Watches, WatchStream

__all__ = ["GrpcFront"]

INTERNAL_ERROR: Final = int(h2.errors.ErrorCodes.INTERNAL_ERROR)
REFUSED_STREAM: Final = int(h2.errors.ErrorCodes.REFUSED_STREAM)


class GrpcFront:
    """etcd's gRPC API for one in-memory etcd (its ``grpc`` attribute), over its services,
    faults and request log."""

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        endpoints: list[str],
        calls: list[FakeCall],
        faults: Faults,
        watches: Watches,
        renew: Callable[[Ctx, Fields], Json],
        serve_unary: Callable[[Ctx, str, Fields], Json],
        max_request_bytes: int,
    ) -> None:
        self._nursery = nursery
        self._endpoints = endpoints
        self._calls = calls
        self._faults = faults
        self._watches = watches
        self._renew = renew
        self._serve = serve_unary
        self._max_request_bytes = max_request_bytes
        self.connections: list[ServerConnection] = []
        """The open connections (to every member)."""

    # ---- connecting ------------------------------------------------------------------------

    def open_grpc_stream(self, endpoint: str) -> trio.abc.Stream:
        """A new connection to the member at ``endpoint``: the client's half of an in-memory
        stream pair, whose server half is served in the fake's nursery.

        Raises:
            ConnectionRefusedError: no member there, or it is down.
        """
        endpoints = self._endpoints
        if endpoint not in endpoints or self._faults.is_down(endpoints.index(endpoint)):
            raise ConnectionRefusedError(111, f"Connection refused: {endpoint}")
        member = endpoints.index(endpoint)
        client, server = trio.testing.memory_stream_pair()
        connection = ServerConnection(
            server,
            member=member,
            on_call=self._on_call,
            ignore_pings=lambda: self._faults.is_deaf(member),
            wait_thawed=lambda: self._faults.wait_thawed(member),
        )
        self.connections.append(connection)
        self._nursery.start_soon(self._run, connection)
        return client

    async def _run(self, connection: ServerConnection) -> None:
        try:
            await connection.run()
        finally:
            self.connections.remove(connection)

    def member_down(self, member: int) -> None:
        """Drop every connection to ``member``."""
        for connection in self._of(member):
            connection.abort()

    def _of(self, member: int | None) -> list[ServerConnection]:
        return [c for c in self.connections if member is None or c.member == member]

    # ---- gRPC's own faults -----------------------------------------------------------------

    def cut_next(self, path: str | None, count: int = 1) -> None:
        """The next ``count`` answers on ``path`` (a gateway path such as ``"/v3/kv/put"``
        or ``"/v3/watch"``; None: any) go out as half a DATA frame, and then the
        connection drops (the request itself was served)."""
        self._faults.cut_next(path, count)

    def reset_next(self, path: str | None, *, code: int = INTERNAL_ERROR, count: int = 1) -> None:
        """The next ``count`` answers on ``path`` (None: any) are replaced by RST_STREAM
        with the HTTP/2 error ``code``, and the stream ends. A unary request is served
        first, except with REFUSED_STREAM (which promises the client it was not)."""
        self._faults.reset_next(path, code, count)

    async def reset_streams(self, path: str, *, code: int = INTERNAL_ERROR) -> None:
        """Reset every open stream on ``path`` (``"/v3/watch"``, ``"/v3/lease/keepalive"``)
        now, with the HTTP/2 error ``code``."""
        for connection in list(self.connections):
            for call in list(connection.calls.values()):
                method = METHODS.get(call.path)
                if method is not None and method.path == path:
                    await connection.reset(call, code)

    async def goaway(
        self,
        member: int | None = None,
        *,
        last_stream_id: int | None = None,
        code: int = 0,
        debug: bytes = b"",
    ) -> None:
        """Send GOAWAY on every connection to ``member`` (None: to any), as a member that
        shuts down gracefully: the streams up to ``last_stream_id`` (default: every one
        received) are finished, the ones above it are not processed, and the connection
        closes once the finished ones are done."""
        for connection in self._of(member):
            await connection.goaway(last_stream_id, code, debug)

    def ignore_pings(self, member: int) -> None:
        """``member`` stops answering HTTP/2 PINGs (everything else still works)."""
        self._faults.ignore_pings(member)

    def answer_pings(self, member: int) -> None:
        self._faults.answer_pings(member)

    # ---- serving ---------------------------------------------------------------------------

    def _on_call(self, call: ServerCall) -> None:
        nursery = self._nursery
        try:
            method = method_of(call.path)
        except FakeError as exc:
            nursery.start_soon(call.connection.finish, call, exc.code, exc.message)
            return
        nursery.start_soon(
            self._serve_stream if method.streaming else self._serve_unary, call, method
        )

    def _record(self, call: ServerCall, method: GrpcMethod, body: bytes) -> None:
        endpoint = self._endpoints[call.connection.member]
        self._calls.append(FakeCall(endpoint, method.path, body))

    async def _serve_unary(self, call: ServerCall, method: GrpcMethod) -> None:
        data = await call.whole_request()
        if data is None:
            return  # reset before the request was whole: nothing to serve
        member, faults = call.connection.member, self._faults
        try:
            request: Json | FakeError = request_json(method, data, self._max_request_bytes)
        except FakeError as exc:
            request = exc
        self._record(call, method, data if isinstance(request, FakeError) else dumps(request))
        # the server has the request: it serves it in its own time, whether or not the
        # client is still waiting for the answer (a write may land after it gave up)
        delay = faults.take_delay(method.path)
        if delay is not None:
            await trio.sleep(delay.seconds)
            await faults.wait_thawed(member)
        if call.refused or faults.is_down(member):
            return
        reset = faults.take_reset(method.path)
        if reset is not None and reset.code == REFUSED_STREAM:
            await call.connection.reset(call, reset.code)
            return
        answer = self._unary_answer(call, method, request)
        if faults.take_lost(method.path):
            call.connection.abort()
        elif reset is not None:
            await call.connection.reset(call, reset.code)
        elif isinstance(answer, FakeError):
            await call.connection.finish(call, answer.code, answer.message)
        elif faults.take_cut(method.path):
            await call.connection.cut(call, answer)
        else:
            await call.connection.send(call, answer, last=True)

    def _unary_answer(
        self, call: ServerCall, method: GrpcMethod, request: Json | FakeError
    ) -> bytes | FakeError:
        fault = self._faults.take_error(method.path)
        if fault is not None:
            return FakeError(fault.code, fault.message)
        if isinstance(request, FakeError):
            return request
        ctx = Ctx(call.connection.member, call.token)
        try:
            return answer_bytes(method, self._serve(ctx, method.path, Fields(request)))
        except FakeError as exc:
            return exc

    async def _serve_stream(self, call: ServerCall, method: GrpcMethod) -> None:
        """A Watch or LeaseKeepAlive call: the faults due when it opens, then its messages
        until the client resets it or the connection ends."""
        member, faults = call.connection.member, self._faults
        self._record(call, method, b"")
        delay = faults.take_delay(method.path)
        if delay is not None:
            await trio.sleep(delay.seconds)
            await faults.wait_thawed(member)
        fault = faults.take_error(method.path)
        if fault is not None:
            await call.connection.finish(call, fault.code, fault.message)
            return
        if faults.take_lost(method.path):
            call.connection.abort()
            return
        ctx = Ctx(member, call.token)
        # Every way the call ends (the client resets it, the connection ends, we end it)
        # sets ``gone``: that cancels its tasks, wherever they are.
        async with trio.open_nursery() as nursery:

            async def until_gone() -> None:
                await call.gone.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(until_gone)
            if method.path == "/v3/watch":
                await self._serve_watch(call, method, ctx, nursery)
            else:
                await self._serve_keepalive(call, method, ctx)

    async def _serve_keepalive(self, call: ServerCall, method: GrpcMethod, ctx: Ctx) -> None:
        try:
            while (data := await call.next_message()) is not None:
                request = request_json(method, data, self._max_request_bytes)
                answer = self._renew(ctx, Fields(request))
                self._record(call, method, dumps(request))
                await self._deliver(call, method, answer)
        except FakeError as exc:
            await call.connection.finish(call, exc.code, exc.message)
        else:  # the client ended its side: so does etcd, with OK
            await call.connection.finish(call, 0, "")

    async def _serve_watch(
        self, call: ServerCall, method: GrpcMethod, ctx: Ctx, nursery: trio.Nursery
    ) -> None:
        stream = self._watches.new_stream(ctx.member)
        try:
            nursery.start_soon(self._watch_requests, call, method, ctx, stream)
            await self._watch_answers(call, method, stream)
        finally:
            stream.end(None)

    async def _watch_requests(
        self, call: ServerCall, method: GrpcMethod, ctx: Ctx, stream: WatchStream
    ) -> None:
        while (data := await call.next_message()) is not None:
            try:
                request = request_json(method, data, self._max_request_bytes)
                self._record(call, method, dumps(request))
                self._watches.request(ctx, stream, Fields(request))
            except FakeError:
                pass  # etcd ignores a request it cannot serve; the stream goes on

    async def _watch_answers(
        self, call: ServerCall, method: GrpcMethod, stream: WatchStream
    ) -> None:
        item = await stream.receive.receive()  # a stream always ends with a Break item
        while isinstance(item, dict):
            await self._deliver(call, method, item)
            item = await stream.receive.receive()
        if item == "eof":
            await call.connection.finish(call, 0, "")
        elif item == "error":
            await call.connection.finish(call, STREAM_ERROR_CODE, STREAM_ERROR_TEXT)
        else:  # "mid-line": the connection breaks in the middle of a message
            await call.connection.cut(call, answer_bytes(method, {"header": stream.header()}))

    async def _deliver(self, call: ServerCall, method: GrpcMethod, answer: Json) -> None:
        """Send one answer of a stream, or the fault due instead (which ends the call)."""
        data = answer_bytes(method, answer)
        reset = self._faults.take_reset(method.path)
        if reset is not None:
            await call.connection.reset(call, reset.code)
        elif self._faults.take_cut(method.path):
            await call.connection.cut(call, data)
        else:
            await call.connection.send(call, data)
