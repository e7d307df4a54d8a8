"""HTTP to the gateway: endpoints and failover, authentication, deadlines, error mapping.

The client sends every request through :class:`Connection`. It owns one
``httpx.AsyncClient`` (no httpx timeouts: time limits are trio cancel scopes) and a list of
endpoints. Failover policy, in etcd's terms:

* A request that could not be *sent* (connection refused, no route) is safe to repeat, so
  it moves on to the next endpoint whatever it is.
* A request that was sent but lost its answer is repeated on another endpoint only if it is
  idempotent (reads, status, lease queries). A lost write answer raises
  :class:`UnavailableError` with ``outcome_unknown`` set: it may have been applied.
* "no leader" and "too many requests" mean the server did not apply the request: repeated.
* Once every endpoint failed, wait (jittered backoff) and go round again until the deadline.

Every unary call has a deadline: ``request_deadline`` seconds unless the caller's own cancel
scope already sets one (then the caller's wins, longer or shorter). etcd can otherwise
wait forever, for example for a forged or stale auth token whose raft index it has not seen.
"""

from __future__ import annotations

import json
import math
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import trio

from . import _gateway as gw
from ._errors import AuthenticationError, ProtocolError, UnavailableError
from ._gateway import Json
from ._util import Backoff, gc_paused

__all__ = ["Connection", "Credentials"]

# A read that lost its answer can be repeated; a write cannot (it may have been applied).
_RETRY_ANYWAY = ("no leader", "too many requests", "not capable", "leader changed")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


