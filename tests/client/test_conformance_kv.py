"""Conformance of the KV, txn, compaction, cluster and error API: the same tests on the
in-memory fake and on real etcd 3.4 and 3.5 (see ``etcd_backend``).

The real servers are shared by the session, so revisions are asserted relative to a
revision read first; the tests run one at a time, so nothing else writes in between.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import pytest
from conformance import current_revision

from trio_etcd_tree import (
    Client,
    CompactedError,
    Compare,
    Delete,
    DeleteResult,
    FutureRevisionError,
    Get,
    InvalidRequestError,
    KeyValue,
    Put,
    PutResult,
    RangeResult,
    TooLargeError,
    Txn,
    TxnResult,
)
from trio_etcd_tree.testing.pytest_plugin import EtcdBackend

MiB = 1024 * 1024

SortOrder: TypeAlias = Literal["NONE", "ASCEND", "DESCEND"]
SortTarget: TypeAlias = Literal["KEY", "VERSION", "CREATE", "MOD", "VALUE"]


# --- put / get / range ----------------------------------------------------------------------


async def test_put_prev_kv_revisions_and_versions(etcd_backend: EtcdBackend) -> None:
    k = etcd_backend.key("k")
    async with etcd_backend.client() as client:
        r = await current_revision(client)

        first = await client.put(k, b"1", prev_kv=True)
        assert first.revision == r + 1
        assert first.prev_kv is None  # a new key has no previous value
        assert await client.get(k) == KeyValue(k, b"1", r + 1, r + 1, 1, 0)

        second = await client.put(k, b"2", prev_kv=True)
        assert second.revision == r + 2
        assert second.prev_kv == KeyValue(k, b"1", r + 1, r + 1, 1, 0)
        assert await client.get(k) == KeyValue(k, b"2", r + 1, r + 2, 2, 0)

        third = await client.put(k, "3")  # str values are UTF-8
        assert third.revision == r + 3
        assert third.prev_kv is None  # not asked for
        assert await client.get(k) == KeyValue(k, b"3", r + 1, r + 3, 3, 0)

        deleted = await client.delete(k)
        assert (deleted.revision, deleted.deleted) == (r + 4, 1)
        assert await client.get(k) is None

        # a new incarnation: created anew, version counting starts again
        again = await client.put(k, b"4", prev_kv=True)
        assert again.revision == r + 5
        assert again.prev_kv is None
        assert await client.get(k) == KeyValue(k, b"4", r + 5, r + 5, 1, 0)
        assert await current_revision(client) == r + 5


async def test_empty_value(etcd_backend: EtcdBackend) -> None:
    k = etcd_backend.key("empty")
    async with etcd_backend.client() as client:
        put = await client.put(k, b"")
        assert await client.get(k) == KeyValue(k, b"", put.revision, put.revision, 1, 0)
        again = await client.put(k, b"x", prev_kv=True)
        assert again.prev_kv == KeyValue(k, b"", put.revision, put.revision, 1, 0)
        result = await client.range(k)
        assert result.count == 1
        assert result.kvs == [KeyValue(k, b"x", put.revision, put.revision + 1, 2, 0)]


async def test_binary_and_odd_keys(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    binary_value = bytes(range(256)) * 3
    keys_values = {
        p + b"a//b": b"empty segment",
        p + b"dir/": b"trailing slash",
        p + b"/lead": b"leading slash",
        p + b"\xff\xfe": binary_value,
        p + b"nul\x00byte": b"\x00\xff\x00",
    }
    async with etcd_backend.client() as client:
        for key, value in keys_values.items():
            await client.put(key, value)
        for key, value in keys_values.items():
            kv = await client.get(key)
            assert kv is not None
            assert (kv.key, kv.value) == (key, value)

        everything = await client.range(p, prefix=True)
        assert [kv.key for kv in everything.kvs] == sorted(keys_values)  # byte order
        assert everything.count == len(keys_values)

        # prefixes that end in a separator or in 0xff bytes
        assert [kv.key for kv in (await client.range(p + b"a/", prefix=True)).kvs] == [p + b"a//b"]
        assert [kv.key for kv in (await client.range(p + b"\xff", prefix=True)).kvs] == [
            p + b"\xff\xfe"
        ]
        assert [kv.key for kv in (await client.range(p + b"dir/", prefix=True)).kvs] == [
            p + b"dir/"
        ]
        assert await client.get(p + b"dir") is None  # no trailing slash: another key
        assert await client.get(p + b"nul") is None


async def test_one_mib_value_round_trip(etcd_backend: EtcdBackend) -> None:
    k = etcd_backend.key("big")
    value = bytes(range(256)) * (MiB // 256)
    async with etcd_backend.client() as client:
        put = await client.put(k, value)
        kv = await client.get(k)
        assert kv == KeyValue(k, value, put.revision, put.revision, 1, 0)


async def _sort_fixture(client: Client, p: bytes) -> int:
    """Three keys whose key, version, create, mod and value orders all differ.

    Returns the revision before them. Ascending orders (by the key's last letter):
    KEY a b c, VERSION a c b, CREATE c a b, MOD a c b, VALUE b c a.
    """
    r = await current_revision(client)
    await client.put(p + b"c", b"q")  # c created r+1
    await client.put(p + b"a", b"t")  # a created r+2
    await client.put(p + b"b", b"p")  # b created r+3
    await client.put(p + b"c", b"s")  # c mod r+4, version 2
    await client.put(p + b"b", b"n")  # b version 2
    await client.put(p + b"b", b"o")  # b mod r+6, version 3
    return r


def _names(result: RangeResult, p: bytes) -> str:
    return "".join(kv.key.removeprefix(p).decode() for kv in result.kvs)


async def test_range_limit_count_keys_only_count_only(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        r = await _sort_fixture(client, p)
        a = KeyValue(p + b"a", b"t", r + 2, r + 2, 1, 0)
        b = KeyValue(p + b"b", b"o", r + 3, r + 6, 3, 0)
        c = KeyValue(p + b"c", b"s", r + 1, r + 4, 2, 0)

        full = await client.range(p, prefix=True)
        assert list(full.pairs()) == [(a.key, a.value), (b.key, b.value), (c.key, c.value)]
        assert (full.kvs, full.more, full.count, full.revision) == ([a, b, c], False, 3, r + 6)
        assert list(full.pairs()) == [(a.key, a.value), (b.key, b.value), (c.key, c.value)]

        limited = await client.range(p, prefix=True, limit=2)
        assert (limited.kvs, limited.more, limited.count) == ([a, b], True, 3)
        exact = await client.range(p, prefix=True, limit=3)
        assert (exact.kvs, exact.more, exact.count) == ([a, b, c], False, 3)
        over = await client.range(p, prefix=True, limit=10)
        assert (over.kvs, over.more, over.count) == ([a, b, c], False, 3)

        between = await client.range(p + b"a", p + b"c")  # [a, c)
        assert (between.kvs, between.count) == ([a, b], 2)
        from_b = await client.range(p + b"b", b"\0")  # every key >= b (then other tests' keys)
        assert from_b.kvs[:2] == [b, c]

        keys_only = await client.range(p, prefix=True, keys_only=True)
        assert keys_only.kvs == [kv._replace(value=b"") for kv in (a, b, c)]
        assert keys_only.count == 3

        count_only = await client.range(p, prefix=True, count_only=True)
        assert (count_only.kvs, count_only.count, count_only.more) == ([], 3, False)
        count_limited = await client.range(p, prefix=True, count_only=True, limit=1)
        assert (count_limited.kvs, count_limited.count, count_limited.more) == ([], 3, False)

        nothing = await client.range(p + b"zzz", prefix=True)
        assert (nothing.kvs, nothing.count, nothing.more, nothing.revision) == ([], 0, False, r + 6)
        assert await client.get(p + b"zzz") is None

        # min_mod_revision filters the keys; the count is still the whole range's
        changed = await client.range(p, prefix=True, keys_only=True, min_mod_revision=r + 4)
        assert (_names(changed, p), changed.count) == ("bc", 3)
        at = await client.range(p, prefix=True, revision=r + 5, min_mod_revision=r + 5)
        assert (_names(at, p), at.count) == ("b", 3)  # b was changed at r + 5, then again
        none = await client.range(p, prefix=True, keys_only=True, min_mod_revision=r + 7)
        assert (none.kvs, none.count) == ([], 3)


@pytest.mark.parametrize(
    ("target", "ascending"),
    [("KEY", "abc"), ("VERSION", "acb"), ("CREATE", "cab"), ("MOD", "acb"), ("VALUE", "bca")],
)
async def test_range_sort(etcd_backend: EtcdBackend, target: SortTarget, ascending: str) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        await _sort_fixture(client, p)

        async def order(sort_order: SortOrder | None) -> str:
            result = await client.range(p, prefix=True, sort_order=sort_order, sort_target=target)
            return _names(result, p)

        assert await order("ASCEND") == ascending
        assert await order("DESCEND") == ascending[::-1]
        # no order (or NONE) but a target other than KEY: etcd sorts ascending
        assert await order(None) == ascending
        assert await order("NONE") == ascending
        # a sorted range with a limit sorts everything, then cuts
        top = await client.range(p, prefix=True, sort_order="DESCEND", sort_target=target, limit=2)
        assert (_names(top, p), top.more, top.count) == (ascending[::-1][:2], True, 3)


async def test_range_at_past_revision(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        r1 = (await client.put(p + b"a", b"1")).revision
        r2 = (await client.put(p + b"a", b"2")).revision
        r3 = (await client.put(p + b"b", b"3")).revision
        r4 = (await client.delete(p + b"a")).revision
        assert (r2, r3, r4) == (r1 + 1, r1 + 2, r1 + 3)

        at1 = await client.range(p, prefix=True, revision=r1)
        assert at1.kvs == [KeyValue(p + b"a", b"1", r1, r1, 1, 0)]
        assert at1.revision == r4  # the header still says the current revision
        at3 = await client.range(p, prefix=True, revision=r3)
        assert at3.kvs == [
            KeyValue(p + b"a", b"2", r1, r2, 2, 0),
            KeyValue(p + b"b", b"3", r3, r3, 1, 0),
        ]
        assert at3.count == 2
        now = await client.range(p, prefix=True)
        assert now.kvs == [KeyValue(p + b"b", b"3", r3, r3, 1, 0)]
        assert await client.get(p + b"a", revision=r2) == KeyValue(p + b"a", b"2", r1, r2, 2, 0)
        assert await client.get(p + b"a", revision=r4) is None
        assert await client.get(p + b"b", revision=r1) is None


@pytest.mark.parametrize("page_size", [1, 2, 1000])
async def test_range_pages_one_snapshot(etcd_backend: EtcdBackend, page_size: int) -> None:
    p = etcd_backend.prefix
    names = [b"k0", b"k1", b"k2", b"k3", b"k4"]
    async with etcd_backend.client() as client:
        for name in names:
            await client.put(p + name, name + b"-v1")
        expected = (await client.range(p, prefix=True)).kvs
        r = await current_revision(client)

        pages = []
        async for page in client.range_pages(p, prefix=True, page_size=page_size):
            pages.append(page)
            if len(pages) == 1:
                # writes between pages: a new key in the middle, a change, a delete
                await client.put(p + b"k2a", b"new")
                await client.put(p + b"k4", b"k4-v2")
                await client.delete(p + b"k3")
        assert [page.revision for page in pages] == [r] * len(pages)
        assert len(pages) == -(-len(names) // page_size)
        assert all(0 < len(page.kvs) <= page_size for page in pages)
        assert [kv for page in pages for kv in page.kvs] == expected

        # keys_only, and a given revision
        pages = [
            page
            async for page in client.range_pages(
                p, prefix=True, page_size=page_size, revision=r, keys_only=True
            )
        ]
        assert [kv for page in pages for kv in page.kvs] == [
            kv._replace(value=b"") for kv in expected
        ]
        # the current state, read the same way
        now = [kv async for page in client.range_pages(p, prefix=True) for kv in page.kvs]
        assert [kv.key.removeprefix(p) for kv in now] == [b"k0", b"k1", b"k2", b"k2a", b"k4"]

        # a single key, and a key that is not there
        single = [page async for page in client.range_pages(p + b"k1", page_size=page_size)]
        assert [kv.key for page in single for kv in page.kvs] == [p + b"k1"]
        missing = [page async for page in client.range_pages(p + b"nope", page_size=page_size)]
        assert [kv for page in missing for kv in page.kvs] == []


async def test_range_pages_shrink_for_large_values(
    etcd_backend: EtcdBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trio_etcd_tree._client.client.PAGE_BYTES", 2500)
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        for i in range(6):
            await client.put(p + f"a{i}".encode(), b"x" * 1000)
        for i in range(20):
            await client.put(p + f"b{i:02d}".encode(), b"y")
        sizes = [len(page.kvs) async for page in client.range_pages(p, prefix=True, page_size=4)]
        # 4 keys of 1000 bytes: 2 fit next time; small values again: back up to page_size
        assert sizes == [4, 2, 2, 4, 4, 4, 4, 2]


async def test_range_pages_first_page_by_the_size_of_the_store(
    etcd_backend: EtcdBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small database (every test's) is read in whole pages from the first; a large one
    starts with ``FIRST_PAGE`` keys, to learn how large its values are."""
    monkeypatch.setattr("trio_etcd_tree._client.client.FIRST_PAGE", 2)
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        for i in range(12):
            await client.put(p + b"k%02d" % i, b"v")
        sizes = [len(page.kvs) async for page in client.range_pages(p, prefix=True, page_size=5)]
        assert sizes == [5, 5, 2]
        monkeypatch.setattr("trio_etcd_tree._client.client.SMALL_STORE", 0)
        sizes = [len(page.kvs) async for page in client.range_pages(p, prefix=True, page_size=5)]
        assert sizes == [2, 5, 5]


async def test_compacted_and_future_revisions(etcd_backend: EtcdBackend) -> None:
    k = etcd_backend.key("k")
    async with etcd_backend.client() as client:
        r1 = (await client.put(k, b"1")).revision
        r2 = (await client.put(k, b"2")).revision
        r3 = (await client.put(k, b"3")).revision
        await client.compact(r2)

        with pytest.raises(CompactedError) as info:
            await client.range(k, revision=r1)
        error = info.value
        assert error.code == 11
        assert error.http_status == _http(400, etcd_backend)
        assert error.server_message == "etcdserver: mvcc: required revision has been compacted"
        assert error.request == f"range {k.decode()}"
        assert k.decode() in str(error)
        assert error.endpoint == client.endpoint
        assert error.compact_revision is None  # ranges do not say where

        # the compaction revision itself is still readable
        assert await client.get(k, revision=r2) == KeyValue(k, b"2", r1, r2, 2, 0)
        assert await client.get(k, revision=r3) == KeyValue(k, b"3", r1, r3, 3, 0)

        # compacting again at or below the compaction point is refused
        with pytest.raises(CompactedError):
            await client.compact(r2)

        with pytest.raises(FutureRevisionError) as future:
            await client.range(k, revision=r3 + 10)
        assert future.value.code == 11
        assert future.value.server_message == (
            "etcdserver: mvcc: required revision is a future revision"
        )
        assert isinstance(future.value, InvalidRequestError)
        with pytest.raises(FutureRevisionError):
            await client.compact(r3 + 10)

        # physical compaction waits until done, and leaves the current state alone
        await client.compact(r3, physical=True)
        assert await client.get(k) == KeyValue(k, b"3", r1, r3, 3, 0)


# --- delete ---------------------------------------------------------------------------------


async def test_delete(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        r = await current_revision(client)
        for name in (b"a", b"b/1", b"b/2", b"b/3", b"c"):
            await client.put(p + name, name)
        assert await current_revision(client) == r + 5

        single = await client.delete(p + b"a")
        assert single == DeleteResult(single.header, 1, [])
        assert single.revision == r + 6

        prefixed = await client.delete(p + b"b/", prefix=True, prev_kv=True)
        assert prefixed.revision == r + 7  # one revision for all of them
        assert prefixed.deleted == 3
        assert prefixed.prev_kvs == [
            KeyValue(p + b"b/1", b"b/1", r + 2, r + 2, 1, 0),
            KeyValue(p + b"b/2", b"b/2", r + 3, r + 3, 1, 0),
            KeyValue(p + b"b/3", b"b/3", r + 4, r + 4, 1, 0),
        ]
        assert (await client.range(p, prefix=True)).kvs == [
            KeyValue(p + b"c", b"c", r + 5, r + 5, 1, 0)
        ]

        # deleting nothing changes nothing, not even the revision
        for nothing in (
            await client.delete(p + b"a", prev_kv=True),
            await client.delete(p + b"b/", prefix=True, prev_kv=True),
            await client.delete(p + b"x", p + b"z"),
        ):
            assert (nothing.deleted, nothing.prev_kvs, nothing.revision) == (0, [], r + 7)
        assert await current_revision(client) == r + 7

        ranged = await client.delete(p + b"a", p + b"d", prev_kv=True)  # [a, d)
        assert (ranged.deleted, ranged.revision) == (1, r + 8)
        assert [kv.key for kv in ranged.prev_kvs] == [p + b"c"]
        assert (await client.range(p, prefix=True)).count == 0


# --- txn ------------------------------------------------------------------------------------


async def test_txn_compares(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    k, leased, missing = p + b"k", p + b"leased", p + b"missing"
    async with etcd_backend.client() as client:
        create = (await client.put(k, b"m")).revision
        mod = (await client.put(k, b"m")).revision  # version 2
        grant = await client.lease_grant(30)
        try:
            await client.put(leased, b"x", lease=grant.id)
            r = await current_revision(client)

            cases: list[tuple[Compare, bool]] = [
                (Compare.value(k) == b"m", True),
                (Compare.value(k) == "m", True),
                (Compare.value(k) == b"n", False),
                (Compare.value(k) != b"n", True),
                (Compare.value(k) != b"m", False),
                (Compare.value(k) < b"n", True),
                (Compare.value(k) < b"m", False),
                (Compare.value(k) > b"l", True),
                (Compare.value(k) > b"mm", False),
                (Compare.value(k) > b"", True),
                (Compare.version(k) == 2, True),
                (Compare.version(k) != 2, False),
                (Compare.version(k) < 3, True),
                (Compare.version(k) < 2, False),
                (Compare.version(k) > 1, True),
                (Compare.version(k) > 2, False),
                (Compare.create_revision(k) == create, True),
                (Compare.create_revision(k) == mod, False),
                (Compare.create_revision(k) < mod, True),
                (Compare.create_revision(k) > create - 1, True),
                (Compare.create_revision(k) != create, False),
                (Compare.mod_revision(k) == mod, True),
                (Compare.mod_revision(k) > create, True),
                (Compare.mod_revision(k) < mod, False),
                (Compare.mod_revision(k) != create, True),
                (Compare.lease(k) == 0, True),
                (Compare.lease(leased) == grant.id, True),
                (Compare.lease(leased) != 0, True),
                (Compare.lease(leased) > 0, True),
                (Compare.lease(leased) < grant.id, False),
                (Compare.lease(leased) == 0, False),
                # a missing key compares as a zero key-value ...
                (Compare.version(missing) == 0, True),
                (Compare.create_revision(missing) == 0, True),
                (Compare.mod_revision(missing) < 1, True),
                (Compare.lease(missing) == 0, True),
                (Compare.version(missing) > 0, False),
                # ... except for its value: a value compare on a missing key always fails
                (Compare.value(missing) == b"", False),
                (Compare.value(missing) != b"x", False),
                (Compare.value(missing) < b"x", False),
            ]
            for compare, holds in cases:
                result = await client.txn(compare=[compare])
                assert (result.succeeded, result.responses) == (holds, []), compare
                assert result.revision == r

            # several compares: all must hold
            both = [Compare.value(k) == b"m", Compare.version(k) == 2]
            assert (await client.txn(compare=both)).succeeded
            one_fails = [Compare.value(k) == b"m", Compare.version(k) == 3]
            assert not (await client.txn(compare=one_fails)).succeeded
            # no compares at all: success
            assert (await client.txn()).succeeded
            assert await current_revision(client) == r  # none of that wrote anything
        finally:
            await client.lease_revoke(grant.id)


async def test_txn_range_compare(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        for name in (b"d/a", b"d/b", b"d/c"):
            await client.put(p + name, b"v")
        r = await current_revision(client)

        guard = Compare.mod_revision(p + b"d/", prefix=True) < r + 1
        assert (await client.txn(compare=[guard])).succeeded
        assert (await client.txn(compare=[Compare.version(p + b"d/", prefix=True) == 1])).succeeded
        assert (await client.txn(compare=[Compare.value(p + b"d/", prefix=True) == b"v"])).succeeded
        ranged = Compare.create_revision(p + b"d/a", range_end=p + b"d/c") < r  # a and b only
        assert (await client.txn(compare=[ranged])).succeeded

        await client.put(p + b"d/b", b"w")
        assert not (await client.txn(compare=[guard])).succeeded
        assert not (
            await client.txn(compare=[Compare.value(p + b"d/", prefix=True) == b"v"])
        ).succeeded
        assert not (
            await client.txn(compare=[Compare.version(p + b"d/", prefix=True) == 1])
        ).succeeded

        # an empty range compares as one zero key-value (and a value compare fails)
        empty = p + b"nothing/"
        assert (await client.txn(compare=[Compare.mod_revision(empty, prefix=True) < 1])).succeeded
        assert (await client.txn(compare=[Compare.version(empty, prefix=True) == 0])).succeeded
        assert (
            await client.txn(compare=[Compare.create_revision(empty, prefix=True) == 0])
        ).succeeded
        assert not (await client.txn(compare=[Compare.version(empty, prefix=True) > 0])).succeeded
        assert not (await client.txn(compare=[Compare.value(empty, prefix=True) == b""])).succeeded
        assert not (await client.txn(compare=[Compare.value(empty, prefix=True) != b"x"])).succeeded


async def test_txn_branches(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    k, other = p + b"k", p + b"other"
    async with etcd_backend.client() as client:
        created = (await client.put(k, b"1")).revision
        await client.put(other, b"o")
        r = created + 1

        failed = await client.txn(
            compare=[Compare.value(k) == b"nope"],
            success=[Put(k, b"2")],
            failure=[
                Get(k),
                Get(p, prefix=True, keys_only=True),
                Get(p, prefix=True, count_only=True),
            ],
        )
        assert not failed.succeeded
        assert failed.revision == r  # a read-only branch does not write
        current, keys, count = failed.responses
        assert isinstance(current, RangeResult)
        assert current.kvs == [KeyValue(k, b"1", created, created, 1, 0)]
        assert current.revision == r
        assert isinstance(keys, RangeResult)
        assert [(kv.key, kv.value) for kv in keys.kvs] == [(k, b""), (other, b"")]
        assert isinstance(count, RangeResult)
        assert (count.kvs, count.count) == ([], 2)

        ok = await client.txn(
            compare=[Compare.value(k) == b"1"],
            success=[Put(k, b"2", prev_kv=True), Get(k), Delete(other, prev_kv=True), Get(other)],
            failure=[Get(k)],
        )
        assert ok.succeeded
        assert ok.revision == r + 1
        put, after_put, deleted, after_delete = ok.responses
        assert isinstance(put, PutResult)
        assert put.prev_kv == KeyValue(k, b"1", created, created, 1, 0)
        assert put.revision == r + 1
        # reads in a txn see its earlier writes
        assert isinstance(after_put, RangeResult)
        assert after_put.kvs == [KeyValue(k, b"2", created, r + 1, 2, 0)]
        assert isinstance(deleted, DeleteResult)
        assert (deleted.deleted, deleted.revision) == (1, r + 1)
        assert deleted.prev_kvs == [KeyValue(other, b"o", r, r, 1, 0)]
        assert isinstance(after_delete, RangeResult)
        assert (after_delete.kvs, after_delete.count) == ([], 0)

        # the create-if-absent idiom
        absent = [Compare.create_revision(p + b"new") == 0]
        first = await client.txn(absent, [Put(p + b"new", b"a")], [Get(p + b"new")])
        assert first.succeeded
        second = await client.txn(absent, [Put(p + b"new", b"b")], [Get(p + b"new")])
        assert not second.succeeded
        (got,) = second.responses
        assert isinstance(got, RangeResult)
        assert [kv.value for kv in got.kvs] == [b"a"]


async def test_txn_one_revision_for_all_writes(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        await client.put(p + b"gone", b"x")
        r = await current_revision(client)
        result = await client.txn(
            success=[
                Put(p + b"a", b"1"),
                Put(p + b"b", b"2"),
                Delete(p + b"gone"),
                Put(p + b"c", b"3"),
            ]
        )
        assert result.succeeded
        assert result.revision == r + 1
        assert [resp.revision for resp in result.responses] == [r + 1] * 4
        kvs = (await client.range(p, prefix=True)).kvs
        assert kvs == [
            KeyValue(p + b"a", b"1", r + 1, r + 1, 1, 0),
            KeyValue(p + b"b", b"2", r + 1, r + 1, 1, 0),
            KeyValue(p + b"c", b"3", r + 1, r + 1, 1, 0),
        ]
        # a txn whose writes change nothing (deleting a missing key) keeps the revision
        noop = await client.txn(success=[Delete(p + b"gone"), Get(p + b"a")])
        assert noop.revision == r + 1
        assert await current_revision(client) == r + 1


async def test_nested_txn(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        created = (await client.put(p + b"a", b"1")).revision
        result = await client.txn(
            compare=[Compare.version(p + b"a") == 1],
            success=[
                Put(p + b"outer", b"o"),
                Txn(
                    compare=[Compare.value(p + b"a") == b"2"],
                    success=[Put(p + b"inner-yes", b"y")],
                    failure=[Put(p + b"inner-no", b"n"), Get(p + b"a")],
                ),
                Txn(success=[Get(p + b"outer")]),
            ],
        )
        assert result.succeeded
        assert result.revision == created + 1
        outer, inner, inner2 = result.responses
        assert isinstance(outer, PutResult)
        assert isinstance(inner, TxnResult)
        assert not inner.succeeded
        put, got = inner.responses
        assert isinstance(put, PutResult)
        assert isinstance(got, RangeResult)
        assert got.kvs == [KeyValue(p + b"a", b"1", created, created, 1, 0)]
        assert isinstance(inner2, TxnResult)
        assert inner2.succeeded
        (outer_read,) = inner2.responses
        assert isinstance(outer_read, RangeResult)
        assert [kv.value for kv in outer_read.kvs] == [b"o"]
        assert [kv.key for kv in (await client.range(p, prefix=True)).kvs] == [
            p + b"a",
            p + b"inner-no",
            p + b"outer",
        ]
        assert {kv.mod_revision for kv in (await client.range(p + b"i", p + b"p")).kvs} == {
            created + 1
        }


async def test_txn_limits_and_invalid(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        r = await current_revision(client)

        # 128 operations are allowed, 129 are not
        ok = await client.txn(success=[Put(p + str(i).encode(), b"v") for i in range(128)])
        assert ok.revision == r + 1
        with pytest.raises(TooLargeError) as too_many:
            await client.txn(success=[Get(p + str(i).encode()) for i in range(129)])
        assert too_many.value.code == 3
        assert too_many.value.server_message == "etcdserver: too many operations in txn request"
        assert too_many.value.request == "txn (0 compares, 129/0 operations)"
        assert "129" in str(too_many.value)
        with pytest.raises(TooLargeError):
            await client.txn(failure=[Put(p + str(i).encode(), b"v") for i in range(129)])
        with pytest.raises(TooLargeError):
            await client.txn(compare=[Compare.version(p + b"0") > 0] * 129)

        duplicates: list[list[Put | Delete | Get | Txn]] = [
            [Put(p + b"a", b"1"), Put(p + b"a", b"2")],
            [Put(p + b"a", b"1"), Delete(p + b"a")],
            [Delete(p + b"a", prefix=True), Put(p + b"ab", b"2")],
            [Put(p + b"a", b"1"), Txn(success=[Put(p + b"a", b"2")])],
        ]
        for ops in duplicates:
            with pytest.raises(InvalidRequestError) as dup:
                await client.txn(success=ops)
            assert type(dup.value) is InvalidRequestError
            assert dup.value.code == 3
            assert dup.value.server_message == "etcdserver: duplicate key given in txn request"
        # the same key in the two branches, or read and written, is fine
        fine = await client.txn(
            success=[Get(p + b"a"), Put(p + b"a", b"1")], failure=[Put(p + b"a", b"2")]
        )
        assert fine.succeeded
        assert fine.revision == r + 2
        # two deletes of the same key are fine too
        assert (await client.txn(success=[Delete(p + b"a"), Delete(p + b"a")])).succeeded
        assert await current_revision(client) == r + 3


@pytest.mark.parametrize(
    ("name", "ops", "duplicate"),
    [
        ("two nested puts", [Txn(success=[Put("a", "1")]), Txn(success=[Put("a", "2")])], True),
        ("nested then/else", [Txn(success=[Put("a", "1")], failure=[Put("a", "2")])], False),
        ("sibling then, else", [Txn(success=[Put("a", "1")]), Txn(failure=[Put("a", "2")])], True),
        ("nested delete, put", [Txn(success=[Delete("a")]), Txn(success=[Put("a", "2")])], True),
        (
            "outer delete, nested put",
            [Delete("a", prefix=True), Txn(success=[Put("ab", "")])],
            True,
        ),
        ("nested delete, outer put", [Txn(success=[Delete("a")]), Put("a", "1")], True),
        ("nested put, outer put", [Txn(failure=[Put("a", "1")]), Put("a", "1")], True),
        (
            "put, then nested delete",
            [Txn(success=[Put("a", "1")]), Txn(success=[Delete("a")])],
            False,
        ),
        ("deletes overlap", [Delete("a", prefix=True), Txn(success=[Delete("ab")])], False),
        ("delete range, put outside", [Delete("a", range_end="b"), Put("b", "1")], False),
    ],
)
async def test_txn_duplicate_key_rules(
    etcd_backend: EtcdBackend, name: str, ops: list[Put | Delete | Get | Txn], duplicate: bool
) -> None:
    """etcd's checkIntervals, including its asymmetry: a put in one nested txn followed by a
    delete of the key in a later one passes, the other order does not."""
    p = etcd_backend.prefix

    def under_prefix(op: Put | Delete | Get | Txn) -> Put | Delete | Get | Txn:
        if isinstance(op, Put):
            return Put(p + op.key, op.value)
        if isinstance(op, Delete):
            return Delete(p + op.key, range_end=None if op.range_end is None else p + op.range_end)
        if isinstance(op, Txn):
            return Txn(
                success=[under_prefix(o) for o in op.success],
                failure=[under_prefix(o) for o in op.failure],
            )
        raise AssertionError(op)

    async with etcd_backend.client() as client:
        request = [under_prefix(op) for op in ops]
        if duplicate:
            with pytest.raises(InvalidRequestError) as info:
                await client.txn(success=request)
            assert info.value.server_message == "etcdserver: duplicate key given in txn request"
            with pytest.raises(InvalidRequestError):  # checked in both branches
                await client.txn(failure=request)
        else:
            assert (await client.txn(success=request)).succeeded


async def test_txn_reads_inside(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        r1 = (await client.put(p + b"a", b"1")).revision
        await client.put(p + b"b", b"2")
        await client.put(p + b"c", b"3")
        result = await client.txn(
            success=[
                Get(p + b"a", revision=r1 + 1),
                Get(p, prefix=True, limit=2),
                Get(p, prefix=True, count_only=True),
                Put(p + b"a", b"new"),
                Get(p + b"a", revision=r1),
            ]
        )
        old_b, limited, counted, _put, old_a = result.responses
        assert isinstance(old_b, RangeResult)
        assert old_b.kvs == [KeyValue(p + b"a", b"1", r1, r1, 1, 0)]
        assert isinstance(limited, RangeResult)
        assert ([kv.key for kv in limited.kvs], limited.more, limited.count) == (
            [p + b"a", p + b"b"],
            True,
            3,
        )
        assert isinstance(counted, RangeResult)
        assert (counted.kvs, counted.count) == ([], 3)
        assert isinstance(old_a, RangeResult)
        assert old_a.kvs == [KeyValue(p + b"a", b"1", r1, r1, 1, 0)]
        assert result.revision == r1 + 3


async def test_invalid_requests(etcd_backend: EtcdBackend) -> None:
    async with etcd_backend.client() as client:
        r = await current_revision(client)
        for call in (
            lambda: client.put(b"", b"v"),
            lambda: client.range(b""),
            lambda: client.delete(b""),
            lambda: client.txn(success=[Put(b"", b"v")]),
            lambda: client.txn(success=[Get(b"")]),
            lambda: client.txn(compare=[Compare.version(b"") == 0]),
        ):
            with pytest.raises(InvalidRequestError) as info:
                await call()
            assert type(info.value) is InvalidRequestError
            assert info.value.code == 3
            assert info.value.http_status == _http(400, etcd_backend)
            assert info.value.server_message == "etcdserver: key is not provided"
        assert await current_revision(client) == r


async def test_request_too_large(etcd_backend: EtcdBackend) -> None:
    k = etcd_backend.key("huge")
    async with etcd_backend.client() as client:
        r = await current_revision(client)
        with pytest.raises(TooLargeError) as grpc_limit:
            await client.put(k, b"x" * (2 * MiB))
        error = grpc_limit.value
        assert error.code == 8
        assert error.http_status == _http(429, etcd_backend)
        assert error.server_message is not None
        assert error.server_message.startswith("grpc: received message larger than max (")
        assert error.request == f"put {k.decode()}"
        assert k.decode() in str(error)

        # over --max-request-bytes (1.5 MiB) but under the gRPC limit
        with pytest.raises(TooLargeError) as server_limit:
            await client.put(k, b"x" * (MiB + MiB // 2 + 1024))
        assert server_limit.value.code == 3
        assert server_limit.value.server_message == "etcdserver: request is too large"
        assert await client.get(k) is None
        assert await current_revision(client) == r


# --- cluster --------------------------------------------------------------------------------


async def test_status_and_members(etcd_backend: EtcdBackend) -> None:
    async with etcd_backend.client() as client:
        status = await client.status()
        assert status.version.startswith("3.")
        if not etcd_backend.is_fake:
            assert status.version.startswith(etcd_backend.kind + ".")
        assert status.leader != 0
        assert status.leader == status.header.member_id  # a single node leads itself
        assert status.header.cluster_id != 0
        assert status.header.revision == await current_revision(client)
        assert status.raft_index > 0
        assert status.raft_term >= 1
        assert status.db_size >= status.db_size_in_use > 0
        assert (await client.status(client.endpoint)).leader == status.leader

        members = await client.members()
        assert len(members) == 1
        (member,) = members
        assert member.id == status.leader
        assert member.name
        assert member.client_urls == etcd_backend.endpoints
        assert member.peer_urls
        assert member.is_learner is False


def _http(status: int, backend: EtcdBackend) -> int | None:
    """The HTTP status an error carries: the gateway's, none over gRPC."""
    return status if backend.wire == "gateway" else None
