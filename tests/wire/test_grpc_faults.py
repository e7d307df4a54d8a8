"""The gRPC transport against a scripted HTTP/2 server on in-memory streams: every failure
the wire can show, deterministically, under trio's MockClock."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h2.errors
import h2.settings
import hyperframe.frame
import pytest
import trio
import trio.testing

from trio_etcd_tree import (
    InvalidRequestError,
    NotFoundError,
    ProtocolError,
    UnavailableError,
)
from trio_etcd_tree._wire.base import (
    AuthenticateRequest,
    CallState,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
    WatchCreateRequest,
)
from trio_etcd_tree._wire.grpc import messages as pb
from trio_etcd_tree._wire.grpc.transport import GrpcTransport

from .grpc_script import EP, Network, Server, call, put_answer, scripted

S = h2.settings.SettingCodes


async def test_a_call_and_its_headers(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        results: list[object] = []

        async def put() -> None:
            with trio.fail_after(200_000):  # beyond 8 digits of milliseconds: in seconds
                results.append(
                    await grpc.call(EP, PutRequest(b"/a", b"1"), token="tok", state=CallState())
                )

        nursery.start_soon(put)
        server = await net.server()
        c = await server.call()
        assert c.headers[b":path"] == b"/etcdserverpb.KV/Put"
        assert c.headers[b"token"] == b"tok"
        assert c.headers[b"grpc-timeout"] == b"200000S"
        assert c.headers[b":authority"] == b"etcd.test:2379"
        await server.answer(c, put_answer(7))
    assert results[0].revision == 7  # type: ignore[attr-defined]
    # a second call reuses the connection, and a short deadline goes out in milliseconds
    async with trio.open_nursery() as nursery:

        async def get() -> None:
            with trio.fail_after(1.5):
                await call(grpc, RangeRequest(b"/a"))

        nursery.start_soon(get)
        c = await server.call(1)
        assert c.headers[b"grpc-timeout"] == b"1500m"
        await server.answer(c, pb.RangeResponse().SerializeToString())
    assert len(net.servers) == 1


@pytest.mark.parametrize(
    ("status", "text", "error"),
    [
        (b"3", b"etcdserver: key is not provided", InvalidRequestError),
        (b"5", b"etcdserver: requested lease not found", NotFoundError),
        (b"x", b"what%20is%20this", UnavailableError),
    ],
)
async def test_trailers_only_errors(
    grpc: GrpcTransport,
    net: Network,
    status: bytes,
    text: bytes,
    error: type[Exception],
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def answer(server: Server, c: object) -> None:
        headers = [(b":status", b"200"), (b"grpc-status", status), (b"grpc-message", text)]
        await server.raw_headers(c, headers, end=True)  # type: ignore[arg-type]

    caught = await scripted(grpc, net, PutRequest(b"/a", b"1"), answer, CallState())
    assert isinstance(caught, error)
    assert caught.request == "put /a"  # type: ignore[attr-defined]
    if status == b"x":
        assert "unreadable grpc-status" in str(caught) and "what is this" in str(caught)


async def test_bad_answers(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async def http_500(server: Server, c: object) -> None:
        await server.raw_headers(c, [(b":status", b"500")], end=True)  # type: ignore[arg-type]

    async def no_status(server: Server, c: object) -> None:
        await server.answer(c, put_answer(), end=False)  # type: ignore[arg-type]
        server.h2.end_stream(c.stream_id)  # type: ignore[attr-defined]
        await server.flush()

    async def two_messages(server: Server, c: object) -> None:
        await server.answer(c, put_answer(), put_answer())  # type: ignore[arg-type]

    async def garbage(server: Server, c: object) -> None:
        await server.answer(c, b"\xff\xff\xff")  # type: ignore[arg-type]

    state = CallState()
    error = await scripted(grpc, net, PutRequest(b"/a", b"1"), http_500, state)
    assert isinstance(error, UnavailableError) and "HTTP status 500" in str(error)
    assert error.outcome_unknown and state.answered
    error = await scripted(grpc, net, PutRequest(b"/a", b"1"), no_status, CallState())
    assert isinstance(error, UnavailableError) and "without a grpc-status" in str(error)
    error = await scripted(grpc, net, RangeRequest(b"/a"), two_messages, CallState())
    assert isinstance(error, ProtocolError) and "2 messages" in str(error)
    error = await scripted(grpc, net, PutRequest(b"/a", b"1"), garbage, CallState())
    assert isinstance(error, ProtocolError) and error.outcome_unknown
    assert error.request == "put /a" and error.endpoint == EP


async def test_answers_of_every_kind(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async def token(server: Server, c: object) -> None:
        await server.answer(c, pb.AuthenticateResponse(token="t.1").SerializeToString())  # type: ignore[arg-type]

    async def refused_grant(server: Server, c: object) -> None:
        await server.answer(c, pb.LeaseGrantResponse(error="no").SerializeToString())  # type: ignore[arg-type]

    async def odd_txn(server: Server, c: object) -> None:
        await server.answer(c, pb.TxnResponse(responses=[{}]).SerializeToString())  # type: ignore[arg-type]

    caught = [
        await scripted(grpc, net, AuthenticateRequest("u", "p"), token, CallState()),
        await scripted(grpc, net, LeaseGrantRequest(5), refused_grant, CallState()),
        await scripted(grpc, net, TxnRequest(), odd_txn, CallState()),
    ]
    assert caught[0] == "t.1"
    assert isinstance(caught[1], ProtocolError) and "refused: no" in str(caught[1])
    assert isinstance(caught[2], ProtocolError) and "no known kind" in str(caught[2])


async def test_stream_resets(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async def refused(server: Server, c: Any) -> None:
        server.h2.reset_stream(c.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        await server.flush()

    async def internal(server: Server, c: Any) -> None:
        server.h2.reset_stream(c.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        await server.flush()

    state = CallState()
    error = await scripted(grpc, net, PutRequest(b"/a", b"1"), refused, state)
    assert isinstance(error, UnavailableError) and "REFUSED_STREAM" in str(error)
    assert not state.sent and not error.outcome_unknown  # never processed: safe to retry
    state = CallState()
    error = await scripted(grpc, net, PutRequest(b"/a", b"1"), internal, state)
    assert "INTERNAL_ERROR" in str(error) and state.sent and error.outcome_unknown


async def goaway(server: Server, code: int, data: bytes, last: int) -> None:
    """A GOAWAY frame, written raw (the server's own state machine would refuse to send
    anything after it, and these tests go on answering older streams)."""
    await server.flush()
    frame = hyperframe.frame.GoAwayFrame(
        0, last_stream_id=last, error_code=code, additional_data=data
    )
    await server.stream.send_all(frame.serialize())


async def test_goaway_finishes_older_streams_and_sends_newer_ones_again(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    outcomes: dict[str, Any] = {}
    states = {"first": CallState(), "second": CallState(), "third": CallState()}

    async def run(name: str) -> None:
        outcomes[name] = await call(grpc, PutRequest(name.encode(), b"1"), states[name])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "first")
        server = await net.server()
        first = await server.call(0)
        nursery.start_soon(run, "second")
        await server.call(1)
        await goaway(server, h2.errors.ErrorCodes.NO_ERROR, b"graceful", first.stream_id)
        await trio.testing.wait_all_tasks_blocked()
        # the second was refused unread: it goes again, on a new connection, as does a new
        # call; the first is still answered on the old one
        second_server = await net.server(1)
        again = await second_server.call(0)
        assert b"second" in again.data
        nursery.start_soon(run, "third")
        third = await second_server.call(1)
        await server.answer(first, put_answer(9))
        await second_server.answer(again, put_answer(10))
        await second_server.answer(third, put_answer(11))
    assert [outcomes[name].revision for name in ("first", "second", "third")] == [9, 10, 11]
    assert grpc.connection_count() == 1


@pytest.mark.parametrize(
    ("code", "data", "reason"),
    [
        (h2.errors.ErrorCodes.NO_ERROR, b"leaving", "(NO_ERROR: leaving)"),
        (h2.errors.ErrorCodes.PROTOCOL_ERROR, b"bad frames", "(PROTOCOL_ERROR: bad frames)"),
        (0x99, b"", "(error code 153)"),
    ],
)
async def test_a_call_refused_twice_by_goaway_fails_as_not_sent(
    grpc: GrpcTransport,
    net: Network,
    code: int,
    data: bytes,
    reason: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = CallState()
    async with trio.open_nursery() as nursery:

        async def refuse_twice() -> None:
            for index in (0, 1):
                server = await net.server(index)
                await server.call(0)
                await goaway(server, code, data, 0)

        nursery.start_soon(refuse_twice)
        with pytest.raises(UnavailableError, match="going away") as info:
            await call(grpc, PutRequest(b"/a", b"1"), state)
    assert reason in str(info.value)
    assert not state.sent and not info.value.outcome_unknown


async def test_goaway_with_nothing_open_ends_the_connection(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async def answer(server: Server, c: Any) -> None:
        await server.answer(c, put_answer())

    await scripted(grpc, net, PutRequest(b"/a", b"1"), answer, CallState())
    server = net.servers[0]
    await goaway(server, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, b"too_many_pings", 1)
    await trio.testing.wait_all_tasks_blocked()
    assert grpc.connection_count() == 0


async def test_a_ping_that_never_comes_back(
    net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async with GrpcTransport(connect=net.connect, keepalive_time=6, keepalive_timeout=4) as grpc:
        async with grpc.watch(EP, WatchCreateRequest(b"/w"), token=None) as watch:
            server = await net.server()
            server.answer_pings = False
            await server.call(0, ended=False)
            start = trio.current_time()
            with pytest.raises(UnavailableError) as info:
                await watch.receive()
            assert trio.current_time() - start == 10.0
            assert "no answer to an HTTP/2 PING within 4 s" in str(info.value)
            assert server.pings == 0


async def test_pings_only_while_a_stream_is_open(
    net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async with GrpcTransport(connect=net.connect, keepalive_time=6, keepalive_timeout=4) as grpc:

        async def answer(server: Server, c: Any) -> None:
            await server.answer(c, put_answer())

        await scripted(grpc, net, PutRequest(b"/a", b"1"), answer, CallState())
        server = net.servers[0]
        await trio.sleep(3)  # a read in the middle of the idle time moves the next look
        await scripted(grpc, net, PutRequest(b"/a", b"1"), answer, CallState())
        await trio.sleep(60)  # idle: grpc-go would count pings as strikes
        assert server.pings == 0
        async with grpc.watch(EP, WatchCreateRequest(b"/w"), token=None):
            await trio.sleep(6.5)
            assert server.pings == 1  # answered, so the connection lives on
            await trio.sleep(6)
            assert server.pings == 2
        assert grpc.connection_count() == 1


async def test_server_closes_the_connection_mid_message(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async def half(server: Server, c: Any) -> None:
        server.h2.send_headers(c.stream_id, [(b":status", b"200")])
        server.h2.send_data(c.stream_id, b"\0\0\0\0\x10abc")
        await server.flush()
        await server.stream.aclose()

    state = CallState()
    error = await scripted(grpc, net, PutRequest(b"/a", b"1"), half, state)
    assert isinstance(error, UnavailableError) and "closed the connection" in str(error)
    assert error.outcome_unknown and error.kind == "lost"


async def test_compressed_message_and_protocol_garbage(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async def compressed(server: Server, c: Any) -> None:
        server.h2.send_headers(c.stream_id, [(b":status", b"200")])
        server.h2.send_data(c.stream_id, b"\1\0\0\0\0")
        await server.flush()

    error = await scripted(grpc, net, RangeRequest(b"/a"), compressed, CallState())
    assert "compressed gRPC message" in str(error)

    async def garbage(server: Server, c: Any) -> None:
        await server.stream.send_all(b"\0\0\1\0\0\0\0\0\0x")  # DATA on stream 0

    error = await scripted(grpc, net, RangeRequest(b"/a"), garbage, CallState())
    assert isinstance(error, UnavailableError) and "HTTP/2 protocol error" in str(error)


async def test_max_concurrent_streams_and_flow_control(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    settings = {S.MAX_CONCURRENT_STREAMS: 1, S.INITIAL_WINDOW_SIZE: 1000, S.HEADER_TABLE_SIZE: 256}
    net = Network(nursery, settings)
    async with GrpcTransport(connect=net.connect) as grpc:
        done: list[int] = []

        async def put(i: int) -> None:
            result: Any = await call(grpc, PutRequest(b"/%d" % i, b"v" * 5000 * (i > 0)))
            done.append(result.revision)

        async def answer(server: Server, c: Any) -> None:
            await server.answer(c, put_answer(0))

        # a first call, so that both sides have seen each other's settings
        await scripted(grpc, net, PutRequest(b"/", b""), answer, CallState())
        async with trio.open_nursery() as calls:
            calls.start_soon(put, 1)
            server = await net.server()
            first = await server.call(1)  # 5000 bytes through a window of 1000
            assert len(first.messages()[0]) > 5000
            calls.start_soon(put, 2)
            await trio.testing.wait_all_tasks_blocked()
            assert len(server.calls) == 2  # the second waits for a free stream
            await server.answer(first, put_answer(1))
            second = await server.call(2)
            await server.answer(second, put_answer(2))
        assert sorted(done) == [1, 2]


async def test_cancelled_call_resets_its_stream(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    state = CallState()
    with trio.move_on_after(1):
        await grpc.call(EP, PutRequest(b"/a", b"1"), token=None, state=state)
    server = net.servers[0]
    await server.wait_for(lambda: server.calls[0].reset is not None)
    assert server.calls[0].reset == h2.errors.ErrorCodes.CANCEL
    assert state.sent and not state.answered


async def test_broken_transport(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    class Broken(trio.abc.Stream):
        def __init__(self, inner: trio.abc.Stream, fail_send: bool) -> None:
            self.inner, self.fail_send = inner, fail_send

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            if self.fail_send:
                raise trio.BrokenResourceError("cable cut")
            await self.inner.send_all(data)

        async def wait_send_all_might_not_block(self) -> None:
            raise NotImplementedError

        async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
            if not self.fail_send:
                await trio.sleep(1)
                raise RuntimeError("a bug")
            return await self.inner.receive_some(max_bytes)

        async def aclose(self) -> None:
            await self.inner.aclose()

    for fail_send, expected in ((True, "writing failed"), (False, r"RuntimeError\('a bug'\)")):
        net = Network(nursery)
        net.wrap = lambda stream, f=fail_send: Broken(stream, f)
        async with GrpcTransport(connect=net.connect) as grpc:
            with pytest.raises(UnavailableError, match=expected):
                await call(grpc, RangeRequest(b"/a"))


async def test_closed_transport_refuses_calls(grpc: GrpcTransport) -> None:
    grpc.close()
    with pytest.raises(UnavailableError, match="client is closed"):
        await call(grpc, RangeRequest(b"/a"))


def watch_message(watch_id: int, **fields: Any) -> bytes:
    data: bytes = pb.WatchResponse(watch_id=watch_id, **fields).SerializeToString()
    return data


def event(key: bytes, revision: int) -> dict[str, Any]:
    return {"kv": {"key": key, "value": b"v", "mod_revision": revision}}


async def watch_requests(server: Server, count: int) -> list[Any]:
    """The first ``count`` WatchRequests the client sent on its Watch stream."""
    await server.wait_for(lambda: len(server.calls[0].messages()) >= count)
    return [pb.WatchRequest.FromString(m) for m in server.calls[0].messages()]


async def test_watch_mux_messages(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(100):
        await _watch_mux_messages(grpc, net)


async def _watch_mux_messages(grpc: GrpcTransport, net: Network) -> None:
    async with grpc.watch(EP, WatchCreateRequest(b"/a", start_revision=5), token="t") as a:
        server = await net.server()
        stream = await server.call(0, ended=False)
        assert stream.headers[b":path"] == b"/etcdserverpb.Watch/Watch"
        assert stream.headers[b"token"] == b"t" and b"grpc-timeout" not in stream.headers
        await server.answer(stream, end=False)  # response headers
        async with grpc.watch(EP, WatchCreateRequest(b"/b"), token="t") as b:
            requests = await watch_requests(server, 2)
            ids = [r.create_request.watch_id for r in requests]
            assert ids == [1, 2] and requests[0].create_request.start_revision == 5
            # a progress report while /b is not created yet reaches /a only
            await server.answer(
                stream,
                watch_message(1, created=True, header={"revision": 9}),
                watch_message(-1, header={"revision": 9}),
                watch_message(2, created=True, header={"revision": 9}),
                watch_message(2, created=True),  # a second "created": passed on
                watch_message(-1, created=True),  # a refusal with no create due: ignored
                watch_message(77, events=[event(b"/x", 10)]),  # a watch we do not know
                watch_message(2, events=[event(b"/b", 10)], header={"revision": 10}),
                watch_message(
                    1,
                    canceled=True,
                    cancel_reason="rpc error: code = "
                    "PermissionDenied desc = etcdserver: permission denied",
                ),
                watch_message(2, canceled=True),
                end=False,
                headers_sent=True,
            )
            created = await a.receive()
            assert created.created and created.header.revision == 9
            progress = await a.receive()
            assert not progress.events and not progress.created and progress.header.revision == 9
            denied = await a.receive()
            assert denied.canceled and type(denied.error).__name__ == "PermissionDeniedError"
            assert (await b.receive()).created
            assert (await b.receive()).created
            got = await b.receive()
            assert got.events[0].kv.key == b"/b" and b.next_revision == 11
            ended = await b.receive()
            assert ended.canceled and "cancelled the watch" in str(ended.error)
            await b.request_progress()
            assert (await watch_requests(server, 3))[2].HasField("progress_request")
            await grpc._endpoints[EP].muxes["t"].cancel(b)
        # leaving b's block again cancels nothing more
        assert len(await watch_requests(server, 3)) == 3
        with pytest.raises(UnavailableError, match="cancelled the watch"):
            await a.receive()
        async with grpc.watch(EP, WatchCreateRequest(b"/c"), token="t") as c:
            await watch_requests(server, 4)
            # the server ends the stream: every watch of it sees the disconnect
            await server.answer(stream, status=14, text="etcdserver: no leader", headers_sent=True)
            with pytest.raises(UnavailableError, match="no leader"):
                await c.receive()


async def test_watch_refused_on_etcd_34_with_id_minus_one(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc.watch(EP, WatchCreateRequest(b"/a"), token=None) as a:
        server = await net.server()
        stream = await server.call(0, ended=False)
        await server.answer(
            stream,
            watch_message(
                -1,
                created=True,
                canceled=True,
                cancel_reason="rpc error: code = InvalidArgument "
                "desc = etcdserver: user name is empty",
            ),
            end=False,
        )
        refused = await a.receive()
        assert refused.canceled and type(refused.error).__name__ == "AuthenticationError"
        with pytest.raises(UnavailableError, match="cancelled the watch"):
            await a.receive()
        async with grpc.watch(EP, WatchCreateRequest(b"/b"), token=None) as b:
            await watch_requests(server, 2)
            # the stream ends without trailers: a disconnect
            server.h2.end_stream(stream.stream_id)
            await server.flush()
            with pytest.raises(UnavailableError, match="ended the stream"):
                await b.receive()


async def test_slow_watch_is_suspended_and_created_again(
    net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async with GrpcTransport(connect=net.connect, max_buffered=2) as grpc:
        async with grpc.watch(EP, WatchCreateRequest(b"/a"), token=None) as a:
            server = await net.server()
            stream = await server.call(0, ended=False)
            await server.answer(
                stream,
                watch_message(1, created=True, header={"revision": 3}),
                watch_message(1, events=[event(b"/a", 4)]),
                watch_message(1, events=[event(b"/a", 5)]),  # dropped: the buffer is full
                watch_message(1, events=[event(b"/a", 6)]),  # dropped too
                end=False,
            )
            requests = await watch_requests(server, 2)
            assert requests[1].cancel_request.watch_id == 1
            assert (await a.receive()).created
            assert (await a.receive()).events[0].kv.mod_revision == 4
            # the buffer is empty: the watch is created again from revision 5
            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.receive)
                requests = await watch_requests(server, 3)
                again = requests[2].create_request
                assert (again.watch_id, again.start_revision) == (2, 5)
                await server.answer(
                    stream,
                    watch_message(2, created=True, header={"revision": 6}),  # not shown
                    watch_message(2, events=[event(b"/a", 5)]),
                    end=False,
                    headers_sent=True,
                )
            assert a.resumed == 1
            # it falls behind again; this time the connection breaks before it is resumed
            await server.answer(
                stream,
                *[watch_message(2, events=[event(b"/a", r)]) for r in (6, 7, 8)],
                end=False,
                headers_sent=True,
            )
            await watch_requests(server, 4)
            grpc.discard(EP)
            grpc.discard(EP)  # nothing left to drop
            await a.receive()
            await a.receive()
            with pytest.raises(UnavailableError):
                await a.receive()


async def test_compacted_watch(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc.watch(EP, WatchCreateRequest(b"/a", start_revision=2), token=None) as a:
        server = await net.server()
        stream = await server.call(0, ended=False)
        await server.answer(
            stream,
            watch_message(1, created=True),
            watch_message(1, canceled=True, compact_revision=7),
            end=False,
        )
        assert (await a.receive()).created
        canceled = await a.receive()
        assert canceled.canceled and canceled.compact_revision == 7 and canceled.error is None


async def test_watch_on_a_dead_connection_and_cancel_on_a_broken_one(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async with grpc.watch(EP, WatchCreateRequest(b"/a"), token=None):
        peer = grpc._endpoints[EP]
        # the connection is closed under the block: cancelling the watch on the way out
        # fails quietly
        peer.connection.close()
    await trio.testing.wait_all_tasks_blocked()  # the mux has seen its stream end
    mux = peer.mux(None, 10)
    with pytest.raises(UnavailableError):
        await mux.watch(WatchCreateRequest(b"/b"))
    with pytest.raises(UnavailableError):
        await peer.connection.unary(pb_method("/etcdserverpb.KV/Range"), b"", request_desc="range")


def pb_method(path: str) -> Any:
    from trio_etcd_tree._wire.grpc.connection import Method

    return Method(path)


async def test_keep_alive_stream(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    ttls: list[Any] = []

    async def keep(lease: int) -> None:
        try:
            ttls.append(await call(grpc, LeaseKeepAliveRequest(lease)))
        except UnavailableError as exc:
            ttls.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep, 7)
        server = await net.server()
        stream = await server.call(0, ended=False)
        assert stream.headers[b":path"] == b"/etcdserverpb.Lease/LeaseKeepAlive"
        await server.wait_for(lambda: len(stream.messages()) == 1)
        answer = pb.LeaseKeepAliveResponse
        await server.answer(
            stream,
            answer(ID=99, TTL=5).SerializeToString(),  # nobody asked for lease 99
            answer(ID=7, TTL=5).SerializeToString(),
            end=False,
        )
    assert ttls == [5]
    with trio.move_on_after(1):  # a cancelled keep-alive leaves nothing behind
        await call(grpc, LeaseKeepAliveRequest(7))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep, 8)
        await server.wait_for(lambda: len(stream.messages()) == 3)
        server.h2.reset_stream(stream.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        await server.flush()
    assert isinstance(ttls[1], UnavailableError)


async def test_concurrent_first_calls_share_one_connection(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(call, grpc, PutRequest(b"/a", b"1"))
        for _ in range(2):
            server, c = await net.unanswered()
            await server.answer(c, put_answer())
    assert len(net.servers) == 1


async def test_late_frames_of_a_forgotten_stream_are_ignored(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    for _ in range(2):
        with trio.move_on_after(1):
            await call(grpc, PutRequest(b"/a", b"1"))
    server = net.servers[0]
    first, second = server.calls
    first.taken = second.taken = True
    await server.wait_for(lambda: second.reset is not None)
    # as if the server had answered before it saw the resets
    await server.stream.send_all(
        hyperframe.frame.HeadersFrame(
            first.stream_id, data=b"\x88", flags=["END_HEADERS"]
        ).serialize()
        + hyperframe.frame.DataFrame(
            first.stream_id, data=b"\0\0\0\0\0", flags=["END_STREAM"]
        ).serialize()
        + hyperframe.frame.RstStreamFrame(second.stream_id, error_code=0x99).serialize()
    )

    async def answer(s: Server, c: Any) -> None:
        await s.answer(c, put_answer(3))

    await trio.testing.wait_all_tasks_blocked()
    result = await scripted(grpc, net, PutRequest(b"/b", b"1"), answer, CallState())
    assert result.revision == 3
    assert len(net.servers) == 1  # the connection lived on


async def test_more_connection_edges(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    async def unknown_reset(server: Server, c: Any) -> None:
        server.h2.reset_stream(c.stream_id, 0x99)
        await server.flush()

    error = await scripted(grpc, net, RangeRequest(b"/a"), unknown_reset, CallState())
    assert "error code 153" in str(error)

    # a GOAWAY while a call is open: no new call starts on this connection, and leaving
    # the last open call ends it
    outcome: list[Any] = []

    async def slow() -> None:
        with trio.move_on_after(5):
            outcome.append(await call(grpc, RangeRequest(b"/slow")))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow)
        server, c = await net.unanswered()
        await goaway(server, h2.errors.ErrorCodes.NO_ERROR, b"", c.stream_id)
        await trio.testing.wait_all_tasks_blocked()
        peer = grpc._endpoints[EP]
        with pytest.raises(UnavailableError, match="going away"):
            await peer.connection.unary(pb_method("/etcdserverpb.KV/Range"), b"", request_desc="r")
    assert outcome == [] and not peer.connection.usable
    await peer.connection.finished.wait()


@asynccontextmanager
async def small_window(nursery: trio.Nursery) -> AsyncIterator[tuple[GrpcTransport, Server]]:
    """A transport connected (one put answered) to a server that lets each stream send
    100 bytes before it opens the window further."""
    net = Network(nursery, {S.INITIAL_WINDOW_SIZE: 100})
    async with GrpcTransport(connect=net.connect) as grpc:

        async def answer(server: Server, c: Any) -> None:
            await server.answer(c, put_answer(0))

        await scripted(grpc, net, PutRequest(b"/", b""), answer, CallState())
        yield grpc, net.servers[0]


async def start_a_big_put(
    calls: trio.Nursery, grpc: GrpcTransport, server: Server
) -> list[Exception]:
    """Start a put of 5000 bytes in ``calls`` and return once the server has its first
    bytes (the rest waits for the window): the list gets the error the put ends with."""
    outcome: list[Exception] = []

    async def big() -> None:
        try:
            await call(grpc, PutRequest(b"/big", b"v" * 5000))
        except Exception as exc:
            outcome.append(exc)

    calls.start_soon(big)
    await server.wait_for(lambda: len(server.calls) == 2 and bool(server.calls[1].data))
    return outcome


async def test_stream_fails_while_waiting_for_window(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async with small_window(nursery) as (grpc, server):
        for how in ("reset", "close"):
            async with trio.open_nursery() as calls:
                outcome = await start_a_big_put(calls, grpc, server)
                await trio.testing.wait_all_tasks_blocked()
                if how == "reset":
                    server.h2.reset_stream(server.calls[1].stream_id, 8)
                    await server.flush()
                else:
                    await server.stream.aclose()
            assert len(outcome) == 1
            assert isinstance(outcome[0], UnavailableError)


async def test_reading_fails(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    class Breaks(trio.abc.Stream):
        def __init__(self, inner: trio.abc.Stream) -> None:
            self.inner = inner

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            await self.inner.send_all(data)

        async def wait_send_all_might_not_block(self) -> None:
            raise NotImplementedError

        async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
            await trio.sleep(1)
            raise trio.BrokenResourceError("reset by peer")

        async def aclose(self) -> None:
            await self.inner.aclose()

    net = Network(nursery)
    net.wrap = Breaks
    async with GrpcTransport(connect=net.connect) as grpc:
        with pytest.raises(UnavailableError, match="reading failed"):
            await call(grpc, RangeRequest(b"/a"))


async def test_tls_server_without_h2(nursery: trio.Nursery) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)

    async def handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await stream.receive_some()
        except trio.BrokenResourceError:
            pass

    listeners = await nursery.start(
        functools.partial(trio.serve_ssl_over_tcp, host="127.0.0.1"), handler, 0, server_context
    )
    port = listeners[0].transport_listener.socket.getsockname()[1]
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with GrpcTransport(tls=client_context) as grpc:
        with pytest.raises(UnavailableError, match="ALPN") as info:
            await call_at(grpc, f"https://127.0.0.1:{port}")
        assert info.value.kind == "tls"


async def call_at(grpc: GrpcTransport, endpoint: str) -> None:
    await grpc.call(endpoint, RangeRequest(b"/a"), token=None, state=CallState())


def test_codec_and_runtime_checks() -> None:
    from trio_etcd_tree._wire.grpc import codec
    from trio_etcd_tree._wire.grpc.messages import require_upb

    with pytest.raises(ImportError, match="needs protobuf's C runtime"):
        require_upb("python")
    with pytest.raises(TypeError, match="not a transaction operation"):
        codec.txn_request([], ["nope"], [])  # type: ignore[list-item]


async def test_dial_timeout(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()  # accepts, and never answers the TLS handshake

    listeners = await nursery.start(functools.partial(trio.serve_tcp, host="127.0.0.1"), silent, 0)
    port = listeners[0].socket.getsockname()[1]
    async with GrpcTransport(dial_timeout=0.2) as grpc:
        with pytest.raises(UnavailableError, match=r"within 0.2 s") as info:
            await call_at(grpc, f"https://127.0.0.1:{port}")
        assert info.value.kind == "connect"


async def test_server_answers_before_the_request_is_sent(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """grpc-go refuses a message over its size limit as soon as it sees the length: a
    trailers-only answer, then RST_STREAM NO_ERROR, while the client is still sending."""
    async with small_window(nursery) as (grpc, server):
        async with trio.open_nursery() as calls:
            outcome = await start_a_big_put(calls, grpc, server)
            sid = server.calls[1].stream_id
            headers = [
                (b":status", b"200"),
                (b"grpc-status", b"8"),
                (b"grpc-message", b"grpc: received message larger than max (5012 vs. 100)"),
            ]
            # both in one write, so that the client reads them together
            server.h2.send_headers(sid, headers, end_stream=True)
            server.h2.reset_stream(sid, h2.errors.ErrorCodes.NO_ERROR)
            await server.flush()
        assert type(outcome[0]).__name__ == "TooLargeError"
        # a bidi stream the server ended refuses to send
        peer = grpc._endpoints[EP]
        stream = await peer.connection.open_stream(pb_method("/etcdserverpb.Watch/Watch"))
        c = await server.call(2, ended=False)
        await server.answer(c, status=0)
        await server.wait_for(lambda: True)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(UnavailableError, match="ended the stream"):
            await stream.send(b"")
        stream.close()


def test_header_decoder_remembers_only_blocks_that_cannot_change_the_table() -> None:
    """Blocks of one-byte indexes are remembered until a block that may change the table;
    the answers always equal those of hpack's own decoder."""
    import hpack

    from trio_etcd_tree._wire.grpc.headers import HeaderDecoder

    encoder, ours, plain = hpack.Encoder(), HeaderDecoder(), hpack.Decoder()
    answer = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    other = [(b":status", b"200"), (b"content-type", b"text/plain")]
    blocks = [encoder.encode(answer), encoder.encode(answer), encoder.encode(answer)]
    assert blocks[1] == blocks[2] and not blocks[1].translate(None, bytes(range(0x80, 256)))
    blocks += [encoder.encode(other), encoder.encode(other), encoder.encode(answer)]
    for block in blocks:
        assert ours.decode(block) == dict(plain.decode(block, raw=True))
    assert blocks[1] != blocks[5]  # the table moved: the same headers have other indexes
    assert ours.decode(blocks[5]) is ours.decode(blocks[5]) == dict(answer)
    for i in range(100):  # at most 64 blocks are remembered (pairs of static entries)
        assert ours.decode(bytes([0x80 | (1 + i % 61), 0x80 | (1 + i // 61)])) is not None
    assert len(ours._blocks) == 64


def test_feeding_messages_in_pieces() -> None:
    from trio_etcd_tree._wire.grpc.calls import CallStream, frame

    stream = CallStream(1, CallState(), 0)
    data = frame(b"a" * 10) + frame(b"") + frame(b"b" * 20_000)
    pieces = [data[:3], data[3:12], data[12:20], data[20:100], data[100:]]
    assert [stream.feed(p) for p in pieces] == [False, False, True, False, True]
    assert list(stream.messages) == [b"a" * 10, b"", b"b" * 20_000]
