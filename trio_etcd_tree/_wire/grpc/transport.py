"""etcd's native gRPC API as a :class:`~trio_etcd_tree._wire.base.Transport`: one HTTP/2
connection per endpoint carries every unary call, every watch (on one Watch stream) and the
lease keep-alives (on one LeaseKeepAlive stream).

This module, :mod:`.connection` and :mod:`.receiver` are the one place where gRPC's failures
become our errors:

==============================================  =========================  ================
what failed                                      error (``kind``)           a write's outcome
==============================================  =========================  ================
no connection (refused, no route)                UnavailableError connect   not applied
TLS handshake, or no ALPN ``h2``                 UnavailableError tls       not applied
stream refused (REFUSED_STREAM, above GOAWAY)    UnavailableError lost      not applied
connection lost, PING unanswered, stream reset   UnavailableError lost      unknown once sent
the server broke HTTP/2 (a protocol error)       UnavailableError lost      unknown once sent
an answer that does not parse                    ProtocolError              unknown
``grpc-status`` from the server                  ``error_for`` (shared)     as ``error_for``
==============================================  =========================  ================

The transport is an async context manager: ``async with GrpcTransport() as grpc:``. The
connections' reader, writer and keep-alive tasks run in its nursery and end when it is left;
they never raise: a failure ends the connection and is reported to the calls on it.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Final, Self, TypeVar, cast, final

import trio

from ..._core.errors import EtcdError, UnavailableError
from ..._core.util import open_service_nursery
from ..base import (
    AuthenticateRequest,
    CallState,
    CompactRequest,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseLeasesRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    MemberListRequest,
    PutRequest,
    RangeRequest,
    Request,
    StatusRequest,
    TxnRequest,
    WatchCreateRequest,
)
from . import codec
from .connection import KEEPALIVE_TIME, KEEPALIVE_TIMEOUT, GrpcConnection, Method
from .dial import connect_endpoint
from .streams import KeepAliveStream, MuxWatch, WatchMux

__all__ = ["GrpcTransport"]

R = TypeVar("R")


_CALLS: Final[
    dict[type[Any], tuple[Method, Callable[[Any], bytes], Callable[[bytes | bytearray], Any]]]
] = {
    RangeRequest: (Method("/etcdserverpb.KV/Range"), codec.range_request, codec.range_result),
    PutRequest: (
        Method("/etcdserverpb.KV/Put"),
        codec.put_request,
        codec.put_result,
    ),
    DeleteRangeRequest: (
        Method("/etcdserverpb.KV/DeleteRange"),
        codec.delete_request,
        codec.delete_result,
    ),
    TxnRequest: (
        Method("/etcdserverpb.KV/Txn"),
        lambda r: codec.txn_request(r.compare, r.success, r.failure),
        codec.txn_result,
    ),
    CompactRequest: (
        Method("/etcdserverpb.KV/Compact"),
        lambda r: codec.compaction_request(r.revision, physical=r.physical),
        codec.header_only,
    ),
    LeaseGrantRequest: (
        Method("/etcdserverpb.Lease/LeaseGrant"),
        lambda r: codec.lease_grant_request(r.ttl, r.id),
        codec.lease_grant,
    ),
    LeaseRevokeRequest: (
        Method("/etcdserverpb.Lease/LeaseRevoke"),
        lambda r: codec.lease_id_request(r.id),
        codec.header_only,
    ),
    LeaseTimeToLiveRequest: (
        Method("/etcdserverpb.Lease/LeaseTimeToLive"),
        lambda r: codec.lease_time_to_live_request(r.id, keys=r.keys),
        codec.lease_info,
    ),
    LeaseLeasesRequest: (
        Method("/etcdserverpb.Lease/LeaseLeases"),
        lambda r: codec.EMPTY_REQUEST,
        codec.leases,
    ),
    AuthenticateRequest: (
        Method("/etcdserverpb.Auth/Authenticate"),
        lambda r: codec.authenticate_request(r.name, r.password),
        codec.token,
    ),
    StatusRequest: (
        Method("/etcdserverpb.Maintenance/Status"),
        lambda r: codec.EMPTY_REQUEST,
        codec.status,
    ),
    MemberListRequest: (
        Method("/etcdserverpb.Cluster/MemberList"),
        lambda r: codec.EMPTY_REQUEST,
        codec.members,
    ),
}


class _Endpoint:
    """One endpoint's connection and its long-lived streams (one set per token)."""

    def __init__(self, connection: GrpcConnection) -> None:
        self.connection = connection
        self.muxes: dict[str | None, WatchMux] = {}
        self.keepalives: dict[str | None, KeepAliveStream] = {}

    def mux(self, token: str | None, max_buffered: int) -> WatchMux:
        mux = self.muxes.get(token)
        if mux is None:
            mux = self.muxes[token] = WatchMux(
                self.connection, token=token, max_buffered=max_buffered
            )
        return mux

    def keepalive(self, token: str | None) -> KeepAliveStream:
        stream = self.keepalives.get(token)
        if stream is None:
            stream = self.keepalives[token] = KeepAliveStream(self.connection, token=token)
        return stream


