"""Fixtures of the gRPC wire tests: a network of scripted HTTP/2 servers (grpc_script.py),
and a transport whose connections go to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from trio_etcd_tree._wire.grpc.transport import GrpcTransport

from .grpc_script import Network


@pytest.fixture
async def net(nursery: trio.Nursery) -> Network:
    return Network(nursery)


@pytest.fixture
async def grpc(net: Network) -> AsyncIterator[GrpcTransport]:
    async with GrpcTransport(connect=net.connect) as transport:
        yield transport
