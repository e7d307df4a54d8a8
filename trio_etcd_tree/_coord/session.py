"""What locks and elections share: a contender key per session, and waiting one's turn.

Both recipes are etcd's (Go's ``concurrency`` package): under ``NAME/`` each contender
creates ``NAME/<lease id in hex>`` with its session's lease; the key with the lowest
create revision is first (the lock's holder, the election's leader), and each contender
waits for the deletion of its predecessor only, so a release wakes one waiter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._core.errors import LockBusyError, LockLostError
from .._core.keys import KeyLike, key_bytes, show_bytes
from .._core.txn import Compare, Get, Put
from .._core.types import KeyValue, RangeResult

if TYPE_CHECKING:
    from .._client import Client

__all__ = [
    "contend",
    "contender_key",
    "create_key",
    "name_prefix",
    "queue",
    "wait_deleted",
    "wait_turn",
]


async def contend(
    client: Client, prefix: bytes, lease_id: int, value: bytes, *, wait: bool = True
) -> tuple[bytes, int]:
    """Queue under ``prefix`` with our key and wait our turn; return the key and its
    create revision (our place in the queue).

    Cancellation: a checkpoint; cancelled, our key stays queued (the caller removes it,
    or its lease does).
    """
    key = contender_key(prefix, lease_id)
    kv = await create_key(client, key, value, lease_id)
    await wait_turn(client, prefix, key, kv.create_revision, wait=wait)
    return key, kv.create_revision


def contender_key(prefix: bytes, lease_id: int) -> bytes:
    """etcd's ``fmt.Sprintf("%s%x", pfx, leaseID)``."""
    return prefix + f"{lease_id:x}".encode()


def name_prefix(name: KeyLike) -> tuple[bytes, bytes]:
    """The name as bytes and its key prefix, ``name + b"/"``."""
    raw = key_bytes(name)
    if not raw:
        raise ValueError("a lock or election needs a non-empty name")
    return raw, raw + b"/"


async def create_key(client: Client, key: bytes, value: bytes, lease_id: int) -> KeyValue:
    """Create ``key`` with the lease unless it exists; return the key as it now stands.

    Cancellation: a checkpoint; cancelled after sending, the key may have been created
    (it goes with its lease).
    """
    result = await client.txn(
        [Compare.create_revision(key) == 0],
        [Put(key, value, lease=lease_id)],
        [Get(key)],
    )
    if result.succeeded:
        return KeyValue(key, value, result.revision, result.revision, 1, lease_id)
    found = result.responses[0]
    assert isinstance(found, RangeResult)  # the failure branch is one Get of an existing key
    return found.kvs[0]


async def queue(client: Client, prefix: bytes) -> RangeResult:
    """Every contender's key under ``prefix``, oldest first.

    Cancellation: a checkpoint; a read.
    """
    # etcd's Mutex asks for just the predecessor (sort by create revision, descending,
    # limit 1, max_create_revision = ours - 1); Client.range has no max_create_revision,
    # so we read the keys (without values) and pick it here.
    return await client.range(
        prefix, prefix=True, keys_only=True, sort_target="CREATE", sort_order="ASCEND"
    )


async def wait_turn(
    client: Client, prefix: bytes, key: bytes, revision: int, *, wait: bool = True
) -> None:
    """Return once no key under ``prefix`` is older than ours (we are first in line).

    Waits for the deletion of our predecessor only, then looks again. With ``wait=False``
    raises :class:`LockBusyError` instead of waiting. Raises :class:`LockLostError` if our
    own key is gone.

    Cancellation: a checkpoint; cancelling leaves our key queued (the caller removes it).
    """
    while True:
        result = await queue(client, prefix)
        earlier = [kv for kv in result.kvs if kv.create_revision < revision]
        if not any(kv.key == key for kv in result.kvs):
            raise LockLostError(
                "our key was deleted while we waited (its lease expired, or someone deleted it)",
                request=f"wait for {show_bytes(prefix)}",
            )
        if not earlier:
            return
        if not wait:
            raise LockBusyError(
                f"held by {show_bytes(earlier[0].key)}",
                holder=earlier[0].key,
                request=f"lock {show_bytes(prefix)}",
            )
        await wait_deleted(client, earlier[-1].key, result.revision)


async def wait_deleted(client: Client, key: bytes, revision: int) -> None:
    """Wait until ``key`` is deleted after ``revision`` (at once if it already was).

    Cancellation: a checkpoint; nothing to undo.
    """
    async with client.watch(key, start_revision=revision + 1, filters=["NOPUT"]) as stream:
        while True:
            response = await stream.receive()
            if response.events:
                return
