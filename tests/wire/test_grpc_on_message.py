"""A stream whose messages the connection's reader hands to a callback (``open_stream``'s
``on_message``, the Watch stream's): in order, in the reader, its end and its failures."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_etcd_tree import NotFoundError, ProtocolError, UnavailableError
from trio_etcd_tree._wire.base import CallState, PutRequest, WatchCreateRequest
from trio_etcd_tree._wire.grpc.calls import frame
from trio_etcd_tree._wire.grpc.connection import GrpcConnection, GrpcStream, Method
from trio_etcd_tree._wire.grpc.transport import GrpcTransport

from .grpc_script import EP, Call, Network, Server, first_call, put_answer, scripted
from .test_grpc_faults import event, watch_message, watch_requests

WATCH = Method("/etcdserverpb.Watch/Watch")


async def _open(
    grpc: GrpcTransport, net: Network, on_message: object
) -> tuple[GrpcConnection, GrpcStream, Server, Call]:
    server = await first_call(grpc, net)
    connection = grpc._endpoints[EP].connection
    stream = await connection.open_stream(WATCH, on_message=on_message)  # type: ignore[arg-type]
    call = await server.call(1, ended=False)
    await server.answer(call, end=False)  # the answer's headers
    return connection, stream, server, call


async def test_messages_go_to_the_callback_in_order_in_the_reader(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[bytes] = []
    tasks: set[str] = set()

    def on_message(message: bytes) -> None:
        got.append(message)
        tasks.add(trio.lowlevel.current_task().name)

    _, stream, server, call = await _open(grpc, net, on_message)
    await server.answer(call, b"one", b"", b"three", end=False, headers_sent=True)
    await trio.testing.wait_all_tasks_blocked()
    assert got == [b"one", b"", b"three"]
    # a message in pieces is handed over once it is whole
    data = frame(b"four" * 100)
    server.h2.send_data(call.stream_id, data[:3])
    await server.flush()
    await trio.testing.wait_all_tasks_blocked()
    assert len(got) == 3
    server.h2.send_data(call.stream_id, data[3:] + frame(b"five"))
    await server.flush()
    await trio.testing.wait_all_tasks_blocked()
    assert got[3:] == [b"four" * 100, b"five"]
    assert len(tasks) == 1 and tasks.pop().endswith("GrpcConnection._reader")
    # the last message and the end in one DATA frame: the message first, then the end
    server.h2.send_data(call.stream_id, frame(b"last"), end_stream=True)
    await server.flush()
    error = await stream.end("watch")
    assert got[-1] == b"last"
    assert isinstance(error, UnavailableError) and "ended the stream" in str(error)
    assert error.request == "watch"
    stream.close()


async def test_the_end_of_a_stream_with_a_status(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[bytes] = []
    _, stream, server, call = await _open(grpc, net, got.append)
    await server.answer(call, b"a", status=5, text="gone", headers_sent=True)
    error = await stream.end("watch")
    assert got == [b"a"] and isinstance(error, NotFoundError) and "gone" in str(error)
    with pytest.raises(NotFoundError):
        await stream.receive("watch")  # (receive says the same)
    stream.close()


async def test_an_exception_in_the_callback_fails_the_stream_not_the_connection(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[bytes] = []

    def on_message(message: bytes) -> None:
        if message == b"bad":
            raise ValueError("a bug")
        got.append(message)

    connection, stream, server, call = await _open(grpc, net, on_message)
    await server.answer(call, b"ok", b"bad", b"after", end=False, headers_sent=True)
    error = await stream.end("watch")
    assert got == [b"ok"]
    assert isinstance(error, UnavailableError) and "handling a message" in str(error)
    assert isinstance(error.__cause__, ValueError)
    # what comes before the stream is closed is dropped
    await server.answer(call, b"more", end=False, headers_sent=True)
    await trio.testing.wait_all_tasks_blocked()
    assert got == [b"ok"] and not connection._streams[call.stream_id].messages
    stream.close()
    await server.wait_for(lambda: call.reset is not None)
    # the connection goes on
    assert connection.usable

    async def answer(server: Server, c: Call) -> None:
        await server.answer(c, put_answer(8))

    result = await scripted(grpc, net, PutRequest(b"/k", b"v"), answer, CallState())
    assert result.header.revision == 8


async def test_an_etcd_error_in_the_callback_is_the_streams_error(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    bad = ProtocolError("a message we cannot read")

    def on_message(message: bytes) -> None:
        raise bad

    _, stream, server, call = await _open(grpc, net, on_message)
    await server.answer(call, b"x", end=False, headers_sent=True)
    assert await stream.end("watch") is bad
    stream.close()


async def test_every_watch_of_the_stream_gets_its_end(
    grpc: GrpcTransport, net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    """Messages reach the watches in order; an unreadable one fails the stream, and with it
    every watch on it; the next watch opens a new stream."""
    async with (
        grpc.watch(EP, WatchCreateRequest(b"/a"), token=None) as a,
        grpc.watch(EP, WatchCreateRequest(b"/b"), token=None) as b,
    ):
        server = await net.server()
        stream = await server.call(0, ended=False)
        await watch_requests(server, 2)
        await server.answer(
            stream,
            watch_message(1, created=True, header={"revision": 3}),
            watch_message(2, created=True, header={"revision": 3}),
            *[watch_message(1, events=[event(b"/a", r)]) for r in (4, 5, 6)],
            watch_message(2, events=[event(b"/b", 7)]),
            b"\xff",  # not a WatchResponse
            end=False,
        )
        assert (await a.receive()).created
        assert [(await a.receive()).events[0].kv.mod_revision for _ in range(3)] == [4, 5, 6]
        assert (await b.receive()).created
        assert (await b.receive()).events[0].kv.mod_revision == 7
        for watch in (a, b):
            with pytest.raises(ProtocolError):
                await watch.receive()
        await server.wait_for(lambda: stream.reset is not None)  # the stream was reset
        async with grpc.watch(EP, WatchCreateRequest(b"/c"), token=None):
            assert (await server.call(1, ended=False)).headers[b":path"] == WATCH.raw_path


async def test_a_watch_behind_on_a_stream_that_breaks_is_not_cancelled(
    net: Network, autojump_clock: trio.testing.MockClock
) -> None:
    """The cancel of a watch that fell behind is sent by a task of its own, after the
    reader; when the stream broke meanwhile there is nothing to cancel."""
    async with (
        GrpcTransport(connect=net.connect, max_buffered=1) as grpc,
        grpc.watch(EP, WatchCreateRequest(b"/a"), token=None) as a,
    ):
        server = await net.server()
        stream = await server.call(0, ended=False)
        await watch_requests(server, 1)
        server.h2.send_headers(
            stream.stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc")]
        )
        server.h2.send_data(stream.stream_id, frame(watch_message(1, created=True)))
        server.h2.send_data(stream.stream_id, frame(watch_message(1, events=[event(b"/a", 2)])))
        server.h2.reset_stream(stream.stream_id, 2)  # in the same read
        await server.flush()
        assert (await a.receive()).created
        with trio.fail_after(100):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.receive)  # resumes the watch, on a new stream
                again = await server.call(1, ended=False)
                await server.wait_for(lambda: bool(again.messages()))
                await server.answer(
                    again,
                    watch_message(2, created=True),
                    watch_message(2, events=[event(b"/a", 2)]),
                    end=False,
                )
        assert a.resumed == 1
        assert len(stream.messages()) == 1  # no cancel on the broken stream: the create only
