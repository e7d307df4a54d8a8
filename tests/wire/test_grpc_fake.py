"""The gRPC transport against the in-memory etcd's gRPC front, under the mock clock: what the
client does when a connection breaks mid-message, a stream is reset, the server sends GOAWAY,
or PINGs are not answered; and the front's own edges (what a client of ours never sends).

(tests/wire/test_grpc_faults.py keeps its scripted h2 server: it sends what no etcd sends,
garbage statuses, compressed messages, broken frames, to test the client's defences.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
import trio
import trio.testing

import trio_etcd_tree as et
from trio_etcd_tree._wire.grpc import messages as pb
from trio_etcd_tree._wire.grpc.calls import frame
from trio_etcd_tree.testing import FakeEtcd, open_fake_etcd
from trio_etcd_tree.testing._fake.grpc_dialect import grpc_message

REFUSED = h2.errors.ErrorCodes.REFUSED_STREAM


@pytest.fixture
async def fake() -> AsyncIterator[FakeEtcd]:
    async with open_fake_etcd(members=2) as fake:
        yield fake


def grpc_client(fake: FakeEtcd, **options: Any) -> Any:
    return et.open_client(fake.endpoints, transport=fake.grpc, attempt_timeout=2, **options)


async def events(stream: et.WatchStream, count: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    with trio.fail_after(60):
        while len(out) < count:
            response = await stream.receive()
            out.extend((e.kv.mod_revision, e.kv.value) for e in response.events)
    return out


# --- a connection broken mid-message ----------------------------------------------------------


async def test_answer_cut_mid_message(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc_client(fake) as client:
        fake.grpc.cut_next("/v3/kv/put")
        with pytest.raises(et.UnavailableError) as info:
            await client.put("/a", "1")
        assert info.value.outcome_unknown and info.value.kind == "lost"
        assert fake.get("/a") is not None  # it was applied
        fake.grpc.cut_next("/v3/kv/range")
        kv = await client.get("/a")  # a read is asked again
        assert kv is not None and kv.value == b"1"


async def test_watch_cut_mid_message_resumes_without_gap(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc_client(fake) as client, client.watch("/w/", prefix=True) as stream:
        first = fake.put("/w/a", "1")
        assert await events(stream, 1) == [(first, b"1")]
        fake.grpc.cut_next("/v3/watch")
        revisions = [fake.put("/w/a", str(i)) for i in range(2, 5)]
        assert await events(stream, 3) == [(r, str(i).encode()) for i, r in enumerate(revisions, 2)]
        assert stream.statistics().disconnects == 1


async def test_watch_message_of_many_events(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    """A transaction's events come as one message, decoded whole (with the collector
    paused from 64 events on), previous values included."""
    async with grpc_client(fake) as client:
        await client.txn(success=[et.Put(f"/m/{i:03d}", "old") for i in range(100)])
        async with client.watch("/m/", prefix=True, prev_kv=True) as stream:
            for count in (1, 100):
                result = await client.txn(
                    success=[et.Put(f"/m/{i:03d}", str(count)) for i in range(count)]
                )
                response = await stream.receive()
                assert len(response.events) == count
                assert response.revision == result.header.revision
                for i, event in enumerate(response.events):
                    assert event.type is et.EventType.PUT
                    assert event.kv.key == f"/m/{i:03d}".encode()
                    assert event.kv.value == str(count).encode()
                    assert event.kv.mod_revision == result.header.revision
                    assert event.prev_kv is not None
                    assert event.prev_kv.value == (b"1" if count == 100 and i == 0 else b"old")
                    assert event.prev_kv.mod_revision < event.kv.mod_revision
            await client.delete("/m/000")
            (deleted,) = (await stream.receive()).events
            assert deleted.type is et.EventType.DELETE
            assert deleted.prev_kv is not None and deleted.prev_kv.value == b"100"


# --- RST_STREAM -------------------------------------------------------------------------------


async def test_reset_answer(fake: FakeEtcd, autojump_clock: trio.testing.MockClock) -> None:
    async with grpc_client(fake) as client:
        fake.grpc.reset_next("/v3/kv/put")  # INTERNAL_ERROR: served, then reset
        with pytest.raises(et.UnavailableError, match="INTERNAL_ERROR") as info:
            await client.put("/a", "1")
        assert info.value.outcome_unknown
        assert fake.get("/a") is not None
        fake.grpc.reset_next("/v3/kv/put", code=REFUSED)  # not served: safe to send again
        revision = (await client.put("/b", "1")).revision
        assert fake.get("/b") == {**(fake.get("/b") or {}), "mod_revision": revision}
        assert [c.path for c in fake.calls[-2:]] == ["/v3/kv/put", "/v3/kv/put"]


async def test_reset_watch_stream_resumes_without_gap(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc_client(fake) as client, client.watch("/w/", prefix=True) as stream:
        first = fake.put("/w/a", "1")
        assert await events(stream, 1) == [(first, b"1")]
        await fake.grpc.reset_streams("/v3/watch")
        second = fake.put("/w/a", "2")
        fake.grpc.reset_next("/v3/watch")  # its next answer: the re-created watch's
        third = fake.put("/w/a", "3")
        assert await events(stream, 2) == [(second, b"2"), (third, b"3")]
        assert stream.statistics().reconnects == 2  # (the second before it was confirmed)


async def test_reset_keep_alive_stream(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        grpc_client(fake) as client,
        client.watch("/w/") as stream,  # (not a keep-alive stream: not reset itself)
        client.lease(6) as lease,
    ):
        fake.put("/k", "v", lease=lease.id)
        fake.grpc.reset_next("/v3/lease/keepalive")
        await fake.grpc.reset_streams("/v3/lease/keepalive")
        await trio.sleep(30)  # keep-alives go on over a new stream
        assert fake.get("/k") is not None
        revision = fake.put("/w/", "1")  # (the watch moved off the member that failed)
        assert await events(stream, 1) == [(revision, b"1")]


# --- GOAWAY -----------------------------------------------------------------------------------


@asynccontextmanager
async def goaway_during_a_put(
    fake: FakeEtcd, client: et.Client, *, last_stream_id: int | None = None, debug: bytes = b""
) -> AsyncIterator[None]:
    """Member 0 sends GOAWAY (``last_stream_id``, ``debug``) while a put of ``/a`` is in
    flight on its connection (the in-memory etcd holds it for a second); the body runs then,
    and leaving waits for the put."""
    fake.delay_next("/v3/kv/put", 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.put, "/a", "1")
        await trio.testing.wait_all_tasks_blocked()
        await fake.grpc.goaway(0, last_stream_id=last_stream_id, debug=debug)
        yield


async def test_goaway_finishes_open_streams_and_new_calls_use_a_new_connection(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc_client(fake) as client:
        async with goaway_during_a_put(fake, client, debug=b"graceful stop"):
            await trio.testing.wait_all_tasks_blocked()  # the client read it
            assert len(fake.grpc.connections) == 1  # finishing the put
            assert await client.get("/b") is None  # over a new connection
            assert len(fake.grpc.connections) == 2
        assert fake.get("/a") is not None
        await trio.testing.wait_all_tasks_blocked()
        assert len(fake.grpc.connections) == 1  # the old one closed once done


async def test_goaway_refuses_streams_above_its_last_id(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc_client(fake) as client:
        await client.get("/x")  # stream 1
        async with goaway_during_a_put(fake, client, last_stream_id=1):
            pass  # the put is stream 3: above the last id, not served
        # the client was told it was never processed: sent again, applied once
        assert fake.get("/a") == {**(fake.get("/a") or {}), "version": 1}
        assert [c.path for c in fake.calls].count("/v3/kv/put") == 2


async def test_watch_survives_goaway(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc_client(fake) as client, client.watch("/w/", prefix=True) as stream:
        await fake.grpc.goaway()
        revision = fake.put("/w/a", "1")
        assert await events(stream, 1) == [(revision, b"1")]  # the old stream goes on
        revision = fake.put("/w/", "1")  # (the watch moved off the member that failed)
        assert await events(stream, 1) == [(revision, b"1")]


# --- PINGs ------------------------------------------------------------------------------------


async def test_unanswered_pings_end_the_connection_and_the_watch_resumes(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc_client(fake) as client, client.watch("/w/", prefix=True) as stream:
        fake.grpc.ignore_pings(0)
        start = trio.current_time()
        await stream.wait_state_change(et.ConnectionState.CONNECTED)
        # noticed within keepalive_time + keepalive_timeout (6 + 4 s) of the last frame
        assert trio.current_time() - start <= 10
        assert "PING" in (stream.statistics().last_error or "")
        fake.grpc.answer_pings(0)
        revision = fake.put("/w/a", "1")
        assert await events(stream, 1) == [(revision, b"1")]


async def test_frozen_member_is_left_within_the_ping_bound(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        grpc_client(fake) as client,
        client.watch("/w/", prefix=True, heartbeat=3600, stall_timeout=3600) as stream,
    ):
        before = fake.put("/w/a", "0")
        assert await events(stream, 1) == [(before, b"0")]
        fake.freeze_member(0)
        start = trio.current_time()
        revision = fake.put("/w/a", "1")
        assert await events(stream, 1) == [(revision, b"1")]
        assert trio.current_time() - start <= 10 + 2  # the PING bound, then attempt_timeout
        assert stream.statistics().endpoint == fake.endpoints[1]
        fake.thaw_member(0)


# --- a member down ----------------------------------------------------------------------------


async def test_down_member_refuses_connections(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    fake.member_down(0)
    with pytest.raises(ConnectionRefusedError):
        fake.grpc.open_grpc_stream(fake.endpoints[0])
    with pytest.raises(ConnectionRefusedError):
        fake.grpc.open_grpc_stream("http://elsewhere:2379")
    async with grpc_client(fake) as client:
        await client.put("/a", "1")  # the refused connection is a failure to connect
        assert client.endpoint == fake.endpoints[1]


async def test_request_larger_than_the_window(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    """Regression: the client queued a window's worth of frames and waited for the server's
    WINDOW_UPDATE without writing them (nothing else arriving, it waited for ever)."""
    async with grpc_client(fake) as client:
        assert await client.get("/x") is None  # (the server's first frames are read)
        with trio.fail_after(1):
            await client.put("/big", b"x" * 1_000_000)
        assert fake.get("/big") is not None


# --- the server goes on after the client gave up ---------------------------------------------


async def test_answers_to_a_client_that_gave_up(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc_client(fake, request_deadline=1) as client:
        for fault in ("answer", "error", "reset"):
            fake.delay_next("/v3/kv/put", 5)
            if fault == "error":
                fake.fail_next("/v3/kv/put", code=14, message="etcdserver: request timed out")
            elif fault == "reset":
                fake.grpc.reset_next("/v3/kv/put")
            with pytest.raises(et.UnavailableError) as info:
                await client.put(f"/{fault}", "1")
            assert info.value.outcome_unknown
            await trio.sleep(10)  # served after the client reset the stream: nothing is sent
            assert (fake.get(f"/{fault}") is not None) is (fault != "error")
        # a large answer the client stops reading halfway
        for i in range(18):
            fake.put(f"/big/{i:02}", b"x" * (1024 * 1024))
        with trio.move_on_after(0.001):
            await client.range("/big/", prefix=True)
        await trio.testing.wait_all_tasks_blocked()
        assert await client.get("/answer") is not None  # the connection goes on


async def test_member_down_while_a_request_waits(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc_client(fake) as client:
        fake.delay_next("/v3/kv/put", 1)
        async with trio.open_nursery() as nursery:

            async def put() -> None:
                with pytest.raises(et.UnavailableError) as info:
                    await client.put("/a", "1")
                assert info.value.outcome_unknown

            nursery.start_soon(put)
            await trio.testing.wait_all_tasks_blocked()
            fake.member_down(0)
        await trio.sleep(5)
        assert fake.get("/a") is None  # a member that is down serves nothing


async def test_fake_client_over_each_wire(
    fake_etcd: FakeEtcd, fake_client: et.Client, fake_wire: str
) -> None:
    await fake_client.put("/a", "1")
    assert fake_etcd.calls[-1].path == "/v3/kv/put"
    assert len(fake_etcd.grpc.connections) == (1 if fake_wire == "grpc" else 0)


# --- the front's edges ------------------------------------------------------------------------


class RawClient:
    """A bare h2 client on one fake connection, for what our transport never sends."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()

    async def call(
        self, path: bytes, *messages: bytes, end: bool = True, stream_id: int | None = None
    ) -> int:
        sid = stream_id or self.h2.get_next_available_stream_id()
        headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path)]
        self.h2.send_headers(sid, [*headers, (b":authority", b"x")])
        for message in messages:
            self.h2.send_data(sid, frame(message))
        if end:
            self.h2.end_stream(sid)
        await self.stream.send_all(self.h2.data_to_send())
        return sid

    async def until(self, done: Any) -> list[h2.events.Event]:
        """Read until an event satisfies ``done``; every event read."""
        seen: list[h2.events.Event] = []
        while not any(done(e) for e in seen):
            with trio.fail_after(100):
                data = await self.stream.receive_some(65536)
            assert data, "the server closed the connection"
            seen += self.h2.receive_data(data)
            await self.stream.send_all(self.h2.data_to_send())
        return seen


