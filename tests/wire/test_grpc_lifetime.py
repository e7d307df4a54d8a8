"""The gRPC transport's life: its connections run in its own nursery and end with it,
whether it is left normally or cancelled from outside."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_etcd_tree import UnavailableError
from trio_etcd_tree._wire.base import CallState, PutRequest, WatchCreateRequest
from trio_etcd_tree._wire.grpc import messages as pb
from trio_etcd_tree._wire.grpc.transport import GrpcTransport

from .grpc_script import Network

EP = "http://etcd.test:2379"


async def test_cancelled_from_outside_it_still_ends(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The connection tasks are cancelled with the transport's caller (as when a viewer is
    quit): leaving must not wait for a connection whose task was cancelled."""
    net = Network(nursery)
    answer = pb.PutResponse(header={"revision": 2}).SerializeToString()
    with trio.fail_after(60), trio.CancelScope() as scope:
        async with GrpcTransport(connect=net.connect) as grpc:

            async def serve() -> None:
                server, call = await net.unanswered()
                await server.answer(call, answer)

            nursery.start_soon(serve)
            await grpc.call(EP, PutRequest(b"/a", b"1"), token=None, state=CallState())
            async with grpc.watch(EP, WatchCreateRequest(b"/w"), token=None):
                assert grpc.connection_count() == 1
                scope.cancel()
                await trio.sleep_forever()
    assert scope.cancelled_caught


async def test_an_error_in_the_block_leaves_it_as_it_is() -> None:
    """The transport's nursery does not wrap the block's own error in an exception group
    (``except DocumentError`` around ``open_client`` must keep working)."""
    with pytest.raises(KeyError):
        async with GrpcTransport():
            raise KeyError("mine")


@pytest.mark.parametrize("how", ["cancelled", "closed"])
async def test_a_connection_being_started_is_not_left_behind(
    how: str, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Regression (a test hung 1 run in 3): a call cancelled, or a transport closed, while
    a new connection started left that connection running unregistered, and leaving the
    transport waited for its tasks for ever (its PING timer kept the mock clock going)."""
    net = Network(nursery)
    scope = trio.CancelScope()
    transport = GrpcTransport(connect=lambda endpoint: connect(endpoint))

    def connect(endpoint: str) -> trio.abc.Stream:
        scope.cancel() if how == "cancelled" else transport.close()
        return net.connect(endpoint)

    with trio.fail_after(60):
        async with transport as grpc:
            with scope:
                with pytest.raises(UnavailableError, match="the client is closed"):
                    await grpc.call(EP, PutRequest(b"/a", b"1"), token=None, state=CallState())
            assert grpc.connection_count() == 0
    assert scope.cancelled_caught == (how == "cancelled")
