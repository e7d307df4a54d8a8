"""Leases kept alive by ``Client.lease`` under the mock clock."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

import trio_etcd_tree as et
from trio_etcd_tree.testing import FakeEtcd


@pytest.fixture
def fake(fake_etcd: FakeEtcd) -> FakeEtcd:
    return fake_etcd


@pytest.fixture
def client(fake_client: et.Client, fake_wire: str) -> et.Client:
    """``fake_client``, over each transport (``fake_wire``)."""
    return fake_client


async def test_keeps_key_alive_for_ten_ttls(fake: FakeEtcd, client: et.Client) -> None:
    async with client.lease(5) as lease:
        await client.put("/svc/me", "here", lease=lease.id)
        start = trio.current_time()
        for _ in range(10):
            await trio.sleep(5)
            assert fake.get("/svc/me") is not None
        assert trio.current_time() - start == 50
        assert lease.renewals >= 10
        assert lease.expires_at > trio.current_time()
        info = await lease.time_to_live(keys=True)
        assert info.keys == [b"/svc/me"]
        assert 0 < info.ttl <= 5
    assert fake.get("/svc/me") is None  # revoked on exit
    assert await client.leases() == []
    assert repr(lease) == f"<Lease {lease.id:#x} ttl=5>"


async def test_without_keep_alive_the_key_goes(fake: FakeEtcd, client: et.Client) -> None:
    grant = await client.lease_grant(5)
    await client.put("/svc/me", "here", lease=grant.id)
    await trio.sleep(6)
    assert fake.get("/svc/me") is None


async def test_lease_lost_cancels_the_block(fake: FakeEtcd, client: et.Client) -> None:
    with pytest.raises(et.LeaseExpiredError, match="gone"):
        async with client.lease(5) as lease:
            await client.lease_revoke(lease.id)  # someone else revokes it
            await trio.sleep_forever()
    assert lease.expires_at == trio.current_time()


async def test_a_failed_revoke_on_leaving_is_no_error(fake: FakeEtcd, client: et.Client) -> None:
    async with client.lease(5) as lease:
        await client.put("/svc/me", "here", lease=lease.id)
        fake.fail_next("/v3/lease/revoke", code=3, message="etcdserver: odd")
    assert fake.get("/svc/me") is not None  # left to expire
    await trio.sleep(6)
    assert fake.get("/svc/me") is None


async def test_lease_not_found_cancels_the_block(fake: FakeEtcd, client: et.Client) -> None:
    with pytest.raises(et.LeaseExpiredError, match="not found"):
        async with client.lease(5):
            fake.fail_next(
                "/v3/lease/keepalive", code=5, message="etcdserver: requested lease not found"
            )
            await trio.sleep_forever()


async def test_transient_failures_are_retried(fake: FakeEtcd, client: et.Client) -> None:
    async with client.lease(6) as lease:
        await client.put("/svc/me", "here", lease=lease.id)
        fake.fail_next("/v3/lease/keepalive", code=3, message="etcdserver: odd", count=3)
        await trio.sleep(30)
        assert fake.get("/svc/me") is not None


async def test_unreachable_until_the_ttl_runs_out(fake: FakeEtcd, client: et.Client) -> None:
    with pytest.raises(et.LeaseExpiredError, match="ran out"):
        async with client.lease(6) as lease:
            fake.member_down(0)
            await trio.sleep_forever()
    # left as its time ran out: no revoke tried (it could only wait for the unreachable server)
    assert trio.current_time() == lease.expires_at


async def test_user_error_comes_out_unwrapped(fake: FakeEtcd, client: et.Client) -> None:
    with pytest.raises(ZeroDivisionError):
        async with client.lease(5):
            1 / 0  # noqa: B018


async def test_ttl_must_be_positive(client: et.Client) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        async with client.lease(0):
            pass  # pragma: no cover


async def test_keep_alive_once_stream_error(autojump_clock: trio.testing.MockClock) -> None:
    """The keep-alive endpoint streams: errors can come inside a 200 answer."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = b'{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}}'
        return httpx.Response(200, content=body)

    transport = httpx.MockTransport(handler)
    async with et.open_client("http://x:2379", transport=transport, request_deadline=1) as client:
        # "no leader" is a refusal before the request was proposed: tried again until the
        # deadline, and then reported
        with pytest.raises(et.UnavailableError, match=r"within 1 s.*no leader"):
            await client.lease_keep_alive_once(7)


class LostLease:
    """A server that renews a lease once, then says it is gone, and wakes ``gone`` in the
    same step (as a watch delivering the deletion of the lease's key would): no checkpoint
    inside, so the keep-alive and the block fail in the same scheduling step."""

    def __init__(self) -> None:
        self.renewals = 0
        self.gone = trio.Event()

    async def lease_grant(self, ttl: int) -> et.LeaseGrant:
        await trio.lowlevel.checkpoint()
        return et.LeaseGrant(7, ttl)

    async def lease_revoke(self, id: int) -> None:  # noqa: A002
        await trio.lowlevel.checkpoint()

    async def lease_keep_alive_once(self, id: int) -> int:  # noqa: A002
        self.renewals += 1
        if self.renewals == 1:
            return 3
        self.gone.set()
        return 0

    async def lease_time_to_live(self, id: int, *, keys: bool = False) -> et.LeaseInfo:  # noqa: A002
        raise NotImplementedError


async def test_lease_lost_as_the_block_fails_with_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Found by the fault-injection suite (nemesis finding 5): a lock waiter whose lease is
    lost got an ExceptionGroup of LeaseExpiredError and LockLostError; now one error."""
    from trio_etcd_tree._client.lease import open_lease

    server = LostLease()
    with pytest.raises(et.LeaseExpiredError) as info:
        async with open_lease(server, 3):
            await server.gone.wait()
            raise et.LockLostError("our key was deleted while we waited")
    assert isinstance(info.value.__context__, et.LockLostError)
    # an error of the block's own that is not etcd's stays beside the lease's
    server = LostLease()
    with pytest.raises(BaseExceptionGroup):
        async with open_lease(server, 3):
            await server.gone.wait()
            raise KeyError("a bug in the block")
