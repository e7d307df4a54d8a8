"""Distributed locks: fairness, exclusion, no thundering herd, lost leases, guarded writes,
and interoperability with ``etcdctl lock``.

Contention runs on the in-memory etcd under an autojump clock (deterministic, no real
waiting); a killed holder and etcdctl need real servers and real processes.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
from real_helpers import etcdctl, process, read_line, wait_for_keys

import trio_etcd_tree as et
from trio_etcd_tree import Lock, LockBusyError, LockLostError, lock, try_lock
from trio_etcd_tree.testing import EtcdCluster, FakeEtcd, find_etcd
from trio_etcd_tree.testing.pytest_plugin import EtcdBackend, _binary


class WatchCounter:
    """Counts the watches the client opens and the responses with events they deliver."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = 0
        self.wakeups = 0
        original = et.Client.watch

        @asynccontextmanager
        async def watch(client: et.Client, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            self.opened += 1
            async with original(client, *args, **kwargs) as stream:
                yield _Counting(stream, self)

        monkeypatch.setattr(et.Client, "watch", watch)


class _Counting:
    def __init__(self, stream: et.WatchStream, counter: WatchCounter) -> None:
        self._stream = stream
        self._counter = counter

    async def receive(self) -> et.WatchResponse:
        response = await self._stream.receive()
        if response.events:
            self._counter.wakeups += 1
        return response

    def __aiter__(self) -> _Counting:
        return self

    async def __anext__(self) -> et.WatchResponse:
        try:
            return await self.receive()
        except trio.EndOfChannel:  # pragma: no cover -- our watches never end on their own
            raise StopAsyncIteration from None


# --- on the in-memory etcd -------------------------------------------------------------------


async def test_twenty_contenders_fifo_exclusive_linear_wakeups(
    monkeypatch: pytest.MonkeyPatch,
    fake_client: et.Client,
) -> None:
    counter = WatchCounter(monkeypatch)
    n = 20
    order: list[int] = []
    holding = 0
    max_holding = 0
    c = fake_client

    async def contender(i: int) -> None:
        nonlocal holding, max_holding
        async with lock(c, "/locks/work"):
            holding += 1
            max_holding = max(max_holding, holding)
            order.append(i)
            await trio.sleep(1)
            holding -= 1

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(contender, i)
            await trio.sleep(0.01)  # arrival order: i's key exists before i + 1 starts
    assert order == list(range(n))
    assert max_holding == 1
    # each waiter watches only its predecessor and is woken once: n - 1 in all
    assert counter.opened == n - 1
    assert counter.wakeups == n - 1
    assert (await c.range("/locks/work/", prefix=True)).kvs == []


async def test_lock_basics_on_every_backend(etcd_backend: EtcdBackend) -> None:
    name = etcd_backend.key("lock")
    async with etcd_backend.client() as c:
        async with lock(c, name, ttl=5) as held:
            assert isinstance(held, Lock)
            assert held.name == name
            assert held.key == name + b"/" + f"{held.lease.id:x}".encode()
            assert repr(held) == f"<Lock {held.key!r} revision={held.revision}>"
            kv = await c.get(held.key)
            assert kv is not None
            assert kv.create_revision == held.revision
            assert kv.lease == held.lease.id
            assert kv.value == b""
            with pytest.raises(LockBusyError) as busy:
                async with try_lock(c, name):
                    pytest.fail("the lock is held")  # pragma: no cover
            assert busy.value.holder == held.key
            assert isinstance(busy.value, trio.WouldBlock)
            assert isinstance(busy.value, et.EtcdError)
            ok = await c.txn([held.guard()], [et.Put(etcd_backend.key("data"), b"1")])
            assert ok.succeeded
        assert await c.get(held.key) is None  # released
        stale = await c.txn([held.guard()], [et.Put(etcd_backend.key("data"), b"2")])
        assert not stale.succeeded
        async with try_lock(c, name) as again:
            assert again.revision > held.revision
        with pytest.raises(ValueError, match="non-empty name"):
            async with lock(c, ""):
                pass  # pragma: no cover


async def test_cancelled_waiter_leaves_the_queue(fake_client: et.Client) -> None:
    c = fake_client
    got: list[str] = []

    async def take(who: str, hold: float) -> None:
        async with lock(c, "L"):
            got.append(who)
            await trio.sleep(hold)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take, "a", 10)
        await trio.sleep(0.1)
        with trio.move_on_after(1):
            await take("b", 0)  # waits behind a, then gives up
        nursery.start_soon(take, "c", 0)
        await trio.sleep(0.1)
        assert len((await c.range("L/", prefix=True)).kvs) == 2  # a and c; b left
    assert got == ["a", "c"]


async def test_waiter_whose_key_is_deleted_raises_lock_lost(fake_client: et.Client) -> None:
    c = fake_client
    async with lock(c, "L"), trio.open_nursery() as nursery:

        async def vandal() -> None:
            await trio.sleep(1)
            kvs = (await c.range("L/", prefix=True)).kvs
            await c.delete(kvs[-1].key)  # the waiter's key
            await trio.sleep(1)
            await c.delete(kvs[0].key)  # the holder's: wake the waiter

        nursery.start_soon(vandal)
        with pytest.raises(LockLostError, match="deleted while we waited"):
            async with lock(c, "L"):
                pytest.fail("our key was deleted")  # pragma: no cover


