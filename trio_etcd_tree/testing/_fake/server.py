"""The fake etcd as an httpx transport: routes each request to the service that serves it.

``httpx.AsyncClient(transport=fake)`` talks to it exactly as to a real etcd 3.5 gateway, and
everything runs on the Trio clock, so tests are deterministic under
``trio.testing.MockClock(autojump_threshold=0)``.  :class:`FakeEtcd` composes small parts:
the :class:`~.cluster.Cluster` (store, lessor, members), :class:`~.auth.Auth`,
:class:`~.kv.Kv`, :class:`~.leases.Leases`, :class:`~.watch.Watches` and
:class:`~.faults.Faults`; it owns the request path (member, faults, delays) and the Python API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

import httpx
import trio

from .auth import Auth, Mode
from .cluster import Cluster, FakeCall as FakeCall
from .faults import Faults
from .gateway import Ctx, Fields, Json, error_response, json_response, parse_unary, text_response
from .kv import Kv
from .leases import Leases
from .store import FakeError, as_bytes
from .watch import Break, Watches

if TYPE_CHECKING:
    from .grpc_front import GrpcFront

_Handler: TypeAlias = Callable[[Ctx, Fields], Json]


class FakeEtcd(httpx.AsyncBaseTransport):
    """An in-memory etcd cluster behind an httpx transport.  Open it with :func:`open_fake_etcd`.

    Every member serves the same store (a healthy cluster); requests are routed by host.
    """

    STREAMING = frozenset({"/v3/watch", "/v3/lease/keepalive"})

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        members: int = 1,
        progress_notify_interval: float = 600.0,
        max_txn_ops: int = 128,
        max_request_bytes: int = 1572864,
        cluster_id: int = 0x1234,
    ) -> None:
        self._nursery = nursery
        self._cluster = cluster = Cluster(members, cluster_id)
        self._auth = auth = Auth(cluster)
        self._kv = kv = Kv(cluster, auth, max_txn_ops)
        self._leases = leases = Leases(cluster, auth)
        self._watches = Watches(cluster, auth, nursery, progress_notify_interval)
        self._faults = Faults(self._watches)
        self._max_request_bytes = max_request_bytes
        self.endpoints = cluster.endpoints
        self.calls: list[FakeCall] = []
        self._grpc: GrpcFront | None = None
        self._unary: Mapping[str, _Handler] = {
            "/v3/kv/range": kv.range,
            "/v3/kv/put": kv.put,
            "/v3/kv/deleterange": kv.deleterange,
            "/v3/kv/txn": kv.txn,
            "/v3/kv/compaction": kv.compaction,
            "/v3/lease/grant": leases.grant,
            "/v3/lease/revoke": leases.revoke,
            "/v3/kv/lease/revoke": leases.revoke,
            "/v3/lease/timetolive": leases.timetolive,
            "/v3/kv/lease/timetolive": leases.timetolive,
            "/v3/lease/leases": leases.leases,
            "/v3/kv/lease/leases": leases.leases,
            "/v3/maintenance/status": cluster.status,
            "/v3/cluster/member/list": cluster.member_list,
            "/v3/auth/authenticate": auth.authenticate,
        }

    @property
    def grpc(self) -> GrpcFront:
        """The gRPC front: ``GrpcTransport(connect=fake.grpc.open_grpc_stream)`` reaches this
        etcd over gRPC, and its methods inject faults only gRPC has (see
        :class:`~trio_etcd_tree.testing._fake.grpc_front.GrpcFront`)."""
        if self._grpc is None:
            from .grpc_front import GrpcFront  # (protobuf is loaded only for gRPC)

            self._grpc = GrpcFront(
                self._nursery,
                endpoints=self.endpoints,
                calls=self.calls,
                faults=self._faults,
                watches=self._watches,
                renew=self._leases.renew,
                serve_unary=self.serve_unary,
                max_request_bytes=self._max_request_bytes,
            )
        return self._grpc

    # ---- state ----------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._cluster.store.revision

    @property
    def compact_revision(self) -> int:
        return self._cluster.store.compact_revision

    @property
    def chunk_size(self) -> int | None:
        """Cut each watch message into pieces of this many bytes (None: whole messages)."""
        return self._watches.chunk_size

    @chunk_size.setter
    def chunk_size(self, size: int | None) -> None:
        self._watches.chunk_size = size

    # ---- direct manipulation (as if another client wrote) ----------------------------------

    def put(self, key: bytes | str, value: bytes | str, *, lease: int = 0) -> int:
        """Write a key; returns the new revision."""
        if lease:
            self._cluster.lessor.get(lease)
        with self._cluster.write() as w:
            w.put(as_bytes(key), as_bytes(value), lease)
        return self.revision

    def delete(self, key: bytes | str, range_end: bytes | str | None = None) -> int:
        """Delete a key or range; returns the revision (unchanged if nothing was deleted)."""
        with self._cluster.write() as w:
            w.delete_range(as_bytes(key), as_bytes(range_end or b""))
        return self.revision

    def get(self, key: bytes | str) -> dict[str, Any] | None:
        """The current kv of ``key`` as a dict, or None."""
        kv = self._cluster.store.latest(as_bytes(key))
        if kv is None:
            return None
        return {
            "key": kv.key,
            "value": kv.value,
            "create_revision": kv.create_revision,
            "mod_revision": kv.mod_revision,
            "version": kv.version,
            "lease": kv.lease,
        }

    def compact(self, revision: int) -> None:
        """Compact the history up to ``revision``."""
        self._cluster.store.compact(revision)

    def restore(self, revision: int) -> None:
        """Go back to the state at ``revision`` (a restored backup); open watches break."""
        store = self._cluster.store
        store.restore(revision)
        self._cluster.lessor.reattach(store.range(b"\0", b"\0"), trio.current_time())
        self._leases.kick()
        self.break_watches("mid-line")

    def new_cluster_id(self, cluster_id: int | None = None) -> None:
        """Answer with another cluster id from now on."""
        cluster = self._cluster
        cluster.cluster_id = cluster_id if cluster_id is not None else cluster.rng.getrandbits(63)

    def enable_auth(
        self,
        users: Mapping[str, str],
        *,
        permissions: Mapping[str, Sequence[tuple[bytes | str, Mode]]] | None = None,
        token_ttl: float = 300.0,
    ) -> None:
        """Turn auth on: ``users`` maps names to passwords; "root" may do anything, the others
        only what ``permissions`` grants them (key prefixes)."""
        self._auth.enable(users, permissions, token_ttl)

    # ---- fault injection -------------------------------------------------------------------

    def fail_next(
        self,
        path: str | None,
        *,
        code: int,
        message: str,
        count: int = 1,
        status: int | None = None,
    ) -> None:
        """Answer the next ``count`` requests to ``path`` (None: any) with this error."""
        self._faults.fail_next(path, code, message, count, status)

    def delay_next(self, path: str | None, seconds: float, count: int = 1) -> None:
        """Make the next ``count`` requests to ``path`` (None: any) wait ``seconds`` first."""
        self._faults.delay_next(path, seconds, count)

    def lose_answers(self, path: str | None, count: int = 1) -> None:
        """Serve the next ``count`` requests to ``path`` (None: any), then break the
        connection instead of answering: the request took effect, its answer is lost."""
        self._faults.lose_answers(path, count)

    def break_watches(self, how: Break = "mid-line") -> None:
        """End every open watch stream: cut mid-line, a clean EOF, or an in-stream error."""
        self._faults.break_watches(how)

    def stall_watches(self) -> None:
        """Open watch streams stay open but never send anything again."""
        self._faults.stall_watches()

    def member_down(self, index: int) -> None:
        """Requests to that member fail to connect; its watch streams break mid-line (on
        gRPC: its connections drop)."""
        self._faults.member_down(index)
        if self._grpc is not None:
            self._grpc.member_down(index)

    def member_up(self, index: int) -> None:
        self._faults.member_up(index)

    def freeze_member(self, index: int) -> None:
        """The member stops answering, as a process stopped with SIGSTOP does: connections
        are still accepted and requests still sent, but nothing comes back (its open watch
        streams fall silent) until :meth:`thaw_member`; then it serves what it was sent."""
        self._faults.freeze_member(index)

    def thaw_member(self, index: int) -> None:
        self._faults.thaw_member(index)

    # ---- the transport ---------------------------------------------------------------------

    def _member_of(self, request: httpx.Request) -> int:
        url = request.url
        endpoint = f"{url.scheme}://{url.host}:{url.port or 80}"
        if endpoint not in self.endpoints or self._faults.is_down(self.endpoints.index(endpoint)):
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return self.endpoints.index(endpoint)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        member = self._member_of(request)
        body = await request.aread()
        path = request.url.path
        self.calls.append(FakeCall(self.endpoints[member], path, body))
        faults = self._faults
        delay = faults.take_delay(path)
        if delay is None and not faults.is_frozen(member):
            return await self._handle(member, request, path, body)
        # The server has the request: it serves it in its own time, whether or not the
        # client is still waiting for the answer (a write may land after the client gave up).
        answer: list[httpx.Response | httpx.TransportError] = []
        done = trio.Event()

        async def serve() -> None:
            if delay is not None:
                await trio.sleep(delay.seconds)
            await faults.wait_thawed(member)
            try:
                answer.append(await self._handle(self._member_of(request), request, path, body))
            except httpx.TransportError as exc:  # went down meanwhile, or lost the answer
                answer.append(exc)
            done.set()

        self._nursery.start_soon(serve)
        await done.wait()
        if isinstance(answer[0], httpx.TransportError):
            raise answer[0]
        return answer[0]

    async def _handle(
        self, member: int, request: httpx.Request, path: str, body: bytes
    ) -> httpx.Response:
        fault = self._faults.take_error(path)
        if fault is not None:
            response = error_response(fault.code, fault.message, fault.status)
        else:
            self._leases.expire()
            try:
                response = await self._serve(
                    Ctx.of_gateway(member, request.headers), request, path, body
                )
            except FakeError as exc:
                response = error_response(exc.code, exc.message)
        if self._faults.take_lost(path):
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        return response

    async def _serve(
        self, ctx: Ctx, request: httpx.Request, path: str, body: bytes
    ) -> httpx.Response:
        if path in ("/version", "/health"):
            if request.method != "GET":
                return text_response(405, "Method Not Allowed\n")
            if path == "/version":
                return json_response({"etcdserver": "3.5.0", "etcdcluster": "3.5.0"})
            return json_response({"health": "true", "reason": ""})
        if path not in self._unary and path not in self.STREAMING:
            return text_response(
                404, "Not Found\n" if path.startswith("/v3/") else "404 page not found\n"
            )
        if request.method != "POST":
            return text_response(405, "Method Not Allowed\n")
        if path == "/v3/watch":
            return await self._watches.open(ctx, body, request)
        if path == "/v3/lease/keepalive":
            return self._leases.keepalive(ctx, body)
        f = parse_unary(body, self._max_request_bytes)
        return json_response(self._unary[path](ctx, f))

    def serve_unary(self, ctx: Ctx, path: str, f: Fields) -> Json:
        """A unary request of the gRPC front, by its gateway path (leases expired first)."""
        self._leases.expire()
        return self._unary[path](ctx, f)

    async def aclose(self) -> None:
        """Nothing to release: the fake's life is that of :func:`open_fake_etcd`."""


@asynccontextmanager
async def open_fake_etcd(
    *,
    members: int = 1,
    progress_notify_interval: float = 600.0,
    max_txn_ops: int = 128,
    max_request_bytes: int = 1572864,
    cluster_id: int = 0x1234,
) -> AsyncIterator[FakeEtcd]:
    """Run an in-memory etcd for the duration of the block (its timers on the Trio clock)."""
    async with trio.open_nursery() as nursery:
        fake = FakeEtcd(
            nursery,
            members=members,
            progress_notify_interval=progress_notify_interval,
            max_txn_ops=max_txn_ops,
            max_request_bytes=max_request_bytes,
            cluster_id=cluster_id,
        )
        nursery.start_soon(fake._leases.run)
        try:
            yield fake
        finally:
            for stream in list(fake._watches.streams):
                stream.end(None)
            nursery.cancel_scope.cancel()
