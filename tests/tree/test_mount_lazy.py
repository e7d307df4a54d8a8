"""mount(lazy=True) on the in-memory etcd, under the mock clock: keys first, values when
awaited, consistent with the revision the tree has applied."""

from __future__ import annotations

import base64
import json

import pytest
import trio
import trio.testing

import trio_etcd_tree as et
from trio_etcd_tree import NOT_LOADED, NotLoadedError
from trio_etcd_tree.testing import FakeEtcd

Clock = trio.testing.MockClock
COMPACTED = "etcdserver: mvcc: required revision has been compacted"


pytestmark = pytest.mark.fake_etcd(members=2, progress_notify_interval=5)


@pytest.fixture
def fake(fake_etcd: FakeEtcd) -> FakeEtcd:
    """The in-memory etcd (the plugin's ``fake_etcd``) with the keys the tests start from."""
    fake_etcd.put("/cfg/db/port", "5432")
    fake_etcd.put("/cfg/db/host", "db.internal")
    fake_etcd.put("/cfg/db-x", "a sibling of db, not below it")
    fake_etcd.put("/cfg/web/url", "http://w")
    fake_etcd.put("/cfg-old", "not mounted")
    return fake_etcd


def value_reads(fake: FakeEtcd) -> list[dict[str, object]]:
    """The bodies of the range requests that read values (not keys only)."""
    bodies = [json.loads(c.body) for c in fake.calls if c.path == "/v3/kv/range"]
    return [b for b in bodies if not b.get("keys_only")]


def unloaded(node: et.Node) -> list[str]:
    return ["/".join(n.path) for n in node.walk() if not n.loaded]


async def next_update(updates: et.Subscription) -> et.Update:
    with trio.fail_after(60):
        return await updates.receive()


async def test_lazy_mount_reads_keys_only(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True) as root:
        assert value_reads(fake) == []
        port = root["db"]["port"]
        assert port.has_value and not port.loaded
        assert port.mod_revision == port.create_revision > 0 and port.version == 1
        assert unloaded(root) == ["db/host", "db/port", "db-x", "web/url"]
        assert root.loaded and root["db"].loaded  # no key there: nothing to load
        for read in (lambda: port.value, lambda: port.raw, lambda: port.kv):
            with pytest.raises(NotLoadedError, match=r"await node\.load\(\)"):
                read()
        assert isinstance(NotLoadedError("x"), LookupError)
        assert port.decode_error is None
        assert "<not loaded>" in repr(port)
        assert root.statistics().keys == 4


async def test_load_a_subtree_at_the_applied_revision(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True) as root:
        applied = root.revision
        fake.put("/elsewhere", "moves the cluster on, not the tree")
        db = root["db"]
        assert await db.load() is db
        assert (db["port"].value, db["host"].raw) == ("5432", b"db.internal")
        assert unloaded(root) == ["db-x", "web/url"]  # exactly the subtree
        [read] = value_reads(fake)
        assert read["revision"] == applied
        assert await root.load() is root
        assert unloaded(root) == [] and root["web"]["url"].value == "http://w"
        assert "cfg-old" not in root


async def test_load_is_consistent_with_the_tree_not_the_server(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True) as root:
        fake.stall_watches()
        fake.put("/cfg/db/port", "6000")  # the tree has not applied this
        await root.load()
        assert root["db"]["port"].value == "5432"  # the value of the tree's revision


async def test_a_change_during_the_load_is_not_overwritten(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True, page_size=1) as root:
        fake.delay_next("/v3/kv/range", 5)  # the load's first page
        async with trio.open_nursery() as nursery:
            nursery.start_soon(root.load)
            await trio.sleep(1)
            rev = fake.put("/cfg/db/port", "6000")
            await root.wait_revision(rev)
            assert root["db"]["port"].value == "6000"  # the event loaded it
        assert root["db"]["port"].value == "6000"  # the older read did not overwrite it
        assert root["db"]["host"].value == "db.internal"
        assert unloaded(root) == []


async def test_compacted_revision_reads_the_current_one(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True) as root:
        applied = root.revision
        fake.put("/elsewhere", "x")
        fake.compact(fake.revision)
        await root["db"].load()
        assert root["db"]["port"].value == "5432"
        reads = value_reads(fake)
        assert [r.get("revision") for r in reads] == [applied, None]


async def test_compaction_while_paging_the_load(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True, page_size=1) as root:
        # the read at the tree's revision, then the fallback at the current one
        fake.fail_next("/v3/kv/range", code=11, message=COMPACTED, count=2)
        await root.load()
        assert unloaded(root) == []


async def test_keys_changed_after_a_fallback_read_come_with_their_events(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True) as root:
        applied = root.revision
        fake.stall_watches()
        fake.put("/cfg/db/port", "6000")
        fake.delete("/cfg/web/url")
        fake.put("/cfg/db/new", "n")  # not in the tree yet: the fill skips it
        fake.compact(fake.revision)
        done = trio.Event()

        async def load() -> None:
            await root.load()
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(load)
            await trio.sleep(1)
            assert not done.is_set()  # port is still unloaded: waiting for the tree
            assert unloaded(root) == ["db/port", "web/url"]
            assert root.revision == applied
            fake.break_watches()  # the watch cannot resume (compacted): a lazy resync
        assert root.statistics().resyncs == 1
        assert root["db"]["port"].value == "6000"
        assert root["db"]["new"].value == "n"
        assert "web" not in root
        assert unloaded(root) == []


