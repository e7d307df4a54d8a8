"""A mount by a user whose role is etcd's usual grant, ``--prefix readwrite /lim/``.

Such a user may not read the range ``[/lim, /lim0)`` (it holds the key ``/lim`` and keys
like ``/lim-old``, outside the grant): the mount reads and watches ``/lim/`` alone. The
user sees changes, writes, and is refused with a clear ``PermissionDeniedError`` outside
the grant. On the in-memory etcd and on real etcd 3.4 and 3.5 with auth on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

import trio_etcd_tree as et
from trio_etcd_tree.testing import EtcdCluster, open_fake_etcd
from trio_etcd_tree.testing.pytest_plugin import _binary, _run_on_autojump_clock

ROOT_PASSWORD = "rootpw"
USER, PASSWORD = "lim", "limpw"


@pytest.fixture(scope="module")
def auth_clusters() -> Iterator[dict[str, EtcdCluster]]:
    """Real servers with auth on, started on first use: root, and ``lim`` with ``/lim/``."""
    clusters: dict[str, EtcdCluster] = {}
    try:
        yield clusters
    finally:
        for cluster in clusters.values():
            cluster.close()


@asynccontextmanager
async def clients(
    kind: str, clusters: dict[str, EtcdCluster]
) -> AsyncIterator[tuple[et.Client, et.Client]]:
    """An admin client and one of the limited user, on ``kind``'s etcd."""
    if kind == "fake":
        async with open_fake_etcd() as fake:
            fake.enable_auth(
                {"root": ROOT_PASSWORD, USER: PASSWORD},
                permissions={USER: [("/lim/", "readwrite")]},
            )
            async with (
                et.open_client(
                    fake.endpoints, transport=fake, username="root", password=ROOT_PASSWORD
                ) as admin,
                et.open_client(
                    fake.endpoints, transport=fake, username=USER, password=PASSWORD
                ) as user,
            ):
                yield admin, user
        return
    if kind not in clusters:
        cluster = EtcdCluster.start(_binary(kind))
        clusters[kind] = cluster
        cluster.enable_auth(ROOT_PASSWORD)
        cluster.add_user(USER, PASSWORD, readwrite=["/lim/"])
    endpoints = clusters[kind].endpoints
    async with (
        et.open_client(endpoints, username="root", password=ROOT_PASSWORD) as admin,
        et.open_client(endpoints, username=USER, password=PASSWORD) as user,
    ):
        yield admin, user


@pytest.mark.parametrize(
    "kind", [pytest.param("fake", marks=pytest.mark.trio(run=_run_on_autojump_clock)), "3.4", "3.5"]
)
async def test_a_user_granted_only_the_subtree_mounts_it(
    kind: str, auth_clusters: dict[str, EtcdCluster]
) -> None:
    async with clients(kind, auth_clusters) as (admin, user):
        for key, value in [
            ("/lim", "the root's own key: outside the grant"),
            ("/lim/a", "1"),
            ("/lim/d/e", "2"),
            ("/lim-old", "outside"),
            ("/lim0", "outside"),
            ("/other", "outside"),
        ]:
            await admin.put(key, value)
        with pytest.raises(et.PermissionDeniedError):
            await user.range("/lim", "/lim0")  # what a mount used to read

        async with et.mount(user, "/lim") as root:
            assert not root.has_value  # /lim is not the user's to read
            assert root.keys() == ["a", "d"]
            assert root["a"].value == "1" and root.lookup("d/e").value == "2"
            assert root.key_of("d/e") == b"/lim/d/e"

            # sees changes
            async with root.subscribe() as updates:
                await admin.put("/lim/b", "from the admin")
                await admin.put("/lim-new", "outside: not in the tree")
                update = await updates.receive()
                assert [c.path for c in update.changes] == [("b",)]
            assert await root["b"].wait_value("from the admin") == "from the admin"
            assert "lim-new" not in root

            # writes, read back at once (the tree shows them when the calls return)
            await root.set("c/x", "3")
            assert root.lookup("c/x").value == "3"
            assert (await admin.get("/lim/c/x")) is not None
            await root["a"].set("1b")
            await root.delete("d/e")
            assert "d" not in root
            async with root.transaction() as txn:
                txn.set("t", "in a transaction")
                txn.delete("b")
            assert root["t"].value == "in a transaction" and "b" not in root
            assert await root.wait_value(None) is None  # the root's key: never seen

            # refused outside the grant, with a clear error
            with pytest.raises(et.PermissionDeniedError, match="permission denied"):
                await root.set("the root's own key is outside /lim/")
            with pytest.raises(et.PermissionDeniedError):
                await user.put("/other", "x")
            with pytest.raises(et.MirrorError) as info:
                async with et.mount(user, "/other"):
                    pass  # pragma: no cover
            assert isinstance(info.value.__cause__, et.PermissionDeniedError)

            # a recursive delete of the root deletes the subtree (the root's key is not ours)
            await root.delete(recursive=True)
            assert len(root) == 0
            assert (await admin.range("/lim/", prefix=True)).kvs == []
            kept = await admin.get("/lim")
            assert kept is not None and kept.value == b"the root's own key: outside the grant"
            assert root.statistics().state is et.MountState.SYNCED
