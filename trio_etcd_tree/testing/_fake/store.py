"""The pure, synchronous model behind the fake etcd: an MVCC key-value store and a lessor.

Nothing here does I/O or knows about time sources: callers pass ``now`` where time matters.
Keys are raw ``bytes`` and sort by their bytes, like etcd's B-tree index.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Self

__all__ = [
    "Event",
    "FakeError",
    "KeyValue",
    "Lease",
    "Lessor",
    "MvccStore",
    "WriteTxn",
    "as_bytes",
    "in_range",
    "prefix_end",
]


class FakeError(Exception):
    """An error the server answers with: a gRPC ``code`` and its ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


ERR_COMPACTED = "etcdserver: mvcc: required revision has been compacted"
ERR_FUTURE_REV = "etcdserver: mvcc: required revision is a future revision"


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One version of a key.  A tombstone (the key deleted) has ``version == 0``."""

    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    @property
    def is_tombstone(self) -> bool:
        return self.version == 0


@dataclass(frozen=True, slots=True)
class Event:
    """A change at one revision: ``kv`` is the new version (a tombstone for a delete)."""

    type: str  # "PUT" or "DELETE"
    kv: KeyValue
    prev_kv: KeyValue | None


def as_bytes(data: bytes | str) -> bytes:
    """A key or value given as text or bytes, as bytes (text is UTF-8)."""
    return data.encode() if isinstance(data, str) else data


def prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with ``prefix`` (b"\\0" for all keys)."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\0"


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    """Whether ``key`` is in [start, end) with etcd's conventions for ``end``.

    ``end == b""`` means the single key ``start``; ``end == b"\\0"`` means every key >= ``start``.
    """
    if not end:
        return key == start
    if end == b"\0":
        return key >= start
    return start <= key < end


class MvccStore:
    """Every version of every key since the last compaction, and the log of events.

    Writes go through :meth:`write`, which yields a :class:`WriteTxn`; all its changes share one
    new revision, and the revision only moves if something changed.
    """

    def __init__(self) -> None:
        self.revision = 1
        self.compact_revision = 0
        self._history: dict[bytes, list[KeyValue]] = {}
        self._keys: list[bytes] = []  # sorted keys that have any history
        self._log: dict[int, list[Event]] = {}
        self.listeners: list[Callable[[int, list[Event]], None]] = []

    # ---- reads ----------------------------------------------------------------------------

    def check_revision(self, revision: int) -> int:
        """The revision a read at ``revision`` (0 = current) sees; raises if compacted/future."""
        if revision <= 0:
            return self.revision
        if revision > self.revision:
            raise FakeError(11, ERR_FUTURE_REV)
        if revision < self.compact_revision:
            raise FakeError(11, ERR_COMPACTED)
        return revision

    def _keys_in(self, start: bytes, end: bytes) -> list[bytes]:
        if not end:
            return [start] if start in self._history else []
        lo = bisect.bisect_left(self._keys, start)
        hi = len(self._keys) if end == b"\0" else bisect.bisect_left(self._keys, end)
        return self._keys[lo:hi] if lo < hi else []

    def at(self, key: bytes, revision: int) -> KeyValue | None:
        """The live version of ``key`` at ``revision``, or None."""
        versions = self._history.get(key)
        if not versions:
            return None
        i = bisect.bisect_right([kv.mod_revision for kv in versions], revision)
        if i == 0:
            return None
        kv = versions[i - 1]
        return None if kv.is_tombstone else kv

    def latest(self, key: bytes) -> KeyValue | None:
        """The current live version of ``key``, or None."""
        versions = self._history.get(key)
        if not versions or versions[-1].is_tombstone:
            return None
        return versions[-1]

    def range(self, start: bytes, end: bytes, revision: int = 0) -> list[KeyValue]:
        """The live kvs in the range at ``revision`` (0 = current), sorted by key."""
        rev = self.check_revision(revision)
        out = []
        for key in self._keys_in(start, end):
            kv = self.latest(key) if revision <= 0 else self.at(key, rev)
            if kv is not None:
                out.append(kv)
        return out

    def events(self, first: int, last: int) -> Iterator[tuple[int, list[Event]]]:
        """The logged (revision, events) pairs with ``first <= revision <= last``."""
        for rev in range(max(first, 1), last + 1):
            evs = self._log.get(rev)
            if evs:
                yield rev, evs

    # ---- writes ---------------------------------------------------------------------------

    def write(self) -> WriteTxn:
        """Start a write transaction (use it as a context manager)."""
        return WriteTxn(self)

    def _append(self, kv: KeyValue) -> None:
        versions = self._history.get(kv.key)
        if versions is None:
            self._history[kv.key] = [kv]
            bisect.insort(self._keys, kv.key)
        elif versions[-1].mod_revision == kv.mod_revision:
            versions[-1] = kv  # the same key written twice in one revision
        else:
            versions.append(kv)

    def _commit(self, revision: int, events: list[Event]) -> None:
        self.revision = revision
        self._log[revision] = events
        for listener in list(self.listeners):
            listener(revision, events)

    # ---- compaction and restore ------------------------------------------------------------

    def compact(self, revision: int) -> None:
        """Forget every version superseded at ``revision`` (the kvs at ``revision`` stay)."""
        if revision <= self.compact_revision:
            raise FakeError(11, ERR_COMPACTED)
        if revision > self.revision:
            raise FakeError(11, ERR_FUTURE_REV)
        self.compact_revision = revision
        for key in list(self._keys):
            versions = self._history[key]
            i = bisect.bisect_right([kv.mod_revision for kv in versions], revision)
            keep = versions[max(i - 1, 0) :]
            if i > 0 and keep[0].is_tombstone:
                keep = keep[1:]
            if keep:
                self._history[key] = keep
            else:
                del self._history[key]
                self._keys.remove(key)
        for rev in [r for r in self._log if r < revision]:
            del self._log[rev]
        if revision in self._log:  # the tombstones at the compact revision are gone too
            self._log[revision] = [ev for ev in self._log[revision] if ev.type == "PUT"]

    def restore(self, revision: int) -> None:
        """Go back to the state at ``revision``, dropping all history after it."""
        if not self.compact_revision <= revision <= self.revision:
            raise ValueError(f"cannot restore to revision {revision}")
        for key in list(self._keys):
            keep = [kv for kv in self._history[key] if kv.mod_revision <= revision]
            if keep:
                self._history[key] = keep
            else:
                del self._history[key]
                self._keys.remove(key)
        for rev in [r for r in self._log if r > revision]:
            del self._log[rev]
        self.revision = revision


@dataclass
class WriteTxn:
    """The writes of one revision.  Reads through it see its own writes."""

    store: MvccStore
    events: list[Event] = field(default_factory=list)
    lessor: Lessor | None = None

    @property
    def new_revision(self) -> int:
        return self.store.revision + 1

    @property
    def revision(self) -> int:
        """The revision a read inside the txn reports (moves once something changed)."""
        return self.store.revision + (1 if self.events else 0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.events and exc[0] is None:
            self.store._commit(self.new_revision, self.events)

    def put(
        self,
        key: bytes,
        value: bytes,
        lease: int = 0,
        *,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> KeyValue | None:
        """Write ``key``; returns the previous kv (or None)."""
        prev = self.store.latest(key)
        if prev is not None and ignore_value:
            value = prev.value
        if prev is not None and ignore_lease:
            lease = prev.lease
        rev = self.new_revision
        if prev is None:
            kv = KeyValue(key, value, rev, rev, 1, lease)
        else:
            kv = replace(prev, value=value, mod_revision=rev, version=prev.version + 1, lease=lease)
        self.store._append(kv)
        self.events.append(Event("PUT", kv, prev))
        if self.lessor is not None:
            self.lessor.move_key(key, prev.lease if prev else 0, lease)
        return prev

    def delete_range(self, start: bytes, end: bytes) -> list[KeyValue]:
        """Delete the live keys in the range; returns the deleted kvs."""
        deleted = self.store.range(start, end)
        rev = self.new_revision
        for prev in deleted:
            tomb = KeyValue(prev.key, mod_revision=rev)
            self.store._append(tomb)
            self.events.append(Event("DELETE", tomb, prev))
            if self.lessor is not None:
                self.lessor.move_key(prev.key, prev.lease, 0)
        return deleted


@dataclass
class Lease:
    """A granted lease: its TTL, its deadline on the caller's clock and the keys attached."""

    id: int
    ttl: int
    deadline: float
    keys: set[bytes] = field(default_factory=set)

    def remaining(self, now: float) -> int:
        """Whole seconds left (truncated, like Go's ``int64(d.Seconds())``)."""
        return max(int(self.deadline - now), 0)


