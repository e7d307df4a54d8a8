"""The errors trio-etcd-tree raises, one small hierarchy.

::

    EtcdError                   every error below; .request, .endpoint, .code, .server_message,
    │                           .outcome_unknown (a failed write that may have been applied)
    ├── UnavailableError        no server answered: transport failure, 503, no leader, deadline
    │                           (.kind says which)
    ├── AuthenticationError     wrong user name or password, or a token the server refuses
    ├── PermissionDeniedError   the user may not do this
    ├── CompactedError          the revision asked for was compacted (.compact_revision)
    ├── InvalidRequestError     the server refused the request as invalid
    │   ├── FutureRevisionError a revision the server has not reached yet
    │   └── TooLargeError       over --max-request-bytes or --max-txn-ops
    ├── NotFoundError           the lease does not exist (any more)
    ├── LeaseExpiredError       a lease kept alive by ``Client.lease`` was lost
    ├── ClusterChangedError     the cluster id changed or the revision went backwards
    ├── ProtocolError           an answer this library does not understand
    │
    │   the mirrored tree (``mount``):
    ├── ConflictError           a guarded write found the key changed (.current holds it now)
    ├── DecodeError             a node's bytes do not decode with its codec (.raw kept)
    ├── TreeClosedError         the mount was left (also a trio.ClosedResourceError)
    ├── SubscriptionOverflow    a subscriber fell too far behind (also trio.BrokenResourceError)
    ├── MirrorError             the mirror cannot go on (the cause is chained)
    ├── NotLoadedError          a lazy mount has not loaded the value yet (also a LookupError)
    │
    │   locks and elections:
    ├── LockBusyError           ``try_lock`` found the lock taken (also a trio.WouldBlock)
    ├── LockLostError           our contender key vanished while we waited
    ├── NotLeaderError          ``proclaim`` or ``guard`` by a candidate that does not lead
    │
    │   YAML documents (``parse_yaml``, ``load_yaml``; also ValueError):
    └── DocumentError           a document that cannot be written (.source, .line, .column)
        └── DocumentLimitError  over a limit (.limit names the option, .maximum its value)

Every error says what was asked (``request``, e.g. ``"put /cfg/a"``), of which endpoint,
and what the server said (``code`` is the gRPC status code, ``server_message`` its text).
A failed compare in a transaction is not an error: it is a normal ``TxnResult``.

``outcome_unknown`` tells, for a write that failed, whether it may have been applied: it is
false only when the request certainly did not take effect (it was never sent, or the server
refused it), and true when the request may have reached the server and its answer was lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .types import KeyValue

__all__ = [
    "AuthenticationError",
    "ClusterChangedError",
    "CompactedError",
    "ConflictError",
    "DecodeError",
    "DocumentError",
    "DocumentLimitError",
    "EtcdError",
    "FutureRevisionError",
    "InvalidRequestError",
    "LeaseExpiredError",
    "LockBusyError",
    "LockLostError",
    "MirrorError",
    "NotFoundError",
    "NotLeaderError",
    "NotLoadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "SubscriptionOverflow",
    "TooLargeError",
    "TreeClosedError",
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
        outcome_unknown: for a write: true when it may have been applied (the request may
            have reached the server, and no answer says what happened); false when it was
            certainly not applied. Reads leave it false. When true, ``str()`` says so.
    """

    outcome_unknown: bool = False

    def __init__(
        self,
        message: str,
        *,
        request: str = "",
        endpoint: str | None = None,
        code: int | None = None,
        server_message: str | None = None,
        http_status: int | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown
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
        if self.outcome_unknown:
            parts.append("- the request may or may not have been applied")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class UnavailableError(EtcdError):
    """No server could be reached or none answered in time.

    ``outcome_unknown`` is true when a write was sent but its answer was lost: it may or
    may not have been applied. ``kind`` says what failed last:

    * ``"connect"``: no connection could be made (refused, no route): nothing was sent;
    * ``"tls"``: the TLS handshake failed (a setup error: not repeated): nothing was sent;
    * ``"lost"``: the connection broke, or the answer could not be read, after the request
      may have been sent;
    * ``"timeout"``: no answer within ``attempt_timeout`` or the request's deadline;
    * ``"server"``: the server answered that it cannot serve now (no leader, too many
      requests, a request that timed out inside the cluster).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "server",
        request: str = "",
        endpoint: str | None = None,
        code: int | None = None,
        server_message: str | None = None,
        http_status: int | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(
            message,
            request=request,
            endpoint=endpoint,
            code=code,
            server_message=server_message,
            http_status=http_status,
            outcome_unknown=outcome_unknown,
        )
        self.kind = kind


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


class ConflictError(EtcdError):
    """A guarded write was refused: the key (or subtree) is not as the tree knew it.

    Attributes:
        key: the first key found not as the write expected.
        current: what the server holds now for ``key`` (``None``: nothing), read in the
            same transaction, so it is exactly what made the guard fail.
        conflicts: every key found changed, mapped to what the server holds now.
        revision: the store's revision when the write was refused.
    """

    def __init__(
        self,
        message: str,
        *,
        conflicts: dict[bytes, KeyValue | None],
        revision: int,
        request: str = "",
    ) -> None:
        super().__init__(message, request=request)
        self.conflicts = conflicts
        self.key = next(iter(conflicts), b"")
        self.current = conflicts.get(self.key)
        self.revision = revision


class DecodeError(EtcdError, ValueError):
    """A node's value does not decode with its codec. The tree keeps the bytes (``raw``)."""

    def __init__(self, message: str, *, key: bytes, raw: bytes, codec: str) -> None:
        super().__init__(message)
        self.key = key
        self.raw = raw
        self.codec = codec


class TreeClosedError(EtcdError, trio.ClosedResourceError):
    """The ``mount`` block was left: the tree is a frozen snapshot and cannot be written."""


class SubscriptionOverflow(EtcdError, trio.BrokenResourceError):
    """A subscriber did not keep up and its buffer filled; the subscription has ended.

    Everything delivered before it is still valid; read the tree's current state to recover
    and subscribe again.
    """


class MirrorError(EtcdError):
    """The mirror cannot go on (for example the user lost permission to read the subtree);
    raised out of the ``mount`` block. ``__cause__`` holds the underlying error."""


class NotLoadedError(EtcdError, LookupError):
    """The value of a node of a lazy mount is not loaded yet: ``await node.load()``."""


class LockBusyError(EtcdError, trio.WouldBlock):
    """:func:`try_lock` found the lock held (or queued for) by someone else.

    It is a :class:`trio.WouldBlock` as well as an :class:`EtcdError`, the way trio's own
    ``*_nowait`` calls report that they would have to wait.

    Attributes:
        holder: the key of the current holder.
    """

    def __init__(self, message: str, *, holder: bytes, request: str = "") -> None:
        super().__init__(message, request=request)
        self.holder = holder


class LockLostError(EtcdError):
    """Our key disappeared while we were queued for the lock or campaigning (deleted by
    someone else, or its lease expired before we heard of it)."""


class NotLeaderError(EtcdError):
    """:meth:`Election.proclaim` was called by a candidate that is not (or no longer) the
    leader."""


class DocumentError(EtcdError, ValueError):
    """A YAML document that cannot be written to etcd; nothing was written.

    The message says where (``file:line:column`` or the path in the document) and why.

    Attributes:
        source: the file's name (``"<stdin>"``, ``"<document>"``), if known.
        line: where in the file (1-based), if known.
        column: likewise.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.line = line
        self.column = column


class DocumentLimitError(DocumentError):
    """A document over one of the limits that keep a load bounded (its size, nesting
    depth, alias expansion, key count, a value's size).

    Attributes:
        limit: the option that sets the limit (``"max_depth"``; the tools' ``--max-depth``).
        maximum: its value.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        maximum: int,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message, source=source, line=line, column=column)
        self.limit = limit
        self.maximum = maximum
