"""pytest fixtures for testing with etcd: real servers and the in-memory one.

Installing trio-etcd-tree registers it with pytest (a ``pytest11`` entry point named
after this module; ``-p no:trio_etcd_tree.testing.pytest_plugin`` turns it off). It needs
pytest-trio in trio mode (``trio_mode = true``); ``pip install 'trio-etcd-tree[testing]'``
brings both. Fixtures:

``etcd_backend``
    One etcd to test against, parametrized over the in-memory
    :class:`~trio_etcd_tree.testing.FakeEtcd` and every
    real etcd version asked for (``--etcd-versions``, default ``3.4,3.5``), each reached
    over each transport asked for (``--etcd-transports``, default ``gateway``;
    ``gateway,grpc`` runs every test over both: ids ``fake``, ``fake/grpc``, ``3.5``,
    ``3.5/grpc``...). Real servers are
    started once per session (single node, loopback, temporary data dir) and shared: each
    test gets its own key ``prefix``. Tests marked ``real_only`` skip the fake.
``etcd_servers``
    The session's real servers (session scope, synchronous): ``etcd_servers.get("3.5")``.
``fake_etcd``
    An in-memory :class:`~trio_etcd_tree.testing.FakeEtcd` of the test's own; options of
    ``open_fake_etcd`` come from the marker ``@pytest.mark.fake_etcd(members=2, ...)`` (on
    the test, its class or its module). A test using it runs on an autojump clock.
``fake_client``
    A :class:`~trio_etcd_tree.Client` connected to ``fake_etcd``: over gRPC (the
    default transport, through the fake's gRPC front), or over the gateway with
    ``@pytest.mark.fake_etcd(wire="gateway")``, or over each transport of
    ``--etcd-transports`` when the test also asks for ``fake_wire``.
``fake_wire``
    ``"gateway"`` or ``"grpc"``: a test asking for it runs once over each transport of
    ``--etcd-transports``; ``fake_transport(fake, wire)`` gives what ``open_client`` takes.

A real version whose binary cannot be found is skipped with the reason, unless the
environment variable ``TRIO_ETCD_TREE_REQUIRE_ETCD`` is set (CI sets it): then it fails.
Under the fake, tests run with ``MockClock(autojump_threshold=0)``.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio.testing

from .._client import Client, open_client
from ._fake import FakeEtcd, open_fake_etcd
from ._launcher import EtcdBinary, EtcdCluster, EtcdNotFoundError, find_etcd

__all__ = ["EtcdBackend", "Servers", "fake_transport"]

REQUIRE_ENV = "TRIO_ETCD_TREE_REQUIRE_ETCD"
PROGRESS_NOTIFY_INTERVAL = 1.0
"""Real test servers send watch progress notifications every second."""

_counter = itertools.count()


@dataclass
class EtcdBackend:
    """One etcd to test against.

    Attributes:
        kind: ``"fake"`` or the real server's version prefix (``"3.5"``).
        endpoints: the client URLs.
        prefix: a key prefix of this test's own (``b"/t7-test_name/"``).
        fake: the in-memory etcd, when ``kind == "fake"`` (for fault injection).
        cluster: the real cluster, otherwise.
        wire: the transport the etcd is reached with: ``"gateway"`` or ``"grpc"``
            (``--etcd-transports``, default gateway).
    """

    kind: str
    endpoints: list[str]
    prefix: bytes
    fake: FakeEtcd | None = None
    cluster: EtcdCluster | None = None
    client_options: dict[str, Any] = field(default_factory=dict)
    wire: str = "gateway"

    @property
    def is_fake(self) -> bool:
        return self.fake is not None

    @property
    def transport(self) -> object:
        """What ``open_client(transport=...)`` takes to reach this etcd."""
        return self.wire if self.fake is None else fake_transport(self.fake, self.wire)

    def client(self, **options: Any) -> AbstractAsyncContextManager[Client]:
        """``async with backend.client() as client``: a client to this etcd."""
        return open_client(
            self.endpoints, transport=self.transport, **(self.client_options | options)
        )

    def key(self, name: str) -> bytes:
        """A key under this test's prefix."""
        return self.prefix + name.encode()


def fake_transport(fake: FakeEtcd, wire: str = "gateway") -> object:
    """What ``open_client(transport=...)`` takes to reach ``fake`` over ``wire``
    (``"gateway"`` or ``"grpc"``): the fake itself, or its gRPC front."""
    return fake if wire == "gateway" else fake.grpc