def status_of(seen: list[h2.events.Event]) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for event in seen:
        if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            headers |= dict(event.headers or [])
    return headers


def ended(event: h2.events.Event) -> bool:
    return isinstance(event, h2.events.StreamEnded)


async def test_unknown_methods_and_bad_requests(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    raw = RawClient(fake.grpc.open_grpc_stream(fake.endpoints[0]))
    await raw.call(b"/etcdserverpb.KV/Nope", b"")
    assert (
        status_of(await raw.until(ended))[b"grpc-message"]
        == b"unknown method Nope for service etcdserverpb.KV"
    )
    await raw.call(b"/etcdserverpb.Nope/Range", b"")
    assert (
        status_of(await raw.until(ended))[b"grpc-message"] == b"unknown service etcdserverpb.Nope"
    )
    await raw.call(b"/etcdserverpb.KV/Range", b"\xff\xff")
    headers = status_of(await raw.until(ended))
    assert headers[b"grpc-status"] == b"13" and b"unmarshalling" in headers[b"grpc-message"]
    await raw.call(b"/etcdserverpb.Maintenance/Status")  # no message: an empty request
    assert status_of(await raw.until(ended))[b"grpc-status"] == b"0"
    # a bad watch request is skipped; the stream goes on
    watch = await raw.call(b"/etcdserverpb.Watch/Watch", b"\xff", end=False)
    create = pb.WatchRequest(create_request={"key": b"/w", "watch_id": 4})
    raw.h2.send_data(watch, frame(create.SerializeToString()))
    await raw.stream.send_all(raw.h2.data_to_send())
    seen = await raw.until(lambda e: isinstance(e, h2.events.DataReceived))
    answer = pb.WatchResponse.FromString(bytes(seen[-1].data)[5:])  # type: ignore[attr-defined]
    assert answer.created and answer.watch_id == 4
    # a keep-alive request that does not parse ends its stream
    await raw.call(b"/etcdserverpb.Lease/LeaseKeepAlive", b"\xff", end=False)
    assert status_of(await raw.until(ended))[b"grpc-status"] == b"13"
    # a keep-alive stream the client ends is ended with status 0, as etcd does
    await raw.call(
        b"/etcdserverpb.Lease/LeaseKeepAlive", pb.LeaseKeepAliveRequest(ID=7).SerializeToString()
    )
    assert status_of(await raw.until(ended))[b"grpc-status"] == b"0"
    # a call reset before its request was whole is not served
    sid = await raw.call(b"/etcdserverpb.KV/Put", end=False)
    raw.h2.reset_stream(sid)
    await raw.stream.send_all(raw.h2.data_to_send())
    await trio.testing.wait_all_tasks_blocked()
    assert fake.calls[-1].path != "/v3/kv/put"
    # after GOAWAY, a stream above its last id is not processed
    await fake.grpc.goaway(0)
    await raw.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))
    raw.h2.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN  # (as if not read)
    calls = len(fake.calls)
    await raw.call(b"/etcdserverpb.KV/Range", pb.RangeRequest(key=b"/a").SerializeToString())
    await trio.testing.wait_all_tasks_blocked()
    assert len(fake.calls) == calls
    # not HTTP/2: the connection is closed
    await raw.stream.send_all(b"\0" * 100)
    assert await raw.stream.receive_some() == b""