class Lessor:
    """The leases, with the keys attached to each."""

    MIN_TTL = 2
    MAX_TTL = 9_000_000_000

    def __init__(self) -> None:
        self.leases: dict[int, Lease] = {}
        self.ended: dict[int, int] = {}  # the TTL of each lease revoked or expired

    def end(self, lease_id: int) -> Lease:
        """Forget a lease (revoked or expired), remembering its TTL for a restore."""
        lease = self.leases.pop(lease_id)
        self.ended[lease_id] = lease.ttl
        return lease

    def grant(self, lease_id: int, ttl: int, now: float) -> Lease:
        if lease_id in self.leases:
            raise FakeError(9, "etcdserver: lease already exists")
        if ttl > self.MAX_TTL:
            raise FakeError(11, "etcdserver: too large lease TTL")
        ttl = max(ttl, self.MIN_TTL)
        lease = Lease(lease_id, ttl, now + ttl)
        self.leases[lease_id] = lease
        return lease

    def get(self, lease_id: int) -> Lease:
        try:
            return self.leases[lease_id]
        except KeyError:
            raise FakeError(5, "etcdserver: requested lease not found") from None

    def renew(self, lease_id: int, now: float) -> int:
        """Push the deadline out by the TTL; returns the TTL, or 0 if the lease is unknown."""
        lease = self.leases.get(lease_id)
        if lease is None:
            return 0
        lease.deadline = now + lease.ttl
        return lease.ttl

    def move_key(self, key: bytes, old: int, new: int) -> None:
        """Re-attach ``key`` from lease ``old`` to lease ``new`` (0 = none)."""
        if old in self.leases:
            self.leases[old].keys.discard(key)
        if new in self.leases:
            self.leases[new].keys.add(key)

    def expired(self, now: float) -> list[Lease]:
        return sorted(
            (lease for lease in self.leases.values() if lease.deadline <= now),
            key=lambda lease: (lease.deadline, lease.id),
        )

    def next_deadline(self) -> float | None:
        return min((lease.deadline for lease in self.leases.values()), default=None)

    def reattach(self, kvs: list[KeyValue], now: float) -> None:
        """Rebuild the key sets from the live kvs (after a restore). A lease that ended
        after the backup comes back with it, as etcd restores its lease table, and lives
        its TTL again unless it is kept alive."""
        for lease in self.leases.values():
            lease.keys.clear()
        for kv in kvs:
            ttl = self.ended.pop(kv.lease, None)
            if ttl is not None:
                self.leases[kv.lease] = Lease(kv.lease, ttl, now + ttl)
            self.move_key(kv.key, 0, kv.lease)
