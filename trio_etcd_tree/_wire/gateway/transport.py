"""The HTTP/JSON gateway as a :class:`~trio_etcd_tree._wire.base.Transport`, over httpx.

One ``httpx.AsyncClient`` (no httpx timeouts: time limits are the client's cancel scopes)
carries every call; each watch is one streaming request to ``/v3/watch`` whose answer is one
``{"result": ...}`` JSON object per line (the gateway cannot add a watch to a running
request: httpx sends the whole body before it reads the answer).

This module is the one place where httpx's failures become our errors. How far a call got
comes from httpcore's trace hooks: the request may have reached the server from the moment
its body starts to go out, and the server has answered once the response headers are in.
(An httpx transport given instead of the network, such as the in-memory etcd, reports
nothing: then a request counts as sent from the start, and as answered only when it is.)

==========================================  =========================  ===================
what failed                                  error (``kind``)           a write's outcome
==========================================  =========================  ===================
no connection (refused, no route)            UnavailableError connect   not applied
TLS handshake                                UnavailableError tls       not applied
connection lost before the request went out  UnavailableError lost      not applied
connection lost after it may have gone out   UnavailableError lost      unknown
an answer that is not JSON / not understood  ProtocolError              unknown
the server refused it ("no leader", ...)     UnavailableError server    not applied
the server gave up on it ("timed out", ...)  UnavailableError server    unknown
any other refusal (invalid, denied, ...)     its own error class        not applied
==========================================  =========================  ===================
"""

from __future__ import annotations

import json
import ssl
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import httpx
import trio

from ..._core.errors import EtcdError, InvalidRequestError, ProtocolError, UnavailableError
from ..._core.util import gc_paused
from ..base import CallState, Request, WatchCreateRequest, WatchMessage
from ..errors import error_for, tls_failure
from . import codec

__all__ = ["GatewayTransport"]

R = TypeVar("R")

# Ask the gateway to end a watch when the member loses its leader (clientv3's
# WithRequireLeader): otherwise a member cut off from the quorum keeps the watch silent.
_REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}


class GatewayTransport:
    """etcd's HTTP/JSON gateway (``/v3/...``), as one httpx client.

    Args:
        verify: the TLS setup for ``https://`` endpoints (an ``ssl.SSLContext``, or True
            for the system's CAs).
        dial_timeout: seconds to open a connection (None: no limit but the client's).
        http_transport: an httpx transport to use instead of the network (the in-memory
            etcd, :class:`trio_etcd_tree.testing.FakeEtcd`, is one).
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        dial_timeout: float | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # httpcore's connection pool reports through its trace hook how far a request got;
        # another transport may not, and then a request counts as sent from the start
        self._traced = http_transport is None
        self._http = httpx.AsyncClient(
            transport=http_transport,
            verify=verify,
            timeout=httpx.Timeout(None, connect=dial_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )

    async def call(
        self, endpoint: str, request: Request[R], *, token: str | None, state: CallState
    ) -> R:
        path, encode, decode = codec.CALLS[type(request)]
        writes = request.writes
        if not self._traced:
            state.mark_sent()
        try:
            response = await self._http.post(
                endpoint + path,
                content=codec.dumps(encode(request)),
                headers={"Authorization": token} if token else None,
                extensions={"trace": _tracer(state)},
            )
        except httpx.TransportError as exc:
            raise _failure(exc, request.describe(), endpoint, writes and state.sent) from exc
        if response.status_code != 200:
            code, message = codec.error_fields(response.status_code, response.content)
            raise error_for(
                code,
                message,
                request=request.describe(),
                endpoint=endpoint,
                http_status=response.status_code,
                writes=writes,
            )
        try:
            with gc_paused():
                data = json.loads(response.content)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            return cast("R", decode(data))
        except EtcdError as exc:  # an error inside a streaming endpoint's answer
            exc.endpoint = endpoint
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise ProtocolError(
                f"the answer is not understood ({exc}): {response.content[:200]!r}",
                request=request.describe(),
                endpoint=endpoint,
                outcome_unknown=writes,
            ) from exc

    @asynccontextmanager
    async def watch(
        self, endpoint: str, create: WatchCreateRequest, *, token: str | None
    ) -> AsyncIterator[_GatewayWatch]:
        what = create.describe()
        headers = _REQUIRE_LEADER | ({"Authorization": token} if token else {})
        body = codec.dumps(codec.watch_create_request(create))
        request = self._http.build_request(
            "POST", endpoint + "/v3/watch", content=body, headers=headers
        )
        try:
            response = await self._http.send(request, stream=True)
            if response.status_code != 200:
                try:
                    content = await response.aread()
                finally:
                    await response.aclose()
                code, message = codec.error_fields(response.status_code, content)
                raise error_for(
                    code,
                    message,
                    request=what,
                    endpoint=endpoint,
                    http_status=response.status_code,
                )
        except httpx.TransportError as exc:
            raise _failure(exc, what, endpoint, False) from exc
        try:
            chunks = cast("AsyncGenerator[bytes]", response.aiter_raw())
            async with aclosing(chunks):
                yield _GatewayWatch(chunks, what, endpoint)
        finally:
            with trio.CancelScope(shield=True):
                await response.aclose()

    def discard(self, endpoint: str) -> None:
        """Nothing to drop: httpx closes a connection whose request failed or was
        cancelled, and opens a new one for the next request."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the connections. Cancellation: never blocks on the network."""
        with trio.CancelScope(shield=True):
            await self._http.aclose()


