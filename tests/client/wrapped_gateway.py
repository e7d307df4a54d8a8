"""A transport for tests that change one part of the wire: the in-memory etcd's gateway,
wrapped, every part passed through to it. A test subclasses it and overrides what it
changes (most often ``watch``)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Self

from trio_etcd_tree._wire import WatchCreateRequest, WireWatch
from trio_etcd_tree._wire.gateway.transport import GatewayTransport
from trio_etcd_tree.testing import FakeEtcd


class WrappedGateway:
    """The gateway to ``fake`` (``self.inner``), its calls, watches, ``discard`` and life
    passed through unchanged."""

    def __init__(self, fake: FakeEtcd) -> None:
        self.inner = GatewayTransport(http_transport=fake)
        self.call = self.inner.call
        self.discard = self.inner.discard

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:  # noqa: PYI036 (passed through)
        await self.inner.__aexit__(*exc_info)

    def watch(
        self, endpoint: str, create: WatchCreateRequest, *, token: str | None
    ) -> AbstractAsyncContextManager[WireWatch]:
        return self.inner.watch(endpoint, create, token=token)
