"""Endpoint health, per-attempt timeouts, and the truth about a failed write, on the
in-memory etcd under the mock clock (the real-server versions are in test_failover_real.py).
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from wrapped_gateway import WrappedGateway

import trio_etcd_tree as et
from trio_etcd_tree._client.endpoints import FIRST_PENALTY, MAX_PENALTY, Endpoints
from trio_etcd_tree.testing import FakeEtcd, open_fake_etcd
from trio_etcd_tree.testing.pytest_plugin import fake_transport

ATTEMPT = 2.0


def client_of(fake: FakeEtcd, wire: str) -> AbstractAsyncContextManager[et.Client]:
    return et.open_client(
        fake.endpoints, transport=fake_transport(fake, wire), attempt_timeout=ATTEMPT
    )


# --- the endpoints' health ------------------------------------------------------------------


async def test_endpoint_order_and_penalties(autojump_clock: trio.testing.MockClock) -> None:
    endpoints = Endpoints(["a", "b", "c"])
    assert endpoints.order() == ["a", "b", "c"]
    endpoints.failed("a")
    assert endpoints.current == "b"
    assert not endpoints.healthy("a")
    assert endpoints.order() == ["b", "c", "a"]
    await trio.sleep(0.5)
    endpoints.failed("c")
    assert endpoints.order() == ["b", "a", "c"]  # unhealthy ones last, soonest retry first
    endpoints.failed("a")  # the same failure seen again while skipped: no longer penalty
    await trio.sleep(FIRST_PENALTY - 0.5)
    assert endpoints.healthy("a")
    assert endpoints.order() == ["b", "a", "c"]
    endpoints.failed("a")  # failed again when tried again: twice as long
    await trio.sleep(FIRST_PENALTY)
    assert not endpoints.healthy("a")
    await trio.sleep(FIRST_PENALTY)
    assert endpoints.healthy("a")
    endpoints.succeeded("a")
    endpoints.succeeded("b")  # already healthy: nothing changes
    endpoints.failed("a")
    for _ in range(40):  # the penalty is capped
        await trio.sleep(MAX_PENALTY)
        endpoints.failed("a")
    await trio.sleep(MAX_PENALTY)
    assert endpoints.healthy("a")
    with pytest.raises(ValueError, match="at least one endpoint"):
        Endpoints([])


async def test_on_failure_calls_a_watcher_once_at_the_next_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    endpoints = Endpoints(["a", "b"])
    called: list[str] = []

    def first() -> None:
        called.append(f"first {endpoints.current}")

    def second() -> None:
        called.append("second")

    endpoints.on_failure("a", first)
    endpoints.on_failure("a", second)
    endpoints.forget("a", second)
    endpoints.forget("b", second)  # never registered there: nothing happens
    endpoints.failed("b")  # not its endpoint
    assert called == []
    await trio.sleep(3)
    endpoints.failed("a")
    assert called == ["first b"]  # called once the endpoints moved on from "a"
    await trio.sleep(MAX_PENALTY)
    endpoints.failed("a")  # once: a watcher registers again for the next failure
    assert called == ["first b"]
    endpoints.forget("a", first)  # called already: nothing happens


# --- a member that stops answering ------------------------------------------------------------


async def test_frozen_member_is_left_within_the_attempt_timeout(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd(members=3) as fake, client_of(fake, fake_wire) as client:
        await client.put("/a", "1")
        fake.freeze_member(0)
        start = trio.current_time()
        kv = await client.get("/a")  # a read moves on
        assert kv is not None
        assert kv.value == b"1"
        assert trio.current_time() - start == pytest.approx(ATTEMPT)
        assert client.endpoint == fake.endpoints[1]
        assert not client.endpoint_healthy(fake.endpoints[0])
        start = trio.current_time()
        await client.put("/a", "2")  # a write goes straight to a healthy member
        assert trio.current_time() == start
        fake.thaw_member(0)


async def test_frozen_member_write_outcome_is_unknown(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd(members=3) as fake, client_of(fake, fake_wire) as client:
        fake.freeze_member(0)
        with pytest.raises(et.UnavailableError, match="may or may not") as info:
            await client.put("/a", "1")
        assert info.value.kind == "timeout"
        assert info.value.outcome_unknown
        assert trio.current_time() == pytest.approx(ATTEMPT)
        assert fake.get("/a") is None
        fake.thaw_member(0)  # it serves what it was sent: the write lands after all
        await trio.testing.wait_all_tasks_blocked()
        assert fake.get("/a") is not None
        # ... and the member answers again once its penalty is over
        await trio.sleep(FIRST_PENALTY)
        assert client.endpoint_healthy(fake.endpoints[0])


async def test_watch_moves_off_a_member_marked_unhealthy(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd(members=2) as fake, client_of(fake, fake_wire) as client:
        async with client.watch("/w/", prefix=True) as stream:
            assert stream.statistics().endpoint == fake.endpoints[0]
            fake.freeze_member(0)
            await client.get("/x")  # meets the frozen member: marks it unhealthy
            rev = fake.put("/w/a", "1")
            with trio.fail_after(1):
                response = await stream.receive()
            assert response.revision == rev
            assert stream.statistics().endpoint == fake.endpoints[1]
            assert stream.statistics().disconnects == 1
            fake.thaw_member(0)


async def test_watch_on_a_frozen_member_leaves_on_its_own(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd(members=2) as fake, client_of(fake, fake_wire) as client:
        async with client.watch("/w/", prefix=True, heartbeat=5) as stream:
            fake.freeze_member(0)
            start = trio.current_time()
            rev = fake.put("/w/a", "1")
            response = await stream.receive()
            assert response.revision == rev
            # silent for a heartbeat, then the probe gets no answer within the attempt timeout
            assert 5 + ATTEMPT <= trio.current_time() - start <= 5 + ATTEMPT + 0.05
            assert stream.statistics().stalls == 1
            fake.thaw_member(0)


async def test_new_watch_on_a_frozen_member_moves(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd(members=2) as fake, client_of(fake, fake_wire) as client:
        fake.freeze_member(0)
        async with client.watch("/w/", prefix=True) as stream:
            assert ATTEMPT <= trio.current_time() <= ATTEMPT + 0.05  # and a backoff
            assert stream.statistics().endpoint == fake.endpoints[1]
            assert "not confirmed within 2 s" in str(stream.statistics().last_error)
        fake.thaw_member(0)


async def test_mount_over_a_frozen_member(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd(members=3) as fake, client_of(fake, fake_wire) as client:
        fake.put("/cfg/a", "1")
        async with et.mount(client, "/cfg") as root:
            fake.freeze_member(0)
            start = trio.current_time()
            # the running mount's write meets the frozen member once, then goes elsewhere
            with pytest.raises(et.UnavailableError) as info:
                await root["a"].set("2")
            assert info.value.outcome_unknown
            assert trio.current_time() - start == pytest.approx(ATTEMPT)
            await root["a"].set("3")  # the tree follows the echo through another member
            assert root["a"].value == "3"
            async with et.mount(client, "/cfg") as second:  # a new mount
                assert second["a"].value == "3"
            fake.thaw_member(0)
            await trio.testing.wait_all_tasks_blocked()
            # the frozen member's guarded write finds the key changed: it is not applied
            await root.wait_revision(fake.revision)
            assert root["a"].value == "3"
            assert fake.get("/cfg/a") == fake.get("/cfg/a") | {"value": b"3"}  # type: ignore[operator]


# --- answers lost after the request went out --------------------------------------------------


async def test_lost_answer_of_a_write_is_reported_and_applied(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd(members=2) as fake, client_of(fake, fake_wire) as client:
        fake.lose_answers("/v3/kv/put")
        with pytest.raises(et.UnavailableError, match="may or may not") as info:
            await client.put("/a", "1")
        assert info.value.outcome_unknown
        assert info.value.kind == "lost"
        assert fake.get("/a") is not None  # it was applied
        fake.lose_answers("/v3/kv/txn")
        with pytest.raises(et.UnavailableError) as info:
            await client.txn(success=[et.Put("/b", "1")])
        assert info.value.outcome_unknown
        assert fake.get("/b") is not None


async def test_lost_answer_of_a_read_is_repeated(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd(members=2) as fake, client_of(fake, fake_wire) as client:
        fake.put("/a", "1")
        fake.lose_answers("/v3/kv/range")
        kv = await client.get("/a")
        assert kv is not None
        assert client.endpoint == fake.endpoints[1]


async def test_refused_write_is_not_applied_and_goes_elsewhere(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd(members=2) as fake, client_of(fake, fake_wire) as client:
        fake.member_down(0)
        await client.put("/a", "1")
        fake.member_down(1)
        await trio.testing.wait_all_tasks_blocked()  # (gRPC: its connection dropped)
        with pytest.raises(et.UnavailableError, match="request_deadline") as info:
            await client.put("/b", "1")
        assert info.value.kind == "timeout"
        assert not info.value.outcome_unknown  # never sent anywhere
        assert fake.get("/b") is None


async def test_server_timeout_of_a_write_is_unknown(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd(members=2) as fake, client_of(fake, fake_wire) as client:
        fake.fail_next("/v3/kv/put", code=14, message="etcdserver: request timed out")
        with pytest.raises(et.UnavailableError, match="timed out") as info:
            await client.put("/a", "1")
        assert info.value.outcome_unknown
        fake.fail_next("/v3/kv/put", code=14, message="etcdserver: too many requests")
        await client.put("/a", "1")  # refused before it was proposed: tried elsewhere


async def test_unparsable_answer_to_a_write_is_unknown() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"{oops"))
    async with et.open_client("http://x:2379", transport=transport) as client:
        with pytest.raises(et.ProtocolError) as info:
            await client.put("/a", "1")
        assert info.value.outcome_unknown


async def test_deadline_during_a_sent_write(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd(members=2) as fake:
        async with et.open_client(
            fake.endpoints,
            transport=fake_transport(fake, fake_wire),
            request_deadline=3,
            attempt_timeout=5,
        ) as client:
            fake.delay_next("/v3/kv/put", 100)
            with pytest.raises(et.UnavailableError, match="request_deadline") as info:
                await client.put("/a", "1")
            assert info.value.outcome_unknown
            assert client.endpoint == fake.endpoints[1]  # the deadline marked it too


# --- token renewal ----------------------------------------------------------------------------


async def test_token_renewed_at_most_once_per_call(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd() as fake:
        fake.enable_auth({"root": "rootpw"}, token_ttl=0)  # every token is stale at once
        async with et.open_client(
            fake.endpoints,
            transport=fake_transport(fake, fake_wire),
            username="root",
            password="rootpw",
        ) as client:
            with pytest.raises(et.AuthenticationError, match="invalid auth token"):
                await client.put("/a", "1")
        paths = [call.path for call in fake.calls]
        assert paths == [
            "/v3/auth/authenticate",
            "/v3/kv/put",
            "/v3/auth/authenticate",  # the one renewal
            "/v3/kv/put",
        ]


# --- endpoints given by users -------------------------------------------------------------------


async def test_endpoint_forms() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"header": {"revision": "1"}})

    transport = httpx.MockTransport(handler)
    async with et.open_client("127.0.0.1:2379, https://h:1/", transport=transport) as client:
        assert client.endpoints == ["http://127.0.0.1:2379", "https://h:1"]
        await client.get("/a")
    assert seen == ["http://127.0.0.1:2379/v3/kv/range"]


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        ("http://[::1", r"^not an endpoint: 'http://\[::1' \(Invalid IPv6 URL\)"),
        ("http://h:port", r"^not an endpoint: 'http://h:port' \(Port could not be cast"),
        ("ftp://h:1", r"^not an endpoint: 'ftp://h:1' \(say host:port or http://host:port\)"),
        ("http://h:1/path", r"^not an endpoint: 'http://h:1/path' \(say host:port"),
        ("http://:1", r"^not an endpoint: 'http://:1' \(say host:port"),
    ],
)
async def test_bad_endpoints_are_refused_at_once(endpoints: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async with et.open_client(endpoints):
            pass  # pragma: no cover


async def test_option_checks() -> None:
    with pytest.raises(ValueError, match="client_key needs client_cert"):
        async with et.open_client(client_key="k.pem"):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="attempt_timeout must be > 0"):
        async with et.open_client(attempt_timeout=0):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="ssl_context, or ca_cert and client_cert, not both"):
        async with et.open_client(ssl_context=ssl.create_default_context(), ca_cert="ca.pem"):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="transport must be one of grpc, gateway"):
        async with et.open_client(transport="carrier pigeon"):
            pass  # pragma: no cover


def test_credentials_repr_hides_the_password() -> None:
    from trio_etcd_tree._client import Credentials

    assert "s3cret" not in repr(Credentials("app", "s3cret"))


async def test_member_thawed_in_time_delivers_what_it_held(
    autojump_clock: trio.testing.MockClock, fake_wire: str
) -> None:
    async with open_fake_etcd(members=2) as fake:
        async with (
            et.open_client(fake.endpoints, transport=fake_transport(fake, fake_wire)) as one,
            et.open_client(
                fake.endpoints[::-1], transport=fake_transport(fake, fake_wire)
            ) as other,
            one.watch("/w/", prefix=True) as first,
            other.watch("/w/", prefix=True) as second,
        ):
            fake.freeze_member(0)
            fake.freeze_member(0)  # frozen twice: still held once
            rev = fake.put("/w/a", "1")
            assert (await second.receive()).revision == rev  # member 1 is not frozen
            with pytest.raises(trio.WouldBlock):
                first.receive_nowait()
            fake.thaw_member(0)
            assert (await first.receive()).revision == rev
            assert first.statistics().disconnects == 0


class LaggingTransport(WrappedGateway):
    """The gateway to the in-memory etcd, except that a new watch is confirmed at an old
    revision, as a follower that is behind its leader confirms it."""

    def __init__(self, fake: FakeEtcd, lag: int) -> None:
        super().__init__(fake)
        self.lag = lag

    @asynccontextmanager
    async def watch(self, endpoint: str, create: Any, *, token: str | None) -> AsyncIterator[Any]:
        async with super().watch(endpoint, create, token=token) as watch:
            lag = self.lag

            class Lagging:
                async def receive(self) -> Any:
                    message = await watch.receive()
                    if message.created:
                        header = message.header._replace(revision=message.header.revision - lag)
                        return dataclasses.replace(message, header=header)
                    return message

                request_progress = watch.request_progress

            yield Lagging()


async def test_a_lagging_member_is_not_a_restored_cluster(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_etcd() as fake:
        transport = LaggingTransport(fake, lag=0)
        async with et.open_client(fake.endpoints, transport=transport) as client:
            async with client.watch("/w/", prefix=True) as stream:
                rev = fake.put("/w/a", "1")
                assert (await stream.receive()).revision == rev
                transport.lag = 5  # the next watch is confirmed revisions behind ...
                fake.break_watches("eof")
                rev = fake.put("/w/b", "1")
                # ... but a linearizable read shows the store is not behind: no error
                assert (await stream.receive()).revision == rev


def test_call_state_without_a_scope() -> None:
    from trio_etcd_tree._wire import CallState

    state = CallState()
    state.mark_sent()
    state.mark_answered()
    assert state.sent
    assert state.answered


async def test_gateway_watch_cannot_ask_for_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from trio_etcd_tree._wire import WatchCreateRequest
    from trio_etcd_tree._wire.gateway.transport import GatewayTransport

    async with open_fake_etcd() as fake:
        transport = GatewayTransport(http_transport=fake)
        async with transport.watch(fake.endpoints[0], WatchCreateRequest(b"/a"), token=None) as w:
            assert (await w.receive()).created
            with pytest.raises(et.InvalidRequestError, match="no progress request"):
                await w.request_progress()
        async with et.open_client(fake.endpoints, transport=transport) as client:
            await client.put("/a", "1")  # a transport object is used as it is


class Tracing(httpx.AsyncBaseTransport):
    """An httpx transport that reports through httpcore's trace hook how far each request
    got, as httpcore's connection pool does, and fails (or hangs) at the event it is told."""

    EVENTS = (
        "http11.send_request_headers.started",
        "http11.send_request_body.started",
        "http11.receive_response_headers.started",
    )

    def __init__(self, at: str, error: Exception | None) -> None:
        self.at = at
        self.error = error  # None: hang there

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        trace = request.extensions["trace"]
        for event in self.EVENTS:
            await trace(event, {})
            if event == self.at:
                if self.error is None:
                    await trio.sleep_forever()
                raise self.error
        await trace("http11.receive_response_headers.complete", {})
        return httpx.Response(200, json={"header": {"revision": "5"}})


