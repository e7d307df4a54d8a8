"""Writing by path: ``root.set(path, value)``, ``root.delete(path)``, ``root.key_of(path)``
(and the same on any node, relative to it), on the in-memory etcd and real 3.4 and 3.5."""

from __future__ import annotations

import pytest

import trio_etcd_tree as et
from trio_etcd_tree.testing.pytest_plugin import EtcdBackend


async def test_set_delete_and_key_of_by_path(etcd_backend: EtcdBackend) -> None:
    prefix = etcd_backend.prefix.rstrip(b"/")
    async with etcd_backend.client() as client:
        await client.put(prefix + b"/db/port", b"5432")
        async with et.mount(client, prefix) as root:
            assert root.key_of("db/port") == prefix + b"/db/port"
            assert root.key_of(("db", "port")) == root["db"]["port"].key
            assert root.key_of("") == root.key_of(()) == prefix
            assert root.key_of("a//b") == prefix + b"/a//b"

            # a path as text or as names; the key need not exist yet
            revision = await root.set("db/host", "db.internal")
            assert root.revision >= revision
            assert root.lookup("db/host").value == "db.internal"
            await root.set(("db", "port"), "5433")
            assert root["db"]["port"].value == "5433" and root["db"]["port"].version == 2
            await root.set("web", {"url": "http://w", "tls": {"on": "yes"}})
            assert root.lookup("web/tls/on").value == "yes"
            await root["web"].set("tls/on", "no")  # any node: relative to it
            assert root.lookup("web/tls/on").value == "no"
            assert (await client.get(prefix + b"/web/tls/on")) is not None

            await root.delete("db/host")
            assert root.find("db/host") is None
            await root["web"].delete("tls", recursive=True)
            assert root.find("web/tls") is None and root.lookup("web/url").value == "http://w"
            with pytest.raises(LookupError, match="no value to delete"):
                await root.delete("never/was")
            with pytest.raises(LookupError, match="no value to delete"):
                await root.delete("web")  # children only: delete the subtree instead
            await root.delete("web", recursive=True)
            assert "web" not in root

            with pytest.raises(TypeError, match=r"node\.set\(path, value\)"):
                await root.set(1, "x")  # type: ignore[call-overload]
            with pytest.raises(TypeError, match=r"node\.set\(path, value\)"):
                await root.set("a", "b", "c")  # type: ignore[call-overload]


async def test_lookup_and_find_by_path(etcd_backend: EtcdBackend) -> None:
    prefix = etcd_backend.prefix.rstrip(b"/")
    async with etcd_backend.client() as client:
        await client.put(prefix + b"/a/b", b"1")
        async with et.mount(client, prefix) as root:
            assert root.lookup("") is root and root.find(()) is root
            assert root.find("a/b") is root.lookup(("a", "b"))
            assert root.find("a/x") is None and root.find("a/b/c/d") is None
            with pytest.raises(KeyError, match="has no child 'x'"):
                root.lookup("a/x")