async def test_events_load_what_they_touch(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True) as root, root.subscribe() as updates:
        fake.put("/cfg/db/port", "6000")
        [change] = (await next_update(updates)).changes
        assert change.kind is et.ChangeKind.MODIFIED
        assert change.old is not None and change.old.value is NOT_LOADED
        assert change.old.mod_revision < change.new.mod_revision  # type: ignore[union-attr]
        with pytest.raises(NotLoadedError):
            change.old_value  # noqa: B018
        assert change.new_value == "6000"
        assert root["db"]["port"].value == "6000"
        fake.delete("/cfg/db/host")
        [change] = (await next_update(updates)).changes
        assert change.kind is et.ChangeKind.DELETED
        assert change.old is not None and change.old.value is NOT_LOADED
        fake.put("/cfg/fresh", "f")
        [change] = (await next_update(updates)).changes
        assert root["fresh"].value == change.new_value == "f"


async def test_writes_on_unloaded_nodes(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True) as root:
        port = root["db"]["port"]
        await port.set("6000")  # guarded by the mod_revision, known without the value
        assert port.value == "6000"
        await root["db"]["host"].delete()
        assert "host" not in root["db"]
        async with root.transaction("web") as txn:
            txn.set("url", "http://v")
        assert root["web"]["url"].value == "http://v"
        fake.stall_watches()
        fake.put("/cfg/db-x", "changed behind the tree")
        with pytest.raises(et.ConflictError):
            await root["db-x"].set("mine")


async def test_wait_value_loads_the_node_only(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True) as root:
        assert await root["db"]["port"].wait_value("5432") == "5432"
        assert unloaded(root) == ["db/host", "db-x", "web/url"]
        [read] = value_reads(fake)
        assert base64.b64decode(read["key"]) == b"/cfg/db/port"  # type: ignore[arg-type]
        with trio.move_on_after(5):
            await root["db"].wait_value("never")  # no key: None, nothing to load
        assert unloaded(root) == ["db/host", "db-x", "web/url"]


async def test_lazy_resync_keeps_what_is_unchanged(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True) as root, root.subscribe() as updates:
        await root["db"].load()
        fake.member_down(0)
        fake.member_down(1)
        fake.delete("/cfg/db/host")
        fake.put("/cfg/db/port", "1")
        fake.put("/cfg/web/url", "http://new")
        rev = fake.put("/cfg/new", "n")
        fake.compact(rev)
        fake.fail_next("/v3/kv/range", code=11, message=COMPACTED)  # the resync's read: read again
        fake.member_up(0)
        fake.member_up(1)
        update = await next_update(updates)
        assert update.resync and update.revision == rev
        assert [(c.path, c.kind) for c in update.changes] == [
            (("db", "host"), et.ChangeKind.DELETED),
            (("db", "port"), et.ChangeKind.MODIFIED),
            (("new",), et.ChangeKind.CREATED),
            (("web", "url"), et.ChangeKind.MODIFIED),
        ]
        host, port, created, url = update.changes
        assert host.old_value == "db.internal" and port.old_value == "5432"  # were loaded
        assert port.new is not None and port.new.value is NOT_LOADED
        with pytest.raises(NotLoadedError, match="db/port"):
            port.new_value  # noqa: B018
        with pytest.raises(NotLoadedError):
            url.old_value  # noqa: B018
        with pytest.raises(NotLoadedError):
            created.new_value  # noqa: B018
        assert unloaded(root) == ["db/port", "db-x", "new", "web/url"]
        assert await root["new"].load() is root["new"]
        assert root["new"].value == "n"
        resync_reads = [json.loads(c.body) for c in fake.calls if c.path == "/v3/kv/range"]
        assert [r.get("keys_only") for r in resync_reads[-3:-1]] == [True, True]


async def test_load_of_a_loaded_tree_is_a_checkpoint(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg") as root:  # not lazy: everything is loaded
        before = len(fake.calls)
        with trio.testing.assert_checkpoints():
            assert await root.load() is root
        assert len(fake.calls) == before
    async with et.mount(fake_client, "/cfg", lazy=True) as root:
        await root.load()
        before = len(fake.calls)
        with trio.testing.assert_checkpoints():
            await root["db"].load()
        assert len(fake.calls) == before


async def test_load_of_a_node_deleted_meanwhile(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True) as root:
        web = root["web"]
        await root.wait_revision(fake.delete("/cfg/web/url"))
        assert "web" not in root
        before = len(fake.calls)
        assert await web.load() is web  # nothing of it is in the tree: nothing to read
        assert len(fake.calls) == before


async def test_load_after_leaving(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/cfg", lazy=True) as root:
        await root["db"].load()
    await root["db"].load()  # loaded: fine on a frozen tree
    with pytest.raises(et.TreeClosedError):
        await root.load()


async def test_lazy_mount_of_everything(
    autojump_clock: Clock, fake: FakeEtcd, fake_client: et.Client
) -> None:
    async with et.mount(fake_client, "/", lazy=True) as root:
        assert not root["cfg-old"].loaded
        await root.load()
        assert root["cfg-old"].value == "not mounted"
