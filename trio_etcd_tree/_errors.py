"""The errors trio-etcd-tree raises, one small hierarchy.

::

    EtcdError                   every error below; .request, .endpoint, .code, .server_message
    ├── UnavailableError        no server answered: transport failure, 503, no leader, deadline
    ├── AuthenticationError     wrong user name or password, or a token the server refuses
    ├── PermissionDeniedError   the user may not do this
    ├── CompactedError          the revision asked for was compacted (.compact_revision)
    ├── InvalidRequestError     the server refused the request as invalid
    │   ├── FutureRevisionError a revision the server has not reached yet
    │   └── TooLargeError       over --max-request-bytes or --max-txn-ops
    ├── NotFoundError           the lease does not exist (any more)
    ├── LeaseExpiredError       a lease kept alive by ``Client.lease`` was lost
    ├── ClusterChangedError     the cluster id changed or the revision went backwards
    └── ProtocolError           an answer this library does not understand

Every error says what was asked (``request``, e.g. ``"put b'/cfg/a'"``), of which endpoint,
and what the server said (``code`` is the gRPC status code, ``server_message`` its text).
A failed compare in a transaction is not an error: it is a normal ``TxnResult``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ClusterChangedError",
    "CompactedError",
    "EtcdError",
    "FutureRevisionError",
    "InvalidRequestError",
    "LeaseExpiredError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "TooLargeError",
    "UnavailableError",
]


class EtcdError(Exception):
    """Base class of every error raised by trio-etcd-tree.

    Attributes:
        request: what was asked, in words (``"range b'/cfg/'..b'/cfg0'"``).
        endpoint: the endpoint that answered (or failed), if one was involved.
        code: the gRPC status code the server gave, if any.
        server_message: the server's own words, if any.
        http_status: the HTTP status of the answer, if there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        request: str = "",
        endpoint: str | None = None,
        code: int | None = None,
        server_message: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.endpoint = endpoint
        self.code = code
        self.server_message = server_message
        self.http_status = http_status

    def __str__(self) -> str:
        parts = [self.message]
        if self.request:
            parts.insert(0, f"{self.request}:")
        if self.endpoint:
            parts.append(f"(endpoint {self.endpoint})")
        if self.server_message and self.server_message not in self.message:
            parts.append(f"server said: {self.server_message!r}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class UnavailableError(EtcdError):
    """No server could be reached or none answered in time.

    ``outcome_unknown`` is true when a write was sent but its answer was lost: it may or
    may not have been applied.
    """

    outcome_unknown: bool = False


class AuthenticationError(EtcdError):
    """The user name or password is wrong, or the server refused the token."""


class PermissionDeniedError(EtcdError):
    """The authenticated user lacks the permission for this request."""


class CompactedError(EtcdError):
    """The revision asked for has been compacted away.

    ``compact_revision`` is the server's compaction point when it said so (watches do;
    ranges do not, and then it is ``None``). The only recovery for a watcher is a fresh
    read of the current state.
    """

    compact_revision: int | None = None


class InvalidRequestError(EtcdError):
    """The server refused the request as invalid (gRPC InvalidArgument and kin)."""


class FutureRevisionError(InvalidRequestError):
    """A revision was asked for that the server has not reached yet."""


class TooLargeError(InvalidRequestError):
    """The request is over the server's size limit or its limit of operations per txn."""


class NotFoundError(EtcdError):
    """The lease does not exist, or no longer does."""


class LeaseExpiredError(EtcdError):
    """A lease that ``Client.lease`` was keeping alive is gone.

    Raised out of the ``async with`` block (cancelling it) when the server reports the lease
    expired or revoked, or when no keep-alive got through before the lease's time ran out.
    """


class ClusterChangedError(EtcdError):
    """The server is not the cluster we were talking to: its cluster id changed, or its
    revision went backwards (a restore from backup). Cached state must be rebuilt."""


class ProtocolError(EtcdError):
    """The server's answer could not be understood."""
