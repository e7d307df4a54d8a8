"""Unit tests of the in-memory etcd (trio_etcd_tree.testing._fake), driven with raw gateway JSON."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from trio_etcd_tree.testing._fake import FakeCall, FakeEtcd, open_fake_etcd
from trio_etcd_tree.testing._fake.gateway import error_response
from trio_etcd_tree.testing._fake.store import FakeError, MvccStore, prefix_end

Json = dict[str, Any]


def b(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


@pytest.fixture
async def fake() -> AsyncIterator[FakeEtcd]:
    async with open_fake_etcd() as f:
        yield f


@pytest.fixture
async def client(fake: FakeEtcd) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=fake, base_url=fake.endpoints[0]) as c:
        yield c


def hdr(fake: FakeEtcd, rev: int | None = None, member: int = 0) -> Json:
    return fake._cluster.header(member, rev)


async def call(client: httpx.AsyncClient, path: str, body: Any = None, **kw: Any) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
    resp = await client.post(path, content=content, **kw)
    return resp.json()


async def error(client: httpx.AsyncClient, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await client.post(path, content=content, **kw)
    return resp.status_code, resp.json()


def err(code: int, message: str) -> Json:
    return {"error": message, "code": code, "message": message}


class Watch:
    """An open watch stream, read line by line."""

    def __init__(self, resp: httpx.Response) -> None:
        self.resp = resp
        self.lines = resp.aiter_lines()

    async def next(self) -> Json:
        line = await self.lines.__anext__()
        result: Json = json.loads(line)
        return result

    async def silent(self) -> bool:
        """Whether nothing is waiting to be read (cancelling a read would end the iterator)."""
        await trio.testing.wait_all_tasks_blocked()
        stream: Any = self.resp.stream
        return bool(stream._stream.receive.statistics().current_buffer_used == 0)


async def open_watch(
    client: httpx.AsyncClient,
    *requests: Json,
    raw: bytes | None = None,
    url: str = "/v3/watch",
    **kw: Any,
) -> Watch:
    body = raw if raw is not None else b"\n".join(json.dumps(r).encode() for r in requests)
    req = client.build_request("POST", url, content=body, **kw)
    resp = await client.send(req, stream=True)
    return Watch(resp)


# ---- plain HTTP ------------------------------------------------------------------------------


async def test_version_health_and_routing(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    assert (await client.get("/version")).json() == {"etcdserver": "3.5.0", "etcdcluster": "3.5.0"}
    assert (await client.get("/health")).json() == {"health": "true", "reason": ""}
    resp = await client.post("/version")
    assert resp.status_code == 405
    resp = await client.get("/v3/kv/range")
    assert (resp.status_code, resp.text) == (405, "Method Not Allowed\n")
    resp = await client.post("/v3/nope")
    assert (resp.status_code, resp.text) == (404, "Not Found\n")
    assert resp.headers["content-type"].startswith("text/plain")
    resp = await client.post("/nope")
    assert (resp.status_code, resp.text) == (404, "404 page not found\n")
    with pytest.raises(httpx.ConnectError):
        await client.get("http://elsewhere:2379/version")
    assert fake.calls[0] == FakeCall(fake.endpoints[0], "/version", b"")
    await fake.aclose()


async def test_members_route_by_host() -> None:
    async with open_fake_etcd(members=3, cluster_id=77) as fake:
        assert fake.endpoints == [f"http://fake-{i}.etcd:2379" for i in range(3)]
        async with httpx.AsyncClient(transport=fake) as client:
            headers = [
                (await call(client, ep + "/v3/kv/range", {"key": b("a")}))["header"]
                for ep in fake.endpoints
            ]
            assert len({h["member_id"] for h in headers}) == 3
            assert {h["cluster_id"] for h in headers} == {"77"}
            members = await call(client, fake.endpoints[1] + "/v3/cluster/member/list")
            assert "revision" not in members["header"]
            assert members["members"][2] == {
                "ID": headers[2]["member_id"],
                "name": "fake-2",
                "peerURLs": ["http://fake-2.etcd:2380"],
                "clientURLs": ["http://fake-2.etcd:2379"],
            }
            fake.member_down(1)
            with pytest.raises(httpx.ConnectError):
                await client.post(fake.endpoints[1] + "/v3/kv/range", json={"key": b("a")})
            fake.member_up(1)
            await client.post(fake.endpoints[1] + "/v3/kv/range", json={"key": b("a")})


async def test_status(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    status = await call(client, "/v3/maintenance/status")
    assert status["header"] == hdr(fake)
    assert status["version"] == "3.5.0-fake"
    assert status["leader"] == hdr(fake)["member_id"]
    assert set(status) == {
        "header",
        "version",
        "dbSize",
        "leader",
        "raftIndex",
        "raftTerm",
        "raftAppliedIndex",
        "dbSizeInUse",
    }


# ---- kv --------------------------------------------------------------------------------------


async def test_put_range_delete_shapes(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    assert fake.revision == 1
    r = await call(client, "/v3/kv/put", {"key": b("/t/a"), "value": b("1")})
    assert r == {"header": hdr(fake, 2)}
    r = await call(client, "/v3/kv/put", {"key": b("/t/a"), "value": b("2"), "prev_kv": True})
    assert r == {
        "header": hdr(fake, 3),
        "prev_kv": {
            "key": b("/t/a"),
            "create_revision": "2",
            "mod_revision": "2",
            "version": "1",
            "value": b("1"),
        },
    }
    # exact bytes: key order and compact separators
    raw = await client.post("/v3/kv/range", json={"key": b("/t/a")})
    h = hdr(fake)
    assert raw.content == (
        b'{"header":{"cluster_id":"%s","member_id":"%s","revision":"3","raft_term":"2"},'
        b'"kvs":[{"key":"L3QvYQ==","create_revision":"2","mod_revision":"3","version":"2",'
        b'"value":"Mg=="}],"count":"1"}' % (h["cluster_id"].encode(), h["member_id"].encode())
    )
    assert raw.headers["content-type"] == "application/json"
    await call(client, "/v3/kv/put", {"key": b("/t/b"), "value": ""})
    await call(client, "/v3/kv/put", {"key": b("/t/c"), "value": b("3")})
    r = await call(client, "/v3/kv/range", {"key": b("/t/"), "rangeEnd": b("/t0"), "limit": 2})
    assert [kv["key"] for kv in r["kvs"]] == [b("/t/a"), b("/t/b")]
    assert "value" not in r["kvs"][1]
    assert (r["more"], r["count"]) == (True, "3")
    r = await call(client, "/v3/kv/range", {"key": b("/t/"), "range_end": b("/t0"), "limit": 3})
    assert "more" not in r
    r = await call(
        client, "/v3/kv/range", {"key": b("/t/"), "range_end": b("\0"), "keys_only": True}
    )
    assert all("value" not in kv for kv in r["kvs"])
    assert r["count"] == "3"
    r = await call(
        client, "/v3/kv/range", {"key": b("/t/"), "range_end": b("\0"), "count_only": 1 > 0}
    )
    assert r == {"header": hdr(fake), "count": "3"}
    r = await call(client, "/v3/kv/range", {"key": b("/nothing")})
    assert r == {"header": hdr(fake)}
    # a past revision: the kvs as they were, the header at the current revision
    r = await call(client, "/v3/kv/range", {"key": b("/t/a"), "revision": "2"})
    assert r["kvs"][0]["value"] == b("1")
    assert r["header"]["revision"] == "5"
    r = await call(client, "/v3/kv/range", {"key": b("/t/c"), "revision": 2})
    assert "kvs" not in r
    # delete
    r = await call(client, "/v3/kv/deleterange", {"key": b("/t/c"), "prev_kv": True})
    assert r["header"] == hdr(fake, 6)
    assert r["deleted"] == "1"
    assert r["prev_kvs"][0]["value"] == b("3")
    r = await call(client, "/v3/kv/deleterange", {"key": b("/t/c")})
    assert r == {"header": hdr(fake, 6)}
    r = await call(client, "/v3/kv/deleterange", {"key": b("/t/"), "range_end": b("/t0")})
    assert r == {"header": hdr(fake, 7), "deleted": "2"}
    await call(client, "/v3/kv/put", {"key": b("/t/a"), "value": b("again")})
    assert fake.get("/t/a") == {
        "key": b"/t/a",
        "value": b"again",
        "create_revision": 8,
        "mod_revision": 8,
        "version": 1,
        "lease": 0,
    }
    assert fake.get("/t/zz") is None


async def test_range_sort_and_filters(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    fake.put("k3", "a")
    fake.put("k1", "c")
    fake.put("k2", "b")
    fake.put("k1", "d")

    async def keys(**kw: Any) -> list[str]:
        r = await call(client, "/v3/kv/range", {"key": b("k"), "range_end": b("l"), **kw})
        return [base64.b64decode(kv["key"]).decode() for kv in r.get("kvs", [])]

    assert await keys() == ["k1", "k2", "k3"]
    assert await keys(sort_order="DESCEND") == ["k3", "k2", "k1"]
    assert await keys(sort_order=2, sort_target="MOD") == ["k1", "k2", "k3"]
    assert await keys(sort_target="VALUE") == ["k3", "k2", "k1"]
    assert await keys(sort_target="CREATE", sort_order="ASCEND") == ["k3", "k1", "k2"]
    assert (await keys(sortTarget="VERSION", sortOrder="DESCEND"))[0] == "k1"
    assert await keys(sort_order="ASCEND", limit=1) == ["k1"]
    assert await keys(min_mod_revision=4) == ["k2", "k1"][::-1]
    assert await keys(max_mod_revision=4) == ["k2", "k3"]
    assert await keys(min_create_revision=3) == ["k1", "k2"]
    assert await keys(max_create_revision=3) == ["k1", "k3"]
    r = await call(
        client, "/v3/kv/range", {"key": b("k"), "range_end": b("l"), "max_mod_revision": 2}
    )
    assert r["count"] == "3"
    assert len(r["kvs"]) == 1


async def test_kv_errors(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    fake.put("a", "1")
    fake.put("a", "2")
    fake.compact(2)
    assert await error(client, "/v3/kv/range", {"key": b("a"), "revision": 1}) == (
        400,
        err(11, "etcdserver: mvcc: required revision has been compacted"),
    )
    assert await error(client, "/v3/kv/range", {"key": b("a"), "revision": 9}) == (
        400,
        err(11, "etcdserver: mvcc: required revision is a future revision"),
    )
    r = await call(client, "/v3/kv/range", {"key": b("a"), "revision": 2})
    assert r["kvs"][0]["value"] == b("1")
    cases: list[tuple[str, Any, int, int, str]] = [
        ("/v3/kv/put", {"value": b("x")}, 400, 3, "etcdserver: key is not provided"),
        ("/v3/kv/range", {}, 400, 3, "etcdserver: key is not provided"),
        ("/v3/kv/deleterange", {}, 400, 3, "etcdserver: key is not provided"),
        ("/v3/kv/put", {"key": b("zz"), "ignore_value": True}, 400, 3, "etcdserver: key not found"),
        ("/v3/kv/put", {"key": b("zz"), "ignore_lease": True}, 400, 3, "etcdserver: key not found"),
        ("/v3/kv/put", {"key": b("a"), "ignore_value": True, "value": b("v")}, 400, 3,
         "etcdserver: value is provided"),
        ("/v3/kv/put", {"key": b("a"), "ignore_lease": True, "lease": 5}, 400, 3,
         "etcdserver: lease is provided"),
        ("/v3/kv/put", {"key": b("a"), "lease": "5"}, 404, 5,
         "etcdserver: requested lease not found"),
        ("/v3/kv/put", b'{"key":"', 400, 3, "unexpected EOF"),
        ("/v3/kv/put", b"xyz", 400, 3, "invalid character 'x' looking for beginning of value"),
        ("/v3/kv/put", {"key": "a$bc"}, 400, 3, "illegal base64 data at input byte 1"),
        ("/v3/kv/put", {"key": "abc"}, 400, 3, "illegal base64 data at input byte 0"),
        ("/v3/kv/put", {"key": "ab="}, 400, 3, "illegal base64 data at input byte 3"),
        ("/v3/kv/put", {"key": "ab=x"}, 400, 3, "illegal base64 data at input byte 2"),
        ("/v3/kv/put", {"key": "ab==x"}, 400, 3, "illegal base64 data at input byte 4"),
        ("/v3/kv/put", {"key": "a="}, 400, 3, "illegal base64 data at input byte 1"),
        ("/v3/kv/put", {"key": 5}, 400, 3,
         "json: cannot unmarshal number into Go value of type []uint8"),
        ("/v3/kv/put", [], 400, 3,
         "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"),
        ("/v3/kv/put", {"key": b("a"), "lease": "abc"}, 400, 3,
         "invalid character 'a' looking for beginning of value"),
        ("/v3/kv/put", {"key": b("a"), "lease": True}, 400, 3,
         "json: cannot unmarshal bool into Go value of type int64"),
        ("/v3/kv/put", {"key": b("a"), "lease": 1.5}, 400, 3,
         "json: cannot unmarshal number 1.5 into Go value of type int64"),
        ("/v3/kv/put", {"key": b("a"), "lease": None, "prev_kv": "true"}, 400, 3,
         "json: cannot unmarshal string into Go value of type bool"),
        ("/v3/kv/range", {"key": b("a"), "sort_order": "UP"}, 400, 3,
         'unknown value "\\"UP\\"" for enum etcdserverpb.RangeRequest.SortOrder'),
        ("/v3/kv/compaction", {"revision": 2}, 400, 11,
         "etcdserver: mvcc: required revision has been compacted"),
        ("/v3/kv/compaction", {"revision": 99}, 400, 11,
         "etcdserver: mvcc: required revision is a future revision"),
    ]  # fmt: skip
    for path, body, status, code, message in cases:
        assert await error(client, path, body) == (status, err(code, message)), body
    # newlines in base64 are skipped, like Go does; a trailing object after the first is ignored
    r = await client.post("/v3/kv/put", content=b'{"key":"Y\\nQ==","value":"YQ=="} {"x":1}')
    assert r.status_code == 200
    assert fake.get("a") == {**(fake.get("a") or {}), "value": b"a"}
    assert fake.revision == 4


async def test_put_ignore_value_and_lease(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    lease = (await call(client, "/v3/lease/grant", {"TTL": 100}))["ID"]
    await call(client, "/v3/kv/put", {"key": b("a"), "value": b("v"), "lease": lease})
    r = await call(client, "/v3/kv/put", {"key": b("a"), "ignore_value": True, "prev_kv": True})
    assert r["prev_kv"]["lease"] == lease
    kv = fake.get("a")
    assert kv is not None
    assert kv["value"] == b"v"
    assert kv["lease"] == 0
    await call(client, "/v3/kv/put", {"key": b("a"), "value": b("w"), "lease": lease})
    await call(client, "/v3/kv/put", {"key": b("a"), "value": b("x"), "ignore_lease": True})
    kv = fake.get("a")
    assert kv is not None
    assert kv["value"] == b"x"
    assert kv["lease"] == int(lease)
    r = await call(client, "/v3/kv/range", {"key": b("a")})
    assert r["kvs"][0]["lease"] == lease


async def test_request_size_limits(client: httpx.AsyncClient) -> None:
    async with (
        open_fake_etcd(max_request_bytes=1000) as fake,
        httpx.AsyncClient(transport=fake, base_url=fake.endpoints[0]) as c,
    ):
        big = {"key": b("k"), "value": b(b"x" * 2000)}
        assert await error(c, "/v3/kv/put", big) == (
            400,
            err(3, "etcdserver: request is too large"),
        )
        huge = {"key": b("k"), "value": b(b"x" * 600_000), "prev_kv": True, "lease": 0}
        status, body = await error(c, "/v3/kv/put", huge)
        assert (status, body["code"]) == (429, 8)
        assert body["message"] == "grpc: received message larger than max (600009 vs. 525288)"


async def test_compaction(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    for i in range(4):
        fake.put("a", str(i))
    fake.put("b", "x")
    fake.delete("b")
    assert fake.revision == 7
    r = await call(client, "/v3/kv/compaction", {"revision": "7", "physical": True})
    assert r == {"header": hdr(fake)}
    assert fake.compact_revision == 7
    r = await call(client, "/v3/kv/range", {"key": b("a"), "range_end": b("\0"), "revision": 7})
    assert r["count"] == "1"
    with pytest.raises(FakeError):
        fake.compact(3)


# ---- txn -------------------------------------------------------------------------------------


async def test_txn_success_failure(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    fake.put("/t/b", "2")
    txn = {
        "compare": [{"key": b("/t/b"), "target": "MOD", "result": "EQUAL", "mod_revision": "2"}],
        "success": [{"request_put": {"key": b("/t/b"), "value": b("33"), "prev_kv": True}}],
        "failure": [{"request_range": {"key": b("/t/b")}}],
    }
    r = await call(client, "/v3/kv/txn", txn)
    assert r == {
        "header": hdr(fake, 3),
        "succeeded": True,
        "responses": [
            {
                "response_put": {
                    "header": {"revision": "3"},
                    "prev_kv": {
                        "key": b("/t/b"),
                        "create_revision": "2",
                        "mod_revision": "2",
                        "version": "1",
                        "value": b("2"),
                    },
                }
            }
        ],
    }
    r = await call(client, "/v3/kv/txn", txn)
    assert r == {
        "header": hdr(fake, 3),
        "responses": [
            {
                "response_range": {
                    "header": {"revision": "3"},
                    "kvs": [
                        {
                            "key": b("/t/b"),
                            "create_revision": "2",
                            "mod_revision": "3",
                            "version": "2",
                            "value": b("33"),
                        }
                    ],
                    "count": "1",
                }
            }
        ],
    }
    assert await call(client, "/v3/kv/txn", {}) == {"header": hdr(fake), "succeeded": True}
    r = await call(client, "/v3/kv/txn", {"compare": [{"key": b("x"), "target": "VALUE"}]})
    assert r == {"header": hdr(fake)}


async def test_txn_writes_share_one_revision(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    fake.put("d1", "x")
    fake.put("d2", "x")
    txn = {
        "success": [
            {"request_put": {"key": b("a"), "value": b("1")}},
            {"request_range": {"key": b("a")}},
            {"request_delete_range": {"key": b("d"), "range_end": b("e"), "prev_kv": True}},
            {"request_delete_range": {"key": b("nothing")}},
            {"request_put": {"key": b("b"), "value": b("2")}},
            {
                "request_txn": {
                    "compare": [{"key": b("a"), "target": "VERSION", "version": 0}],
                    "failure": [{"request_put": {"key": b("c"), "value": b("3")}}],
                }
            },
        ]
    }
    r = await call(client, "/v3/kv/txn", txn)
    assert fake.revision == 4
    resps = r["responses"]
    assert resps[0] == {"response_put": {"header": {"revision": "4"}}}
    assert resps[1]["response_range"]["kvs"][0]["mod_revision"] == "4"
    assert resps[2]["response_delete_range"]["deleted"] == "2"
    assert len(resps[2]["response_delete_range"]["prev_kvs"]) == 2
    assert resps[3] == {"response_delete_range": {"header": {"revision": "4"}}}
    # the nested branch was chosen before the writes (a did not exist then): header stays empty
    assert resps[5] == {
        "response_txn": {
            "header": {},
            "succeeded": True,
            "responses": [],
        }
    } or resps[5] == {"response_txn": {"header": {}, "succeeded": True}}
    assert fake.get("c") is None
    for key in ("a", "b"):
        kv = fake.get(key)
        assert kv is not None
        assert kv["mod_revision"] == 4
    # a read-only txn does not move the revision; a read first sees the old revision
    r = await call(client, "/v3/kv/txn", {"success": [{"request_range": {"key": b("a")}}]})
    assert fake.revision == 4
    assert r["responses"][0]["response_range"]["header"]["revision"] == "4"
    r = await call(
        client,
        "/v3/kv/txn",
        {
            "success": [
                {"request_range": {"key": b("a")}},
                {"request_put": {"key": b("a"), "value": b("z")}},
            ]
        },
    )
    assert [next(iter(x.values()))["header"]["revision"] for x in r["responses"]] == ["4", "5"]


async def test_txn_compares(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    lease = (await call(client, "/v3/lease/grant", {"TTL": 50}))["ID"]
    fake.put("p/a", "m")  # rev 2
    fake.put("p/b", "n", lease=int(lease))  # rev 3

    async def ok(**cmp: Any) -> bool:
        r = await call(client, "/v3/kv/txn", {"compare": [cmp]})
        return "succeeded" in r

    assert await ok(key=b("p/a"), target="VALUE", result="EQUAL", value=b("m"))
    assert await ok(key=b("p/a"), target="VALUE", result="LESS", value=b("z"))
    assert await ok(key=b("p/a"), target="VALUE", result="GREATER", value=b("a"))
    assert await ok(key=b("p/a"), target="VALUE", result="NOT_EQUAL", value=b("q"))
    assert not await ok(key=b("p/a"), target="VALUE", result="NOT_EQUAL", value=b("m"))
    assert await ok(key=b("p/a"), target="VERSION", result="EQUAL", version="1")
    assert await ok(key=b("p/a"), target=1, result=0, create_revision=2)
    assert await ok(key=b("p/a"), target="MOD", result="LESS", mod_revision=3)
    assert await ok(key=b("p/b"), target="LEASE", result="EQUAL", lease=lease)
    assert await ok(key=b("p/a"), target="LEASE", result="EQUAL")
    # range compares: every key must satisfy
    assert await ok(key=b("p/"), range_end=b("p0"), target="MOD", result="LESS", mod_revision=4)
    assert not await ok(key=b("p/"), range_end=b("p0"), target="MOD", result="LESS", mod_revision=3)
    # an empty range or a missing key compares as a zero kv; VALUE always fails
    assert await ok(key=b("q/"), range_end=b("q0"), target="VERSION", result="EQUAL", version=0)
    assert await ok(key=b("zz"), target="CREATE", result="EQUAL", create_revision="0")
    assert not await ok(key=b("zz"), target="VALUE", result="NOT_EQUAL", value=b("x"))
    assert await error(
        client, "/v3/kv/txn", {"compare": [{"key": b("a"), "target": "SIDEWAYS"}]}
    ) == (400, err(3, 'unknown value "\\"SIDEWAYS\\"" for enum etcdserverpb.Compare.CompareTarget'))


async def test_txn_errors(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    fake.put("a", "1")
    put = {"request_put": {"key": b("a"), "value": b("1")}}
    dup = (400, err(3, "etcdserver: duplicate key given in txn request"))
    assert await error(client, "/v3/kv/txn", {"success": [put, put]}) == dup
    delete = {"request_delete_range": {"key": b("a"), "range_end": b("b")}}
    assert await error(client, "/v3/kv/txn", {"failure": [delete, put]}) == dup
    nested_put = {"request_txn": {"success": [put]}}
    assert await error(client, "/v3/kv/txn", {"success": [put, nested_put]}) == dup
    assert await error(client, "/v3/kv/txn", {"success": [nested_put, nested_put]}) == dup
    assert await error(client, "/v3/kv/txn", {"success": [delete, nested_put]}) == dup
    else_put = {"request_txn": {"failure": [put]}}
    assert await error(client, "/v3/kv/txn", {"success": [delete, else_put]}) == dup
    assert await error(client, "/v3/kv/txn", {"success": [nested_put, else_put]}) == dup
    both = {"request_txn": {"success": [put], "failure": [put]}}
    r = await call(client, "/v3/kv/txn", {"success": [both]})
    assert r["responses"][0]["response_txn"]["succeeded"] is True
    nested_del = {"request_txn": {"success": [delete]}}
    assert await error(client, "/v3/kv/txn", {"success": [nested_del, put]}) == dup
    many = [{"request_range": {"key": b("a")}}] * 129
    too_many = (400, err(3, "etcdserver: too many operations in txn request"))
    assert await error(client, "/v3/kv/txn", {"success": many}) == too_many
    assert await error(client, "/v3/kv/txn", {"success": [{"request_txn": {"failure": many}}]}) == (
        too_many
    )
    await call(client, "/v3/kv/txn", {"success": many[:128], "failure": many[:128]})
    cmp_no_key = {"compare": [{"target": "VERSION"}]}
    assert await error(client, "/v3/kv/txn", cmp_no_key) == (
        400,
        err(3, "etcdserver: key is not provided"),
    )
    assert await error(client, "/v3/kv/txn", {"success": [{}]}) == (
        400,
        err(3, "etcdserver: key not found"),
    )
    no_lease = {"success": [{"request_put": {"key": b("a"), "lease": 7}}]}
    assert await error(client, "/v3/kv/txn", no_lease) == (
        404,
        err(5, "etcdserver: requested lease not found"),
    )
    # checks only apply to the chosen branch
    r = await call(client, "/v3/kv/txn", {"failure": no_lease["success"]})
    assert r["succeeded"] is True
    fake.put("a", "2")
    fake.compact(3)
    old = {
        "success": [
            {"request_txn": {"success": [{"request_range": {"key": b("a"), "revision": 1}}]}}
        ]
    }
    assert (await error(client, "/v3/kv/txn", old))[1]["code"] == 11
    assert fake.revision == 4
    async with (
        open_fake_etcd(max_txn_ops=2) as small,
        httpx.AsyncClient(transport=small, base_url=small.endpoints[0]) as c,
    ):
        assert await error(c, "/v3/kv/txn", {"success": many[:3]}) == too_many


# ---- leases ----------------------------------------------------------------------------------


async def test_lease_lifecycle(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    r = await call(client, "/v3/lease/grant", {"TTL": 5})
    lease = r["ID"]
    assert r == {"header": hdr(fake), "ID": lease, "TTL": "5"}
    r = await call(client, "/v3/lease/grant", {"ttl": 7, "id": "4242"})
    assert r["TTL"] == "2"
    assert r["ID"] != "4242"
    r = await call(client, "/v3/lease/grant", {"TTL": 10, "ID": "42"})
    assert r["ID"] == "42"
    assert await error(client, "/v3/lease/grant", {"TTL": 10, "ID": 42}) == (
        400,
        err(9, "etcdserver: lease already exists"),
    )
    assert await error(client, "/v3/lease/grant", {"TTL": 10**10}) == (
        400,
        err(11, "etcdserver: too large lease TTL"),
    )
    leases = await call(client, "/v3/lease/leases")
    assert {x["ID"] for x in leases["leases"]} >= {lease, "42"}
    assert (await call(client, "/v3/kv/lease/leases")) == leases
    fake.put("/l/a", "1", lease=int(lease))
    await call(client, "/v3/kv/put", {"key": b("/l/b"), "value": b("2"), "lease": lease})
    await trio.sleep(1.5)
    r = await call(client, "/v3/lease/timetolive", {"ID": lease, "keys": True})
    assert r == {
        "header": hdr(fake),
        "ID": lease,
        "TTL": "3",
        "grantedTTL": "5",
        "keys": [b("/l/a"), b("/l/b")],
    }
    r = await call(client, "/v3/kv/lease/timetolive", {"ID": "42"})
    assert "keys" not in r
    assert r["TTL"] == "8"
    # keepalive: a stream of results, one per request object, then the end
    resp = await client.post(
        "/v3/lease/keepalive", content=json.dumps({"ID": lease}) + json.dumps({"ID": "1"})
    )
    lines = resp.text.splitlines()
    assert [json.loads(x) for x in lines] == [
        {"result": {"header": hdr(fake), "ID": lease, "TTL": "5"}},
        {"result": {"header": hdr(fake), "ID": "1"}},
    ]
    assert (await client.post("/v3/lease/keepalive", content=b"")).content == b""
    await trio.sleep(4.9)
    assert fake.get("/l/a") is not None
    rev = fake.revision
    await trio.sleep(0.2)
    assert fake.get("/l/a") is None
    assert fake.get("/l/b") is None
    assert fake.revision == rev + 1
    r = await call(client, "/v3/lease/timetolive", {"ID": lease})
    assert r == {"header": hdr(fake), "ID": lease, "TTL": "-1"}
    resp = await client.post("/v3/lease/keepalive", content=json.dumps({"ID": lease}))
    assert "TTL" not in resp.json()["result"]
    # revoke
    fake.put("/l/c", "3", lease=42)
    fake.put("/l/d", "3", lease=42)
    fake.put("/l/d", "3")  # detached
    r = await call(client, "/v3/lease/revoke", {"ID": "42"})
    assert r == {"header": hdr(fake)}
    assert fake.get("/l/c") is None
    assert fake.get("/l/d") is not None
    assert await error(client, "/v3/kv/lease/revoke", {"ID": "42"}) == (
        404,
        err(5, "etcdserver: requested lease not found"),
    )
    keyless = (await call(client, "/v3/lease/grant", {"TTL": 100}))["ID"]
    assert await call(client, "/v3/lease/revoke", {"ID": keyless}) == {"header": hdr(fake)}
    await trio.sleep(10)  # the 2 s lease expires without keys: no revision
    assert fake.revision == rev + 5
    assert await call(client, "/v3/lease/leases") == {"header": hdr(fake)}
    with pytest.raises(FakeError):
        fake.put("x", "y", lease=12345)


async def test_lease_id_collision(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    twin = random.Random()
    twin.setstate(fake._cluster.rng.getstate())
    taken = twin.getrandbits(63)
    await call(client, "/v3/lease/grant", {"TTL": 10, "ID": taken})
    assert (await call(client, "/v3/lease/grant", {"TTL": 10}))["ID"] != str(taken)


async def test_lease_deleted_key_detaches(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    lease = int((await call(client, "/v3/lease/grant", {"TTL": 50}))["ID"])
    fake.put("a", "1", lease=lease)
    fake.delete("a")
    r = await call(client, "/v3/lease/timetolive", {"ID": lease, "keys": True})
    assert "keys" not in r


# ---- fault injection -------------------------------------------------------------------------


async def test_fail_and_delay_next(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    fake.fail_next("/v3/kv/put", code=14, message="etcdserver: request timed out", count=2)
    fake.fail_next(None, code=2, message="context deadline exceeded", status=504)
    body = {"key": b("a"), "value": b("1")}
    timed_out = (503, err(14, "etcdserver: request timed out"))
    assert await error(client, "/v3/kv/put", body) == timed_out
    assert await error(client, "/v3/kv/range", {"key": b("a")}) == (
        504,
        err(2, "context deadline exceeded"),
    )
    assert await error(client, "/v3/kv/put", body) == timed_out
    assert (await client.post("/v3/kv/put", json=body)).status_code == 200
    assert fake.revision == 2
    fake.delay_next("/v3/kv/range", 3.0)
    start = trio.current_time()
    await call(client, "/v3/kv/range", {"key": b("a")})
    assert trio.current_time() - start == pytest.approx(3.0)
    start = trio.current_time()
    await call(client, "/v3/kv/range", {"key": b("a")})
    assert trio.current_time() == start
    assert error_response(13, "boom").status_code == 500
    assert error_response(4, "context deadline exceeded").status_code == 504


async def test_delay_then_member_down(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    fake.delay_next(None, 5.0)
    async with trio.open_nursery() as nursery:

        async def later() -> None:
            await trio.sleep(1)
            fake.member_down(0)

        nursery.start_soon(later)
        with pytest.raises(httpx.ConnectError):
            await client.post("/v3/kv/range", json={"key": b("a")})


async def test_restore_brings_ended_leases_back(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    """Found by the fault-injection suite (nemesis finding 4): a restore brought keys back
    without their leases, so they never expired. etcd restores its lease table: the lease
    lives its TTL again unless kept alive, then its keys go."""
    lease = int((await call(client, "/v3/lease/grant", {"TTL": 5}))["ID"])
    fake.put("held", "1", lease=lease)
    backup = fake.revision
    await call(client, "/v3/lease/revoke", {"ID": lease})
    assert fake.get("held") is None
    fake.restore(backup)
    assert fake.get("held") is not None
    r = await call(client, "/v3/lease/timetolive", {"ID": lease, "keys": True})
    assert r["keys"] == [b("held")]
    assert 0 < int(r["TTL"]) <= 5  # alive again, for its TTL
    await trio.sleep(5)
    await trio.testing.wait_all_tasks_blocked()
    assert fake.get("held") is None  # expired: nobody kept it alive


async def test_restore_and_cluster_id(fake: FakeEtcd, client: httpx.AsyncClient) -> None:
    lease = int((await call(client, "/v3/lease/grant", {"TTL": 50}))["ID"])
    fake.put("a", "1")
    fake.put("b", "2", lease=lease)
    fake.put("a", "3")
    fake.restore(3)
    assert fake.revision == 3
    kv = fake.get("a")
    assert kv is not None
    assert kv["value"] == b"1"
    assert fake.put("c", "4") == 4
    r = await call(client, "/v3/lease/timetolive", {"ID": lease, "keys": True})
    assert r["keys"] == [b("b")]
    fake.restore(1)
    assert fake.get("a") is None
    with pytest.raises(ValueError, match="cannot restore"):
        fake.restore(5)
    old = hdr(fake)["cluster_id"]
    fake.new_cluster_id(99)
    assert (await call(client, "/v3/kv/range", {"key": b("a")}))["header"]["cluster_id"] == "99"
    fake.new_cluster_id()
    assert hdr(fake)["cluster_id"] not in (old, "99")


# ---- watch -----------------------------------------------------------------------------------


async def test_watch_live_events(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    w = await open_watch(client, {"create_request": {"key": b("/w/"), "range_end": b("/w0")}})
    assert w.resp.status_code == 200
    assert w.resp.headers["content-type"] == "application/json"
    assert await w.next() == {"result": {"header": hdr(fake, 1), "created": True}}
    fake.put("/w/a", "1")
    fake.put("/x", "no")
    await call(
        client,
        "/v3/kv/txn",
        {
            "success": [
                {"request_put": {"key": b("/w/b"), "value": b("2")}},
                {"request_delete_range": {"key": b("/w/a")}},
            ]
        },
    )
    assert await w.next() == {
        "result": {
            "header": hdr(fake, 2),
            "events": [
                {
                    "kv": {
                        "key": b("/w/a"),
                        "create_revision": "2",
                        "mod_revision": "2",
                        "version": "1",
                        "value": b("1"),
                    }
                }
            ],
        }
    }
    assert await w.next() == {
        "result": {
            "header": hdr(fake, 4),
            "events": [
                {
                    "kv": {
                        "key": b("/w/b"),
                        "create_revision": "4",
                        "mod_revision": "4",
                        "version": "1",
                        "value": b("2"),
                    }
                },
                {"type": "DELETE", "kv": {"key": b("/w/a"), "mod_revision": "4"}},
            ],
        }
    }
    assert await w.silent()
    await w.resp.aclose()
    assert not fake._watches.streams
    fake.put("/w/c", "3")


async def test_watch_catch_up_prev_kv_filters(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    fake.put("k", "1")  # 2
    fake.put("k", "2")  # 3
    fake.delete("k")  # 4
    fake.put("other", "x")  # 5
    w = await open_watch(
        client,
        {"create_request": {"key": b("k"), "start_revision": 2, "prev_kv": True}},
        {"create_request": {"key": b("k"), "start_revision": "3", "filters": ["NOPUT"]}},
        {"create_request": {"key": b("k"), "startRevision": 2, "filters": [1], "watch_id": 7}},
    )
    assert await w.next() == {"result": {"header": hdr(fake, 5), "created": True}}
    events = (await w.next())["result"]
    assert events["header"] == hdr(fake, 5)
    assert [e.get("type", "PUT") for e in events["events"]] == ["PUT", "PUT", "DELETE"]
    assert "prev_kv" not in events["events"][0]  # a create event has none
    assert events["events"][1]["prev_kv"]["value"] == b("1")
    assert events["events"][2]["prev_kv"]["value"] == b("2")
    assert await w.next() == {"result": {"header": hdr(fake, 5), "watch_id": "1", "created": True}}
    r = (await w.next())["result"]
    assert r["watch_id"] == "1"
    assert [e["type"] for e in r["events"]] == ["DELETE"]
    assert "prev_kv" not in r["events"][0]
    assert await w.next() == {"result": {"header": hdr(fake, 5), "watch_id": "7", "created": True}}
    r = (await w.next())["result"]
    assert r["watch_id"] == "7"
    assert len(r["events"]) == 2
    fake.put("k", "3")
    got = [(await w.next())["result"] for _ in range(2)]
    assert [g.get("watch_id") for g in got] == [None, "7"]
    assert "prev_kv" not in got[0]["events"][0]
    fake.put("k", "4")
    r = (await w.next())["result"]
    assert r["events"][0]["prev_kv"]["value"] == b("3")
    assert (await w.next())["result"]["watch_id"] == "7"
    fake.delete("k")
    r = (await w.next())["result"]
    assert r.get("watch_id") is None
    r = (await w.next())["result"]
    assert r["watch_id"] == "1"
    assert await w.silent()
    await w.resp.aclose()


async def test_watch_catch_up_batches(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    for i in range(2500):
        fake.put(f"b/{i}", "v")
    w = await open_watch(
        client, {"create_request": {"key": b("b/"), "range_end": b("\0"), "start_revision": 1}}
    )
    await w.next()
    sizes = [len((await w.next())["result"]["events"]) for _ in range(3)]
    assert sizes == [1000, 1000, 500]
    await w.resp.aclose()


async def test_watch_compacted_and_future(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    for i in range(5):
        fake.put("c", str(i))
    fake.delete("c")  # 7
    fake.compact(5)
    w = await open_watch(
        client,
        {"create_request": {"key": b("c"), "start_revision": 4, "watch_id": 3}},
        {"create_request": {"key": b("c"), "start_revision": 5, "prev_kv": True}},
        {"create_request": {"key": b("c"), "start_revision": 9}},
    )
    created = await w.next()
    assert created == {"result": {"header": hdr(fake, 7), "watch_id": "3", "created": True}}
    h = hdr(fake)
    del h["revision"]
    assert await w.next() == {
        "result": {"header": h, "watch_id": "3", "canceled": True, "compact_revision": "5"}
    }
    assert (await w.next())["result"]["created"] is True
    r = (await w.next())["result"]
    assert [e["kv"].get("version") for e in r["events"]] == ["4", "5", None]
    assert "prev_kv" not in r["events"][0]  # its previous version is compacted away
    assert "prev_kv" in r["events"][1]
    assert (await w.next())["result"] == {"header": hdr(fake, 7), "watch_id": "1", "created": True}
    assert await w.silent()
    fake.put("c", "x")  # 8: before the future watcher's start
    assert (await w.next())["result"].get("watch_id") is None
    assert await w.silent()
    fake.put("c", "y")  # 9
    assert [(await w.next())["result"].get("watch_id") for _ in range(2)] == [None, "1"]
    # the compact-cancel of a watch at id 0 has no watch_id
    w2 = await open_watch(client, {"create_request": {"key": b("c"), "start_revision": 1}})
    await w2.next()
    assert await w2.next() == {"result": {"header": h, "canceled": True, "compact_revision": "5"}}
    await w.resp.aclose()
    await w2.resp.aclose()


async def test_watch_progress(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        open_fake_etcd(progress_notify_interval=5.0) as fake,
        httpx.AsyncClient(transport=fake, base_url=fake.endpoints[0]) as client,
    ):
        w = await open_watch(
            client,
            {"create_request": {"key": b("p"), "progress_notify": True}},
            {"create_request": {"key": b("q"), "progress_notify": True, "watch_id": 4}},
            {"create_request": {"key": b("r")}},
        )
        for _ in range(3):
            await w.next()
        start = trio.current_time()
        fake.put("p", "1")
        await w.next()
        # the next tick skips watch 0 (it just had an event)
        assert await w.next() == {"result": {"header": hdr(fake, 2), "watch_id": "4"}}
        assert trio.current_time() - start == pytest.approx(5.0)
        got = [await w.next() for _ in range(2)]
        assert got == [
            {"result": {"header": hdr(fake, 2)}},
            {"result": {"header": hdr(fake, 2), "watch_id": "4"}},
        ]
        assert trio.current_time() - start == pytest.approx(10.0)
        await w.resp.aclose()


async def test_watch_progress_request_and_cancel(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    w = await open_watch(client, {"progress_request": {}})
    assert await w.next() == {"result": {"header": hdr(fake), "watch_id": "-1"}}
    await w.resp.aclose()
    w = await open_watch(
        client,
        {},
        {"create_request": {"key": b("a"), "watch_id": 1}},
        {"create_request": {"key": b("a")}},
        {"create_request": {"key": b("a")}},
        {"create_request": {"key": b("a"), "watch_id": 1}},
        {"cancel_request": {"watch_id": 0}},
        {"cancel_request": {"watch_id": 1}},
        {"cancel_request": {"watch_id": 55}},
    )
    got = [(await w.next())["result"] for _ in range(6)]
    assert [g.get("watch_id") for g in got] == ["1", None, "2", "-1", None, "1"]
    assert got[3] == {
        "header": hdr(fake),
        "watch_id": "-1",
        "created": True,
        "canceled": True,
        "cancel_reason": "mvcc: duplicate watch ID provided on the WatchStream",
    }
    assert got[4] == {"header": hdr(fake), "canceled": True}
    fake.put("a", "1")
    assert (await w.next())["result"]["watch_id"] == "2"
    assert await w.silent()
    await w.resp.aclose()


async def test_watch_bodies(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    # a body without a create never answers, not even the headers
    with trio.move_on_after(5) as scope:
        await open_watch(client, {"cancel_request": {"watch_id": 3}})
    assert scope.cancelled_caught
    resp = await client.post("/v3/watch", content=b"oops")
    assert (resp.status_code, resp.json()) == (
        500,
        err(2, "invalid character 'o' looking for beginning of value"),
    )
    # concatenated objects; a bad object later in the body stops the reading, the stream lives
    raw = (
        json.dumps({"create_request": {"key": b("a")}})
        + json.dumps({"create_request": {"key": b("a"), "filters": ["BAD"]}})
        + json.dumps({"create_request": {"key": b("b")}})
    ).encode()
    w = await open_watch(client, raw=raw)
    assert (await w.next())["result"]["created"] is True
    assert await w.silent()
    await w.resp.aclose()
    w = await open_watch(
        client, raw=json.dumps({"create_request": {"key": b("a")}}).encode() + b"x"
    )
    assert (await w.next())["result"]["created"] is True
    await w.resp.aclose()
    # the fake closing ends open streams cleanly
    async with (
        open_fake_etcd() as other,
        httpx.AsyncClient(transport=other, base_url=other.endpoints[0]) as c,
    ):
        w = await open_watch(c, {"create_request": {"key": b("a")}})
    await w.next()
    with pytest.raises(StopAsyncIteration):
        await w.next()


async def test_watch_chunks(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    assert fake.chunk_size is None  # whole messages by default
    fake.chunk_size = 7
    req = client.build_request(
        "POST", "/v3/watch", json={"create_request": {"key": b("a"), "start_revision": 1}}
    )
    resp = await client.send(req, stream=True)
    fake.put("a", "x" * 50)
    chunks = []
    async for chunk in resp.aiter_raw():
        chunks.append(chunk)
        if b"".join(chunks).count(b"\n") == 2:
            break
    assert max(len(c) for c in chunks) == 7
    assert len(chunks) > 20
    lines = b"".join(chunks).splitlines()
    assert json.loads(lines[1])["result"]["events"][0]["kv"]["value"] == b("x" * 50)
    await resp.aclose()


@pytest.mark.parametrize("how", ["mid-line", "eof", "error", "down", "restore"])
async def test_watch_breaks(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock, how: str
) -> None:
    w = await open_watch(client, {"create_request": {"key": b("a")}})
    await w.next()
    if how == "down":
        fake.member_down(0)
    elif how == "restore":
        fake.restore(1)
    else:
        fake.break_watches(how)  # type: ignore[arg-type]
    if how in ("mid-line", "down", "restore"):
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            await w.next()
    elif how == "error":
        assert await w.next() == {
            "error": {
                "grpc_code": 14,
                "http_code": 503,
                "message": "error reading from server: EOF",
                "http_status": "Service Unavailable",
            }
        }
        with pytest.raises(StopAsyncIteration):
            await w.next()
    else:
        with pytest.raises(StopAsyncIteration):
            await w.next()
    assert not fake._watches.streams
    fake.break_watches()  # nothing open: nothing to do


async def test_watch_break_before_headers(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:

        async def later() -> None:
            await trio.testing.wait_all_tasks_blocked()
            fake.break_watches("eof")

        nursery.start_soon(later)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await open_watch(client, {"cancel_request": {"watch_id": 3}})


async def test_watch_stall_and_member_down_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_fake_etcd(members=2, progress_notify_interval=1) as fake,
        httpx.AsyncClient(transport=fake) as client,
    ):
        w0 = await open_watch(
            client,
            {"create_request": {"key": b("a"), "progress_notify": True}},
            url=fake.endpoints[0] + "/v3/watch",
        )
        await w0.next()
        req = client.build_request(
            "POST", fake.endpoints[1] + "/v3/watch", json={"create_request": {"key": b("a")}}
        )
        w1 = Watch(await client.send(req, stream=True))
        await w1.next()
        fake.member_down(0)
        fake.put("a", "1")
        assert (await w1.next())["result"]["events"]
        fake.stall_watches()
        fake.put("a", "2")
        with trio.move_on_after(10) as scope:
            await w1.next()
        assert scope.cancelled_caught
        await w1.resp.aclose()
        await w1.resp.aclose()


# ---- auth ------------------------------------------------------------------------------------


async def test_auth(
    fake: FakeEtcd, client: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    not_enabled = await error(client, "/v3/auth/authenticate", {"name": "root", "password": "x"})
    assert not_enabled == (400, err(9, "etcdserver: authentication is not enabled"))
    fake.put("/p/a", "1")
    fake.enable_auth(
        {"root": "rootpw", "bob": "bobpw", "eve": "evepw"},
        permissions={"bob": [("/p/", "read"), (b"/w/", "readwrite")], "eve": [("/e", "write")]},
        token_ttl=60,
    )
    failed = (400, err(3, "etcdserver: authentication failed, invalid user ID or password"))
    assert await error(client, "/v3/auth/authenticate", {"name": "bob", "password": "x"}) == failed
    assert await error(client, "/v3/auth/authenticate", {"password": "x"}) == failed
    r = await call(client, "/v3/auth/authenticate", {"name": "bob", "password": "bobpw"})
    assert r["header"] == hdr(fake)
    token = r["token"]
    head, _, index = token.partition(".")
    assert len(head) == 16
    assert index.isdigit()
    bob = {"Authorization": token}
    root = {
        "Grpc-Metadata-Authorization": (
            await call(client, "/v3/auth/authenticate", {"name": "root", "password": "rootpw"})
        )["token"]
    }
    rng = {"key": b("/p/"), "range_end": b("/p0")}
    assert (await call(client, "/v3/kv/range", rng, headers=bob))["count"] == "1"
    denied = (403, err(7, "etcdserver: permission denied"))
    wide = {"key": b("/p/"), "range_end": b("/p1")}
    assert await error(client, "/v3/kv/range", wide, headers=bob) == denied
    assert (
        await error(client, "/v3/kv/range", {"key": b("/p/"), "range_end": b("\0")}, headers=bob)
        == denied
    )
    assert await error(client, "/v3/kv/range", rng) == (
        400,
        err(3, "etcdserver: user name is empty"),
    )
    bad = (401, err(16, "etcdserver: invalid auth token"))
    assert await error(client, "/v3/kv/range", rng, headers={"Authorization": "abc.1"}) == bad
    assert (
        await error(client, "/v3/kv/range", rng, headers={"Authorization": "Bearer " + token})
        == bad
    )
    assert await error(client, "/v3/kv/range", {"key": ""}, headers=bob) == (
        400,
        err(3, "etcdserver: key is not provided"),
    )
    put = {"key": b("/p/a"), "value": b("2")}
    assert await error(client, "/v3/kv/put", put, headers=bob) == denied
    assert (await client.post("/v3/kv/put", json=put, headers=root)).status_code == 200
    wput = {"key": b("/w/a"), "value": b("2"), "prev_kv": True}
    assert (await client.post("/v3/kv/put", json=wput, headers=bob)).status_code == 200
    eve = {
        "Authorization": (
            await call(client, "/v3/auth/authenticate", {"name": "eve", "password": "evepw"})
        )["token"]
    }
    assert (await client.post("/v3/kv/put", json={"key": b("/e")}, headers=eve)).status_code == 200
    assert (
        await error(client, "/v3/kv/put", {"key": b("/e"), "prev_kv": True}, headers=eve) == denied
    )
    assert (
        await error(client, "/v3/kv/deleterange", {"key": b("/e"), "prev_kv": True}, headers=eve)
        == denied
    )
    assert (
        await client.post("/v3/kv/deleterange", json={"key": b("/e")}, headers=eve)
    ).status_code == 200
    assert await error(client, "/v3/kv/range", {"key": b("/nobody")}, headers=eve) == denied
    txn: Json = {
        "compare": [{"key": b("/p/a"), "target": "VERSION"}],
        "success": [
            {"request_range": {"key": b("/p/a")}},
            {"request_put": {"key": b("/w/b")}},
            {"request_delete_range": {"key": b("/w/c")}},
            {"request_txn": {"failure": [{"request_put": {"key": b("/p/x")}}]}},
        ],
    }
    assert await error(client, "/v3/kv/txn", txn, headers=bob) == denied
    txn["success"] = txn["success"][:3]
    assert (await client.post("/v3/kv/txn", json=txn, headers=bob)).status_code == 200
    # leases, status, member list, compaction need no token (as measured on 3.5.1)
    lease = (await call(client, "/v3/lease/grant", {"TTL": 100}))["ID"]
    await client.post("/v3/kv/put", json={"key": b("/p/l"), "lease": lease}, headers=root)
    assert await error(client, "/v3/lease/revoke", {"ID": lease}, headers=bob) == denied
    assert (
        await client.post("/v3/lease/revoke", json={"ID": lease}, headers=root)
    ).status_code == 200
    assert (await client.get("/health")).status_code == 200
    # watch: permission failure is created+canceled inside a 200 stream
    w = await open_watch(client, {"create_request": {"key": b("/x"), "watch_id": 3}}, headers=bob)
    assert await w.next() == {
        "result": {
            "header": hdr(fake),
            "watch_id": "3",
            "created": True,
            "canceled": True,
            "cancel_reason": (
                "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
            ),
        }
    }
    await w.resp.aclose()
    w = await open_watch(client, {"create_request": {"key": b("/p/a")}})
    assert (await w.next())["result"]["canceled"] is True
    await w.resp.aclose()
    w = await open_watch(client, {"create_request": {"key": b("/p/a")}}, headers=bob)
    assert "canceled" not in (await w.next())["result"]
    await w.resp.aclose()
    # tokens expire after token_ttl without use; each use refreshes
    await trio.sleep(50)
    assert (await client.post("/v3/kv/range", json=rng, headers=bob)).status_code == 200
    await trio.sleep(50)
    assert (await client.post("/v3/kv/range", json=rng, headers=bob)).status_code == 200
    await trio.sleep(61)
    assert await error(client, "/v3/kv/range", rng, headers=bob) == bad
    assert await error(client, "/v3/kv/range", rng, headers=bob) == bad


# ---- the store on its own --------------------------------------------------------------------


def test_store_details() -> None:
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    store = MvccStore()
    store.compact(1)
    with store.write() as w:
        w.put(b"a", b"1")
        w.put(b"a", b"2")  # the same key twice in one revision
    assert store.revision == 2
    assert len(store._history[b"a"]) == 1
    with store.write() as w:
        w.delete_range(b"a", b"")
    store.compact(3)
    assert b"a" not in store._history  # a tombstone at the compact revision goes
    assert list(store.events(1, 3)) == []

    def failing_write() -> None:
        with store.write() as w:
            w.put(b"b", b"1")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        failing_write()
    assert store.revision == 3
    assert store.at(b"zz", 3) is None
