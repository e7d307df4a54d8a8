"""The seam between the client and the wire: every etcd call the library makes, in Python types.

A :class:`Transport` speaks etcd's API to one endpoint at a time, in its own wire format
(the HTTP/JSON gateway, or gRPC). It owns its connections and the mapping of its own
failures into the error hierarchy, and nothing else: it never retries on another endpoint,
never renews a token, never knows about trees or users. That is the client's job
(``trio_etcd_tree._client``), written once for every transport.

What a transport promises, so the client can tell the truth about a failed write:

* every failure comes out as an :class:`~trio_etcd_tree.EtcdError`;
* a transport failure is an :class:`~trio_etcd_tree.UnavailableError` whose ``kind`` says
  what failed and whose ``outcome_unknown`` says whether the request may have left;
* while a call runs, it reports on its :class:`CallState`: :meth:`CallState.mark_sent` just
  before the first byte of the request may leave, and :meth:`CallState.mark_answered` when
  the server's answer has begun (response headers). If the call is cancelled (the client's
  per-attempt timeout, or a deadline), these two facts are all the client has to go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Protocol, Self, TypeVar, runtime_checkable

import trio

from .._core.keys import show_bytes
from .._core.txn import Compare, Get, Op, Txn
from .._core.types import (
    DeleteResult,
    Event,
    LeaseGrant,
    LeaseInfo,
    Member,
    PutResult,
    RangeResult,
    ResponseHeader,
    Status,
    TxnResult,
)

if TYPE_CHECKING:
    from .._core.errors import EtcdError

__all__ = [
    "AuthenticateRequest",
    "CallState",
    "CompactRequest",
    "DeleteRangeRequest",
    "LeaseGrantRequest",
    "LeaseKeepAliveRequest",
    "LeaseLeasesRequest",
    "LeaseRevokeRequest",
    "LeaseTimeToLiveRequest",
    "MemberListRequest",
    "PutRequest",
    "RangeRequest",
    "Request",
    "SinkWireWatch",
    "StatusRequest",
    "Transport",
    "TxnRequest",
    "WatchCreateRequest",
    "WatchMessage",
    "WatchSink",
    "WireWatch",
]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class CallState:
    """What a transport tells the client about one attempt while it runs.

    ``scope`` is the attempt's cancel scope: once the answer has begun, the per-attempt
    timeout no longer applies (a large answer may take longer to read than a member may
    take to start answering), so :meth:`mark_answered` lifts its deadline.
    """

    __slots__ = ("answered", "scope", "sent")

    def __init__(self, scope: trio.CancelScope | None = None) -> None:
        self.scope = scope
        self.sent = False  #: the request may have reached the server
        self.answered = False  #: the server's answer has begun

    def mark_sent(self) -> None:
        self.sent = True

    def mark_answered(self) -> None:
        self.answered = True
        if self.scope is not None:
            self.scope.deadline = math.inf


class Request(Generic[R_co]):
    """Base of the requests: a ``Request[R]`` is answered with an ``R``."""

    __slots__ = ()

    @property
    def writes(self) -> bool:
        """Whether the request changes the store (a lost answer leaves its outcome open)."""
        return False

    def describe(self) -> str:
        """The request in words, for error messages (``put /cfg/a``)."""
        raise NotImplementedError


def _span(verb: str, key: bytes, range_end: bytes | None) -> str:
    if range_end is None:
        return f"{verb} {show_bytes(key)}"
    return f"{verb} {show_bytes(key)}..{show_bytes(range_end)}"


@dataclass(frozen=True, slots=True)
class RangeRequest(Request[RangeResult]):
    key: bytes
    range_end: bytes | None = None
    limit: int = 0
    revision: int = 0
    keys_only: bool = False
    count_only: bool = False
    sort_order: str | None = None
    sort_target: str | None = None
    serializable: bool = False
    min_mod_revision: int = 0

    def describe(self) -> str:
        return _span("range", self.key, self.range_end)

    @classmethod
    def of(cls, get: Get) -> RangeRequest:
        """The range request of a transaction's read."""
        return cls(
            get.key,
            get.range_end,
            limit=get.limit,
            revision=get.revision,
            keys_only=get.keys_only,
            count_only=get.count_only,
            sort_order=get.sort_order,
            sort_target=get.sort_target,
        )


@dataclass(frozen=True, slots=True)
class PutRequest(Request[PutResult]):
    key: bytes
    value: bytes
    lease: int = 0
    prev_kv: bool = False

    @property
    def writes(self) -> bool:
        return True

    def describe(self) -> str:
        return _span("put", self.key, None)


@dataclass(frozen=True, slots=True)
class DeleteRangeRequest(Request[DeleteResult]):
    key: bytes
    range_end: bytes | None = None
    prev_kv: bool = False

    @property
    def writes(self) -> bool:
        return True

    def describe(self) -> str:
        return _span("delete", self.key, self.range_end)


@dataclass(frozen=True, slots=True)
class TxnRequest(Request[TxnResult]):
    compare: Sequence[Compare] = ()
    success: Sequence[Op] = ()
    failure: Sequence[Op] = ()

    @property
    def writes(self) -> bool:
        return _has_writes(self.success) or _has_writes(self.failure)

    def describe(self) -> str:
        return (
            f"txn ({len(self.compare)} compares, "
            f"{len(self.success)}/{len(self.failure)} operations)"
        )


