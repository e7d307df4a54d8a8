"""Requests: failover between endpoints, deadlines, authentication, error mapping."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
import trio.testing

import trio_etcd_tree as et
from trio_etcd_tree.testing import open_fake_etcd


def scripted(*answers: httpx.Response | Exception) -> httpx.MockTransport:
    """A transport that gives these answers in turn (an exception is raised instead)."""
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handler)


def ok(body: dict[str, object]) -> httpx.Response:
    return httpx.Response(200, json=body)


def error(status: int, code: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": message, "code": code, "message": message})


async def test_failover_skips_dead_endpoint(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd(members=3) as fake:
        fake.member_down(0)
        async with et.open_client(fake.endpoints, transport=fake) as client:
            assert client.endpoint == fake.endpoints[0]
            await client.put("/a", "1")
            assert client.endpoint == fake.endpoints[1]
            assert client.endpoints == fake.endpoints
            assert (await client.get("/a")) is not None


async def test_all_endpoints_down_until_deadline(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd(members=2) as fake:
        fake.member_down(0)
        fake.member_down(1)
        async with et.open_client(fake.endpoints, transport=fake, request_deadline=3) as client:
            with pytest.raises(et.UnavailableError, match=r"no answer within 3 s") as info:
                await client.get("/a")
            assert trio.current_time() == pytest.approx(3)
            assert "fake-0" in str(info.value)


async def test_hanging_server_hits_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd() as fake:
        fake.delay_next(None, 100)
        async with et.open_client(fake.endpoints, transport=fake, attempt_timeout=20) as client:
            with pytest.raises(et.UnavailableError, match="did not answer") as info:
                await client.put("/a", "1")
            assert trio.current_time() == pytest.approx(10)
            assert info.value.kind == "timeout"
            assert info.value.outcome_unknown  # it was sent: it may yet be applied


async def test_callers_deadline_wins(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd() as fake:
        fake.delay_next(None, 30)
        async with et.open_client(fake.endpoints, transport=fake, attempt_timeout=40) as client:
            with trio.fail_after(60):
                await client.put("/a", "1")  # longer than request_deadline, but allowed
            assert trio.current_time() == pytest.approx(30)


async def test_unavailable_read_is_retried_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_etcd(members=2) as fake:
        fake.fail_next("/v3/kv/range", code=14, message="etcdserver: request timed out")
        async with et.open_client(fake.endpoints, transport=fake) as client:
            assert await client.get("/nothing") is None
            assert client.endpoint == fake.endpoints[1]


async def test_unavailable_write_is_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd(members=2) as fake:
        fake.fail_next("/v3/kv/put", code=14, message="etcdserver: request timed out")
        async with et.open_client(fake.endpoints, transport=fake) as client:
            with pytest.raises(et.UnavailableError, match="timed out"):
                await client.put("/a", "1")
            assert fake.get("/a") is None


async def test_no_leader_write_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd(members=2) as fake:
        fake.fail_next("/v3/kv/put", code=14, message="etcdserver: no leader")
        async with et.open_client(fake.endpoints, transport=fake) as client:
            await client.put("/a", "1")
            assert fake.get("/a") is not None


async def test_lost_answer_of_a_write() -> None:
    transport = scripted(httpx.ReadError("connection reset"))
    async with et.open_client("http://x:2379", transport=transport) as client:
        with pytest.raises(et.UnavailableError, match="may or may not") as info:
            await client.put("/a", "1")
        assert info.value.outcome_unknown


async def test_lost_answer_of_a_read_is_retried() -> None:
    transport = scripted(httpx.ReadError("reset"), ok({"header": {"revision": "3"}}))
    async with et.open_client("http://x:2379", transport=transport) as client:
        result = await client.range("/a")
        assert result.revision == 3
        assert result.kvs == []


async def test_answers_that_are_not_json() -> None:
    transport = scripted(httpx.Response(200, content=b"<html>"), httpx.Response(200, json=[1]))
    async with et.open_client("http://x:2379", transport=transport) as client:
        with pytest.raises(et.ProtocolError, match=r"not understood.*<html>"):
            await client.get("/a")
        with pytest.raises(et.ProtocolError, match="not a JSON object") as info:
            await client.get("/a")
        assert not info.value.outcome_unknown  # a read


@pytest.mark.parametrize(
    ("answer", "cls", "text"),
    [
        (error(400, 3, "etcdserver: key is not provided"), et.InvalidRequestError, "not provided"),
        (error(403, 7, "etcdserver: permission denied"), et.PermissionDeniedError, "denied"),
        (error(401, 16, "etcdserver: invalid auth token"), et.AuthenticationError, "token"),
        (error(404, 5, "etcdserver: requested lease not found"), et.NotFoundError, "lease"),
        (error(429, 8, "grpc: received message larger than max"), et.TooLargeError, "max"),
        (
            error(400, 11, "etcdserver: mvcc: required revision has been compacted"),
            et.CompactedError,
            "compacted",
        ),
        # the 3.6 dialect: no "error" key
        (
            httpx.Response(
                400,
                json={
                    "code": 3,
                    "message": "etcdserver: too many operations in txn request",
                    "details": [],
                },
            ),
            et.TooLargeError,
            "too many",
        ),
        (httpx.Response(404, text="404 page not found\n"), et.InvalidRequestError, "404 page"),
        (httpx.Response(502, text=""), et.UnavailableError, "HTTP 502"),
        (httpx.Response(400, json=["odd"]), et.InvalidRequestError, "odd"),
        (
            httpx.Response(400, json={"code": "x", "message": "odd code"}),
            et.InvalidRequestError,
            "odd code",
        ),
    ],
)
async def test_error_mapping(answer: httpx.Response, cls: type[et.EtcdError], text: str) -> None:
    async with et.open_client("http://x:2379", transport=scripted(answer, answer)) as client:
        with pytest.raises(cls, match=text) as info:
            await client.put("/k", "v")
        assert info.value.request == "put /k"
        assert info.value.endpoint == "http://x:2379"
        assert "put /k" in str(info.value)
        assert repr(info.value).startswith(cls.__name__)


async def test_authentication_and_renewal(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd() as fake:
        fake.enable_auth(
            {"root": "rootpw", "app": "apppw"},
            token_ttl=60,
            permissions={"app": [("/app/", "readwrite")]},
        )
        async with et.open_client(
            fake.endpoints, transport=fake, username="app", password="apppw"
        ) as client:
            await client.put("/app/a", "1")
            await trio.sleep(120)  # the token expires
            await client.put("/app/a", "2")  # renewed without the caller noticing
            assert fake.get("/app/a") == fake.get("/app/a")
            kv = await client.get("/app/a")
            assert kv is not None
            assert kv.value == b"2"
            with pytest.raises(et.PermissionDeniedError, match="permission denied"):
                await client.put("/other", "x")
            auths = [c for c in fake.calls if c.path == "/v3/auth/authenticate"]
            assert len(auths) == 2


async def test_deadline_runs_out_while_the_token_is_renewed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The request deadline bounds the renewal too: a write refused for its stale token
    whose renewal hangs fails at the deadline (it was sent, so its outcome is unknown)."""
    async with open_fake_etcd() as fake:
        fake.enable_auth({"root": "rootpw"}, token_ttl=60)
        async with et.open_client(
            fake.endpoints, transport=fake, username="root", password="rootpw", attempt_timeout=20
        ) as client:
            await client.put("/a", "1")
            await trio.sleep(120)  # the token expires
            fake.delay_next("/v3/auth/authenticate", 100)
            started = trio.current_time()
            with pytest.raises(et.UnavailableError, match="request_deadline") as info:
                await client.put("/a", "2")
            assert trio.current_time() - started == pytest.approx(10)
            assert info.value.kind == "timeout" and info.value.outcome_unknown


