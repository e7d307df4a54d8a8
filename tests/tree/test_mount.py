"""mount() on the in-memory etcd, under the mock clock: every guarantee of the mirror."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

import trio_etcd_tree as et
from trio_etcd_tree._tree.mount import mirror_of
from trio_etcd_tree._tree.reflector import CONFIRM_AFTER
from trio_etcd_tree.testing import FakeEtcd, open_fake_etcd

Clock = trio.testing.MockClock


pytestmark = pytest.mark.fake_etcd(members=2, progress_notify_interval=5)


@pytest.fixture
def fake(fake_etcd: FakeEtcd) -> FakeEtcd:
    """The in-memory etcd (the plugin's ``fake_etcd``) with the keys the tests start from."""
    fake_etcd.put("/cfg/db/port", "5432")
    fake_etcd.put("/cfg/db/host", "db.internal")
    fake_etcd.put("/cfg-old", "not mounted")
    return fake_etcd


def int_ports() -> et.TypeRegistry:
    types = et.TypeRegistry()
    types.register("**/port", codec=et.INT)
    return types


async def next_update(updates: et.Subscription) -> et.Update:
    with trio.fail_after(60):
        return await updates.receive()


async def test_mount_loads_and_follows(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg/", types=int_ports(), page_size=1) as root:
        assert root.prefix == b"/cfg"
        assert root.revision == fake.revision
        assert root["db"]["port"].value == 5432
        assert "cfg-old" not in root and len(root) == 1
        assert root.state is et.MountState.SYNCED
        rev = fake.put("/cfg/db/port", "6000")
        await root.wait_revision(rev)
        assert root["db"]["port"].value == 6000
        rev = fake.put("/cfg-old", "in the watched range, not mounted")
        await root.wait_revision(rev)
        assert "cfg-old" not in root
        stats = root.statistics()
        assert (stats.keys, stats.revision, stats.revisions_applied) == (2, rev, 2)
    assert root.statistics().state is et.MountState.CLOSED
    assert root["db"]["port"].value == 6000  # a frozen snapshot, still readable


async def test_mount_of_everything(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    fake.put("plain", "no slash")
    async with et.mount(fake_client, "/") as root:
        assert sorted(root) == ["cfg", "cfg-old"]
        assert not root.has_value
        with pytest.raises(ValueError, match="whole keyspace has no key"):
            await root.set("x")


async def test_awkward_keys(autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client) -> None:
    fake.put(b"/cfg", b"the root's own value")
    fake.put(b"/cfg/bin/\xff\xfe", b"\x00\x01")
    fake.put(b"/cfg/a//b", b"empty segment")
    fake.put(b"/cfg/t/", b"trailing")
    fake.put(b"/cfg/big", b"x" * 1_000_000)
    async with et.mount(fake_client, "/cfg") as root:
        assert root.value == "the root's own value"
        assert root["bin"]["\udcff\udcfe"].raw == b"\x00\x01"
        assert root["bin"]["\udcff\udcfe"].key == b"/cfg/bin/\xff\xfe"
        assert root.lookup("a//b").value == "empty segment"
        assert root["t"][""].value == "trailing"
        assert len(root["big"].raw or b"") == 1_000_000
        await root["bin"].set("\udcff\udcfe", "\x02")
        assert root["bin"]["\udcff\udcfe"].raw == b"\x02"


async def test_typed_write_errors_send_nothing(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", types=int_ports()) as root:
        before = fake.revision
        with pytest.raises(TypeError, match="int node takes int"):
            await root["db"]["port"].set("5433")
        with pytest.raises(TypeError, match=r"node\.set"):
            await root.set(1, 2)  # type: ignore[call-overload]
        assert fake.revision == before


async def test_set_is_guarded_and_read_your_writes(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", types=int_ports()) as root:
        port = root["db"]["port"]
        rev = await port.set(5433)
        assert port.value == 5433 and port.mod_revision == rev  # no waiting needed
        fake.put("/cfg/db/port", "7000")  # someone else, not yet seen by the tree
        port._mod = rev  # the tree still believes rev (as if the watch were slow)
        port._raw = b"5433"
        with pytest.raises(et.ConflictError, match="changed since the tree read it") as info:
            await port.set(1)
        assert info.value.current is not None and info.value.current.value == b"7000"
        assert info.value.key == b"/cfg/db/port"
        await root.wait_revision(info.value.current.mod_revision)
        rev = await port.set(8000, unguarded=True)
        assert port.value == 8000 and root.revision >= rev


async def test_create_must_not_exist(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root:
        db = root["db"]
        await db.set("user", "me")
        assert db["user"].value == "me"
        fake.delete("/cfg/db/user")
        fake.put("/cfg/db/other", "x")
        await root.wait_revision(fake.revision)
        fake.put("/cfg/db/user", "them")  # created meanwhile; the tree has not seen it
        with pytest.raises(et.ConflictError) as info:
            await db.set("user", "me again")
        assert info.value.current is not None and info.value.current.value == b"them"


async def test_set_a_mapping_writes_a_subtree_atomically(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with (
        et.mount(fake_client, "/cfg", types=int_ports()) as root,
        root.subscribe() as updates,
    ):
        rev = await root.set("svc", {"web": {"port": 80, "host": "w"}, "db": {"port": 5432}})
        update = await next_update(updates)
        assert update.revision == rev
        assert sorted(c.path for c in update.changes) == [
            ("svc", "db", "port"),
            ("svc", "web", "host"),
            ("svc", "web", "port"),
        ]
        assert root.lookup("svc/web/port").value == 80


async def test_delete_and_recursive_delete(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    fake.put("/cfg/db", "db's own value")
    async with et.mount(fake_client, "/cfg") as root:
        db = root["db"]
        await db.delete()  # only its own key
        assert not db.has_value and sorted(db) == ["host", "port"]
        with pytest.raises(LookupError, match="no value to delete"):
            await db.delete()
        fake.put("/cfg/db/new", "appeared")  # not seen yet by the tree...
        with pytest.raises(et.ConflictError, match="new"):
            await db.delete(recursive=True)  # ... so the subtree guard refuses
        await root.wait_revision(fake.revision)
        await db.delete(recursive=True)
        assert "db" not in root
        assert fake.get("/cfg/db/host") is None


async def test_recursive_delete_of_the_root(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root:
        await root.delete(recursive=True, unguarded=True)
        assert len(root) == 0
        assert fake.get("/cfg-old") is not None  # a neighbour, not under the mount


async def test_lease_on_write(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root:
        async with fake_client.lease(10) as lease:
            await root.set("me", "here", lease=lease)
            node = root["me"]
            assert node.lease == lease.id
        # (the revoke's delete may reach the tree before the revoke's answer reaches us)
        await node.wait_value(None)
        assert "me" not in root


async def test_transactions(autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client) -> None:
    async with (
        et.mount(fake_client, "/cfg", types=int_ports()) as root,
        root.subscribe() as updates,
    ):
        async with root.transaction() as txn:
            txn.set("db/port", 1)
            txn.set(("db", "user"), "u")
            txn.delete("db/host")
            txn.set("svc", {"a": "1", "b": "2"})
            txn.delete("svc/b")  # a later delete wins over an earlier set
            txn.set("gone", {"x": "1", "y": "2"})
            txn.delete("gone", recursive=True)  # ... and over writes below it
        update = await next_update(updates)
        assert update.revision == txn.revision
        assert sorted(root["db"]) == ["port", "user"]
        assert list(root["svc"]) == ["a"]
        assert "gone" not in root

        async with root.transaction("db") as txn:  # a subtree transaction
            txn.delete((), recursive=True)
            txn.set(("",), "7")  # the child with an empty name: the key /cfg/db/
        assert list(root["db"]) == [""]
        assert root["db"][""].value == "7"

        with pytest.raises(ZeroDivisionError):
            async with root.transaction() as txn:
                txn.set("never", "written")
                1 / 0  # noqa: B018
        assert "never" not in root

        async with root.transaction() as txn:
            pass  # nothing to write: nothing sent
        assert txn.revision == root.revision


async def test_transaction_conflicts(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root:
        with pytest.raises(et.ConflictError, match="db/other") as info:
            async with root.transaction() as txn:
                fake.put("/cfg/db/other", "x")  # someone writes under the subtree meanwhile
                txn.set("db/mine", "y")
        assert b"/cfg/db/other" in info.value.conflicts
        assert "mine" not in root["db"]


async def test_transaction_too_large(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", max_txn_ops=4) as root:
        before = fake.revision
        with pytest.raises(et.TooLargeError, match="exceed the limit of 4"):
            async with root.transaction() as txn:
                for i in range(5):
                    txn.set(f"k{i}", "v")
        assert fake.revision == before


async def test_retry_transaction(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", types=int_ports()) as root:
        calls = 0

        def increment(txn: et.Transaction) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                fake.put("/cfg/db/port", "100")  # a concurrent writer wins the first round
            txn.set("db/port", root["db"]["port"].value + 1)

        rev = await root.retry_transaction(increment)
        assert calls == 2
        assert root["db"]["port"].value == 101
        assert root.revision >= rev

        async def deleted_meanwhile(txn: et.Transaction) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:
                fake.delete("/cfg/db/host")
            txn.set("db/host", "back")
            await trio.lowlevel.checkpoint()

        await root.retry_transaction(deleted_meanwhile, path="")
        assert root["db"]["host"].value == "back"

        def always_conflicts(txn: et.Transaction) -> None:
            fake.put("/cfg/db/port", "1")
            txn.set("db/port", 2)

        with pytest.raises(et.ConflictError):
            await root.retry_transaction(always_conflicts, attempts=3)


async def test_subscription_per_revision_and_node(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root, root["db"].subscribe() as db_updates:
        async with root.subscribe() as all_updates:
            r1 = fake.put("/cfg/other", "x")
            r2 = fake.put("/cfg/db/port", "1")
            r3 = fake.delete("/cfg/db/", "/cfg/db0")
            update = await next_update(db_updates)
            assert update.revision == r2
            assert update.changes[0].kind is et.ChangeKind.MODIFIED
            assert (update.changes[0].old_value, update.changes[0].new_value) == ("5432", "1")
            update = await next_update(db_updates)
            assert update.revision == r3
            assert [c.kind for c in update.changes] == [et.ChangeKind.DELETED] * 2
            assert [u.revision for u in [await next_update(all_updates) for _ in range(3)]] == [
                r1,
                r2,
                r3,
            ]
            assert root.statistics().subscribers == 2
    with pytest.raises(trio.EndOfChannel):  # the subscription ended with its block
        await db_updates.receive()


async def test_slow_subscriber_overflows_alone(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root:
        async with root.subscribe(buffer=2) as slow, root.subscribe(buffer=100) as fast:
            revisions = [fake.put("/cfg/n", str(i)) for i in range(5)]
            await root.wait_revision(revisions[-1])  # the mirror never waited for `slow`
            got = [(await next_update(fast)).revision for _ in range(5)]
            assert got == revisions
            assert (await next_update(slow)).revision == revisions[0]
            assert (await next_update(slow)).revision == revisions[1]
            with pytest.raises(et.SubscriptionOverflow, match="fell behind"):
                await slow.receive()
            assert root.statistics().overflows == 1
            assert root["n"].value == "4"  # recover by reading the tree


async def test_debounced_subscription(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root:
        async with root.subscribe(update_delay=1.0, max_update_delay=5.0) as updates:
            start = trio.current_time()
            fake.put("/cfg/a", "1")
            await trio.sleep(0.5)
            fake.put("/cfg/a", "2")
            fake.put("/cfg/b", "x")
            fake.delete("/cfg/b")  # created and deleted: vanishes from the summary
            fake.delete("/cfg/db/host")
            update = await next_update(updates)
            assert update.coalesced
            assert trio.current_time() - start == pytest.approx(1.5)
            assert [(c.path, c.kind) for c in update.changes] == [
                (("a",), et.ChangeKind.CREATED),
                (("db", "host"), et.ChangeKind.DELETED),
            ]
            assert update.changes[0].new_value == "2"
            # continuous changes are forced out after max_update_delay
            async with trio.open_nursery() as nursery:

                async def writer() -> None:
                    for i in range(20):
                        fake.put("/cfg/a", str(i))
                        await trio.sleep(0.5)

                start = trio.current_time()
                nursery.start_soon(writer)
                update = await next_update(updates)
                assert trio.current_time() - start == pytest.approx(5.0)
                assert update.changes[0].kind is et.ChangeKind.MODIFIED
            update = await next_update(updates)  # the rest, once quiet
            assert update.changes[0].new_value == "19"


async def test_debounced_subscriber_never_overflows(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root:
        async with root.subscribe(buffer=1, update_delay=1.0) as updates:
            for burst in range(3):
                for i in range(10):
                    fake.put(f"/cfg/b{burst}/{i}", "x")
                await trio.sleep(2)  # quiet: a summary is due; nobody reads it
            summaries = [await next_update(updates) for _ in range(3)]
            assert [len(u.changes) for u in summaries] == [10, 10, 10]
            assert root.statistics().overflows == 0


async def test_debounce_arguments(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root:
        with pytest.raises(ValueError, match="update_delay must be > 0"):
            async with root.subscribe(update_delay=0):
                pass  # pragma: no cover
        with pytest.raises(ValueError, match="max_update_delay must be >= update_delay"):
            async with root.subscribe(update_delay=2, max_update_delay=1):
                pass  # pragma: no cover
        with pytest.raises(ValueError, match="buffer must be >= 1"):
            async with root.subscribe(buffer=0):
                pass  # pragma: no cover
        async with root.subscribe(update_delay=1) as updates:
            fake.put("/cfg/a", "1")
        with pytest.raises(trio.EndOfChannel):
            await updates.receive()
    with pytest.raises(et.TreeClosedError):
        async with root.subscribe():
            pass  # pragma: no cover


async def test_wait_value(autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client) -> None:
    async with et.mount(fake_client, "/cfg", types=int_ports()) as root:
        with trio.testing.assert_checkpoints():
            assert await root["db"]["port"].wait_value(5432) == 5432
        async with trio.open_nursery() as nursery:

            async def writer() -> None:
                await trio.sleep(1)
                fake.put("/cfg/db/port", "1")
                await trio.sleep(1)
                fake.put("/cfg/db/port", "99")

            nursery.start_soon(writer)
            assert await root["db"]["port"].wait_value(lambda v: 10 < v < 1000) == 99
        assert trio.current_time() == pytest.approx(2)
        fake.put("/cfg/db/port", "oops")
        error = await root["db"]["port"].wait_value(lambda v: isinstance(v, et.DecodeError))
        assert error.raw == b"oops"
        fake.delete("/cfg/db/port")
        assert await root["db"]["port"].wait_value(None) is None


async def test_waiting_ends_when_the_mount_is_left(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root:
        node = root["db"]["port"]
        async with trio.open_nursery() as nursery:
            results: list[str] = []

            async def wait(fn: object) -> None:
                try:
                    await fn  # type: ignore[misc]
                except et.TreeClosedError:
                    results.append("closed")

            nursery.start_soon(wait, root.wait_revision(root.revision + 100))
            nursery.start_soon(wait, node.wait_value("never"))
            await trio.testing.wait_all_tasks_blocked()
            mirror_of(root).close()
        assert results == ["closed", "closed"]
        with pytest.raises(et.TreeClosedError, match="frozen snapshot"):
            await node.set("x")
        with pytest.raises(et.TreeClosedError):
            await root.wait_revision(root.revision + 1)
        with pytest.raises(et.TreeClosedError):
            await node.wait_value("never")
        with pytest.raises(et.TreeClosedError):
            async with root.transaction():
                pass  # pragma: no cover
        with pytest.raises(et.TreeClosedError):
            await node.delete()
        await root.wait_revision(1)  # already there: fine


async def test_disconnect_and_resume(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root, root.subscribe() as updates:
        fake.member_down(0)
        fake.member_down(1)
        rev = fake.put("/cfg/a", "during the outage")
        await trio.sleep(5)
        assert root.state is et.MountState.DISCONNECTED
        since = root.state_since
        fake.member_up(1)
        update = await next_update(updates)
        assert update.revision == rev and not update.resync
        assert root.statistics().state is et.MountState.SYNCED
        assert root.state_since > since
        assert root.statistics().reconnects == 1


async def test_compaction_during_disconnect_resyncs(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root, root.subscribe() as updates:
        fake.member_down(0)
        fake.member_down(1)
        fake.delete("/cfg/db/host")  # deleted while disconnected
        fake.put("/cfg/db/port", "1")
        fake.put("/cfg/db/port", "2")
        rev = fake.put("/cfg/new", "n")
        fake.compact(rev)
        fake.member_up(0)
        fake.member_up(1)
        update = await next_update(updates)
        assert update.resync and update.revision == rev
        assert [(c.path, c.kind) for c in update.changes] == [
            (("db", "host"), et.ChangeKind.DELETED),
            (("db", "port"), et.ChangeKind.MODIFIED),
            (("new",), et.ChangeKind.CREATED),
        ]
        assert update.changes[1].old_value == "5432"
        assert root.statistics().resyncs == 1
        later = fake.put("/cfg/after", "x")
        assert (await next_update(updates)).revision == later


async def test_compaction_while_paging_reads_again(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    for i in range(10):
        fake.put(f"/cfg/k{i}", "x")
    fake.fail_next(
        "/v3/kv/range", code=11, message="etcdserver: mvcc: required revision has been compacted"
    )
    async with et.mount(fake_client, "/cfg", page_size=3) as root:
        assert len(root) == 11


async def test_restored_cluster_resyncs(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    base = fake.revision
    async with et.mount(fake_client, "/cfg") as root, root.subscribe() as updates:
        fake.put("/cfg/lost", "1")
        await next_update(updates)
        fake.restore(base)  # back to before `lost`
        update = await next_update(updates)
        assert update.resync and update.revision == base
        assert [(c.path, c.kind) for c in update.changes] == [(("lost",), et.ChangeKind.DELETED)]
        assert root.revision == base


async def test_new_cluster_id_resyncs(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root:
        fake.new_cluster_id(0xABC)
        rev = fake.put("/cfg/x", "1")
        await root.wait_revision(rev)
        assert root["x"].value == "1"
        assert root.statistics().resyncs == 1


async def test_unrecoverable_error_leaves_the_block(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    with pytest.raises(et.MirrorError, match="cannot go on") as info:
        async with et.mount(fake_client, "/cfg"):
            fake.fail_next("/v3/watch", code=7, message="etcdserver: permission denied")
            fake.break_watches("eof")
            await trio.sleep_forever()
    assert isinstance(info.value.__cause__, et.PermissionDeniedError)


async def test_error_while_loading(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    # denied with the root's key, then denied the subtree alone too
    fake.fail_next("/v3/kv/range", code=7, message="etcdserver: permission denied", count=2)
    with pytest.raises(et.MirrorError):
        async with et.mount(fake_client, "/cfg"):
            pass  # pragma: no cover


async def test_user_errors_come_out_unwrapped(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with et.mount(fake_client, "/cfg"):
            raise KeyError("mine")
    with trio.move_on_after(1) as scope:
        async with et.mount(fake_client, "/cfg"):
            await trio.sleep_forever()
    assert scope.cancelled_caught
    with pytest.raises(ValueError, match="page_size"):
        async with et.mount(fake_client, "/cfg", page_size=0):
            pass  # pragma: no cover


async def test_cancelled_while_loading(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    fake.delay_next("/v3/kv/range", 100)
    with trio.move_on_after(5) as scope:
        async with et.mount(fake_client, "/cfg"):
            pass  # pragma: no cover
    assert scope.cancelled_caught


async def test_keyboard_interrupt_passes_through(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    with pytest.raises(KeyboardInterrupt):
        async with et.mount(fake_client, "/cfg"):
            raise KeyboardInterrupt


async def test_progress_confirms_revisions_outside_the_mount(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trio_etcd_tree._tree.reflector.CONFIRM_AFTER", 60.0)  # before we would ask
    async with et.mount(fake_client, "/cfg") as root:
        elsewhere = fake.put("/elsewhere", "x")
        await root.wait_revision(elsewhere)  # confirmed by the next progress notification
        assert trio.current_time() <= 5
        assert root.statistics().revisions_applied == 0


async def test_wait_revision_asks_the_server_about_a_change_elsewhere(
    autojump_clock: Clock,
) -> None:
    # no progress notification within the test: only the server's answer can confirm
    async with open_fake_etcd(progress_notify_interval=10_000) as fake:
        fake.put("/cfg", "own value")
        fake.put("/cfg/a", "1")
        async with (
            et.open_client(fake.endpoints, transport=fake) as fake_client,
            et.mount(fake_client, "/cfg") as root,
        ):
            elsewhere = fake.put("/elsewhere", "x")
            await root.wait_revision(elsewhere)
            assert root.revision == elsewhere
            assert trio.current_time() <= CONFIRM_AFTER
            # a change under the mount that the watch, stuck on a live member, does not
            # deliver: the server says so; said twice with no progress in between, the
            # watch is reopened, and the wait goes on until it has brought the change
            changes: list[Callable[[], int]] = [
                lambda: fake.put("/cfg/b", "2"),  # a key changed
                lambda: fake.delete("/cfg/a"),  # a key gone: the count tells
                lambda: fake.put("/cfg", "new own value"),  # the root's own key
            ]
            for change in changes:
                fake.stall_watches()
                under = change()
                later = fake.put("/elsewhere", "y")
                reconnects = root.statistics().reconnects
                await root.wait_revision(later)
                assert root.revision == later and under == later - 1
                assert root.statistics().reconnects == reconnects + 1
            assert root.value == "new own value" and "a" not in root and root["b"].value == "2"
            # a revision not written yet: asked again (with backoff) until it is
            future = fake.revision + 1
            async with trio.open_nursery() as nursery:
                nursery.start_soon(root.wait_revision, future)
                await trio.sleep(10)
                assert root.revision < future
                fake.put("/elsewhere", "z")
            assert root.revision == future
            # a progress report older than a confirmed revision does not move it back
            mirror_of(root).reflector.advance(future - 1)
            assert root.revision == future


async def test_wait_revision_of_a_mount_of_everything(autojump_clock: Clock) -> None:
    async with open_fake_etcd() as fake:
        fake.put("/a", "1")
        async with (
            et.open_client(fake.endpoints, transport=fake) as fake_client,
            et.mount(fake_client, "/") as root,
        ):
            elsewhere = fake.put("not-under-a-slash", "x")
            await root.wait_revision(elsewhere)
            assert root.revision == elsewhere and list(root) == ["a"]


async def test_resync_without_differences(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root, root.subscribe() as updates:
        fake.member_down(0)
        fake.member_down(1)
        fake.put("/elsewhere", "x")  # nothing under the mount changes
        rev = fake.put("/elsewhere", "y")
        fake.compact(rev)
        fake.member_up(0)
        fake.member_up(1)
        await root.wait_revision(rev)
        assert root.statistics().resyncs == 1
        later = fake.put("/cfg/x", "1")
        assert (await next_update(updates)).revision == later  # no empty resync update


async def test_subscriber_that_closes_is_dropped(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root, root.subscribe() as updates:
        await updates.aclose()
        await root.wait_revision(fake.put("/cfg/a", "1"))
        stats = root.statistics()
        assert (stats.subscribers, stats.overflows) == (0, 0)


async def test_debounced_edge_cases(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root:
        async with root.subscribe(update_delay=1) as updates:
            fake.put("/cfg/tmp", "1")
            fake.delete("/cfg/tmp")  # created and deleted within the window: nothing to say
            await trio.sleep(2)
            rev = fake.put("/cfg/real", "1")
            update = await next_update(updates)
            assert update.revision == rev
            assert [c.path for c in update.changes] == [("real",)]
            await updates.aclose()  # the subscriber leaves while a summary is due
            fake.put("/cfg/more", "1")
            await trio.sleep(2)
        async with root.subscribe(update_delay=1) as updates:
            fake.put("/cfg/late", "1")
            await trio.testing.wait_all_tasks_blocked()
            mirror_of(root).close()  # the mount ends inside the quiet period: flushed, then ended
            update = await next_update(updates)
            assert [c.path for c in update.changes] == [("late",)]
            with pytest.raises(trio.EndOfChannel):
                await updates.receive()


async def test_mount_ending_ends_open_subscriptions(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root, root.subscribe() as updates:
        mirror_of(root).close()
        with pytest.raises(trio.EndOfChannel):
            await updates.receive()


async def test_transaction_delete_and_set_the_same_keys(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    fake.put("/cfg/db", "own")
    async with et.mount(fake_client, "/cfg") as root:
        async with root.transaction("db") as txn:
            txn.delete((), recursive=True)
            txn.set((), "new own")  # the deleted key itself, set again
            txn.set(("",), "first key of the range")  # /cfg/db/ is where the range starts
            txn.set("zz", "last")
        assert root["db"].value == "new own"
        assert sorted(root["db"]) == ["", "zz"]


async def test_transaction_on_the_whole_keyspace(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/") as root:
        async with root.transaction() as txn:
            txn.delete("cfg", recursive=True)
            txn.set("cfg/new", "1")
        assert list(root["cfg"]) == ["new"]
        async with root.transaction() as txn:
            txn.delete((), recursive=True)
        assert len(root) == 0


async def test_a_write_undone_by_a_restore_is_not_reported_as_shown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Found by the fault-injection suite (nemesis finding 3): a write applied just before
    the cluster is restored from an older backup used to return a revision of the restored
    history, as if the tree showed it."""
    async with open_fake_etcd() as fake, et.open_client(fake.endpoints, transport=fake) as client:
        async with et.mount(client, "/n") as root, trio.open_nursery() as nursery:
            fake.put("/n/x", "0")
            await root.wait_revision(fake.revision)
            backup = fake.revision
            outcome: list[object] = []

            async def write() -> None:
                try:
                    outcome.append(await root.set("a", "1"))
                except et.EtcdError as error:
                    outcome.append(error)

            fake.stall_watches()  # the write is applied; its echo does not come
            nursery.start_soon(write)
            await trio.testing.wait_all_tasks_blocked()
            applied = fake.get("/n/a")
            assert applied is not None
            fake.restore(backup)  # the cluster goes back: the write is undone
            fake.new_cluster_id()
            while fake.revision < applied["mod_revision"] + 1:  # the new history goes on
                fake.put("/n/y", str(fake.revision))
            await root.wait_revision(fake.revision)
            await trio.testing.wait_all_tasks_blocked()
            [error] = outcome
            assert isinstance(error, et.ClusterChangedError)
            assert error.outcome_unknown
            assert root.get("a") is None  # the tree shows the restored history