class Connection:
    """Endpoints, failover, auth and deadlines around one ``httpx.AsyncClient``."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        http: httpx.AsyncClient,
        credentials: Credentials | None,
        request_deadline: float,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.http = http
        self.credentials = credentials
        self.request_deadline = request_deadline
        self._current = 0
        self._token: str | None = None
        self._token_generation = 0
        self._auth_lock = trio.Lock()
        self._last_failures: list[str] = []

    # --- endpoints -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to first."""
        return self.endpoints[self._current]

    def endpoint_failed(self, endpoint: str) -> None:
        """Move on from ``endpoint`` if it is still the current one."""
        if self.endpoints[self._current] == endpoint:
            self._current = (self._current + 1) % len(self.endpoints)

    def _rotation(self) -> list[str]:
        n = len(self.endpoints)
        return [self.endpoints[(self._current + i) % n] for i in range(n)]

    # --- auth ------------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": self._token} if self._token else {}

    async def ensure_token(self, stale: str | None = None) -> None:
        """Get a token (again) unless ``stale`` is no longer the current one.

        Only called when the connection has credentials.
        """
        assert self.credentials is not None
        async with self._auth_lock:
            if self._token is not None and self._token != stale:
                return  # someone else renewed it meanwhile
            body = {"name": self.credentials.username, "password": self.credentials.password}
            what = f"authenticate as {self.credentials.username!r}"
            answer = await self._call("/v3/auth/authenticate", body, what, True, False)
            self._token = str(answer["token"])

    # --- requests --------------------------------------------------------------------------

    async def call(
        self, path: str, body: Json, what: str, *, idempotent: bool, only: str | None = None
    ) -> Json:
        """POST ``body`` to ``path`` and return the answer's JSON, or raise an EtcdError.

        Cancellation: a checkpoint. Cancelled before the request went out, nothing
        happened; cancelled after, a write may have been applied.
        """
        if self.credentials is not None and self._token is None:
            await self.ensure_token()
        return await self._call(path, body, what, idempotent, True, only)

    async def _call(
        self,
        path: str,
        body: Json,
        what: str,
        idempotent: bool,
        auth: bool,
        only: str | None = None,
    ) -> Json:
        content = gw.dumps(body)
        if trio.current_effective_deadline() != math.inf:
            return await self._attempts(path, content, what, idempotent, auth, only)
        with trio.move_on_after(self.request_deadline) as scope:
            return await self._attempts(path, content, what, idempotent, auth, only)
        assert scope.cancelled_caught
        tried = "; ".join(self._last_failures) or "the server did not answer"
        raise UnavailableError(
            f"no answer within {self.request_deadline:g} s (request_deadline): {tried}",
            request=what,
        )

    async def _attempts(
        self, path: str, content: bytes, what: str, idempotent: bool, auth: bool, only: str | None
    ) -> Json:
        backoff = Backoff()
        renewed = False
        while True:
            failures: list[str] = []
            self._last_failures = failures
            for endpoint in [only] if only else self._rotation():
                token = self._token if auth else None
                headers = {"Authorization": token} if token else {}
                try:
                    response = await self.http.post(
                        endpoint + path, content=content, headers=headers
                    )
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    tls = _tls_failure(exc)
                    if tls is not None:  # a setup error: trying again will not help
                        raise UnavailableError(
                            f"the TLS handshake failed: {tls}", request=what, endpoint=endpoint
                        ) from exc
                    failures.append(f"{endpoint}: {exc or type(exc).__name__}")
                    self.endpoint_failed(endpoint)
                    continue
                except httpx.TransportError as exc:
                    if idempotent:
                        failures.append(f"{endpoint}: {exc or type(exc).__name__}")
                        self.endpoint_failed(endpoint)
                        continue
                    lost = UnavailableError(
                        f"the connection broke before the answer came ({exc!r}); "
                        "the request may or may not have been applied",
                        request=what,
                        endpoint=endpoint,
                    )
                    lost.outcome_unknown = True
                    raise lost from exc
                if response.status_code == 200:
                    return self._decode(response, what, endpoint)
                code, message = gw.error_fields(response.status_code, response.content)
                error = gw.error_for(
                    code, message, request=what, endpoint=endpoint, http_status=response.status_code
                )
                if (
                    auth
                    and not renewed
                    and isinstance(error, AuthenticationError)
                    and code == gw.UNAUTHENTICATED
                    and self.credentials is not None
                ):
                    # the token expired or the member forgot it (a restart): renew, repeat
                    renewed = True
                    await self.ensure_token(stale=token)
                    return await self._attempts(path, content, what, idempotent, auth, only)
                if isinstance(error, UnavailableError) and (
                    idempotent or any(s in message.lower() for s in _RETRY_ANYWAY)
                ):
                    failures.append(f"{endpoint}: {message}")
                    self.endpoint_failed(endpoint)
                    continue
                raise error
            if only:
                raise UnavailableError("; ".join(failures), request=what, endpoint=only)
            await backoff.wait()

    def _decode(self, response: httpx.Response, what: str, endpoint: str) -> Json:
        try:
            with gc_paused():
                data = json.loads(response.content)
        except ValueError as exc:
            raise ProtocolError(
                f"the answer is not JSON: {response.content[:200]!r}",
                request=what,
                endpoint=endpoint,
            ) from exc
        if not isinstance(data, dict):
            raise ProtocolError(f"the answer is not a JSON object: {data!r}"[:300], request=what)
        return data

    @asynccontextmanager
    async def stream(
        self, endpoint: str, path: str, content: bytes, headers: dict[str, str]
    ) -> AsyncIterator[httpx.Response]:
        """Open a streaming POST (a watch) to one endpoint, with the auth header."""
        request = self.http.build_request(
            "POST", endpoint + path, content=content, headers=headers | self.auth_headers()
        )
        response = await self.http.send(request, stream=True)
        try:
            yield response
        finally:
            with trio.CancelScope(shield=True):
                await response.aclose()


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a failed connection, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def ssl_context(
    ca_cert: str | None, client_cert: str | None, client_key: str | None
) -> ssl.SSLContext | bool:
    """The TLS setup for httpx: the CA to trust and our own certificate, if any."""
    if ca_cert is None and client_cert is None:
        return True
    context = ssl.create_default_context(cafile=ca_cert)
    if client_cert is not None:
        context.load_cert_chain(client_cert, client_key)
    return context