async def test_errors_on_streams_and_large_answers(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc_client(fake) as client:
        fake.fail_next("/v3/watch", code=14, message="etcdserver: no leader")
        fake.delay_next("/v3/watch", 1)
        async with client.watch("/w/") as stream:
            assert stream.statistics().reconnects == 1
        fake.lose_answers("/v3/lease/keepalive")
        fake.fail_next("/v3/lease/keepalive", code=3, message="bad keep-alive")
        fake.delay_next("/v3/lease/keepalive", 1)
        lease = await client.lease_grant(60)
        with pytest.raises(et.InvalidRequestError, match="bad keep-alive"):  # delayed, failed
            await client.lease_keep_alive_once(lease.id)
        # the connection drops as the stream opens: asked again
        connections = fake.grpc.connections[:]
        assert await client.lease_keep_alive_once(lease.id) == 60
        assert fake.grpc.connections != connections
        # an answer larger than the client's window waits for its WINDOW_UPDATEs
        for i in range(18):
            fake.put(f"/big/{i:02}", b"x" * (1024 * 1024))
        kvs = await client.range("/big/", prefix=True)
        assert len(kvs.kvs) == 18
        assert fake.get("/big/00") is not None


async def test_watch_stream_ends(fake: FakeEtcd, autojump_clock: trio.testing.MockClock) -> None:
    async with grpc_client(fake) as client, client.watch("/w/", prefix=True) as stream:
        for how in ("eof", "error"):
            fake.break_watches(how)
            revision = fake.put("/w/a", how)
            assert await events(stream, 1) == [(revision, how.encode())]
        assert stream.statistics().disconnects == 2
        assert "error reading from server: EOF" in (stream.statistics().last_error or "x")


def test_grpc_message_is_percent_encoded() -> None:
    assert grpc_message("50% ü\n") == b"50%25 %C3%BC%0A"


# --- the client transport's own bugs, found through the fake --------------------------------


async def test_watch_stream_status_keeps_its_error_type(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    fake.fail_next("/v3/watch", code=3, message="etcdserver: bad request for test")
    async with grpc_client(fake) as client:
        with pytest.raises(et.InvalidRequestError, match="bad request for test"):
            async with client.watch("/w/"):
                pytest.fail("the watch should not open")  # pragma: no cover


async def test_call_racing_a_goaway_leaves_the_finishing_streams_alone(
    fake: FakeEtcd, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc_client(fake) as client:
        async with goaway_during_a_put(fake, client):
            # sent before the client read the GOAWAY: refused (not processed), so it is
            # sent again on a new connection, and the old one finishes the put
            assert await client.get("/b") is None
