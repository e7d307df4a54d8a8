"""Dialling an etcd member for gRPC: TCP, or TLS with ALPN ``h2`` (with the caller's CA and
client certificate), each within the dial timeout; the errors say which step failed."""

from __future__ import annotations

import math
import ssl
import urllib.parse
from collections.abc import Callable

import trio

from ..._core.errors import UnavailableError
from ..errors import tls_failure
from .connection import KEEPALIVE_TIME, KEEPALIVE_TIMEOUT, GrpcConnection

__all__ = ["connect_endpoint", "h2_ssl_context"]


async def _connect_stream(
    host: str, port: int, ssl_context: ssl.SSLContext | None
) -> trio.abc.Stream:
    tcp = await trio.open_tcp_stream(host, port)
    if ssl_context is None:
        return tcp
    tls = trio.SSLStream(tcp, ssl_context, server_hostname=host)
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    if tls.selected_alpn_protocol() != "h2":
        await trio.aclose_forcefully(tls)
        raise UnavailableError(
            "the server did not agree to HTTP/2 (ALPN h2) over TLS",
            kind="tls",
            endpoint=f"{host}:{port}",
        )
    return tls


def h2_ssl_context(context: ssl.SSLContext | None) -> ssl.SSLContext:
    """``context`` (or a default one) offering ALPN ``h2``; its certificates are kept."""
    context = context or ssl.create_default_context()
    context.set_alpn_protocols(["h2"])
    return context


async def connect_endpoint(
    endpoint: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    keepalive_time: float = KEEPALIVE_TIME,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    connect: Callable[[], trio.abc.Stream] | None = None,
    dial_timeout: float | None = None,
) -> GrpcConnection:
    """Connect to ``endpoint`` (``http://host:port`` or ``https://host:port``); the
    connection works once its :meth:`GrpcConnection.run` task runs.

    ``https`` uses TLS with ALPN ``h2`` and ``ssl_context`` (its CA and client certificate);
    ``http`` speaks HTTP/2 with prior knowledge. ``connect`` replaces the TCP connection
    with a stream of the caller's (the in-memory etcd).

    Raises:
        UnavailableError: the connection could not be made (``kind`` "connect" or "tls"),
            or not within ``dial_timeout`` seconds (``kind`` "connect").

    Cancellation: safe; a half-made connection is closed.
    """
    url = urllib.parse.urlsplit(endpoint)
    scheme = url.scheme or "http"
    host = url.hostname or "127.0.0.1"
    port = url.port or (443 if scheme == "https" else 2379)
    try:
        with trio.fail_after(math.inf if dial_timeout is None else dial_timeout):
            if connect is not None:  # (refused: it raises OSError, as TCP does)
                stream = connect()
            else:
                stream = await _connect_stream(
                    host, port, h2_ssl_context(ssl_context) if scheme == "https" else None
                )
    except trio.TooSlowError as exc:
        raise UnavailableError(
            f"could not connect within {dial_timeout:g} s", kind="connect", endpoint=endpoint
        ) from exc
    except (OSError, trio.BrokenResourceError) as exc:
        tls = tls_failure(exc)
        if tls is not None:
            raise UnavailableError(
                f"the TLS handshake failed: {tls}", kind="tls", endpoint=endpoint
            ) from exc
        cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
        raise UnavailableError(
            f"could not connect: {cause or exc!r}", kind="connect", endpoint=endpoint
        ) from exc
    return GrpcConnection(
        stream,
        endpoint=endpoint,
        authority=url.netloc or host,
        scheme=scheme,
        keepalive_time=keepalive_time,
        keepalive_timeout=keepalive_timeout,
    )
