"""The values the client hands back: key-values, results, watch responses, leases.

They are plain, immutable Python values; nothing here knows about JSON or HTTP. Revisions
are etcd's: one cluster-wide counter that every write moves on by one (a transaction's
writes share one revision).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, Protocol, TypeAlias

__all__ = [
    "DeleteResult",
    "Event",
    "EventType",
    "KeyValue",
    "KeyValueRow",
    "KeyValueSource",
    "KeyValues",
    "LeaseGrant",
    "LeaseInfo",
    "Member",
    "Page",
    "PutResult",
    "RangeResult",
    "ResponseHeader",
    "Status",
    "TxnResult",
    "WatchResponse",
    "last_key",
    "pairs",
    "records",
    "rows",
    "size_of",
    "undecoded",
]


class KeyValue(NamedTuple):
    """One key as etcd stores it.

    A named tuple rather than a dataclass because a read of 100,000 keys makes 100,000 of
    them: tuples are the cheapest immutable record Python has.

    Attributes:
        key: the key, raw bytes.
        value: the value, raw bytes (``b""`` for an empty value, and in a DELETE event).
        create_revision: the revision that created this incarnation of the key.
        mod_revision: the revision of the last change (for a DELETE event, the deletion).
        version: how often the key was written since it was created; 0 once deleted.
        lease: the id of the lease the key is attached to, 0 for none.
    """

    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0


class ResponseHeader(NamedTuple):
    """Which cluster and member answered, at which store revision and raft term."""

    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0
    raft_term: int = 0


KeyValueRow: TypeAlias = tuple[bytes, bytes, int, int, int, int]
"""A key's fields in :class:`KeyValue`'s order, as a plain tuple (a :class:`KeyValue` is one)."""


class KeyValueSource(Protocol):
    """Key-values as a transport received them, made into :class:`KeyValue` objects when
    first read: a paged read asks for its next page as soon as it knows this one's last
    key, and the keys are decoded where the page is used (while the server reads on)."""

    def __len__(self) -> int: ...

    def decode(self) -> list[KeyValue]:
        """Every key-value, in order."""
        ...

    def records(self) -> Sequence[Any]:
        """Every key-value as the transport holds it (an object with :class:`KeyValue`'s
        field names: gRPC's message), in order; a field is decoded when read (``rows``,
        ``pairs`` and ``last_key`` below read only the fields they need)."""
        ...

    def size(self) -> int:
        """About how many bytes the keys and values take (as received)."""
        ...


KeyValues: TypeAlias = "list[KeyValue] | KeyValueSource"
"""What a :class:`RangeResult` or :class:`Page` holds: key-values, decoded or not yet."""


def rows(kvs: KeyValues) -> Iterable[KeyValueRow]:
    """The key-values as plain tuples, without making :class:`KeyValue` objects."""
    return kvs if isinstance(kvs, list) else map(_FIELDS, kvs.records())


def records(kvs: KeyValues) -> Sequence[Any]:
    """The key-values as they are: :class:`KeyValue` objects, or the transport's own
    records with the same field names (see ``KeyValueSource.records``)."""
    return kvs if isinstance(kvs, list) else kvs.records()


def pairs(kvs: KeyValues) -> Iterable[tuple[bytes, bytes]]:
    """The keys with their values (what a dump reads), without making :class:`KeyValue`
    objects."""
    return map(_KEY_VALUE, kvs) if isinstance(kvs, list) else map(_KEY_AND_VALUE, kvs.records())


def last_key(kvs: KeyValues) -> bytes:
    key: bytes = records(kvs)[-1].key
    return key


def size_of(kvs: KeyValues) -> int:
    """About how many bytes the keys and values take."""
    if isinstance(kvs, list):
        return sum(map(len, map(_KEY, kvs))) + sum(map(len, map(_VALUE, kvs)))
    return kvs.size()


_KEY, _VALUE, _KEY_VALUE = itemgetter(0), itemgetter(1), itemgetter(0, 1)
# (a record's fields by name: a KeyValue's or gRPC's message's)
_FIELDS = attrgetter(*KeyValue._fields)
_KEY_AND_VALUE = attrgetter("key", "value")


class _HoldsKeyValues:
    """A frozen value whose ``kvs`` a transport may hand over undecoded: they are decoded
    once, on first use (:func:`undecoded` gives them as they are)."""

    __slots__ = ("_kvs",)
    _FIELDS: tuple[str, ...]
    _kvs: KeyValues

    def __init__(self, kvs: KeyValues | None, **fields: object) -> None:
        object.__setattr__(self, "_kvs", [] if kvs is None else kvs)
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property
    def kvs(self) -> list[KeyValue]:
        kvs = self._kvs
        if not isinstance(kvs, list):
            kvs = kvs.decode()
            object.__setattr__(self, "_kvs", kvs)
        return kvs

    def pairs(self) -> Iterator[tuple[bytes, bytes]]:
        """Every key with its value, ``(key, value)``, in key order, without making
        :class:`KeyValue` objects (the other fields are not read): ``dict(result.pairs())``
        is the quickest way to a ``{key: value}`` dict."""
        return iter(pairs(self._kvs))

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _HoldsKeyValues)
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # (it holds a list)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={v!r}" for n, v in zip(self._FIELDS, self._values(), strict=True))
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")


def undecoded(holder: RangeResult | Page) -> KeyValues:
    """The key-values of a result or page as they are, decoded or not."""
    return holder._kvs


class RangeResult(_HoldsKeyValues):
    """The answer to a range (get) request.

    ``count`` is the number of keys in the range before ``limit`` applied; ``more`` says
    that ``limit`` cut the answer short. ``header.revision`` is the store's current
    revision, even for a read at a past revision. ``kvs`` is made when first read.
    """

    __slots__ = ("count", "header", "more")
    _FIELDS = ("header", "kvs", "more", "count")
    header: ResponseHeader
    more: bool
    count: int

    def __init__(
        self,
        header: ResponseHeader,
        kvs: KeyValues | None = None,
        more: bool = False,
        count: int = 0,
    ) -> None:
        super().__init__(kvs, header=header, more=more, count=count)

    @property
    def revision(self) -> int:
        return self.header.revision


class Page(_HoldsKeyValues):
    """One page of a paged range, all pages read at the same ``revision``. ``kvs`` is made
    when first read."""

    __slots__ = ("revision",)
    _FIELDS = ("revision", "kvs")
    revision: int

    def __init__(self, revision: int, kvs: KeyValues) -> None:
        super().__init__(kvs, revision=revision)


@dataclass(frozen=True, slots=True)
class PutResult:
    """The answer to a put: ``revision`` is the new ``mod_revision`` of the key."""

    header: ResponseHeader
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.header.revision


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """The answer to a delete: how many keys went, and (if asked) what they held."""

    header: ResponseHeader
    deleted: int = 0
    prev_kvs: list[KeyValue] = field(default_factory=list)

    @property
    def revision(self) -> int:
        return self.header.revision


@dataclass(frozen=True, slots=True)
class TxnResult:
    """The answer to a transaction.

    ``succeeded`` tells which branch ran; ``responses`` holds one result per operation of
    that branch, in order. A failed compare is a normal result, not an error.
    """

    header: ResponseHeader
    succeeded: bool = False
    responses: list[OpResult] = field(default_factory=list)

    @property
    def revision(self) -> int:
        return self.header.revision


OpResult: TypeAlias = RangeResult | PutResult | DeleteResult | TxnResult


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


class Event(NamedTuple):
    """One change seen by a watch. ``prev_kv`` is there only when the watch asked for it."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None


