from __future__ import annotations

from trio_etcd_tree.testing.pytest_plugin import EtcdBackend


async def test_put_get(etcd_backend: EtcdBackend) -> None:
    async with etcd_backend.client() as client:
        result = await client.put(etcd_backend.key("a"), b"1")
        kv = await client.get(etcd_backend.key("a"))
        assert kv is not None
        assert kv.value == b"1"
        assert kv.mod_revision == result.revision
