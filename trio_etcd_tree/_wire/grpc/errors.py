"""gRPC status codes to the library's errors: the one place the gRPC transport maps them.

The classification itself (which code and which etcd message make which error) is shared
with the gateway transport, so both transports raise the same error for the same refusal.
"""

from __future__ import annotations

from ..._errors import EtcdError
from ..._gateway import error_for

__all__ = ["grpc_error"]


def grpc_error(code: int, message: str, *, request: str, endpoint: str | None) -> EtcdError:
    """The error for a ``grpc-status`` other than 0 and its ``grpc-message``."""
    return error_for(code, message, request=request, endpoint=endpoint)
