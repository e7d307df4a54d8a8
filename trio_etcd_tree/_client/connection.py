"""Requests to a cluster: endpoints and failover, per-attempt timeouts, auth, deadlines, and
the truth about a write that failed.

Every unary call of the client goes through :meth:`Connection.call`, whatever the transport.
The rules, in etcd's terms (clientv3 follows the same ones):

* Every call has a deadline: ``request_deadline`` seconds unless the caller's own cancel
  scope already sets one (then the caller's wins, longer or shorter). etcd can otherwise
  wait forever, for example on a forged or stale auth token whose raft index it has not seen.
* Every attempt on one endpoint has its own limit, ``attempt_timeout``: the time the member
  may take to *start* answering (a large answer may take longer to read). An endpoint that
  does not answer in time, refuses the connection or breaks it is marked unhealthy and
  skipped for a backoff period (see :mod:`.endpoints`); its watches move too.
* A read, or a write that certainly was not applied (never sent; or refused by the server
  before it was proposed: "no leader", "too many requests"), moves on to the next endpoint.
* A write that may have reached the server and lost its answer is not repeated: it raises
  :class:`UnavailableError` with ``outcome_unknown`` set, since it may have been applied.
* When every endpoint failed, wait (jittered backoff) and go round again until the deadline.
* A token the server refuses is renewed at most once per call; then the error is raised.

==========================================  ===========================================
where the call failed                        the write's ``outcome_unknown``
==========================================  ===========================================
connection refused / no route / TLS          False (nothing was sent)
no answer within attempt_timeout, or the     False if the request had not started to go
deadline ran out                             out, else True
connection lost while sending or reading     False if the request had not started to go
                                             out, else True
an answer that cannot be understood          True
the server refused it before proposing it    False
the server gave up on it after proposing it  True
any other refusal (invalid, denied, ...)     False
==========================================  ===========================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from .._core.errors import AuthenticationError, UnavailableError
from .._core.util import Backoff
from .._wire import (
    AuthenticateRequest,
    CallState,
    Request,
    Transport,
    WatchCreateRequest,
    WireWatch,
)
from .endpoints import Endpoints

__all__ = ["Connection", "Credentials"]

R = TypeVar("R")

UNAUTHENTICATED = 16  # the gRPC status of a token the server does not accept


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


class Connection:
    """Endpoints, failover, auth and deadlines around one transport."""

    def __init__(
        self,
        transport: Transport,
        endpoints: Sequence[str],
        *,
        credentials: Credentials | None,
        request_deadline: float,
        attempt_timeout: float,
    ) -> None:
        self.transport = transport
        self.endpoints = Endpoints(endpoints)
        self.credentials = credentials
        self.request_deadline = request_deadline
        self.attempt_timeout = attempt_timeout
        self._token: str | None = None
        self._auth_lock = trio.Lock()

    @property
    def token(self) -> str | None:
        return self._token

    def endpoint_failed(self, endpoint: str) -> None:
        """``endpoint`` failed (no answer, a refused or broken connection): skip it for a
        while, move its watches, and drop the transport's connection to it."""
        self.endpoints.failed(endpoint)
        self.transport.discard(endpoint)

    # --- auth ------------------------------------------------------------------------------

    async def ensure_token(self, stale: str | None = None) -> None:
        """Get a token (again) unless ``stale`` is no longer the current one.

        Only called when the connection has credentials. Cancellation: a checkpoint.
        """
        assert self.credentials is not None
        async with self._auth_lock:
            if self._token is not None and self._token != stale:
                return  # someone else renewed it meanwhile
            request = AuthenticateRequest(self.credentials.username, self.credentials.password)
            self._token = await self._call(request, auth=False)

    # --- unary calls -----------------------------------------------------------------------

    async def call(self, request: Request[R], *, only: str | None = None) -> R:
        """Send ``request`` (to ``only`` that endpoint, if given) and return the answer, or
        raise an EtcdError.

        Cancellation: a checkpoint. Cancelled before the request went out, nothing
        happened; cancelled after, a write may have been applied.
        """
        if self.credentials is not None and self._token is None:
            await self.ensure_token()
        return await self._call(request, auth=True, only=only)

    async def _call(self, request: Request[R], *, auth: bool, only: str | None = None) -> R:
        attempt = _Attempt()
        if trio.current_effective_deadline() != math.inf:
            return await self._attempts(request, auth, only, attempt)
        with trio.move_on_after(self.request_deadline) as scope:
            return await self._attempts(request, auth, only, attempt)
        assert scope.cancelled_caught
        return self._deadline_passed(request, attempt)

    def _deadline_passed(self, request: Request[R], attempt: _Attempt) -> R:
        """The request deadline ran out (during ``attempt``, if one was in flight)."""
        state, endpoint = attempt.state, attempt.endpoint
        if state is not None and endpoint is not None and not state.answered:
            self.endpoint_failed(endpoint)
        tried = "; ".join(f"{e}: {m}" for e, m in attempt.failures.items())
        tried = tried or "the server did not answer"
        raise UnavailableError(
            f"no answer within {self.request_deadline:g} s (request_deadline): {tried}",
            kind="timeout",
            request=request.describe(),
            endpoint=endpoint,
            outcome_unknown=request.writes and state is not None and state.sent,
        )

    async def _attempts(
        self, request: Request[R], auth: bool, only: str | None, attempt: _Attempt
    ) -> R:
        backoff = Backoff()
        renewed = False
        while True:
            endpoints = [only] if only else self.endpoints.order()
            i = 0
            while i < len(endpoints):
                endpoint = endpoints[i]
                token = self._token if auth else None
                try:
                    return await self._attempt(endpoint, request, token, attempt)
                except AuthenticationError as exc:
                    if renewed or not auth or exc.code != UNAUTHENTICATED or not token:
                        raise
                    # the token expired or the member forgot it (a restart): renew it, once
                    # per call, and try the same endpoint again
                    renewed = True
                    await self.ensure_token(stale=token)
                    continue
                except UnavailableError as exc:
                    self._failed(endpoint, exc, attempt)
                i += 1
            if only:
                assert attempt.last is not None
                raise attempt.last
            await backoff.wait()

    async def _attempt(
        self, endpoint: str, request: Request[R], token: str | None, attempt: _Attempt
    ) -> R:
        """One try on one endpoint, within ``attempt_timeout`` until the answer begins."""
        with trio.move_on_after(self.attempt_timeout) as scope:
            state = attempt.state = CallState(scope)
            attempt.endpoint = endpoint
            result = await self.transport.call(endpoint, request, token=token, state=state)
            attempt.state = None
            self.endpoints.succeeded(endpoint)
            return result
        unknown = request.writes and state.sent
        raise UnavailableError(
            f"no answer within {self.attempt_timeout:g} s (attempt_timeout)",
            kind="timeout",
            request=request.describe(),
            endpoint=endpoint,
            outcome_unknown=unknown,
        )

    def _failed(self, endpoint: str, exc: UnavailableError, attempt: _Attempt) -> None:
        """Note a failed attempt; raise ``exc`` unless the next endpoint may be tried."""
        attempt.state = None
        attempt.last = exc
        self.endpoint_failed(endpoint)
        if exc.kind == "tls" or exc.outcome_unknown:
            # a setup error that every endpoint would repeat, or a write that may have
            # been applied: not for another endpoint to repeat
            raise exc
        attempt.failures[endpoint] = exc.message  # (the latest failure of each endpoint)

    # --- watches ---------------------------------------------------------------------------

    def watch(
        self, endpoint: str, create: WatchCreateRequest
    ) -> AbstractAsyncContextManager[WireWatch]:
        """One watch on ``endpoint``, with the current token."""
        return self.transport.watch(endpoint, create, token=self._token)


class _Attempt:
    """How far the call has got, for the error that ends it."""

    __slots__ = ("endpoint", "failures", "last", "state")

    def __init__(self) -> None:
        self.endpoint: str | None = None
        self.last: UnavailableError | None = None
        self.state: CallState | None = None
        self.failures: dict[str, str] = {}
