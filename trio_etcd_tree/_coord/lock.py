"""Distributed locks, fair and lease-bound, in etcd's own key layout.

A lock named ``NAME`` is the set of keys under ``NAME/``, exactly as etcd's Go
``concurrency.Mutex`` (and so ``etcdctl lock NAME``) lays it out:

* every contender owns a lease (a *session*) and creates the key ``NAME/<lease id in hex>``
  with it, in a transaction that leaves an existing key alone;
* the contender whose key has the lowest create revision holds the lock; the others queue
  in create-revision order, i.e. in order of arrival;
* a waiter watches only its predecessor (the key with the greatest create revision below
  its own) for deletion, then looks again: releasing the lock wakes one waiter, never the
  whole queue;
* releasing is deleting the key; a process that dies releases it when its lease expires.

Because the layout is etcd's, our locks and ``etcdctl lock`` (or any Go program using
``concurrency.Mutex``) exclude each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, final

from .._core.keys import KeyLike
from .._core.txn import Compare
from .session import contend, name_prefix

if TYPE_CHECKING:
    from .._client import Client, Lease

__all__ = ["Lock", "lock", "try_lock"]


@final
class Lock:
    """A held lock (from :func:`lock` or :func:`try_lock`).

    Attributes:
        name: the lock's name (its keys live under ``name + b"/"``).
        key: our key, ``name/<lease id in hex>``.
        revision: the create revision of our key: our place in the queue, and the lock's
            *fencing token* (it only grows from one holder to the next).
        lease: the lease the key is attached to, kept alive while the lock is held.
    """

    def __init__(self, name: bytes, key: bytes, revision: int, lease: Lease) -> None:
        self.name = name
        self.key = key
        self.revision = revision
        self.lease = lease

    def __repr__(self) -> str:
        return f"<Lock {self.key!r} revision={self.revision}>"

    def guard(self) -> Compare:
        """A transaction compare that holds only while we still hold the lock.

        Put it in the ``compare`` of a write so that a holder who lost the lock without
        noticing yet (a long pause, a partition) cannot write any more::

            result = await client.txn([lock.guard()], [Put("/data", b"new")])
            if not result.succeeded:
                ...  # we no longer hold the lock; nothing was written
        """
        return Compare.create_revision(self.key) == self.revision


@asynccontextmanager
async def lock(client: Client, name: KeyLike, *, ttl: int = 60) -> AsyncIterator[Lock]:
    """``async with lock(client, "name") as held:`` hold a distributed lock for the block.

    Waits in line (first come, first served) until the lock is ours. The lock is bound to
    a lease of ``ttl`` seconds that a task keeps alive while the block runs: the lock is
    released when the block is left (normally, by an error or by cancellation), and by the
    lease's expiry if this process dies.

    If the lease is lost while we hold the lock (a partition longer than ``ttl``, a
    stopped process), someone else may hold the lock by now: the block is cancelled and
    :class:`LeaseExpiredError` comes out of it. Until we notice, we may still *believe*
    we hold it, so guard writes that matter with :meth:`Lock.guard` in a transaction.

    The keys are etcd's own (``name/<lease id>``): ``etcdctl lock name`` and Go's
    ``concurrency.Mutex`` on the same name exclude us and we exclude them.

    Raises :class:`LockLostError` if our key is deleted by someone else while we wait.

    Cancellation: entering is cancellable while waiting in line; cancelled, it leaves the
    queue (the lease is revoked with a shielded, bounded request). Leaving releases the
    lock the same way and never waits for the network for long.
    """
    async with _hold(client, name, ttl, wait=True) as held:
        yield held


@asynccontextmanager
async def try_lock(client: Client, name: KeyLike, *, ttl: int = 60) -> AsyncIterator[Lock]:
    """Like :func:`lock`, but raises :class:`LockBusyError` at once if anyone holds the lock
    or is already waiting for it, instead of waiting in line.

    Cancellation: entering takes a few requests (a checkpoint) and never waits for the
    lock; leaving releases it as :func:`lock` does.
    """
    async with _hold(client, name, ttl, wait=False) as held:
        yield held


@asynccontextmanager
async def _hold(client: Client, name: KeyLike, ttl: int, *, wait: bool) -> AsyncIterator[Lock]:
    raw, prefix = name_prefix(name)
    # Revoking the lease on the way out (Client.lease does that, shielded) deletes our
    # key: that is the release, whether we got the lock, were cancelled while waiting, or
    # failed.
    async with client.lease(ttl) as lease:
        key, revision = await contend(client, prefix, lease.id, b"", wait=wait)
        yield Lock(raw, key, revision, lease)