@pytest.mark.parametrize(
    ("at", "error", "kind", "unknown"),
    [
        # the connection broke while the headers went out: the body never did
        ("http11.send_request_headers.started", httpx.WriteError("EPIPE"), "lost", False),
        # ... after the body started to go out: it may have been applied
        ("http11.send_request_body.started", httpx.WriteError("EPIPE"), "lost", True),
        ("http11.receive_response_headers.started", httpx.ReadError("reset"), "lost", True),
        # no answer within attempt_timeout, before and after the body started to go out
        ("http11.send_request_headers.started", None, "timeout", False),
        ("http11.receive_response_headers.started", None, "timeout", True),
    ],
)
async def test_outcome_follows_how_far_the_request_got(
    at: str,
    error: Exception | None,
    kind: str,
    unknown: bool,
    autojump_clock: trio.testing.MockClock,
) -> None:
    from trio_etcd_tree._wire.gateway.transport import GatewayTransport

    transport = GatewayTransport(http_transport=Tracing(at, error))
    transport._traced = True  # it reports like httpcore's own pool: trust its trace
    async with et.open_client(
        "http://x:2379", transport=transport, attempt_timeout=ATTEMPT, request_deadline=5
    ) as client:
        with pytest.raises(et.UnavailableError) as info:
            await client.put("/a", "1")
    if unknown:  # raised at once: never repeated
        assert (info.value.kind, info.value.outcome_unknown) == (kind, True)
    else:  # certainly not applied: repeated until the deadline, then reported
        assert info.value.kind == "timeout"
        assert not info.value.outcome_unknown
        seen = "the connection broke (" if kind == "lost" else "(attempt_timeout)"
        assert seen in str(info.value)  # what the last attempt met
        assert "may or may not" not in str(info.value)
        assert trio.current_time() == pytest.approx(5)
