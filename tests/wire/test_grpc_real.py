"""The gRPC transport against real etcd 3.4 and 3.5 (started by the plugin's fixtures)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest
import trio

from trio_etcd_tree import (
    CompactedError,
    Compare,
    Delete,
    FutureRevisionError,
    Get,
    InvalidRequestError,
    NotFoundError,
    Put,
    Txn,
    UnavailableError,
    open_client,
)
from trio_etcd_tree._wire.base import (
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
    StatusRequest,
    TxnRequest,
    WatchCreateRequest,
)
from trio_etcd_tree._wire.grpc.transport import GrpcTransport
from trio_etcd_tree.testing._launcher import EtcdCluster, find_etcd
from trio_etcd_tree.testing.pytest_plugin import Servers

VERSIONS = ["3.4", "3.5"]


@pytest.fixture(params=VERSIONS)
def endpoint(request: pytest.FixtureRequest, etcd_servers: Servers) -> str:
    return etcd_servers.get(request.param).endpoints[0]


@pytest.fixture
async def grpc() -> AsyncIterator[GrpcTransport]:
    async with GrpcTransport() as transport:
        yield transport


_counter = iter(range(10**6))


def _prefix() -> bytes:
    return b"/grpc%d/" % next(_counter)


async def test_unary_calls(grpc: GrpcTransport, endpoint: str) -> None:
    p = _prefix()

    async def call(request: object) -> object:
        state = CallState()
        result: object = await grpc.call(endpoint, request, token=None, state=state)  # type: ignore[arg-type]
        assert state.sent and state.answered
        return result

    put = await call(PutRequest(p + b"a", b"1"))
    assert put.revision > 0  # type: ignore[attr-defined]
    again = await call(PutRequest(p + b"a", b"2", prev_kv=True))
    assert again.prev_kv.value == b"1"  # type: ignore[attr-defined]
    await call(PutRequest(p + b"b", b""))
    got = await call(RangeRequest(p, p[:-1] + b"0"))
    assert [(kv.key, kv.value) for kv in got.kvs] == [(p + b"a", b"2"), (p + b"b", b"")]  # type: ignore[attr-defined]
    assert got.count == 2  # type: ignore[attr-defined]
    page = await call(
        RangeRequest(p, p[:-1] + b"0", limit=1, sort_order="DESCEND", sort_target="KEY")
    )
    assert page.more and page.kvs[0].key == p + b"b"  # type: ignore[attr-defined]
    counted = await call(RangeRequest(p, p[:-1] + b"0", count_only=True, serializable=True))
    assert counted.count == 2 and not counted.kvs  # type: ignore[attr-defined]
    # create-if-absent: the oneof member create_revision is written although it is 0
    txn = await call(
        TxnRequest(
            compare=[Compare.create_revision(p + b"c") == 0],
            success=[
                Put(p + b"c", b"3"),
                Get(p + b"a"),
                Delete(p + b"b", prev_kv=True),
                Txn(success=[Get(p + b"c")]),
            ],
        )
    )
    assert txn.succeeded  # type: ignore[attr-defined]
    _, read, deleted, nested = txn.responses  # type: ignore[attr-defined]
    assert read.kvs[0].value == b"2" and deleted.prev_kvs[0].key == p + b"b"
    assert nested.responses[0].kvs[0].value == b"3"
    refused = await call(
        TxnRequest(compare=[Compare.value(p + b"c") == b"x"], failure=[Get(p + b"c")])
    )
    assert not refused.succeeded and refused.responses[0].kvs[0].value == b"3"  # type: ignore[attr-defined]
    gone = await call(DeleteRangeRequest(p, p[:-1] + b"0", prev_kv=True))
    assert gone.deleted == 2  # type: ignore[attr-defined]
    status = await call(StatusRequest())
    assert status.version.startswith(("3.4", "3.5"))  # type: ignore[attr-defined]
    members = await call(MemberListRequest())
    assert members[0].client_urls == [endpoint]  # type: ignore[index]
    # (the session's server is shared: compact at the current revision, which is never
    # below another test's compaction)
    header = await call(CompactRequest(gone.revision))  # type: ignore[attr-defined]
    assert header.revision == gone.revision  # type: ignore[attr-defined]


async def test_leases(grpc: GrpcTransport, endpoint: str) -> None:
    state = CallState()
    grant = await grpc.call(endpoint, LeaseGrantRequest(30), token=None, state=state)
    assert grant.ttl == 30
    await grpc.call(
        endpoint, PutRequest(b"/grpc-lease", b"x", lease=grant.id), token=None, state=CallState()
    )
    info = await grpc.call(
        endpoint, LeaseTimeToLiveRequest(grant.id, keys=True), token=None, state=CallState()
    )
    assert info.granted_ttl == 30 and info.keys == [b"/grpc-lease"]
    ids = await grpc.call(endpoint, LeaseLeasesRequest(), token=None, state=CallState())
    assert grant.id in ids

    # two keep-alives at once on the one stream, answered by lease id
    async def keep_alive() -> None:
        await grpc.call(endpoint, LeaseKeepAliveRequest(grant.id), token=None, state=CallState())

    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(keep_alive)
    ttl = await grpc.call(endpoint, LeaseKeepAliveRequest(grant.id), token=None, state=CallState())
    assert ttl == 30
    await grpc.call(endpoint, LeaseRevokeRequest(grant.id), token=None, state=CallState())
    assert (
        await grpc.call(endpoint, LeaseKeepAliveRequest(grant.id), token=None, state=CallState())
        == 0
    )
    with pytest.raises(NotFoundError):
        await grpc.call(endpoint, LeaseRevokeRequest(grant.id), token=None, state=CallState())
    assert grpc.connection_count() == 1


async def test_errors_and_deadline(grpc: GrpcTransport, endpoint: str) -> None:
    with pytest.raises(FutureRevisionError) as info:
        await grpc.call(
            endpoint, RangeRequest(b"/x", revision=10**9), token=None, state=CallState()
        )
    assert info.value.code == 11 and info.value.endpoint == endpoint
    with pytest.raises(InvalidRequestError):
        await grpc.call(endpoint, PutRequest(b"", b"x"), token=None, state=CallState())
    with pytest.raises(InvalidRequestError):  # authentication is off
        await grpc.call(endpoint, AuthenticateRequest("root", "x"), token=None, state=CallState())
    with trio.fail_after(5):  # goes out as grpc-timeout
        await grpc.call(endpoint, RangeRequest(b"/x"), token=None, state=CallState())
    with pytest.raises(UnavailableError) as refused:
        await grpc.call("http://127.0.0.1:1", RangeRequest(b"/x"), token=None, state=CallState())
    assert refused.value.kind == "connect"


async def test_large_range(grpc: GrpcTransport, endpoint: str) -> None:
    """Far more than the HTTP/2 default windows: the connection opens them wide."""
    p = _prefix()
    value = b"v" * 1000
    for chunk in range(20):
        ops = [Put(p + b"%05d" % (chunk * 100 + i), value) for i in range(100)]
        await grpc.call(endpoint, TxnRequest(success=ops), token=None, state=CallState())
    got = await grpc.call(endpoint, RangeRequest(p, p[:-1] + b"0"), token=None, state=CallState())
    assert len(got.kvs) == 2000 and got.kvs[-1].key == p + b"01999"


async def test_watches_share_one_stream(grpc: GrpcTransport, endpoint: str) -> None:
    p = _prefix()
    async with grpc.watch(endpoint, WatchCreateRequest(p + b"a"), token=None) as wa:
        async with grpc.watch(
            endpoint, WatchCreateRequest(p, p[:-1] + b"0", prev_kv=True), token=None
        ) as wall:
            assert (await wa.receive()).created and (await wall.receive()).created
            put = await grpc.call(
                endpoint, PutRequest(p + b"a", b"1"), token=None, state=CallState()
            )
            await grpc.call(endpoint, PutRequest(p + b"b", b"2"), token=None, state=CallState())
            await grpc.call(endpoint, DeleteRangeRequest(p + b"a"), token=None, state=CallState())
            first = await wa.receive()
            assert first.events[0].kv.value == b"1"
            assert first.header.revision == put.revision
            assert (await wa.receive()).events[0].type.name == "DELETE"
            seen = [(await wall.receive()).events[0] for _ in range(3)]
            assert [e.kv.key for e in seen] == [p + b"a", p + b"b", p + b"a"]
            assert seen[2].prev_kv is not None and seen[2].prev_kv.value == b"1"
            await wall.request_progress()
            for watch in (wa, wall):
                progress = await watch.receive()
                assert not progress.events and not progress.created
    assert grpc.connection_count() == 1


async def test_watch_falls_behind_and_resumes(endpoint: str) -> None:
    async with GrpcTransport(max_buffered=2) as grpc:
        p = _prefix()
        async with grpc.watch(endpoint, WatchCreateRequest(p, p[:-1] + b"0"), token=None) as w:
            assert (await w.receive()).created
            for i in range(8):
                await grpc.call(
                    endpoint, PutRequest(p + b"k", b"%d" % i), token=None, state=CallState()
                )
            values: list[bytes] = []
            while len(values) < 8:
                with trio.fail_after(5):
                    message = await w.receive()
                values += [e.kv.value for e in message.events]
            assert values == [b"%d" % i for i in range(8)]
            assert w.resumed >= 1


async def test_watch_of_a_compacted_revision(grpc: GrpcTransport, endpoint: str) -> None:
    p = _prefix()
    first = await grpc.call(endpoint, PutRequest(p + b"a", b"1"), token=None, state=CallState())
    last = await grpc.call(endpoint, PutRequest(p + b"a", b"2"), token=None, state=CallState())
    await grpc.call(endpoint, CompactRequest(last.revision), token=None, state=CallState())
    create = WatchCreateRequest(p + b"a", start_revision=first.revision)
    async with grpc.watch(endpoint, create, token=None) as w:
        assert (await w.receive()).created
        canceled = await w.receive()
        assert canceled.canceled and canceled.compact_revision == last.revision
    with pytest.raises(CompactedError):
        await grpc.call(
            endpoint, RangeRequest(p + b"a", revision=first.revision), token=None, state=CallState()
        )


async def test_open_client_over_grpc(endpoint: str) -> None:
    async with open_client(endpoint, transport="grpc") as client:
        await client.put("/grpc-client/a", b"1")
        assert (await client.get("/grpc-client/a")).value == b"1"  # type: ignore[union-attr]


async def test_tls_with_client_certificates() -> None:
    binary = find_etcd("3.5")
    with EtcdCluster.start(binary, client_cert_auth=True) as cluster:
        context = cluster.ssl_context()
        assert context is not None
        async with GrpcTransport(tls=context) as grpc:
            endpoint = cluster.endpoints[0]
            await grpc.call(endpoint, PutRequest(b"/tls", b"1"), token=None, state=CallState())
            got = await grpc.call(endpoint, RangeRequest(b"/tls"), token=None, state=CallState())
            assert got.kvs[0].value == b"1"
        async with GrpcTransport(tls=ssl.create_default_context()) as untrusted:
            with pytest.raises(UnavailableError) as info:
                await untrusted.call(endpoint, RangeRequest(b"/tls"), token=None, state=CallState())
        assert info.value.kind == "tls"