def _wires(config: pytest.Config) -> list[str]:
    return [w.strip() for w in config.getoption("--etcd-transports").split(",") if w.strip()]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--etcd-transports",
        default="gateway",
        help="transports etcd_backend uses with real servers (comma-separated: gateway,grpc)",
    )
    parser.addoption(
        "--etcd-versions",
        default="3.4,3.5",
        help="real etcd versions that etcd_backend runs against (comma-separated prefixes)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_only: needs a real etcd server (the reason is given in the test)"
    )
    config.addinivalue_line(
        "markers",
        "fake_etcd(**options): options of open_fake_etcd for the fake_etcd fixture "
        "(and wire='gateway' or 'grpc' for fake_client)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on ``fake_etcd`` run on an autojump clock (before pytest-trio's own mark, so
    that this one is the closest)."""
    for item in items:
        if "fake_etcd" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.trio(run=_run_on_autojump_clock), append=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fake_wire" in metafunc.fixturenames:
        metafunc.parametrize("fake_wire", _wires(metafunc.config), indirect=True)
    if "etcd_backend" not in metafunc.fixturenames:
        return
    kinds = [v.strip() for v in metafunc.config.getoption("--etcd-versions").split(",") if v]
    if metafunc.definition.get_closest_marker("real_only") is None:
        kinds.insert(0, "fake")
    params = [
        # pytest-trio takes the clock from the test's own arguments or from the runner of
        # its `trio` mark: the fake's parameters bring a runner with an autojump clock
        pytest.param(name, marks=pytest.mark.trio(run=_run_on_autojump_clock))
        if kind == "fake"
        else name
        for kind in kinds
        for wire in _wires(metafunc.config)
        for name in [kind if wire == "gateway" else f"{kind}/{wire}"]
    ]
    metafunc.parametrize("etcd_backend_kind", params, indirect=True)


@pytest.fixture
def etcd_backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def _run_on_autojump_clock(
    fn: Callable[[], Awaitable[object]],
    *,
    clock: trio.abc.Clock | None = None,
    instruments: Sequence[trio.abc.Instrument] = (),
) -> object:
    """pytest-trio's runner for tests on the fake: a ``MockClock(autojump_threshold=0)``."""
    return trio.run(
        fn, clock=clock or trio.testing.MockClock(autojump_threshold=0), instruments=instruments
    )


class Servers:
    """The session's real etcd servers, started on first use."""

    def __init__(self) -> None:
        self.clusters: dict[str, EtcdCluster] = {}

    def get(self, version: str) -> EtcdCluster:
        if version not in self.clusters:
            binary = _binary(version)
            self.clusters[version] = EtcdCluster.start(
                binary, progress_notify_interval=PROGRESS_NOTIFY_INTERVAL
            )
        return self.clusters[version]

    def close(self) -> None:
        for cluster in self.clusters.values():
            cluster.close()


def _binary(version: str | None = None) -> EtcdBinary:
    try:
        return find_etcd(version)
    except EtcdNotFoundError as exc:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def etcd_servers() -> Iterator[Servers]:
    servers = Servers()
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
async def fake_etcd(request: pytest.FixtureRequest) -> AsyncIterator[FakeEtcd]:
    """An in-memory etcd of this test's own (options: the ``fake_etcd`` marker)."""
    options = _fake_options(request)
    options.pop("wire", None)
    async with open_fake_etcd(**options) as fake:
        yield fake


def _fake_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("fake_etcd")
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
def fake_wire(request: pytest.FixtureRequest) -> str:
    """The transport a test on the fake runs over (parametrized by --etcd-transports)."""
    wire: str = request.param
    return wire


@pytest.fixture
async def fake_client(request: pytest.FixtureRequest, fake_etcd: FakeEtcd) -> AsyncIterator[Client]:
    """A client of ``fake_etcd`` (over ``fake_wire``, or the marker's ``wire``)."""
    if "fake_wire" in request.fixturenames:
        wire = request.getfixturevalue("fake_wire")
    else:
        wire = _fake_options(request).get("wire", "grpc")
    transport = fake_transport(fake_etcd, wire)
    async with open_client(fake_etcd.endpoints, transport=transport) as client:
        yield client


def _prefix(request: pytest.FixtureRequest) -> bytes:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:60]
    return f"/t{next(_counter)}-{name}/".encode()


@pytest.fixture
async def etcd_backend(
    request: pytest.FixtureRequest, etcd_backend_kind: str, etcd_servers: Servers
) -> AsyncIterator[EtcdBackend]:
    """One etcd per parameter: the in-memory fake, or a session's real server."""
    prefix = _prefix(request)
    version, _, wire = etcd_backend_kind.partition("/")
    if version == "fake":
        async with open_fake_etcd(progress_notify_interval=PROGRESS_NOTIFY_INTERVAL) as fake:
            endpoints = list(fake.endpoints)
            yield EtcdBackend("fake", endpoints, prefix, fake=fake, wire=wire or "gateway")
        return
    cluster = etcd_servers.get(version)
    yield EtcdBackend(version, cluster.endpoints, prefix, cluster=cluster, wire=wire or "gateway")
