"""The wire: etcd's calls in Python types (:mod:`.base`), and the transports that carry
them. A transport module is imported only when a client uses it."""

from __future__ import annotations

import ssl
from typing import Any

from .base import (
    AuthenticateRequest as AuthenticateRequest,
    CallState as CallState,
    CompactRequest as CompactRequest,
    DeleteRangeRequest as DeleteRangeRequest,
    LeaseGrantRequest as LeaseGrantRequest,
    LeaseKeepAliveRequest as LeaseKeepAliveRequest,
    LeaseLeasesRequest as LeaseLeasesRequest,
    LeaseRevokeRequest as LeaseRevokeRequest,
    LeaseTimeToLiveRequest as LeaseTimeToLiveRequest,
    MemberListRequest as MemberListRequest,
    PutRequest as PutRequest,
    RangeRequest as RangeRequest,
    Request as Request,
    SinkWireWatch as SinkWireWatch,
    StatusRequest as StatusRequest,
    Transport as Transport,
    TxnRequest as TxnRequest,
    WatchCreateRequest as WatchCreateRequest,
    WatchMessage as WatchMessage,
    WatchSink as WatchSink,
    WireWatch as WireWatch,
)

TRANSPORTS = ("grpc", "gateway")
"""The names ``open_client(transport=...)`` takes."""


def open_transport(
    kind: object, tls: ssl.SSLContext | None, dial_timeout: float | None = None
) -> Transport:
    """The transport ``kind`` names (``"grpc"``, ``"gateway"``), or ``kind`` itself if it is
    one; use it as ``async with transport:``. An httpx transport (such as the in-memory
    etcd) is carried by the gateway; an object with ``open_grpc_stream(endpoint)`` (the
    in-memory etcd's ``grpc``) by the gRPC transport over the streams it makes.

    ``tls``: the TLS setup for ``https://`` endpoints (None: the system's CAs);
    ``dial_timeout``: seconds to open a connection (None: no limit of its own).
    """
    if isinstance(kind, Transport):
        return kind
    if kind == "gateway" or hasattr(kind, "handle_async_request"):
        from .gateway.transport import GatewayTransport

        http: Any = None if kind == "gateway" else kind
        return GatewayTransport(
            verify=True if tls is None else tls, dial_timeout=dial_timeout, http_transport=http
        )
    connect = getattr(kind, "open_grpc_stream", None)
    if kind == "grpc" or connect is not None:
        from .grpc.transport import GrpcTransport

        return GrpcTransport(tls=tls, dial_timeout=dial_timeout, connect=connect)
    raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, or a transport: {kind!r}")


def tls_context(
    ca_cert: str | None, client_cert: str | None, client_key: str | None
) -> ssl.SSLContext | None:
    """The TLS setup: the CA to trust and our own certificate, if any (None: defaults)."""
    if ca_cert is None and client_cert is None:
        return None
    context = ssl.create_default_context(cafile=ca_cert)
    if client_cert is not None:
        context.load_cert_chain(client_cert, client_key)
    return context
