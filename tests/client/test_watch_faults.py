"""The watch stream against the in-memory etcd's fault injection, under the mock clock:
every revision once and in order across broken streams, failover, stalls and restores."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import trio_etcd_tree as et
from trio_etcd_tree.testing import FakeEtcd, open_fake_etcd
from trio_etcd_tree.testing.pytest_plugin import fake_transport


@pytest.fixture
async def fake() -> AsyncIterator[FakeEtcd]:
    async with open_fake_etcd(members=3) as fake:
        yield fake


async def _events(stream: et.WatchStream, count: int) -> list[tuple[int, bytes, bytes]]:
    """The next `count` events as (revision, key, value), skipping progress reports."""
    out: list[tuple[int, bytes, bytes]] = []
    with trio.fail_after(60):
        while len(out) < count:
            response = await stream.receive()
            out.extend((e.kv.mod_revision, e.kv.key, e.kv.value) for e in response.events)
    return out


@pytest.mark.parametrize("how", ["mid-line", "eof", "error"])
async def test_resume_after_broken_stream(
    fake: FakeEtcd, how: str, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True) as stream:
            first = fake.put("/w/a", "1")
            assert await _events(stream, 1) == [(first, b"/w/a", b"1")]
            fake.break_watches(how)  # type: ignore[arg-type]
            second = fake.put("/w/b", "2")
            third = fake.put("/w/c", "3")
            assert await _events(stream, 2) == [(second, b"/w/b", b"2"), (third, b"/w/c", b"3")]
            stats = stream.statistics()
            assert stats.reconnects == 1
            assert stats.state is et.ConnectionState.CONNECTED
            assert stats.next_revision == third + 1


async def test_lines_split_across_chunks(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    fake.chunk_size = 7
    async with et.open_client(fake.endpoints, transport=fake) as client:
        async with client.watch("/w/", prefix=True, prev_kv=True) as stream:
            revisions = [fake.put("/w/k", str(i) * 50) for i in range(5)]
            events = await _events(stream, 5)
    assert [r for r, _, _ in events] == revisions
    assert events[-1][2] == b"4" * 50


async def test_failover_when_member_dies(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True) as stream:
            before = client.endpoint
            fake.put("/w/a", "1")
            await _events(stream, 1)
            fake.member_down(0)
            # (over gRPC the connection it had drops: the client notices before writing)
            await trio.testing.wait_all_tasks_blocked()
            # writes and reads go on through another member
            rev = (await client.put("/w/b", "2")).revision
            assert (await client.get("/w/b")) is not None
            assert client.endpoint != before
            assert await _events(stream, 1) == [(rev, b"/w/b", b"2")]
            assert stream.statistics().endpoint != before


async def test_unreachable_then_back(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(
        fake.endpoints[:1], transport=fake_transport(fake, fake_wire)
    ) as client:
        async with client.watch("/w/", prefix=True) as stream:
            fake.member_down(0)
            rev = fake.put("/w/a", "1")
            state = await stream.wait_state_change(et.ConnectionState.CONNECTED)
            assert state is et.ConnectionState.CONNECTING
            await trio.sleep(10)  # several failed attempts, with backoff
            assert stream.state is et.ConnectionState.CONNECTING
            assert stream.statistics().reconnects > 3
            fake.member_up(0)
            assert await _events(stream, 1) == [(rev, b"/w/a", b"1")]
            assert stream.statistics().state is et.ConnectionState.CONNECTED


async def test_stall_timeout_reopens_silent_stream(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True, stall_timeout=20, heartbeat=5) as stream:
            fake.stall_watches()
            rev = fake.put("/w/a", "1")
            start = trio.current_time()
            assert await _events(stream, 1) == [(rev, b"/w/a", b"1")]
            assert trio.current_time() - start >= 20
            stats = stream.statistics()
            assert stats.stalls == 1
            assert "stall_timeout" in (stats.last_error or "")


async def test_heartbeat_probe_failure_reopens(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True, heartbeat=5) as stream:
            fake.stall_watches()
            fake.fail_next("/v3/kv/range", code=14, message="etcdserver: request timed out")
            rev = fake.put("/w/a", "1")
            assert await _events(stream, 1) == [(rev, b"/w/a", b"1")]
            assert stream.statistics().stalls == 1
            assert "did not answer" in (stream.statistics().last_error or "")


async def test_reopen_keeps_the_first_reason_and_counts_each_as_a_stall(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True) as stream:
            stream.reopen("the first reason")
            stream.reopen("a second reason, while leaving")
            assert await stream.wait_state_change(et.ConnectionState.CONNECTED) is (
                et.ConnectionState.CONNECTING
            )
            rev = fake.put("/w/a", "1")
            assert await _events(stream, 1) == [(rev, b"/w/a", b"1")]
            stats = stream.statistics()
            assert (stats.stalls, stats.disconnects) == (2, 1)
            assert stats.last_error == "the first reason"


async def test_heartbeat_probe_success_keeps_stream(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True, heartbeat=5) as stream:
            await trio.sleep(30)
            rev = fake.put("/w/a", "1")
            assert await _events(stream, 1) == [(rev, b"/w/a", b"1")]
            assert stream.statistics().reconnects == 0


async def test_slow_consumer_is_not_a_stall(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True, buffer=0, stall_timeout=5, heartbeat=1) as s:
            revs = [fake.put("/w/a", str(i)) for i in range(3)]
            await trio.sleep(60)  # the stream waits for us, not for the server
            assert [r for r, _, _ in await _events(s, 3)] == revs
            assert s.statistics().stalls == 0


async def test_compaction_during_disconnect(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(
        fake.endpoints[:1], transport=fake_transport(fake, fake_wire)
    ) as client:
        async with client.watch("/w/", prefix=True) as stream:
            fake.put("/w/a", "1")
            await _events(stream, 1)
            fake.member_down(0)
            fake.put("/w/a", "2")
            last = fake.put("/w/a", "3")
            fake.compact(last)
            fake.member_up(0)
            with pytest.raises(et.CompactedError) as info:
                await _events(stream, 1)
            assert info.value.compact_revision == last
            assert stream.state is et.ConnectionState.CLOSED
            with pytest.raises(et.CompactedError):  # it stays ended
                await stream.receive()
            with pytest.raises(et.CompactedError):
                stream.receive_nowait()


async def test_restored_cluster_is_detected(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        base = fake.put("/w/a", "0")
        async with client.watch("/w/", prefix=True) as stream:
            for i in range(3):
                fake.put("/w/a", str(i))
            await _events(stream, 3)
            fake.restore(base)  # back in time; open streams break
            with pytest.raises(et.ClusterChangedError, match="restored"):
                await _events(stream, 1)


async def test_new_cluster_id_is_detected(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True) as stream:
            fake.put("/w/a", "0")
            await _events(stream, 1)
            fake.new_cluster_id(0xBEEF)
            fake.put("/w/a", "1")
            with pytest.raises(et.ClusterChangedError, match="cluster id changed"):
                await _events(stream, 1)


async def test_lagging_member_is_not_a_restore(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    """A `created` revision below what we saw is checked with a linearizable read first."""
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True) as stream:
            base = fake.revision
            stream._seen = base + 3  # as if another member had told us about base + 3
            fake.delay_next("/v3/kv/range", 5)
            fake.break_watches("eof")
            await trio.sleep(1)  # reopened: `created` says `base`, the probe is under way
            revisions = [fake.put("/w/k", str(i)) for i in range(5)]
            assert [r for r, _, _ in await _events(stream, 5)] == revisions


async def test_error_before_watch_is_established(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd() as fake:
        fake.fail_next("/v3/watch", code=3, message="etcdserver: bad request for test")
        async with et.open_client(fake.endpoints, transport=fake) as client:
            with pytest.raises(et.InvalidRequestError, match="bad request for test"):
                async with client.watch("/w/"):
                    pytest.fail("the watch should not open")  # pragma: no cover


async def test_unavailable_before_established_keeps_trying(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd() as fake:
        fake.fail_next("/v3/watch", code=14, message="etcdserver: no leader", count=3)
        async with et.open_client(
            fake.endpoints, transport=fake_transport(fake, fake_wire)
        ) as client:
            async with client.watch("/w/") as stream:
                assert stream.statistics().reconnects == 3
                assert stream.state is et.ConnectionState.CONNECTED


async def test_consumer_closing_stops_the_task(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True, buffer=0) as stream:
            await stream.aclose()
            fake.put("/w/a", "1")
            await trio.testing.wait_all_tasks_blocked()
            assert stream.state is et.ConnectionState.CLOSED
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive()


async def test_leaving_the_block_ends_iteration(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True) as stream:
            pass
        with pytest.raises(trio.EndOfChannel):
            await stream.receive()
        with pytest.raises(trio.EndOfChannel):
            stream.receive_nowait()
        assert stream.state is et.ConnectionState.CLOSED


async def test_body_error_comes_out_unwrapped(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        with pytest.raises(KeyError, match="mine"):
            async with client.watch("/w/", prefix=True):
                raise KeyError("mine")


async def test_wait_state_change_returns_at_once_when_different(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True) as stream:
            with trio.testing.assert_checkpoints():
                state = await stream.wait_state_change(et.ConnectionState.CONNECTING)
            assert state is et.ConnectionState.CONNECTED


async def test_wait_state_change_wakes_every_waiter(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as client:
        async with client.watch("/w/", prefix=True) as stream:
            woken: list[et.ConnectionState] = []

            async def waiter() -> None:
                woken.append(await stream.wait_state_change(et.ConnectionState.CONNECTED))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                assert woken == []
                stream.reopen("the test moves it")
            assert woken == [et.ConnectionState.CONNECTING] * 2
