"""The etcd v3 client: ``open_client`` and :class:`Client`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Literal, final

from .._core.keys import KeyLike, key_bytes, range_end_for
from .._core.txn import Compare, Op
from .._core.types import (
    DeleteResult,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    Member,
    Page,
    PutResult,
    RangeResult,
    Status,
    TxnResult,
    last_key,
    size_of,
    undecoded,
)
from .._wire import (
    CompactRequest,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseLeasesRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    MemberListRequest,
    PutRequest,
    RangeRequest,
    StatusRequest,
    TxnRequest,
    WatchCreateRequest,
)
from .connection import Connection
from .lease import Lease, open_lease
from .watch import WatchStream, open_watch
from .watch_delivery import Apply, Backlog

__all__ = ["Client"]

SortOrder = Literal["NONE", "ASCEND", "DESCEND"]
SortTarget = Literal["KEY", "VERSION", "CREATE", "MOD", "VALUE"]

FIRST_PAGE = 1000
"""Keys in the first page of ``range_pages`` (before the size of the values is known)."""
PAGE_BYTES = 8 << 20
"""About how many bytes of keys and values ``range_pages`` asks for in one page."""
SMALL_STORE = 64 << 20
"""A member whose database has at most this many bytes in use is asked for pages of
``page_size`` keys from the first on (no page can hold more than the database)."""


@final
class Client:
    """A connection to an etcd v3 cluster. Get one from :func:`open_client`.

    Keys are ``bytes`` or ``str`` (encoded as UTF-8); values likewise. Every method is a
    trio checkpoint. Reads are repeated on another endpoint when one fails; writes only when
    they certainly were not applied (see the failover rules).
    """

    def __init__(self, connection: Connection, _token: object = None) -> None:
        if _token is not _PRIVATE:
            raise TypeError("use open_client() to get a Client")
        self._conn = connection

    @classmethod
    def _create(cls, connection: Connection) -> Client:
        return cls(connection, _PRIVATE)

    @property
    def endpoints(self) -> list[str]:
        """All endpoints, as given."""
        return list(self._conn.endpoints.urls)

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to first (it changes when one fails)."""
        return self._conn.endpoints.current

    def endpoint_healthy(self, endpoint: str) -> bool:
        """Whether ``endpoint`` is in use, or skipped for a while after it failed."""
        return self._conn.endpoints.healthy(endpoint)

    # --- KV --------------------------------------------------------------------------------

    async def get(self, key: KeyLike, *, revision: int = 0) -> KeyValue | None:
        """The key's current value (or at ``revision``), or ``None`` if it does not exist.

        Cancellation: a checkpoint; a read, so nothing to undo.
        """
        result = await self.range(key, revision=revision)
        return result.kvs[0] if result.kvs else None

    async def range(
        self,
        key: KeyLike,
        range_end: KeyLike | None = None,
        *,
        prefix: bool = False,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        sort_order: SortOrder | None = None,
        sort_target: SortTarget | None = None,
        serializable: bool = False,
        min_mod_revision: int = 0,
    ) -> RangeResult:
        """Read a key, a range ``[key, range_end)``, or every key under a prefix.

        Args:
            limit: at most this many keys (``result.more`` says whether there were more).
            revision: read as of this past revision (``CompactedError`` if it is gone).
            keys_only, count_only: leave out values, or everything but the count.
            sort_order, sort_target: etcd's server-side sort.
            serializable: let the member answer from its local state without asking the
                leader (faster, possibly stale).
            min_mod_revision: only the keys last changed at or after this revision
                (``result.count`` still counts the whole range, as etcd does).

        For large ranges use :meth:`range_pages`, which never asks for one huge answer.

        Cancellation: a checkpoint; a read, so nothing to undo.
        """
        k = key_bytes(key)
        end = range_end_for(k, range_end, prefix)
        request = RangeRequest(
            k,
            end,
            limit=limit,
            revision=revision,
            keys_only=keys_only,
            count_only=count_only,
            sort_order=sort_order,
            sort_target=sort_target,
            serializable=serializable,
            min_mod_revision=min_mod_revision,
        )
        return await self._conn.call(request)

    async def range_pages(
        self,
        key: KeyLike,
        range_end: KeyLike | None = None,
        *,
        prefix: bool = False,
        page_size: int = 10_000,
        revision: int = 0,
        keys_only: bool = False,
    ) -> AsyncGenerator[Page, None]:
        """Read a range page by page, every page at the same revision.

        The first page fixes the revision (the current one, unless ``revision`` is given);
        the rest are read at that revision, so together they are one consistent snapshot
        even while others write. Watch from ``page.revision + 1`` to follow on without a gap.
        Raises ``CompactedError`` if the revision is compacted while paging.

        A page holds at most ``page_size`` keys: the first at most ``FIRST_PAGE`` (unless
        the member's database is small: ``SMALL_STORE``, asked with :meth:`status` when
        ``page_size`` is larger), and each next one as many as fit ``PAGE_BYTES`` of keys
        and values at the size of the last (at most four times as many), so large values
        make small pages. Every page costs the server a count of the keys left in the
        range: fewer, larger pages are read faster. A page's ``kvs`` are made when first
        read (the next page is asked for with the last key alone).

        Cancellation: each page is a checkpoint; stopping early leaves nothing behind.
        """
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        k = key_bytes(key)
        end = range_end_for(k, range_end, prefix)
        if end is None:
            end = k + b"\0"  # a single key is the range [key, key\0)
        start = k
        limit = page_size
        if page_size > FIRST_PAGE:
            status = await self.status()
            if (status.db_size_in_use or status.db_size) > SMALL_STORE:
                limit = FIRST_PAGE
        while True:
            request = RangeRequest(start, end, limit=limit, revision=revision, keys_only=keys_only)
            result = await self._conn.call(request)
            if not revision:
                revision = result.header.revision
            kvs = undecoded(result)  # (made into KeyValues where the page is used)
            yield Page(revision, kvs)
            if not result.more or not len(kvs):
                return
            start = last_key(kvs) + b"\0"
            limit = max(1, min(page_size, limit * 4, limit * PAGE_BYTES // size_of(kvs)))

    async def put(
        self,
        key: KeyLike,
        value: bytes | str,
        *,
        lease: int = 0,
        prev_kv: bool = False,
    ) -> PutResult:
        """Write ``value`` to ``key`` (unconditionally; use :meth:`txn` to guard a write).

        Returns the result; ``result.revision`` is the key's new ``mod_revision``.

        Cancellation: a checkpoint. Cancelled after the request was sent, the write may
        have been applied.
        """
        k = key_bytes(key)
        return await self._conn.call(PutRequest(k, key_bytes(value), lease, prev_kv))

    async def delete(
        self,
        key: KeyLike,
        range_end: KeyLike | None = None,
        *,
        prefix: bool = False,
        prev_kv: bool = False,
    ) -> DeleteResult:
        """Delete a key, a range, or every key under a prefix, in one revision.

        Cancellation: a checkpoint. Cancelled after the request was sent, the delete may
        have been applied.
        """
        k = key_bytes(key)
        end = range_end_for(k, range_end, prefix)
        return await self._conn.call(DeleteRangeRequest(k, end, prev_kv))

    async def txn(
        self,
        compare: Sequence[Compare] = (),
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """Run a transaction: if every compare holds, the ``success`` operations, else the
        ``failure`` ones, atomically at one revision. See :class:`Compare` and
        :class:`Put`, :class:`Get`, :class:`Delete`, :class:`Txn`.

        A compare that does not hold is a normal result (``succeeded`` is false), not an
        error. More operations than the server allows (``--max-txn-ops``, 128 by default)
        raise ``TooLargeError``.

        Cancellation: a checkpoint. Cancelled after the request was sent, the transaction
        may have been applied.
        """
        return await self._conn.call(TxnRequest(tuple(compare), tuple(success), tuple(failure)))

    async def compact(self, revision: int, *, physical: bool = False) -> None:
        """Compact the history up to ``revision``: older revisions can no longer be read or
        watched. ``physical`` waits until the space is actually reclaimed.

        Cancellation: a checkpoint; compaction may have started.
        """
        await self._conn.call(CompactRequest(revision, physical))

    # --- watch -----------------------------------------------------------------------------

    def watch(
        self,
        key: KeyLike,
        range_end: KeyLike | None = None,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = True,
        filters: Sequence[Literal["NOPUT", "NODELETE"]] = (),
        buffer: int = 64,
        heartbeat: float = 10.0,
        stall_timeout: float | None = None,
    ) -> AbstractAsyncContextManager[WatchStream]:
        """Watch a key, a range or a prefix: ``async with client.watch(...) as stream``.

        See :class:`WatchStream` for what the stream delivers and how it survives broken
        connections, failover, stalls and compaction.

        Args:
            start_revision: deliver changes from this revision on (history first, if it
                is in the past); 0 means from now.
            prev_kv: events carry the key's previous value.
            progress_notify: ask the server for progress notifications (empty responses
                saying how far the watch has got); they are also the resume points.
            filters: leave out PUT or DELETE events.
            buffer: responses held for a slow consumer before the stream stops reading.
            heartbeat: seconds of silence after which the member is asked whether it is
                still there; if it does not answer, the watch moves to another endpoint.
            stall_timeout: seconds of silence after which the stream is reopened (set it
                above the server's progress notify interval), or None.

        Cancellation: entering waits until the server confirmed the watch (a checkpoint,
        cancellable); leaving cancels the stream at once.
        """
        k = key_bytes(key)
        return open_watch(
            self._conn,
            k,
            range_end_for(k, range_end, prefix),
            start_revision=start_revision,
            prev_kv=prev_kv,
            progress_notify=progress_notify,
            filters=filters,
            buffer=buffer,
            heartbeat=heartbeat,
            stall_timeout=stall_timeout,
            probe=self._probe,
        )

    def _applied_watch(
        self,
        key: bytes,
        range_end: bytes,
        *,
        start_revision: int,
        apply: Apply,
        backlog: Backlog,
    ) -> WatchStream:
        """(The mount's.) A prefix watch as :meth:`watch` makes it, whose responses are
        handed to ``apply`` as they arrive instead of being received: by the transport's
        reader, mostly, so each costs one task switch less. ``apply`` must not block.
        The owner runs it in its own task, ``await stream.run_applied(established)``
        (no task, nursery or channel of the stream's own), which only raises: what
        ``apply`` raised (that ends the stream), or the error that ended the stream.

        While ``backlog()`` is true (those ``apply`` feeds have not taken what it gave
        them), responses are applied by the stream's own task instead, one per pass of the
        scheduler, so that a burst read at once is not applied at once."""
        return WatchStream(
            0,  # (no channel: every response goes to apply)
            self._conn,
            WatchCreateRequest(key, range_end, progress_notify=True),
            start_revision,
            10.0,  # heartbeat
            None,  # stall_timeout
            self._probe,
            apply,
            backlog,
        )

    async def _probe(self, endpoint: str) -> int:
        """A linearizable count of one key on one endpoint: is it there, at which revision?"""
        result = await self._conn.call(RangeRequest(b"\0", count_only=True), only=endpoint)
        return result.header.revision

    # --- leases ----------------------------------------------------------------------------

    async def lease_grant(self, ttl: int, *, id: int = 0) -> LeaseGrant:  # noqa: A002
        """Grant a lease of ``ttl`` seconds (the server may raise it to its minimum).

        Prefer :meth:`lease`, which also keeps it alive and revokes it.

        Cancellation: a checkpoint; cancelled after sending, a lease may have been granted
        (it expires on its own).
        """
        return await self._conn.call(LeaseGrantRequest(ttl, id))

    async def lease_revoke(self, id: int) -> None:  # noqa: A002
        """Revoke a lease: every key attached to it is deleted, in one revision.

        Raises ``NotFoundError`` if the lease does not exist (any more).

        Cancellation: a checkpoint; cancelled after sending, the lease may be gone.
        """
        await self._conn.call(LeaseRevokeRequest(id))

    async def lease_keep_alive_once(self, id: int) -> int:  # noqa: A002
        """Renew a lease once; returns its new TTL, 0 if the lease no longer exists.

        Cancellation: a checkpoint; a renewal may have happened.
        """
        return await self._conn.call(LeaseKeepAliveRequest(id))

    async def lease_time_to_live(self, id: int, *, keys: bool = False) -> LeaseInfo:  # noqa: A002
        """The lease's remaining TTL (-1 if it does not exist), granted TTL, and keys.

        Cancellation: a checkpoint; a read.
        """
        return await self._conn.call(LeaseTimeToLiveRequest(id, keys))

    async def leases(self) -> list[int]:
        """The ids of every lease the cluster holds.

        Cancellation: a checkpoint; a read.
        """
        return await self._conn.call(LeaseLeasesRequest())

    def lease(self, ttl: int) -> AbstractAsyncContextManager[Lease]:
        """``async with client.lease(ttl) as lease:`` a lease kept alive while the block runs.

        A task renews it every ``ttl / 3`` seconds. If the server says the lease is gone,
        or no renewal gets through before its time runs out, the block is cancelled and
        :class:`LeaseExpiredError` comes out of it at once. On exit a lease still alive is
        revoked (its keys deleted); if that fails the lease simply expires.

        Cancellation: entering grants the lease (a checkpoint); leaving revokes it with a
        shielded request, bounded by 5 s and by the time the lease has left.
        """
        return open_lease(self, ttl)

    # --- cluster ---------------------------------------------------------------------------

    async def status(self, endpoint: str | None = None) -> Status:
        """A member's status: version, database size, leader, raft index and term.

        Args:
            endpoint: ask this member; by default the current endpoint (with failover).

        Cancellation: a checkpoint; a read.
        """
        return await self._conn.call(StatusRequest(), only=endpoint)

    async def members(self) -> list[Member]:
        """The cluster's members.

        Cancellation: a checkpoint; a read.
        """
        return await self._conn.call(MemberListRequest())


_PRIVATE = object()
