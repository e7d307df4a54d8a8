"""Conformance of leases: the same tests on the in-memory fake and on real etcd 3.4 and 3.5.

The only sleeps here let lease time pass (virtual time under the fake's autojump clock).
"""

from __future__ import annotations

import random

import pytest
import trio
from conformance import current_revision, event_responses, flat

from trio_etcd_tree import (
    Compare,
    EventType,
    InvalidRequestError,
    KeyValue,
    LeaseInfo,
    NotFoundError,
    Put,
)
from trio_etcd_tree.testing.pytest_plugin import EtcdBackend


def unknown_lease_id() -> int:
    return random.getrandbits(62) | 1


async def test_lease_grant_ttl_keys_keep_alive_revoke(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            grant = await client.lease_grant(30)
            assert grant.ttl == 30
            assert grant.id > 0
            assert grant.header.revision == await current_revision(client)
            assert grant.id in await client.leases()

            info = await client.lease_time_to_live(grant.id)
            assert info.id == grant.id
            assert 28 <= info.ttl <= 30
            assert info.granted_ttl == 30
            assert info.keys == []

            a = await client.put(p + b"a", b"1", lease=grant.id)
            await client.put(p + b"b", b"2", lease=grant.id)
            await client.put(p + b"plain", b"3")
            assert await client.get(p + b"a") == KeyValue(
                p + b"a", b"1", a.revision, a.revision, 1, grant.id
            )
            with_keys = await client.lease_time_to_live(grant.id, keys=True)
            # real etcd lists them in Go map order (random); the fake sorts them
            assert sorted(with_keys.keys) == [p + b"a", p + b"b"]
            assert with_keys.granted_ttl == 30
            # the key stays on the lease through a txn, and can be moved off it
            await client.txn(success=[Put(p + b"b", b"2b", lease=grant.id)])
            assert (await client.txn(compare=[Compare.lease(p + b"b") == grant.id])).succeeded

            assert await client.lease_keep_alive_once(grant.id) == 30
            assert 28 <= (await client.lease_time_to_live(grant.id)).ttl <= 30

            async with client.watch(p, prefix=True) as stream:
                r = await current_revision(client)
                await client.lease_revoke(grant.id)
                (response,) = await event_responses(stream, 2)
            # the lease's keys went in one revision, in one response
            assert response.revision == r + 1
            assert [(e.type, e.kv.key, e.kv.mod_revision) for e in response.events] == [
                (EventType.DELETE, p + b"a", r + 1),
                (EventType.DELETE, p + b"b", r + 1),
            ]
            assert [kv.key for kv in (await client.range(p, prefix=True)).kvs] == [p + b"plain"]
            assert await current_revision(client) == r + 1

            gone = await client.lease_time_to_live(grant.id, keys=True)
            assert gone == LeaseInfo(grant.id, -1, 0, [])
            assert await client.lease_keep_alive_once(grant.id) == 0
            assert grant.id not in await client.leases()
            with pytest.raises(NotFoundError):
                await client.lease_revoke(grant.id)


async def test_lease_grant_with_id_and_no_keys(etcd_backend: EtcdBackend) -> None:
    async with etcd_backend.client() as client:
        lease_id = unknown_lease_id()
        r = await current_revision(client)
        grant = await client.lease_grant(10, id=lease_id)
        assert (grant.id, grant.ttl) == (lease_id, 10)
        # granting the same id again is refused
        with pytest.raises(Exception) as info:
            await client.lease_grant(10, id=lease_id)
        assert "lease already exists" in str(info.value)
        await client.lease_revoke(lease_id)
        # a lease without keys: revoking it writes nothing
        assert await current_revision(client) == r


async def test_lease_errors(etcd_backend: EtcdBackend) -> None:
    k = etcd_backend.key("k")
    lease_id = unknown_lease_id()
    async with etcd_backend.client() as client:
        r = await current_revision(client)

        with pytest.raises(NotFoundError) as revoke:
            await client.lease_revoke(lease_id)
        error = revoke.value
        assert error.code == 5
        assert error.http_status == _http(404, etcd_backend)
        assert error.server_message == "etcdserver: requested lease not found"
        assert error.request == f"revoke lease {lease_id}"
        assert error.endpoint == client.endpoint
        assert str(lease_id) in str(error)
        assert "requested lease not found" in str(error)

        with pytest.raises(NotFoundError) as put:
            await client.put(k, b"v", lease=lease_id)
        assert put.value.code == 5
        assert put.value.server_message == "etcdserver: requested lease not found"
        assert put.value.request == f"put {k.decode()}"
        assert k.decode() in str(put.value)

        with pytest.raises(NotFoundError):
            await client.txn(success=[Put(k, b"v", lease=lease_id)])

        assert await client.lease_time_to_live(lease_id) == LeaseInfo(lease_id, -1, 0, [])
        assert await client.lease_keep_alive_once(lease_id) == 0
        assert await client.get(k) is None
        assert await current_revision(client) == r


async def test_lease_block_keeps_alive_then_revokes(etcd_backend: EtcdBackend) -> None:
    k = etcd_backend.key("k")
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            async with client.lease(2) as lease:
                assert lease.ttl == 2
                assert lease.id in await client.leases()
                put = await client.put(k, b"v", lease=lease.id)
                await trio.sleep(3)  # longer than the TTL: only renewals keep it
                assert await client.get(k) == KeyValue(
                    k, b"v", put.revision, put.revision, 1, lease.id
                )
                assert lease.renewals >= 2
                info = await lease.time_to_live(keys=True)
                assert (info.granted_ttl, info.keys) == (2, [k])
                assert 0 < info.ttl <= 2
            assert await client.get(k) is None
            assert (await client.lease_time_to_live(lease.id)).ttl == -1
            assert lease.id not in await client.leases()


async def test_lease_expiry_deletes_keys(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            grant = await client.lease_grant(2)
            assert grant.ttl == 2
            await client.put(p + b"a", b"1", lease=grant.id)
            await client.put(p + b"b", b"2", lease=grant.id)
            async with client.watch(p, prefix=True) as stream:
                r = await current_revision(client)
                # nobody renews it: the server revokes it once its time runs out
                (response,) = await event_responses(stream, 2)
            assert response.revision > r
            assert [(e.type, e.kv.key) for e in flat([response])] == [
                (EventType.DELETE, p + b"a"),
                (EventType.DELETE, p + b"b"),
            ]
            assert {e.kv.mod_revision for e in response.events} == {response.revision}
            assert (await client.range(p, prefix=True)).count == 0
            assert (await client.lease_time_to_live(grant.id)).ttl == -1
            assert await client.lease_keep_alive_once(grant.id) == 0


async def test_lease_ttl_bounds(etcd_backend: EtcdBackend) -> None:
    async with etcd_backend.client() as client:
        for asked in (0, 1):
            grant = await client.lease_grant(asked)
            assert grant.ttl == 2  # raised to the server's minimum
            assert (await client.lease_time_to_live(grant.id)).granted_ttl == 2
            await client.lease_revoke(grant.id)
        with pytest.raises(InvalidRequestError) as info:
            await client.lease_grant(9_000_000_001)
        assert info.value.code == 11
        assert info.value.server_message == "etcdserver: too large lease TTL"


async def test_lease_key_detached_by_plain_put(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        grant = await client.lease_grant(30)
        await client.put(p + b"a", b"1", lease=grant.id)
        await client.put(p + b"b", b"1", lease=grant.id)
        detached = await client.put(p + b"a", b"2", prev_kv=True)
        assert detached.prev_kv is not None
        assert detached.prev_kv.lease == grant.id
        kv = await client.get(p + b"a")
        assert kv is not None
        assert kv.lease == 0
        assert (await client.lease_time_to_live(grant.id, keys=True)).keys == [p + b"b"]
        await client.lease_revoke(grant.id)
        assert [kv.key for kv in (await client.range(p, prefix=True)).kvs] == [p + b"a"]


def _http(status: int, backend: EtcdBackend) -> int | None:
    """The HTTP status an error carries: the gateway's, none over gRPC."""
    return status if backend.wire == "gateway" else None
