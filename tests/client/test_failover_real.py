"""Failover and the truth about failed writes, against real etcd processes of our own:
a member frozen with SIGSTOP, and a TCP proxy that loses answers after the request went out.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

import trio_etcd_tree as et
from trio_etcd_tree.testing import EtcdCluster, EtcdMember
from trio_etcd_tree.testing.pytest_plugin import _binary

VERSIONS = ["3.4", "3.5"]
ATTEMPT = 1.0


@contextmanager
def frozen(member: EtcdMember) -> Iterator[None]:
    """The process stopped (SIGSTOP) for the block: it answers nothing, but the kernel still
    accepts connections and takes requests into its buffers."""
    member.freeze()  # (returns once every thread has stopped)
    try:
        yield
    finally:
        member.thaw()


async def leader_id(client: et.Client, endpoint: str) -> tuple[int, int]:
    status = await client.status(endpoint)
    return status.header.member_id, status.leader


@pytest.mark.parametrize("version", VERSIONS)
async def test_frozen_member_in_use_is_left(version: str) -> None:
    with EtcdCluster.start(_binary(version), size=3, progress_notify_interval=1) as cluster:
        # the member in use is a follower, so the other two keep their quorum and leader
        async with et.open_client(cluster.endpoints) as probe:
            roles = [await leader_id(probe, e) for e in cluster.endpoints]
        follower = next(i for i, (me, leader) in enumerate(roles) if me != leader)
        endpoints = cluster.endpoints[follower:] + cluster.endpoints[:follower]
        victim = cluster.members[follower]
        async with et.open_client(endpoints, attempt_timeout=ATTEMPT) as client:
            await client.put("/f/a", "1")
            async with et.mount(client, "/f") as running:
                assert client.endpoint == victim.client_url
                with frozen(victim):
                    with trio.fail_after(ATTEMPT + 1):  # the first request meets it
                        kv = await client.get("/f/a")
                        assert kv is not None
                    assert client.endpoint != victim.client_url
                    with trio.fail_after(1):
                        await client.put("/f/b", "2")  # writes go to a healthy member
                    with trio.fail_after(ATTEMPT + 1):
                        async with et.mount(client, "/f") as fresh:
                            assert fresh["b"].value == "2"
                    with trio.fail_after(ATTEMPT + 1):  # its watch moved too
                        await running["a"].set("3")
                        assert running["a"].value == "3"
                        await running["b"].set("4")
                # thawed: nothing lost, the tree equals the server
                final = await client.range("/f", prefix=True)
                await running.wait_revision(final.revision)
                assert {kv.key: kv.value for kv in final.kvs} == {
                    b"/f/a": b"3",
                    b"/f/b": b"4",
                }
                assert running["a"].value == "3"
                assert running["b"].value == "4"
                assert running.statistics().resyncs == 0


class Proxy:
    """A TCP proxy in front of one etcd member that can lose what crosses it.

    ``mode``:
        ``"forward"``: carry both ways.
        ``"drop answers"``: carry the request to the server, then cut the connection as soon
            as the answer starts to come back (the server has done the work).
        ``"drop at connect"``: cut every connection as soon as the client's first bytes
            arrive, before anything reaches the server (for TLS: the ClientHello, so the
            client knows nothing was sent).
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit("//", 1)[1].rsplit(":", 1)
        self.target = (host, int(port))
        self.mode = "forward"
        self.dropped = 0
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        if self.mode == "drop at connect":
            await client.receive_some()
            self.dropped += 1
            _reset(client)
            return
        server = await trio.open_tcp_stream(*self.target)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, server, nursery.cancel_scope, False)
            nursery.start_soon(self._pump, server, client, nursery.cancel_scope, True)
        _reset(client)
        await server.aclose()

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        scope: trio.CancelScope,
        answers: bool,
    ) -> None:
        try:
            async for data in source:
                if answers and self.mode == "drop answers" and _carries_an_answer(data):
                    self.dropped += 1
                    break
                await sink.send_all(data)
        except trio.BrokenResourceError:
            pass
        scope.cancel()


_H2_CONTROL = {4, 6, 8}  # SETTINGS, PING, WINDOW_UPDATE


def _carries_an_answer(data: bytes | bytearray) -> bool:
    """Whether the server's bytes hold (part of) an answer: anything but whole HTTP/2
    control frames, which a gRPC server sends before it has read any request."""
    i = 0
    while i < len(data):
        if i + 9 > len(data) or data[i + 3] not in _H2_CONTROL:
            return True
        i += 9 + int.from_bytes(data[i : i + 3], "big")
    return i > len(data)


def _reset(stream: trio.SocketStream) -> None:
    """Close with a TCP reset, as a crashed peer or a middlebox does."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_lost_answers_after_the_request_went_out(version: str) -> None:
    with EtcdCluster.start(_binary(version)) as cluster:
        proxy = Proxy(cluster.endpoints[0])
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.serve)
            via = f"http://127.0.0.1:{proxy.port}"
            async with (
                et.open_client(via, request_deadline=3) as client,
                et.open_client(cluster.endpoints) as direct,
            ):
                await client.put("/p/warm", "up")  # a kept-alive connection is cut too
                proxy.mode = "drop answers"
                with pytest.raises(et.UnavailableError, match="may or may not") as info:
                    await client.put("/p/a", "1")
                assert info.value.outcome_unknown
                assert info.value.kind == "lost"
                assert await direct.get("/p/a") is not None  # etcd applied it
                with pytest.raises(et.UnavailableError) as info:
                    await client.txn(success=[et.Put("/p/b", "1"), et.Put("/p/c", "1")])
                assert info.value.outcome_unknown
                assert (await direct.range("/p/b", "/p/d")).count == 2
                # a read that lost its answer is repeated until the deadline, never guessed
                with pytest.raises(et.UnavailableError, match="request_deadline") as info:
                    await client.get("/p/a")
                assert not info.value.outcome_unknown
                assert proxy.dropped >= 3
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("version", VERSIONS)
async def test_connection_cut_before_the_request_went_out(version: str) -> None:
    # Over plain HTTP a client cannot tell a connection cut before its request was read
    # from one cut after: the request sits in the kernel's buffers either way. Over TLS it
    # can: a connection cut during the handshake never carried the request.
    with EtcdCluster.start(_binary(version), tls=True) as cluster:
        assert cluster.ca_path is not None
        proxy = Proxy(cluster.endpoints[0])
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.serve)
            via = f"https://127.0.0.1:{proxy.port}"
            proxy.mode = "drop at connect"
            async with et.open_client(via, ca_cert=cluster.ca_path, request_deadline=1) as client:
                with pytest.raises(et.UnavailableError, match="request_deadline") as info:
                    await client.put("/p/a", "1")
                assert not info.value.outcome_unknown
            assert proxy.dropped >= 1
            # with another endpoint, the write that was certainly not sent moves on
            async with et.open_client(
                [via, cluster.endpoints[0]], ca_cert=cluster.ca_path
            ) as client:
                await client.put("/p/b", "1")
                assert client.endpoint == cluster.endpoints[0]
                assert await client.get("/p/a") is None  # never applied
                assert await client.get("/p/b") is not None
            nursery.cancel_scope.cancel()