class GrpcTransport:
    """etcd's gRPC API over HTTP/2 (trio, our own framing), one connection per endpoint; use it as
    ``async with GrpcTransport(...) as grpc:`` (its connections run in a nursery of its own;
    an error raised in the block leaves it as it is, not wrapped in an exception group).

    Args:
        tls: the TLS setup for ``https://`` endpoints (None: the system's CAs); ALPN ``h2``
            is added to it.
        keepalive_time, keepalive_timeout: the PING keep-alive (see :mod:`.connection`): a
            dead or frozen member is noticed within their sum (10 s by default).
        max_buffered: messages a watch may hold unread before it is cancelled and resumed.
        connect: make the byte stream to an endpoint instead of TCP/TLS (the in-memory
            etcd's gRPC front uses it).
        dial_timeout: seconds to open a connection, TLS handshake included (None: no limit
            of its own).
    """

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        keepalive_time: float = KEEPALIVE_TIME,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        max_buffered: int = 1024,
        connect: Callable[[str], trio.abc.Stream] | None = None,
        dial_timeout: float | None = None,
    ) -> None:
        self._tls = tls
        self._dial_timeout = dial_timeout
        self._keepalive = (keepalive_time, keepalive_timeout)
        self._max_buffered = max_buffered
        self._connect = connect
        self._endpoints: dict[str, _Endpoint] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._closed = False
        self._nursery: trio.Nursery | None = None
        self._exit = AsyncExitStack()

    async def __aenter__(self) -> Self:
        if self._nursery is not None or self._closed:
            raise RuntimeError("a GrpcTransport can be entered only once")
        self._nursery = await self._exit.enter_async_context(open_service_nursery())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        """Close every connection, then wait for their tasks to end. Cancellation: never
        blocks on the network (nothing is sent; cancelled, the tasks end at once)."""
        self.close()
        return await self._exit.__aexit__(exc_type, exc, traceback)

    async def call(
        self, endpoint: str, request: Request[R], *, token: str | None, state: CallState
    ) -> R:
        what = request.describe()
        peer = await self._endpoint(endpoint)
        if isinstance(request, LeaseKeepAliveRequest):
            state.mark_sent()
            ttl = await peer.keepalive(token).keep_alive_once(request.id)
            state.mark_answered()
            return cast("R", ttl)
        method, encode, decode = _CALLS[type(request)]
        message = encode(request)

        async def send(peer: _Endpoint) -> bytes | bytearray:
            return await peer.connection.unary(
                method, message, request_desc=what, state=state, token=token, writes=request.writes
            )

        try:
            data = await send(peer)
        except UnavailableError:
            if state.sent or peer.connection.usable:
                raise
            # refused unread by a member going away (GOAWAY): never processed, so once
            # more on a new connection, leaving the old one to finish its other streams
            data = await send(await self._endpoint(endpoint))
        try:
            return cast("R", decode(data))
        except EtcdError as exc:
            exc.request, exc.endpoint = what, endpoint
            exc.outcome_unknown = request.writes
            raise

    def watch(self, endpoint: str, create: WatchCreateRequest, *, token: str | None) -> _WatchBlock:
        return _WatchBlock(self, endpoint, create, token)

    def discard(self, endpoint: str) -> None:
        peer = self._endpoints.pop(endpoint, None)
        if peer is not None:
            peer.connection.close()

    def close(self) -> None:
        """Close every connection: calls on them fail, new calls are refused. Not a
        checkpoint; leaving the ``async with`` block closes, then waits for the tasks."""
        self._closed = True
        peers = list(self._endpoints.values())
        self._endpoints.clear()
        for peer in peers:
            peer.connection.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the ``async with`` block left)."""
        return self._closed

    def connection_count(self) -> int:
        """Open connections (one per endpoint in use)."""
        return sum(1 for p in self._endpoints.values() if p.connection.usable)

    async def _endpoint(self, endpoint: str) -> _Endpoint:
        peer = self._endpoints.get(endpoint)
        if peer is not None and peer.connection.usable:
            await trio.lowlevel.checkpoint()
            return peer
        lock = self._locks.setdefault(endpoint, trio.Lock())
        async with lock:
            peer = self._endpoints.get(endpoint)
            if peer is not None and peer.connection.usable:
                return peer
            if self._closed:
                raise UnavailableError("the client is closed", kind="connect", endpoint=endpoint)
            if self._nursery is None:
                raise RuntimeError("use the transport as `async with GrpcTransport(...) as t:`")
            factory = self._connect
            connection = await connect_endpoint(
                endpoint,
                ssl_context=self._tls,
                keepalive_time=self._keepalive[0],
                keepalive_timeout=self._keepalive[1],
                connect=None if factory is None else lambda: factory(endpoint),
                dial_timeout=self._dial_timeout,
            )
            self._nursery.start_soon(connection.run)
            try:
                await connection.started.wait()
                if self.closed:
                    raise UnavailableError(
                        "the client is closed", kind="connect", endpoint=endpoint
                    )
            except BaseException:  # cancelled, or closed meanwhile: nobody else would close it
                connection.close()
                raise
            peer = self._endpoints[endpoint] = _Endpoint(connection)
            return peer


@final
class _WatchBlock:
    """``async with transport.watch(...) as watch``: a watch on the endpoint's mux, cancelled
    when the block is left. (A class: a mount holds one for its watch's whole connection,
    and a generator's frame and context manager cost more.)"""

    __slots__ = ("_create", "_endpoint", "_mux", "_token", "_transport", "_watch")

    def __init__(
        self,
        transport: GrpcTransport,
        endpoint: str,
        create: WatchCreateRequest,
        token: str | None,
    ) -> None:
        self._transport = transport
        self._endpoint = endpoint
        self._create = create
        self._token = token

    async def __aenter__(self) -> MuxWatch:
        transport = self._transport
        peer = await transport._endpoint(self._endpoint)
        self._mux = mux = peer.mux(self._token, transport._max_buffered)
        self._watch = watch = await mux.watch(self._create)
        return watch

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._mux.cancel(self._watch)