async def test_wrong_password(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd() as fake:
        fake.enable_auth({"root": "rootpw"})
        async with et.open_client(
            fake.endpoints, transport=fake, username="root", password="wrong"
        ) as client:
            with pytest.raises(et.AuthenticationError, match="authentication failed") as info:
                await client.get("/a")
            assert "authenticate as 'root'" in str(info.value)


async def test_no_credentials_with_auth_on(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd() as fake:
        fake.enable_auth({"root": "rootpw"})
        async with et.open_client(fake.endpoints, transport=fake) as client:
            with pytest.raises(et.AuthenticationError, match="user name is empty"):
                await client.get("/a")


async def test_concurrent_renewals_authenticate_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_etcd() as fake:
        fake.enable_auth({"root": "rootpw"}, token_ttl=60)
        async with et.open_client(
            fake.endpoints, transport=fake, username="root", password="rootpw"
        ) as client:
            await client.get("/a")
            await trio.sleep(120)
            fake.delay_next("/v3/auth/authenticate", 1)  # the others wait for the first
            async with trio.open_nursery() as nursery:
                for i in range(5):
                    nursery.start_soon(client.put, f"/k{i}", "v")
            auths = [c for c in fake.calls if c.path == "/v3/auth/authenticate"]
            assert len(auths) == 2


async def test_watch_renews_its_token(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd() as fake:
        fake.enable_auth({"root": "rootpw"}, token_ttl=60)
        async with et.open_client(
            fake.endpoints, transport=fake, username="root", password="rootpw"
        ) as client:
            async with client.watch("/w/", prefix=True) as stream:
                await trio.sleep(120)  # the token expires while the stream is open
                fake.break_watches("eof")  # reconnecting needs a new one
                rev = fake.put("/w/a", "1")
                with trio.fail_after(10):
                    while not (response := await stream.receive()).events:
                        pass
                assert response.revision == rev


async def test_watch_permission_denied(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd() as fake:
        fake.enable_auth(
            {"root": "rootpw", "app": "apppw"}, permissions={"app": [("/app/", "readwrite")]}
        )
        async with et.open_client(
            fake.endpoints, transport=fake, username="app", password="apppw"
        ) as client:
            with pytest.raises(et.PermissionDeniedError):
                async with client.watch("/other/", prefix=True):
                    pass  # pragma: no cover


async def test_watch_without_credentials_on_auth(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd() as fake:
        fake.enable_auth({"root": "rootpw"})
        async with et.open_client(fake.endpoints, transport=fake) as client:
            with pytest.raises(et.PermissionDeniedError):
                async with client.watch("/w/"):
                    pass  # pragma: no cover


def test_open_client_argument_checks() -> None:
    async def main(**kwargs: object) -> None:
        async with et.open_client(**kwargs):  # type: ignore[arg-type]
            pass  # pragma: no cover

    with pytest.raises(ValueError, match="both username and password"):
        trio.run(lambda: main(username="x"))
    with pytest.raises(ValueError, match="at least one endpoint"):
        trio.run(lambda: main(endpoints=" , "))
    with pytest.raises(TypeError, match="open_client"):
        et.Client(None)  # type: ignore[arg-type]


async def test_endpoints_string_and_status_of_one(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_etcd(members=2) as fake:
        joined = ",".join(fake.endpoints)
        async with et.open_client(joined, transport=fake) as client:
            assert client.endpoints == fake.endpoints
            status = await client.status(fake.endpoints[1])
            assert status.header.member_id != 0
            fake.member_down(1)
            with pytest.raises(et.UnavailableError):
                await client.status(fake.endpoints[1])


async def test_request_bodies_are_compact_json() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return ok({"header": {"revision": "9"}})

    async with et.open_client("http://x:2379", transport=httpx.MockTransport(handler)) as client:
        await client.put("/a", b"\xff", lease=12, prev_kv=True)
    assert json.loads(seen[0]) == {"key": "L2E=", "value": "/w==", "lease": "12", "prev_kv": True}
    assert b" " not in seen[0]
