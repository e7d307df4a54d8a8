"""``open_client``: the options of a client checked and turned into its connection, and
endpoints given as etcdctl takes them."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from os import PathLike
from urllib.parse import urlsplit

from .._wire import open_transport, tls_context
from .client import Client
from .connection import Connection, Credentials

__all__ = ["endpoint_urls", "open_client"]


@asynccontextmanager
async def open_client(
    endpoints: str | Sequence[str] = "http://127.0.0.1:2379",
    *,
    username: str | None = None,
    password: str | None = None,
    ca_cert: str | PathLike[str] | None = None,
    client_cert: str | PathLike[str] | None = None,
    client_key: str | PathLike[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    dial_timeout: float | None = None,
    request_deadline: float = 10.0,
    attempt_timeout: float = 5.0,
    transport: str | object = "grpc",
) -> AsyncIterator[Client]:
    """Open a client to an etcd v3 cluster, for the life of the ``async with`` block.

    Args:
        endpoints: one URL or several (``"http://127.0.0.1:2379"``, or comma-separated as
            etcdctl takes them; ``host:port`` means ``http://host:port``). Requests go to
            the first healthy endpoint; one that fails is skipped for a while (see
            :ref:`failover`).
        username, password: authenticate with these; the token is renewed (once per
            request) when the server stops accepting it.
        ca_cert: the CA that signed the servers' certificates (for ``https://``).
        client_cert, client_key: our own certificate, for servers that ask for one.
        ssl_context: the whole TLS setup, instead of ``ca_cert``/``client_cert`` (for
            example one that does not check the server, etcdctl's
            ``--insecure-skip-tls-verify``).
        dial_timeout: seconds to open a connection (None: only ``attempt_timeout`` bounds
            it).
        request_deadline: seconds a unary request may take, all attempts included, when
            the caller set no deadline of their own (etcd can otherwise wait forever, e.g.
            on a stale token).
        attempt_timeout: seconds one endpoint may take to start answering before it is
            marked unhealthy and the request moves on (if it safely can).
        transport: ``"grpc"`` (etcd's native gRPC API over HTTP/2: one connection per
            member carries every call and every watch), ``"gateway"`` (etcd's HTTP/JSON
            gateway, for paths that pass only HTTP/1.1), or the in-memory etcd:
            :class:`trio_etcd_tree.testing.FakeEtcd` itself is reached over the gateway,
            its ``grpc`` over gRPC.

    Raises:
        ValueError: at once, for an endpoint that is not a URL, or options that do not go
            together.

    Cancellation: entering does no I/O (authentication happens on the first request);
    leaving closes the connections and never blocks on the network.
    """
    urls = endpoint_urls(endpoints)
    if (username is None) != (password is None):
        raise ValueError("give both username and password, or neither")
    if client_key is not None and client_cert is None:
        raise ValueError("client_key needs client_cert")
    if not attempt_timeout > 0:
        raise ValueError("attempt_timeout must be > 0")
    if ssl_context is not None and (ca_cert is not None or client_cert is not None):
        raise ValueError("give ssl_context, or ca_cert and client_cert, not both")
    credentials = (
        Credentials(username, password) if username is not None and password is not None else None
    )
    tls = ssl_context or tls_context(
        None if ca_cert is None else str(ca_cert),
        None if client_cert is None else str(client_cert),
        None if client_key is None else str(client_key),
    )
    async with open_transport(transport, tls, dial_timeout) as wire:
        connection = Connection(
            wire,
            urls,
            credentials=credentials,
            request_deadline=request_deadline,
            attempt_timeout=attempt_timeout,
        )
        yield Client._create(connection)


def endpoint_urls(endpoints: str | Sequence[str], *, tls: bool = False) -> list[str]:
    """Endpoints as URLs, as etcdctl takes them: one string of comma-separated endpoints or
    a sequence, the scheme optional (``http://``, or ``https://`` with ``tls``); a
    ``ValueError`` naming the first that is not an ``http://`` or ``https://`` URL of a
    host."""
    if isinstance(endpoints, str):
        endpoints = endpoints.split(",")
    scheme = "https://" if tls else "http://"
    urls = []
    for given in (e.strip() for e in endpoints):
        if not given:
            continue
        url = (given if "://" in given else scheme + given).rstrip("/")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises for a port that is not a number)
        except ValueError as exc:
            raise ValueError(f"not an endpoint: {given!r} ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise ValueError(f"not an endpoint: {given!r} (say host:port or http://host:port)")
        urls.append(url)
    if not urls:
        raise ValueError("at least one endpoint is needed")
    return urls
