"""Leases kept alive for the life of an ``async with`` block."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol, final

import trio

from .._core.errors import EtcdError, LeaseExpiredError, NotFoundError
from .._core.types import LeaseGrant, LeaseInfo
from .._core.util import Backoff, leaves_of, open_service_nursery

__all__ = ["Lease", "open_lease"]


class LeaseCalls(Protocol):
    """What a lease needs of the client (``Client`` has these)."""

    async def lease_grant(self, ttl: int) -> LeaseGrant: ...

    async def lease_revoke(self, id: int) -> None: ...  # noqa: A002

    async def lease_keep_alive_once(self, id: int) -> int: ...  # noqa: A002

    async def lease_time_to_live(self, id: int, *, keys: bool = False) -> LeaseInfo: ...  # noqa: A002


# How long revoking a lease on the way out may take before we let it expire instead (at most
# until it would expire anyway).
_REVOKE_DEADLINE = 5.0


@final
class Lease:
    """A lease held by ``Client.lease``: attach keys to it with ``put(..., lease=lease.id)``.

    Attributes:
        id: the lease id.
        ttl: the TTL the server granted, in seconds.
        expires_at: the trio time by which the lease expires unless renewed again (as of
            the last renewal that got through; the time it was lost, once it is).
        renewals: how many renewals got through.
    """

    def __init__(self, client: LeaseCalls, id: int, ttl: int) -> None:  # noqa: A002
        self._client = client
        self.id = id
        self.ttl = ttl
        self.expires_at = trio.current_time() + ttl
        self.renewals = 0

    def __repr__(self) -> str:
        return f"<Lease {self.id:#x} ttl={self.ttl}>"

    async def time_to_live(self, *, keys: bool = False) -> LeaseInfo:
        """Ask the server how long the lease has left (and which keys it holds).

        Cancellation: a checkpoint; a read.
        """
        return await self._client.lease_time_to_live(self.id, keys=keys)

    async def _keep_alive(self) -> None:
        """Renew every ttl/3 seconds until cancelled; raise LeaseExpiredError when lost."""
        interval = max(self.ttl / 3, 0.5)
        backoff = Backoff(cap=interval)
        while True:
            try:
                with trio.fail_after(max(self.expires_at - trio.current_time(), 0)):
                    ttl = await self._client.lease_keep_alive_once(self.id)
            except trio.TooSlowError:
                raise LeaseExpiredError(
                    f"no renewal got through before the lease's {self.ttl} s ran out",
                    request=f"keep lease {self.id} alive",
                ) from None
            except NotFoundError as exc:
                self.expires_at = trio.current_time()
                raise LeaseExpiredError(str(exc), request=exc.request) from exc
            except EtcdError:
                await backoff.wait()
                continue
            if ttl <= 0:
                self.expires_at = trio.current_time()
                raise LeaseExpiredError(
                    "the server says the lease is gone (expired or revoked)",
                    request=f"keep lease {self.id} alive",
                )
            backoff.reset()
            self.renewals += 1
            self.expires_at = trio.current_time() + ttl
            await trio.sleep(interval)


@asynccontextmanager
async def open_lease(client: LeaseCalls, ttl: int) -> AsyncIterator[Lease]:
    """The context manager behind ``Client.lease``."""
    if ttl < 1:
        raise ValueError("a lease's ttl must be at least 1 second")
    grant = await client.lease_grant(ttl)
    lease = Lease(client, grant.id, grant.ttl)
    lost: LeaseExpiredError | None = None
    try:
        async with open_service_nursery() as nursery:
            nursery.start_soon(lease._keep_alive)
            try:
                yield lease
            finally:
                nursery.cancel_scope.cancel(reason="the lease block was left")
    except BaseExceptionGroup as group:
        lost = _one_error(group)
        if lost is None:
            raise
    finally:
        # (not once it is known to be gone: the server said so, or its time ran out, when
        # revoking would only hold up the LeaseExpiredError, up to the deadline, in a partition)
        remaining = lease.expires_at - trio.current_time()
        if remaining > 0:
            with trio.move_on_after(min(remaining, _REVOKE_DEADLINE), shield=True):
                try:
                    await client.lease_revoke(lease.id)
                except EtcdError:
                    pass  # gone already, or unreachable: either way it expires on its own
    if lost is not None:
        context = lost.__context__
        try:
            raise lost
        finally:
            lost.__context__ = context


def _one_error(group: BaseExceptionGroup[BaseException]) -> LeaseExpiredError | None:
    """The lease was lost (the keep-alive's LeaseExpiredError) in the same instant as the
    block failed because of it (its key is gone, a request refused): one error for the
    caller, the lease's, with the block's as its context. None for any other group."""
    leaves = [e for e in leaves_of(group) if not isinstance(e, trio.Cancelled)]
    expired = [e for e in leaves if isinstance(e, LeaseExpiredError)]
    if not expired or not all(isinstance(e, EtcdError) for e in leaves):
        return None
    first = expired[0]
    first.__context__ = next((e for e in leaves if e is not first), None)
    return first
