"""``plan_load`` and ``load_yaml``: a document's keys written under a path, guarded.

A load that fits one transaction (``max_txn_ops`` operations, ``max_request_bytes``) is
one transaction, guarded by "no key under the path was created or changed since the read".
A larger one is split, in key order, into transactions over consecutive key ranges of the
path, each guarded by "no key in my range changed since the read"; ``LoadPlan.transactions``
says how many before anything is written, and ``atomic`` refuses to split. A split load
that fails part way leaves whole transactions applied, and the error says how many keys
landed: running the same load again completes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

from .._client import Client
from .._core.errors import ConflictError, DocumentError, TooLargeError
from .._core.keys import KeyLike, prefix_end, show_bytes, subtree_path
from .._core.txn import Compare, Delete, Put
from .._core.types import KeyValue, TxnResult
from .._core.util import gc_paused
from .document import MAX_KEYS, MAX_REQUEST_BYTES
from .keys import Types, document_keys
from .progress import Progress

__all__ = ["MAX_TXN_OPS", "LoadPlan", "LoadResult", "apply_plan", "load_yaml", "plan_load"]

MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``."""
_REQUEST_MARGIN = 4096  # room for the request's own framing and the compares
_OP_OVERHEAD = 16


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What loading a document under a path would change, against the state at
    ``revision``. Keys are full etcd keys; ``prefix`` is the path (``b"/cfg"``)."""

    prefix: bytes
    revision: int
    added: list[tuple[bytes, bytes]]  #: (key, value)
    changed: list[tuple[bytes, bytes, bytes]]  #: (key, old value, new value)
    deleted: list[tuple[bytes, bytes]]  #: (key, old value); only with ``prune``
    unchanged: int
    current: dict[bytes, KeyValue] = field(repr=False)

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.deleted)

    def operations(self) -> list[Put | Delete]:
        """The puts (added and changed keys) and deletes, in key order."""
        ops: list[Put | Delete] = [Put(k, v) for k, v in self.added]
        ops.extend(Put(k, new) for k, _, new in self.changed)
        ops.extend(Delete(k) for k, _ in self.deleted)
        ops.sort(key=lambda op: op.key)
        return ops

    def transactions(
        self, max_txn_ops: int = MAX_TXN_OPS, max_request_bytes: int = MAX_REQUEST_BYTES
    ) -> int:
        """How many transactions the load takes within the server's limits (0: none)."""
        if self.empty:
            return 0
        return len(_chunks(self.operations(), max_txn_ops, max_request_bytes))

    def diff(self) -> list[str]:
        """The changes as lines, in key order, with the bytes each key gets:
        ``+ key = value``, ``~ key = new (was old)``, ``- key (was old)`` (full keys and
        values shown by :func:`show_bytes`: plain words as they are, else quoted)."""
        show = show_bytes
        lines: list[tuple[bytes, str]] = []
        for key, value in self.added:
            lines.append((key, f"+ {show(key)} = {show(value)}"))
        for key, old, new in self.changed:
            lines.append((key, f"~ {show(key)} = {show(new)} (was {show(old)})"))
        for key, old in self.deleted:
            lines.append((key, f"- {show(key)} (was {show(old)})"))
        return [line for _, line in sorted(lines)]

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.deleted)} deleted, {self.unchanged} unchanged"
        )


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What :func:`load_yaml` did: the plan, the revision of the last transaction (the
    plan's revision if nothing was written), and how many transactions it took."""

    plan: LoadPlan
    revision: int
    transactions: int


async def plan_load(
    client: Client,
    prefix: KeyLike,
    document: object,
    *,
    prune: bool = False,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    types: Types | None = None,
    max_keys: int = MAX_KEYS,
) -> LoadPlan:
    """Compare a document with what is under the path ``prefix`` now (one consistent
    read of the path's own key and the keys under it, never ``/cfgother`` for ``/cfg``).

    ``types`` (a :class:`TypeRegistry`): the paths whose values are converted by a codec
    (see :func:`document_keys`); without it every value is stored as written.

    Raises:
        DocumentError: the document cannot be written (see :func:`document_keys`), or a
            key and value are larger than ``max_request_bytes`` (etcd would refuse them).
    """
    path = subtree_path(prefix)
    with gc_paused():
        wanted = document_keys(document, path, types=types, max_keys=max_keys)
    limit = max_request_bytes - _REQUEST_MARGIN
    for key, value in wanted.items():
        if len(key) + len(value) > limit:
            raise DocumentError(
                f"at {show_bytes(key)}: the value is {len(value)} bytes, more than etcd "
                f"accepts in one request (--max-request-bytes {max_request_bytes})"
            )
    current: dict[bytes, KeyValue] = {}
    below = path + b"/"
    revision = 0
    if path:
        own = await client.range(path)
        revision = own.header.revision
        current.update((kv.key, kv) for kv in own.kvs)
    async for page in client.range_pages(below, prefix_end(below), revision=revision):
        revision = page.revision
        current.update((kv.key, kv) for kv in page.kvs)
    added: list[tuple[bytes, bytes]] = []
    changed: list[tuple[bytes, bytes, bytes]] = []
    unchanged = 0
    with gc_paused():
        for key in sorted(wanted):
            value = wanted[key]
            kv = current.get(key)
            if kv is None:
                added.append((key, value))
            elif kv.value != value:
                changed.append((key, kv.value, value))
            else:
                unchanged += 1
        deleted = [(k, kv.value) for k, kv in current.items() if k not in wanted] if prune else []
    return LoadPlan(path, revision, added, changed, deleted, unchanged, current)


async def load_yaml(
    client: Client,
    prefix: KeyLike,
    document: object,
    *,
    prune: bool = False,
    if_revision: int = 0,
    atomic: bool = False,
    dry_run: bool = False,
    max_txn_ops: int = MAX_TXN_OPS,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    concurrency: int = 8,
    types: Types | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Write a document's keys under the path ``prefix``: added and changed keys, and
    with ``prune`` the deletion of the keys under the path the document does not have.

    :func:`plan_load`, then :func:`apply_plan` (unless ``dry_run``); see both.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    plan = await plan_load(
        client, prefix, document, prune=prune, max_request_bytes=max_request_bytes, types=types
    )
    if dry_run:
        if if_revision:
            await _check_unchanged(client, plan, if_revision)
        return LoadResult(plan, plan.revision, 0)
    return await apply_plan(
        client,
        plan,
        if_revision=if_revision,
        atomic=atomic,
        max_txn_ops=max_txn_ops,
        max_request_bytes=max_request_bytes,
        concurrency=concurrency,
        progress=progress,
    )


async def apply_plan(
    client: Client,
    plan: LoadPlan,
    *,
    if_revision: int = 0,
    atomic: bool = False,
    max_txn_ops: int = MAX_TXN_OPS,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    concurrency: int = 8,
    progress: Progress | None = None,
) -> LoadResult:
    """Write a plan's changes: in one transaction guarded by "no key under the path was
    created or changed since the read (or since ``if_revision``)" when they fit
    ``max_txn_ops`` and ``max_request_bytes``; otherwise (unless ``atomic``) in
    ``plan.transactions()`` transactions, in key order, over consecutive key ranges of
    the path, each guarded by "no key in my range was created or changed since the read";
    ``concurrency`` of them in flight at a time. Each guard reads only its own range, so a
    large load costs etcd time in proportion to its size. ``progress`` counts the keys of
    the transactions applied.

    ``if_revision``: apply only if nothing under the path changed since that revision
    (checked against the history at that revision: keys changed, created or deleted).

    Not detected: a key the load does not touch, deleted by another client between the
    read and the commit.

    Raises:
        ConflictError: a guard failed; nothing written, or (split) the transactions
            applied before it, as its message says.
        TooLargeError: ``atomic`` and the load takes more than one transaction (the
            message says how many); nothing written.
        CompactedError: ``if_revision`` is compacted, so it cannot be checked.
        EtcdError: a transaction failed otherwise (the server unavailable, ...); the
            transactions in flight finish first, and a note on the error says how many
            keys landed and that running the load again completes it.

    Cancellation: a checkpoint; cancelled while committing, the transactions in flight
    may have been applied (the ones counted in ``progress`` are).
    """
    base = plan.revision
    if if_revision:
        await _check_unchanged(client, plan, if_revision)
        base = if_revision
    if plan.empty:
        return LoadResult(plan, plan.revision, 0)
    with gc_paused():
        chunks = _chunks(plan.operations(), max_txn_ops, max_request_bytes)
    total = sum(len(c) for c in chunks)
    if atomic and len(chunks) > 1:
        raise TooLargeError(
            f"{total} changes take {len(chunks)} transactions (at most {max_txn_ops} "
            f"operations and {max_request_bytes} bytes each: the server's --max-txn-ops "
            "and --max-request-bytes); refusing to split them (atomic): nothing written"
        )
    if progress is not None:
        progress.start("writing", total)
    path = plan.prefix
    below = path + b"/"
    # chunk i guards [its first key, the next chunk's first key) of the path's range, and
    # the first chunk the path's own key as well
    bounds = [below, *(ops[0].key for ops in chunks[1:]), prefix_end(below)]
    slots = trio.Semaphore(concurrency)
    applied: list[tuple[int, int]] = []  # (revision, keys) of the transactions applied
    failed: list[Exception | TxnResult] = []  # the first error or failed guard

    async def commit(i: int) -> None:
        try:
            guards = [Compare.mod_revision(bounds[i], range_end=bounds[i + 1]) < base + 1]
            if i == 0 and path:
                guards.append(Compare.mod_revision(path) < base + 1)
            result = await client.txn(guards, chunks[i])
        except Exception as exc:
            failed.append(exc)
            return
        finally:
            slots.release()
        if not result.succeeded:
            failed.append(result)
            return
        applied.append((result.revision, len(chunks[i])))
        if progress is not None:
            progress.advance(len(chunks[i]))

    async with trio.open_nursery() as nursery:
        for i in range(len(chunks)):
            await slots.acquire()  # in key order
            if failed:
                break
            nursery.start_soon(commit, i)
    if progress is not None:
        progress.finish()
    if failed:
        landed = sum(n for _, n in applied)
        first = failed[0]
        if isinstance(first, Exception):
            first.add_note(
                f"loading under {show_bytes(path or b'/')}: at least {landed} of {total} keys "
                f"were written ({len(applied)} of {len(chunks)} transactions); "
                "running the same load again completes it"
            )
            raise first
        done = (
            f"{landed} of {total} keys were written ({len(applied)} of {len(chunks)} "
            "transactions); running the same load again completes it"
            if applied
            else "nothing written"
        )
        raise ConflictError(
            f"a key under {show_bytes(path or b'/')} changed since revision {base}: {done}",
            conflicts={},
            revision=first.revision,
            request="load",
        )
    return LoadResult(plan, max(r for r, _ in applied), len(chunks))


async def _check_unchanged(client: Client, plan: LoadPlan, since: int) -> None:
    changed = sorted(k for k, kv in plan.current.items() if kv.mod_revision > since)
    if not changed:
        below = plan.prefix + b"/"
        pages = client.range_pages(below, prefix_end(below), revision=since, keys_only=True)
        async for page in pages:
            changed.extend(kv.key for kv in page.kvs if kv.key not in plan.current)
        if plan.prefix and plan.prefix not in plan.current:
            gone = await client.range(plan.prefix, revision=since, keys_only=True)
            changed.extend(kv.key for kv in gone.kvs)
    if changed:
        key = show_bytes(changed[0])
        raise ConflictError(
            f"{key} (and {len(changed) - 1} more) changed since revision {since}: nothing written"
            if len(changed) > 1
            else f"{key} changed since revision {since}: nothing written",
            conflicts={k: plan.current.get(k) for k in changed},
            revision=plan.revision,
            request="load",
        )


def _chunks(
    ops: Iterable[Put | Delete], max_ops: int, max_request_bytes: int
) -> list[list[Put | Delete]]:
    max_bytes = max_request_bytes - _REQUEST_MARGIN
    chunks: list[list[Put | Delete]] = [[]]
    size = 0
    for op in ops:
        n = len(op.key) + _OP_OVERHEAD + (len(op.value) if isinstance(op, Put) else 0)
        if chunks[-1] and (len(chunks[-1]) >= max_ops or size + n > max_bytes):
            chunks.append([])
            size = 0
        chunks[-1].append(op)
        size += n
    return chunks
