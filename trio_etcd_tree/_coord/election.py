"""Leader election, fair and lease-bound, in etcd's own key layout.

An election named ``NAME`` is the set of keys under ``NAME/``, as etcd's Go
``concurrency.Election`` (and so ``etcdctl elect NAME``) lays it out: each candidate
creates ``NAME/<lease id in hex>`` holding its proposal, with its lease; the candidate
whose key has the lowest create revision is the leader, and its key's value is the
leader's value. Candidates wait in order of arrival, each watching only its predecessor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

import trio

from .._core.errors import EtcdError, NotLeaderError
from .._core.keys import KeyLike, key_bytes, show_bytes
from .._core.txn import Compare, Delete, Put
from .._core.types import EventType, KeyValue
from .._core.util import open_service_nursery
from .session import contender_key, create_key, name_prefix, wait_turn

if TYPE_CHECKING:
    from .._client import Client, Lease

__all__ = ["Election", "Leader", "current_leader", "election", "observe_leader"]

# How long resigning after a cancelled campaign may take before we leave it to the lease.
_RESIGN_DEADLINE = 5.0


@dataclass(frozen=True, slots=True)
class Leader:
    """A leader of an election, as :func:`observe_leader` reports it.

    Attributes:
        key: the leader's key, ``name/<lease id in hex>``.
        value: what it proclaimed (its campaign value, or a later :meth:`Election.proclaim`).
        revision: the create revision of its key, which orders the leaders: a later leader
            has a greater one.
        lease: the id of the leader's lease.
    """

    key: bytes
    value: bytes
    revision: int
    lease: int

    @classmethod
    def _of(cls, kv: KeyValue) -> Leader:
        return cls(kv.key, kv.value, kv.create_revision, kv.lease)


@final
class Election:
    """One candidate's part in an election (from :func:`election`).

    Attributes:
        name: the election's name (its keys live under ``name + b"/"``).
        key: our key, ``name/<lease id in hex>`` (present while campaigning or leading).
        lease: our lease, kept alive for the life of the ``async with election(...)``.
    """

    def __init__(self, client: Client, name: bytes, prefix: bytes, lease: Lease) -> None:
        self._client = client
        self._prefix = prefix
        self.name = name
        self.lease = lease
        self.key = contender_key(prefix, lease.id)
        self._revision = 0
        self._value = b""

    def __repr__(self) -> str:
        state = "leader" if self.is_leader else "not leader"
        return f"<Election {self.name!r} {state}>"

    @property
    def is_leader(self) -> bool:
        """True from a successful :meth:`campaign` until :meth:`resign` (or the block ends).

        A lost lease ends the block with :class:`LeaseExpiredError`; until that is noticed
        this may be stale, so guard leader-only writes with :meth:`guard`.
        """
        return self._revision != 0

    @property
    def revision(self) -> int:
        """The create revision of our key while we lead (our *term*), else 0."""
        return self._revision

    @property
    def value(self) -> bytes:
        """What we last proclaimed (as leader), else ``b""``."""
        return self._value

    def guard(self) -> Compare:
        """A transaction compare that holds only while we are still the leader.

        Raises :class:`NotLeaderError` if we are not the leader now.
        """
        if not self._revision:
            raise NotLeaderError("not the leader", request=f"guard {show_bytes(self.key)}")
        return Compare.create_revision(self.key) == self._revision

    async def campaign(self, value: bytes | str) -> None:
        """Stand for election with ``value`` and return once we are the leader.

        Candidates become leader in the order they started campaigning. Campaigning again
        as leader only updates the value (like :meth:`proclaim`).

        Raises :class:`LockLostError` if our key is deleted by someone else meanwhile.

        Cancellation: a checkpoint, and cancellable while waiting; cancelled (or failing)
        before we became leader, we withdraw our candidacy with a shielded, bounded delete.
        """
        raw = key_bytes(value)
        try:
            kv = await create_key(self._client, self.key, raw, self.lease.id)
            if kv.value != raw:
                await self._client.put(self.key, raw, lease=self.lease.id)
            await wait_turn(self._client, self._prefix, self.key, kv.create_revision)
        except BaseException:
            with trio.move_on_after(_RESIGN_DEADLINE, shield=True):
                try:
                    await self._client.delete(self.key)
                except EtcdError:
                    pass  # unreachable: the key goes with the lease
            self._revision = 0
            raise
        self._revision = kv.create_revision
        self._value = raw

    async def proclaim(self, value: bytes | str) -> None:
        """As leader, announce a new value without a new election.

        Raises :class:`NotLeaderError` if we are not the leader (any more).

        Cancellation: a checkpoint; cancelled after sending, the value may have changed.
        """
        raw = key_bytes(value)
        if not self._revision:
            await trio.lowlevel.checkpoint()
            raise NotLeaderError(
                "only the leader can proclaim", request=f"proclaim {show_bytes(raw)}"
            )
        result = await self._client.txn([self.guard()], [Put(self.key, raw, lease=self.lease.id)])
        if not result.succeeded:
            self._revision = 0
            raise NotLeaderError(
                "our key is gone: we are no longer the leader",
                request=f"proclaim {show_bytes(raw)}",
            )
        self._value = raw

    async def resign(self) -> None:
        """Stop being the leader (the next candidate in line takes over). Does nothing if
        we are not the leader.

        Cancellation: a checkpoint; cancelled after sending, we may have resigned (and
        :attr:`is_leader` is already false).
        """
        if not self._revision:
            await trio.lowlevel.checkpoint()
            return
        guard = self.guard()
        self._revision = 0
        self._value = b""
        await self._client.txn([guard], [Delete(self.key)])

    async def leader(self) -> Leader | None:
        """The current leader of this election (perhaps us), or ``None`` if there is none.

        Cancellation: a checkpoint; a read.
        """
        return await current_leader(self._client, self.name)


async def current_leader(client: Client, name: KeyLike) -> Leader | None:
    """The current leader of the election ``name``, or ``None`` if there is none.

    Cancellation: a checkpoint; a read.
    """
    _, prefix = name_prefix(name)
    result = await client.range(
        prefix, prefix=True, limit=1, sort_target="CREATE", sort_order="ASCEND"
    )
    return Leader._of(result.kvs[0]) if result.kvs else None


@asynccontextmanager
async def election(client: Client, name: KeyLike, *, ttl: int = 60) -> AsyncIterator[Election]:
    """``async with election(client, "name") as e:`` take part in a leader election.

    Nothing happens until ``await e.campaign(value)``, which returns once we lead. The
    candidacy is bound to a lease of ``ttl`` seconds, kept alive by a task while the block
    runs; leaving the block resigns (the lease is revoked, deleting our key), and if this
    process dies the next candidate takes over when the lease expires.

    If the lease is lost (a partition longer than ``ttl``), the block is cancelled and
    :class:`LeaseExpiredError` comes out of it. Guard leader-only writes with
    :meth:`Election.guard` so that a leader that has not noticed yet cannot write.

    The keys are etcd's own: ``etcdctl elect name`` and Go's ``concurrency.Election`` take
    part in the same election.

    Cancellation: entering grants the lease (a checkpoint); leaving revokes it with a
    shielded, bounded request.
    """
    raw, prefix = name_prefix(name)
    async with client.lease(ttl) as lease:
        candidate = Election(client, raw, prefix, lease)
        try:
            yield candidate
        finally:
            candidate._revision = 0


@asynccontextmanager
async def observe_leader(
    client: Client, name: KeyLike
) -> AsyncIterator[trio.MemoryReceiveChannel[Leader]]:
    """``async with observe_leader(client, "name") as leaders:`` follow an election.

    ``leaders`` is a channel of :class:`Leader`: first the current leader (if there is
    one), then each new leader once, in order, as it takes over, and a leader again when
    it proclaims a new value. Periods without a leader are not reported; wait for the
    next one. The channel is unbuffered: while you do not read, this observer's watch
    waits (no one else does), so nothing is skipped.

    Errors of the underlying watch (:class:`CompactedError` after a very long outage,
    :class:`ClusterChangedError`) come out of the block, cancelling it.

    Cancellation: entering reads the election and opens a watch (a checkpoint,
    cancellable); leaving closes the watch at once.
    """
    _, prefix = name_prefix(name)
    async with open_service_nursery() as nursery:
        receive: trio.MemoryReceiveChannel[Leader] = await nursery.start(_observe, client, prefix)
        try:
            yield receive
        finally:
            nursery.cancel_scope.cancel(reason="the observe_leader block was left")


async def _observe(
    client: Client,
    prefix: bytes,
    *,
    task_status: trio.TaskStatus[trio.MemoryReceiveChannel[Leader]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep every candidate's key in memory; send the leader whenever it changes.

    Cancellation: runs until cancelled.
    """
    send, receive = trio.open_memory_channel[Leader](0)
    snapshot = await client.range(prefix, prefix=True)
    candidates = {kv.key: kv for kv in snapshot.kvs}
    with send:
        async with client.watch(prefix, prefix=True, start_revision=snapshot.revision + 1) as w:
            task_status.started(receive)
            last: Leader | None = None
            last = await _report(candidates, last, send)
            async for response in w:
                events = response.events
                for i, event in enumerate(events):
                    if event.type is EventType.PUT:
                        candidates[event.kv.key] = event.kv
                    else:
                        candidates.pop(event.kv.key, None)
                    # a transaction's events share a revision: judge after its last one
                    following = events[i + 1 : i + 2]
                    if not following or following[0].kv.mod_revision != event.kv.mod_revision:
                        last = await _report(candidates, last, send)


async def _report(
    candidates: dict[bytes, KeyValue],
    last: Leader | None,
    send: trio.MemorySendChannel[Leader],
) -> Leader | None:
    """Send the leader of ``candidates`` if it differs from ``last``; return it."""
    if not candidates:
        return last
    leader = Leader._of(min(candidates.values(), key=lambda kv: kv.create_revision))
    if leader == last:
        return last
    await send.send(leader)
    return leader
