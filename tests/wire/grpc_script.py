"""A scripted HTTP/2 gRPC server over trio's in-memory streams, for fault injection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import trio
import trio.testing

from trio_etcd_tree._wire.base import CallState, PutRequest
from trio_etcd_tree._wire.grpc import messages as pb
from trio_etcd_tree._wire.grpc.calls import frame
from trio_etcd_tree._wire.grpc.transport import GrpcTransport

EP = "http://etcd.test:2379"


@dataclass
class Call:
    stream_id: int
    headers: dict[bytes, bytes]
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None
    taken: bool = False
    sizes: list[int] = field(default_factory=list)  # of its DATA frames

    def messages(self) -> list[bytes]:
        out, buf = [], bytes(self.data)
        while len(buf) >= 5:
            n = int.from_bytes(buf[1:5], "big")
            out.append(buf[5 : 5 + n])
            buf = buf[5 + n :]
        return out


class Server:
    """The server side of one connection; tests answer its calls by hand."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        settings: dict[h2.settings.SettingCodes, int] | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.stream = stream
        self.on_change = on_change
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        if settings:
            self.h2.local_settings = h2.settings.Settings(client=False, initial_values=settings)
        self.calls: list[Call] = []
        self.by_id: dict[int, Call] = {}
        self.pings = 0
        self.ping_acks = 0
        self.answer_pings = True
        self.changed = trio.Event()

    async def run(self) -> None:
        self.h2.initiate_connection()
        await self.flush()
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            if not self.answer_pings:
                data = _drop_pings(data)
            for event in self.h2.receive_data(data):
                self._event(event)
            await self.flush()
            self.changed.set()
            self.changed = trio.Event()
            self.on_change()

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            call = Call(event.stream_id, dict(event.headers))
            self.calls.append(call)
            self.by_id[event.stream_id] = call
        elif isinstance(event, h2.events.DataReceived):
            self.by_id[event.stream_id].data += event.data
            self.by_id[event.stream_id].sizes.append(event.flow_controlled_length)
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.by_id[event.stream_id].ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.by_id[event.stream_id].reset = event.error_code
        elif isinstance(event, h2.events.PingReceived):
            self.pings += 1
        elif isinstance(event, h2.events.PingAckReceived):
            self.ping_acks += 1

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self.changed.wait()

    async def call(self, index: int = -1, *, ended: bool = True) -> Call:
        await self.wait_for(
            lambda: len(self.calls) > (max(index, 0)) and (not ended or self.calls[index].ended)
        )
        return self.calls[index]

    async def answer(
        self,
        call: Call,
        *messages: bytes,
        status: int = 0,
        text: str = "",
        end: bool = True,
        headers_sent: bool = False,
    ) -> None:
        if not headers_sent:
            self.h2.send_headers(
                call.stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc")]
            )
        for message in messages:
            self.h2.send_data(call.stream_id, frame(message))
        if end:
            trailers = [(b"grpc-status", str(status).encode())]
            if text:
                trailers.append((b"grpc-message", text.encode()))
            self.h2.send_headers(call.stream_id, trailers, end_stream=True)
        await self.flush()

    async def raw_headers(self, call: Call, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        self.h2.send_headers(call.stream_id, headers, end_stream=end)
        await self.flush()


def _drop_pings(data: bytes | bytearray) -> bytes:
    """Cut PING frames out of the client's bytes (a server that never answers them)."""
    out = bytearray()
    i = 0
    if data.startswith(b"PRI * HTTP/2.0"):
        out += data[:24]
        i = 24
    while i + 9 <= len(data):
        length = int.from_bytes(data[i : i + 3], "big")
        end = i + 9 + length
        if data[i + 3] != 0x6:
            out += data[i:end]
        i = end
    return bytes(out)


class Network:
    """Connections made by a GrpcTransport(connect=...), each with a scripted server."""

    def __init__(
        self, nursery: trio.Nursery, settings: dict[h2.settings.SettingCodes, int] | None = None
    ) -> None:
        self.nursery = nursery
        self.settings = settings
        self.servers: list[Server] = []
        self.made = trio.Event()
        self.wrap: Callable[[trio.abc.Stream], trio.abc.Stream] | None = None

    def connect(self, endpoint: str) -> trio.abc.Stream:
        client, server_side = trio.testing.memory_stream_pair()
        server = Server(server_side, self.settings, self._changed)
        self.servers.append(server)
        self.nursery.start_soon(server.run)
        self.made.set()
        self.made = trio.Event()
        return self.wrap(client) if self.wrap else client

    def _changed(self) -> None:
        self.made.set()
        self.made = trio.Event()

    async def unanswered(self) -> tuple[Server, Call]:
        """The first call sent completely and not yet taken by a test (then taken)."""
        while True:
            for server in self.servers:
                for call in server.calls:
                    if call.ended and not call.taken:
                        call.taken = True
                        return server, call
            await self.made.wait()

    async def server(self, index: int = -1) -> Server:
        while len(self.servers) <= (max(index, 0)):
            await self.made.wait()
        return self.servers[index]


def put_answer(revision: int = 5) -> bytes:
    return pb.PutResponse(header={"revision": revision}).SerializeToString()  # type: ignore[no-any-return]


async def call(grpc: GrpcTransport, request: object, state: CallState | None = None) -> object:
    result: object = await grpc.call(
        EP,
        request,  # type: ignore[arg-type]
        token=None,
        state=state or CallState(),
    )
    return result


async def scripted(
    grpc: GrpcTransport, net: Network, request: object, script: object, state: CallState
) -> Any:
    """Run one call while ``script(server, call)`` answers it; return what it raised (or
    returned)."""
    caught: list[Any] = []

    async def run() -> None:
        try:
            caught.append(await call(grpc, request, state))
        except Exception as exc:
            caught.append(exc)

    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            server, c = await net.unanswered()
            await script(server, c)  # type: ignore[operator]
    return caught[0]


async def first_call(grpc: GrpcTransport, net: Network) -> Server:
    """Make a first call (answered at once), so that both sides have seen each other's
    settings; the server it went to."""

    async def answer(server: Server, c: Call) -> None:
        await server.answer(c, put_answer(1))

    await scripted(grpc, net, PutRequest(b"/", b""), answer, CallState())
    return net.servers[-1]
