"""What etcd's answers mean, for every transport: a gRPC status and message to an error.

Both the gateway and gRPC carry etcd's gRPC status codes and its messages; this is the one
place that turns them into the error hierarchy, and decides whether a write that failed
this way may have been applied (``outcome_unknown``).
"""

from __future__ import annotations

import ssl

from .._core.errors import (
    AuthenticationError,
    CompactedError,
    EtcdError,
    FutureRevisionError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    TooLargeError,
    UnavailableError,
)

__all__ = ["cancel_reason_fields", "error_for", "tls_failure"]

# gRPC status codes
CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 1, 2, 3, 4, 5
PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, OUT_OF_RANGE = 7, 8, 9, 11
UNIMPLEMENTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 12, 13, 14, 16

_GRPC_CODES = {
    "Canceled": CANCELLED,
    "Unknown": UNKNOWN,
    "InvalidArgument": INVALID_ARGUMENT,
    "DeadlineExceeded": DEADLINE_EXCEEDED,
    "NotFound": NOT_FOUND,
    "PermissionDenied": PERMISSION_DENIED,
    "ResourceExhausted": RESOURCE_EXHAUSTED,
    "FailedPrecondition": FAILED_PRECONDITION,
    "OutOfRange": OUT_OF_RANGE,
    "Unimplemented": UNIMPLEMENTED,
    "Internal": INTERNAL,
    "Unavailable": UNAVAILABLE,
    "Unauthenticated": UNAUTHENTICATED,
}

# Server refusals that etcd gives before a request is proposed to raft: a write refused
# this way was certainly not applied, and may be sent to another member. Any other
# "unavailable" answer to a write ("request timed out", "server stopped", "request
# cancelled") may come after the proposal, so its outcome is unknown.
NOT_APPLIED = ("no leader", "too many requests", "not capable", "leader changed")


def cancel_reason_fields(reason: str) -> tuple[int | None, str]:
    """Code and message of a watch's ``cancel_reason``, which reads
    ``rpc error: code = PermissionDenied desc = etcdserver: permission denied``."""
    code: int | None = None
    message = reason
    if "code = " in reason:
        name = reason.split("code = ", 1)[1].split(" ", 1)[0]
        code = _GRPC_CODES.get(name)
    if "desc = " in reason:
        message = reason.split("desc = ", 1)[1]
    return code, message


def error_for(
    code: int | None,
    message: str,
    *,
    request: str,
    endpoint: str | None = None,
    http_status: int | None = None,
    writes: bool = False,
) -> EtcdError:
    """The most specific error class for what the server said about ``request``.

    ``writes``: the request changes the store; a refusal that may have come after the
    request was proposed then sets ``outcome_unknown``.
    """
    text = message.lower()
    said = message
    message = message or "the server gave no reason"
    cls: type[EtcdError]
    if code == UNAUTHENTICATED or "authentication failed" in text or "user name is empty" in text:
        cls = AuthenticationError
    elif code == PERMISSION_DENIED:
        cls = PermissionDeniedError
    elif "compacted" in text:
        cls = CompactedError
    elif "future revision" in text:
        cls = FutureRevisionError
    elif (
        "too many operations" in text or "request is too large" in text or "larger than max" in text
    ):
        cls = TooLargeError
    elif code == NOT_FOUND:
        cls = NotFoundError
    elif code in (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE, UNIMPLEMENTED) or (
        http_status is not None and 400 <= http_status < 500 and code is None
    ):
        cls = InvalidRequestError
    else:
        return UnavailableError(
            message,
            kind="server",
            request=request,
            endpoint=endpoint,
            code=code,
            server_message=said,
            http_status=http_status,
            outcome_unknown=writes and not any(s in text for s in NOT_APPLIED),
        )
    return cls(
        message,
        request=request,
        endpoint=endpoint,
        code=code,
        server_message=said,
        http_status=http_status,
    )


_CUT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a failed connection, if that is what it was (a connection cut
    during the handshake is not: that is a connection failure like any other)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) and not isinstance(seen, _CUT):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