class WatchResponse(NamedTuple):
    """One message of a watch: the events of one or more revisions, or a progress report.

    Events come grouped as etcd sends them: a live message holds one revision (all of a
    transaction's events together); a catch-up message may hold many revisions, in order.
    A message with no events is a progress notification: nothing under the watched range
    changed up to ``revision``.

    Attributes:
        header: the server's header. During a catch-up its revision is the store's current
            revision, which may be ahead of the events delivered so far.
        events: the changes, in revision order.
        revision: the revision the watcher has now seen everything up to: the last event's
            revision, or the header's revision for a progress notification.
    """

    header: ResponseHeader
    events: list[Event]
    revision: int

    @property
    def is_progress_notify(self) -> bool:
        return not self.events


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """A lease the server granted: its id and TTL in seconds."""

    id: int
    ttl: int
    header: ResponseHeader = field(default_factory=ResponseHeader)


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """What the server knows about a lease: remaining ``ttl`` in seconds (-1 when the lease
    does not exist), the ``granted_ttl``, and the attached ``keys`` when asked."""

    id: int
    ttl: int
    granted_ttl: int = 0
    keys: list[bytes] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Status:
    """A member's status (``Client.status``): ``db_size`` is the size of its database
    file, ``db_size_in_use`` the part of it in use (0 from etcd before 3.4)."""

    header: ResponseHeader
    version: str
    db_size: int
    leader: int
    raft_index: int
    raft_term: int
    db_size_in_use: int = 0


@dataclass(frozen=True, slots=True)
class Member:
    """A cluster member (``Client.members``)."""

    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str]
    is_learner: bool = False
