"""Leader election: campaign, proclaim, resign, observe; a killed leader; ``etcdctl elect``.

As for locks, the contention tests run on the in-memory etcd under an autojump clock; the
killed leader and etcdctl run against real servers and real processes.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from collections.abc import Iterator

import pytest
import trio
from real_helpers import etcdctl, process, read_line, wait_for_keys

import trio_etcd_tree as et
from trio_etcd_tree import (
    Election,
    Leader,
    LockLostError,
    NotLeaderError,
    current_leader,
    election,
    observe_leader,
)
from trio_etcd_tree.testing import EtcdCluster, FakeEtcd, find_etcd
from trio_etcd_tree.testing.pytest_plugin import EtcdBackend


async def test_campaign_proclaim_resign(etcd_backend: EtcdBackend) -> None:
    name = etcd_backend.key("e")
    async with etcd_backend.client() as c, election(c, name, ttl=5) as e:
        assert isinstance(e, Election)
        assert (e.is_leader, e.revision, e.value) == (False, 0, b"")
        assert repr(e) == f"<Election {name!r} not leader>"
        assert await e.leader() is None
        with pytest.raises(NotLeaderError):
            e.guard()
        with pytest.raises(NotLeaderError):
            await e.proclaim("x")
        await e.resign()  # not leader: nothing to do

        await e.campaign("one")
        assert e.is_leader
        assert e.value == b"one"
        assert repr(e).endswith("leader>")
        assert e.key == name + b"/" + f"{e.lease.id:x}".encode()
        leader = await current_leader(c, name)
        assert leader == Leader(e.key, b"one", e.revision, e.lease.id)
        first = e.revision

        await e.proclaim(b"two")
        assert e.value == b"two"
        assert e.revision == first
        assert (await e.leader()) == Leader(e.key, b"two", first, e.lease.id)
        await e.campaign("three")  # again, as leader: only the value changes
        assert e.revision == first
        assert e.value == b"three"
        assert (await c.txn([e.guard()], [et.Put(etcd_backend.key("x"), b"1")])).succeeded

        await e.resign()
        assert (e.is_leader, await e.leader()) == (False, None)
        await e.campaign("four")
        assert e.revision > first

        await c.delete(e.key)  # someone removes our key: we learn it when we proclaim
        with pytest.raises(NotLeaderError, match="no longer the leader"):
            await e.proclaim("five")
        assert e.revision == 0  # not the leader
    assert e.revision == 0  # the block resigned


async def test_candidates_lead_in_order_and_observers_see_each_leader_once(
    fake_client: et.Client,
) -> None:
    c = fake_client
    seen: list[bytes] = []
    led: list[str] = []

    async def observer(task_status: trio.TaskStatus[None]) -> None:
        async with observe_leader(c, "E") as leaders:
            task_status.started()
            while True:
                seen.append((await leaders.receive()).value)

    async def candidate(i: int) -> None:
        async with election(c, "E") as e:
            await e.campaign(f"c{i}")
            led.append(f"c{i}")
            await trio.sleep(1)
            if i == 2:
                await e.proclaim("c2 again")
                await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        await nursery.start(observer)
        async with trio.open_nursery() as candidates:
            for i in range(5):
                candidates.start_soon(candidate, i)
                await trio.sleep(0.01)
        # two candidates that go in one transaction: one change of leader, reported once
        async with election(c, "E") as a, election(c, "E") as b:
            await a.campaign("a")
            async with trio.open_nursery() as inner:
                inner.start_soon(b.campaign, "b")
                await trio.sleep(0.5)
                await c.put(a.key, b"a", lease=a.lease.id)  # same value: not a new leader
                await c.txn([], [et.Delete(a.key), et.Delete(b.key)])
                inner.cancel_scope.cancel()
        async with election(c, "E") as z:
            await z.campaign("z")
            await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert led == ["c0", "c1", "c2", "c3", "c4"]
    assert seen == [b"c0", b"c1", b"c2", b"c2 again", b"c3", b"c4", b"a", b"z"]


async def test_observer_starts_with_the_current_leader(fake_client: et.Client) -> None:
    c = fake_client
    async with election(c, "E") as e:
        await e.campaign("now")
        async with observe_leader(c, "E") as leaders:
            first = await leaders.receive()
            assert (first.value, first.key) == (b"now", e.key)


async def test_cancelled_campaign_withdraws(fake_etcd: FakeEtcd, fake_client: et.Client) -> None:
    fake, c = fake_etcd, fake_client
    async with election(c, "E") as leader, election(c, "E") as follower:
        await leader.campaign("L")
        with trio.move_on_after(1):
            await follower.campaign("F")
        assert not follower.is_leader
        assert await c.get(follower.key) is None
        # withdrawing fails too (etcd unreachable): the key is left to the lease
        fake.fail_next("/v3/kv/deleterange", code=14, message="unavailable", count=99)
        with trio.move_on_after(1):
            await follower.campaign("F")
        assert await c.get(follower.key) is not None


async def test_campaign_whose_key_is_deleted_raises(fake_client: et.Client) -> None:
    c = fake_client
    async with election(c, "E") as leader, election(c, "E") as follower:
        await leader.campaign("L")
        async with trio.open_nursery() as nursery:

            async def vandal() -> None:
                await trio.sleep(1)
                await c.delete(follower.key)
                await leader.resign()

            nursery.start_soon(vandal)
            with pytest.raises(LockLostError):
                await follower.campaign("F")
        assert not follower.is_leader


@pytest.mark.fake_etcd(members=2, progress_notify_interval=1)
async def test_partitioned_leader_is_replaced(fake_etcd: FakeEtcd) -> None:
    fake = fake_etcd
    async with (
        et.open_client(fake.endpoints[1], transport=fake) as cut_off,
        et.open_client(fake.endpoints[0], transport=fake) as other,
        observe_leader(other, "E") as leaders,
        trio.open_nursery() as nursery,
    ):
        took_over = trio.Event()

        async def follower() -> None:
            async with election(other, "E", ttl=5) as e:
                await e.campaign("follower")
                took_over.set()

        with pytest.raises(et.LeaseExpiredError):
            async with election(cut_off, "E", ttl=5) as e:
                await e.campaign("first")
                guard = e.guard()
                nursery.start_soon(follower)
                await trio.sleep(2)
                fake.member_down(1)
                await trio.sleep_forever()
        await took_over.wait()
        fake.member_up(1)
        assert not (await cut_off.txn([guard], [et.Put("/x", b"stale")])).succeeded
        assert [(await leaders.receive()).value for _ in range(2)] == [b"first", b"follower"]


# --- real etcd -------------------------------------------------------------------------------


CANDIDATE = textwrap.dedent(
    """
    import sys, trio
    import trio_etcd_tree as et
    from trio_etcd_tree import election

    async def main():
        async with et.open_client(sys.argv[1]) as c, election(c, "kill-me", ttl=2) as e:
            await e.campaign(sys.argv[2])
            print("leading", flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


@pytest.fixture
def cluster3() -> Iterator[EtcdCluster]:
    with EtcdCluster.start(find_etcd("3.5"), size=3) as cluster:
        yield cluster


async def test_killed_leaders_on_a_three_member_cluster(cluster3: EtcdCluster) -> None:
    endpoints = ",".join(cluster3.endpoints)
    async with (
        et.open_client(endpoints) as c,
        observe_leader(c, "kill-me") as leaders,
        process(sys.executable, "-c", CANDIDATE, endpoints, "p0") as p0,
    ):
        with trio.fail_after(20):
            assert await read_line(p0) == "leading"
        async with (
            process(sys.executable, "-c", CANDIDATE, endpoints, "p1") as p1,
            process(sys.executable, "-c", CANDIDATE, endpoints, "p2") as p2,
        ):
            await wait_for_keys(c, "kill-me/", 3)
            queued = [kv.value for kv in (await c.range("kill-me/", prefix=True)).kvs]
            assert sorted(queued) == [b"p0", b"p1", b"p2"]
            order = [
                kv.value
                for kv in (
                    await c.range(
                        "kill-me/", prefix=True, sort_target="CREATE", sort_order="ASCEND"
                    )
                ).kvs
            ]
            procs = {b"p0": p0, b"p1": p1, b"p2": p2}
            seen = [(await leaders.receive()).value]
            for value in order[:-1]:
                os.kill(procs[value].pid, signal.SIGKILL)  # the leader dies
                with trio.fail_after(2 + 2.5):  # its TTL, etcd's expiry tick, a raft round
                    seen.append((await leaders.receive()).value)
            assert seen == order
            with trio.fail_after(5):
                assert await read_line(procs[order[-1]]) == "leading"


async def test_etcdctl_elect_interoperates() -> None:
    with EtcdCluster.start(find_etcd("3.5")) as cluster:
        endpoints = ",".join(cluster.endpoints)
        ctl = etcdctl()
        async with (
            et.open_client(endpoints) as c,
            observe_leader(c, "shared") as leaders,
            election(c, "shared") as ours,
        ):
            await ours.campaign("ours")
            assert (await leaders.receive()).value == b"ours"
            async with (
                process(ctl, "--endpoints", endpoints, "elect", "-l", "shared") as watcher,
                process(ctl, "--endpoints", endpoints, "elect", "shared", "theirs") as theirs,
            ):
                with trio.fail_after(10):
                    assert (await read_line(watcher)) == ours.key.decode()
                    assert (await read_line(watcher)) == "ours"
                await wait_for_keys(c, "shared/", 2)
                await ours.resign()  # etcdctl is next in line
                with trio.fail_after(10):
                    their_key = await read_line(theirs)
                    assert await read_line(theirs) == "theirs"
                    seen = await leaders.receive()
                assert (seen.key.decode(), seen.value) == (their_key, b"theirs")
                with trio.fail_after(10):
                    assert (await read_line(watcher)) == their_key
                    assert (await read_line(watcher)) == "theirs"
                # etcdctl leads: our campaign waits behind it until it resigns
                with trio.move_on_after(1) as scope:
                    await ours.campaign("ours again")
                assert scope.cancelled_caught
                assert not ours.is_leader
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(ours.campaign, "ours again")
                    await wait_for_keys(c, "shared/", 2)  # ours waits behind theirs
                    theirs.send_signal(signal.SIGINT)  # etcdctl resigns
                with trio.fail_after(10):
                    assert (await leaders.receive()).value == b"ours again"
                assert ours.is_leader