class _GatewayWatch:
    """The lines of one watch request, as :class:`WatchMessage` values."""

    def __init__(self, chunks: AsyncGenerator[bytes], what: str, endpoint: str) -> None:
        self._chunks = chunks
        self._what = what
        self._endpoint = endpoint
        self._lines: deque[bytes] = deque()
        self._partial: list[bytes] = []

    async def receive(self) -> WatchMessage:
        while not self._lines:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                raise UnavailableError(
                    "the server ended the stream",
                    kind="lost",
                    request=self._what,
                    endpoint=self._endpoint,
                ) from None
            except httpx.TransportError as exc:
                raise _failure(exc, self._what, self._endpoint, False) from exc
            self._split(chunk)
        line = self._lines.popleft()
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise ProtocolError(
                f"a watch message is not JSON: {line[:200]!r}",
                request=self._what,
                endpoint=self._endpoint,
            ) from exc
        result = codec.stream_result(data, self._what, self._endpoint)
        return codec.watch_message(result, self._what, self._endpoint)

    def _split(self, chunk: bytes) -> None:
        # HTTP chunks do not align with lines; a 20k-event catch-up is one ~4 MB line
        parts = self._partial
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if parts:
                parts.append(chunk[start:end])
                line = b"".join(parts)
                parts.clear()
            else:
                line = chunk[start:end]
            start = end + 1
            if line.strip():
                self._lines.append(line)
        if start < len(chunk):
            parts.append(chunk[start:])

    async def request_progress(self) -> None:
        raise InvalidRequestError(
            "the gateway cannot send on an open watch: no progress request",
            request=self._what,
            endpoint=self._endpoint,
        )


def _tracer(state: CallState) -> Callable[[str, Any], Awaitable[None]]:
    """httpcore's trace hook, reporting how far the call got."""

    async def trace(event: str, info: Any) -> None:
        # the server acts on a request once it has all of it: a request cut before its
        # body started to go out was certainly not applied
        if event.endswith("send_request_body.started"):
            state.mark_sent()
        elif event.endswith("receive_response_headers.complete"):
            state.mark_answered()

    return trace


def _failure(
    exc: httpx.TransportError, what: str, endpoint: str, unknown: bool
) -> UnavailableError:
    """The error for a failed HTTP exchange; ``unknown``: a write may have gone out."""
    tls = tls_failure(exc)
    if tls is not None:
        return UnavailableError(
            f"the TLS handshake failed: {tls}", kind="tls", request=what, endpoint=endpoint
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):  # before anything was sent
        return UnavailableError(
            f"could not connect: {exc or type(exc).__name__}",
            kind="connect",
            request=what,
            endpoint=endpoint,
        )
    if unknown:
        message = f"the connection broke before the answer came ({exc or type(exc).__name__})"
    else:
        message = f"the connection broke ({exc or type(exc).__name__})"
    return UnavailableError(
        message, kind="lost", request=what, endpoint=endpoint, outcome_unknown=unknown
    )
