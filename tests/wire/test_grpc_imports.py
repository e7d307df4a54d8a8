"""Each transport loads only its own modules: choosing one never imports the other."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trio_etcd_tree._wire import CallState, StatusRequest, open_transport


@pytest.mark.parametrize(
    ("kind", "loaded", "absent"),
    [
        (
            "grpc",
            ["hpack", "google.protobuf", "trio_etcd_tree._wire.grpc.transport"],
            # (h2 is the in-memory etcd's server side: the client frames HTTP/2 itself)
            ["httpx", "trio_etcd_tree._wire.gateway", "h2", "hyperframe"],
        ),
        (
            "gateway",
            ["httpx", "trio_etcd_tree._wire.gateway.transport"],
            ["google", "trio_etcd_tree._wire.grpc"],
        ),
    ],
)
def test_a_transport_imports_only_its_own_wire(
    kind: str, loaded: list[str], absent: list[str]
) -> None:
    code = (
        "import sys, trio_etcd_tree\n"
        "from trio_etcd_tree._wire import open_transport\n"
        f"open_transport({kind!r}, None)\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    modules = set(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    for name in loaded:
        assert name in modules
    for name in absent:
        assert not any(m == name or m.startswith(name + ".") for m in modules), name


async def test_open_transport_makes_a_grpc_transport() -> None:
    from trio_etcd_tree._wire.grpc.transport import GrpcTransport

    transport = open_transport("grpc", None)
    assert isinstance(transport, GrpcTransport)
    with pytest.raises(RuntimeError, match="async with"):
        await transport.call("http://127.0.0.1:1", StatusRequest(), token=None, state=CallState())
    async with transport:
        pass
    with pytest.raises(RuntimeError, match="entered only once"):
        await transport.__aenter__()