def _has_writes(ops: Sequence[Op]) -> bool:
    for op in ops:
        if isinstance(op, Txn):
            if _has_writes(op.success) or _has_writes(op.failure):
                return True
        elif not isinstance(op, Get):
            return True
    return False


@dataclass(frozen=True, slots=True)
class CompactRequest(Request[ResponseHeader]):
    revision: int
    physical: bool = False

    def describe(self) -> str:
        return f"compact at {self.revision}"


@dataclass(frozen=True, slots=True)
class LeaseGrantRequest(Request[LeaseGrant]):
    ttl: int
    id: int = 0

    @property
    def writes(self) -> bool:
        return True

    def describe(self) -> str:
        return f"grant lease of {self.ttl} s"


@dataclass(frozen=True, slots=True)
class LeaseRevokeRequest(Request[ResponseHeader]):
    id: int

    def describe(self) -> str:
        return f"revoke lease {self.id}"


@dataclass(frozen=True, slots=True)
class LeaseKeepAliveRequest(Request[int]):
    """One renewal; answered with the lease's new TTL (0: the lease is gone)."""

    id: int

    def describe(self) -> str:
        return f"keep lease {self.id} alive"


@dataclass(frozen=True, slots=True)
class LeaseTimeToLiveRequest(Request[LeaseInfo]):
    id: int
    keys: bool = False

    def describe(self) -> str:
        return f"lease {self.id} ttl"


@dataclass(frozen=True, slots=True)
class LeaseLeasesRequest(Request[list[int]]):
    def describe(self) -> str:
        return "list leases"


@dataclass(frozen=True, slots=True)
class AuthenticateRequest(Request[str]):
    """Answered with the token."""

    name: str
    password: str = field(repr=False)

    def describe(self) -> str:
        return f"authenticate as {self.name!r}"


@dataclass(frozen=True, slots=True)
class StatusRequest(Request[Status]):
    def describe(self) -> str:
        return "status"


@dataclass(frozen=True, slots=True)
class MemberListRequest(Request[list[Member]]):
    def describe(self) -> str:
        return "member list"


# --- watch -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchCreateRequest:
    key: bytes
    range_end: bytes | None = None
    start_revision: int = 0
    prev_kv: bool = False
    progress_notify: bool = False
    filters: tuple[str, ...] = ()

    def describe(self) -> str:
        return _span("watch", self.key, self.range_end) + f" from revision {self.start_revision}"


@dataclass(frozen=True, slots=True)
class WatchMessage:
    """One message of one watch, as the server sent it.

    ``created`` confirms the watch (``header.revision`` is then the store's revision);
    ``canceled`` ends it: with ``compact_revision`` set when the start revision was
    compacted, else with ``error`` saying why (already mapped to the error hierarchy).
    A message with none of these and no events is a progress notification.
    """

    header: ResponseHeader
    events: list[Event] = field(default_factory=list)
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    error: EtcdError | None = None


class WireWatch(Protocol):
    """One watch on one endpoint, from :meth:`Transport.watch`."""

    async def receive(self) -> WatchMessage:
        """The next message. Raises ``UnavailableError`` when the connection ends or
        breaks (any end of a watch stream is a disconnect), another ``EtcdError`` for an
        error the server sent in the stream. Cancellation: a checkpoint; nothing is lost."""

    async def request_progress(self) -> None:
        """Ask the server how far the store has moved (answered by a progress message)."""


WatchSink = Callable[[WatchMessage], bool]
"""Takes a message at once, in the transport's reader (True), or leaves it to ``receive``
(False): see :class:`SinkWireWatch`."""


@runtime_checkable
class SinkWireWatch(WireWatch, Protocol):
    """A watch that can hand its messages to their consumer without a trip through the
    scheduler: while nothing waits in its buffer, each message is first offered to
    ``sink`` (if set), called synchronously by the transport's reader. A message the sink
    refuses, and every later one until the buffer is empty again, is buffered for
    ``receive`` as usual, so the order is kept. The sink must not block or raise."""

    sink: WatchSink | None


@runtime_checkable
class Transport(Protocol):
    """A wire protocol to etcd. One per client; it may keep connections per endpoint.

    Used as ``async with transport:`` (the client enters it for its own life): it may run
    tasks of its own (readers of its connections) until it is left.
    """

    async def __aenter__(self) -> Self:
        """Start the transport (no I/O: connections are opened by the first calls)."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        """Close every connection and end the transport's tasks. Cancellation: never
        blocks on the network."""

    async def call(
        self, endpoint: str, request: Request[R], *, token: str | None, state: CallState
    ) -> R:
        """Send ``request`` to ``endpoint`` and return its answer.

        Cancellation: a checkpoint; ``state`` tells how far the call got.
        """

    def watch(
        self, endpoint: str, create: WatchCreateRequest, *, token: str | None
    ) -> AbstractAsyncContextManager[WireWatch]:
        """Open one watch on ``endpoint``: ``async with transport.watch(...) as w``.

        Entering sends the create request and returns (it does not wait for ``created``);
        leaving cancels the watch on the server. Failures to connect are raised from entry
        or from the first ``receive``.
        """

    def discard(self, endpoint: str) -> None:
        """Drop any connection kept to ``endpoint`` (it failed: the next call reconnects).
        Not a checkpoint."""