@pytest.mark.fake_etcd(members=2, progress_notify_interval=1)
async def test_partitioned_holder_loses_the_lock_and_its_guard(fake_etcd: FakeEtcd) -> None:
    """A holder cut off from etcd loses the lease: the next waiter gets the lock within the
    TTL, the old holder's block ends with LeaseExpiredError, its guarded write is refused."""
    fake = fake_etcd
    async with (
        et.open_client(fake.endpoints[1], transport=fake) as cut_off,
        et.open_client(fake.endpoints[0], transport=fake) as other,
    ):
        held: list[Lock] = []
        got_it_at: list[float] = []

        async def waiter() -> None:
            async with lock(other, "L", ttl=5):
                got_it_at.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            with pytest.raises(et.LeaseExpiredError):
                async with lock(cut_off, "L", ttl=5) as mine:
                    held.append(mine)
                    nursery.start_soon(waiter)
                    await trio.sleep(3)  # progress notifications reach the waiter
                    fake.member_down(1)
                    lost_at = trio.current_time()
                    await trio.sleep_forever()
        fake.member_up(1)
        assert got_it_at
        assert got_it_at[0] - lost_at <= 5
        refused = await cut_off.txn([held[0].guard()], [et.Put("/data", b"stale")])
        assert not refused.succeeded
        assert await other.get("/data") is None


# --- real etcd: a killed holder ---------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, trio
    import trio_etcd_tree as et
    from trio_etcd_tree import lock

    async def main():
        async with et.open_client(sys.argv[1]) as c, lock(c, sys.argv[2], ttl=2) as held:
            print(held.key.decode(), held.revision, flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


@pytest.fixture
def cluster3() -> Iterator[EtcdCluster]:
    with EtcdCluster.start(find_etcd("3.5"), size=3) as cluster:
        yield cluster


@pytest.fixture
def cluster1() -> Iterator[EtcdCluster]:
    with EtcdCluster.start(_binary("3.5")) as cluster:
        yield cluster


async def test_killed_holder_on_a_three_member_cluster(cluster3: EtcdCluster) -> None:
    endpoints = ",".join(cluster3.endpoints)
    async with (
        et.open_client(endpoints) as c,
        process(sys.executable, "-c", HOLDER, endpoints, "kill-me") as holder,
    ):
        with trio.fail_after(20):
            key, revision = (await read_line(holder)).split()
        stale_guard = et.Compare.create_revision(key) == int(revision)
        assert (await c.txn([stale_guard], [et.Put("/data", b"holder")])).succeeded
        async with trio.open_nursery() as nursery:
            acquired = trio.Event()

            async def waiter() -> None:
                async with lock(c, "kill-me", ttl=2) as held:
                    assert held.revision > int(revision)
                    acquired.set()

            nursery.start_soon(waiter)
            await wait_for_keys(c, "kill-me/", 2)  # the waiter queues behind the holder
            assert not acquired.is_set()
            os.kill(holder.pid, signal.SIGKILL)
            killed_at = trio.current_time()
            # the TTL, plus etcd's lease-expiry tick (500 ms) and a raft round on a busy machine
            with trio.fail_after(2 + 2.5):
                await acquired.wait()
        assert trio.current_time() - killed_at <= 4.5
        refused = await c.txn([stale_guard], [et.Put("/data", b"stale")])
        assert not refused.succeeded
        assert (await c.get("/data")) is not None
        assert (await c.get("/data")).value == b"holder"  # type: ignore[union-attr]


# --- real etcd: etcdctl lock ------------------------------------------------------------------


async def test_etcdctl_lock_excludes_ours_and_ours_excludes_it(cluster1: EtcdCluster) -> None:
    endpoints = ",".join(cluster1.endpoints)
    ctl = etcdctl()
    async with et.open_client(endpoints) as c, AsyncExitStack() as stack:
        # ours first (taken before etcdctl starts): etcdctl waits in line until we let go
        ours_block = lock(c, "shared")
        ours = await ours_block.__aenter__()
        theirs = await stack.enter_async_context(
            process(ctl, "--endpoints", endpoints, "lock", "shared")
        )
        await wait_for_keys(c, "shared/", 2)
        queued = (await c.range("shared/", prefix=True, sort_target="CREATE")).kvs
        assert queued[0].key == ours.key  # etcdctl's key is under the same prefix, behind
        await ours_block.__aexit__(None, None, None)
        # we left: etcdctl gets the lock and says so with its key
        with trio.fail_after(10):
            their_key = await read_line(theirs)
        assert their_key.startswith("shared/")
        # now etcdctl holds it: ours cannot have it
        with pytest.raises(LockBusyError) as busy:
            async with try_lock(c, "shared"):
                pytest.fail("etcdctl holds the lock")  # pragma: no cover
        assert busy.value.holder == their_key.encode()
        waiting: AbstractAsyncContextManager[Lock] = lock(c, "shared")
        with trio.move_on_after(1) as scope:
            async with waiting:
                pytest.fail("etcdctl holds the lock")  # pragma: no cover
        assert scope.cancelled_caught
        theirs.send_signal(signal.SIGTERM)  # etcdctl releases on SIGTERM
        with trio.fail_after(10):
            await theirs.wait()
        with trio.fail_after(10):
            async with lock(c, "shared") as ours:
                assert ours.key.startswith(b"shared/")
