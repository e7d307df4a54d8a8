"""The writer: guarded writes, transactions, conflicts, and retries.

Writes never touch the tree: they go to etcd as transactions guarded by what the tree
knows (each written key's ``mod_revision``, or "must not exist"; for a subtree, "nothing
below changed since the tree's revision"), and a write returns once the reflector has
brought the change back (read-your-writes). A refused guard becomes a
:class:`ConflictError` saying what changed, read in the same transaction.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from .._core.errors import ConflictError, TooLargeError
from .._core.keys import show_bytes
from .._core.txn import Compare, Delete, Get, Op, Put
from .._core.types import KeyValue, RangeResult
from .paths import Path, flatten, show
from .reflector import Reflector
from .transaction import Transaction, lease_id

if TYPE_CHECKING:
    from .._client import Lease

__all__ = ["Writer"]


class Writer:
    """Turns writes into guarded etcd transactions (and is the transactions' encoder)."""

    __slots__ = (
        "client",
        "core",
        "max_txn_ops",
        "reflector",
    )

    def __init__(self, reflector: Reflector, *, max_txn_ops: int) -> None:
        self.reflector = reflector
        self.core = reflector.core
        self.client = reflector.client
        self.max_txn_ops = max_txn_ops

    @property
    def revision(self) -> int:
        return self.core.revision

    def key_of(self, names: Path) -> bytes:
        return self.core.key_of(names)

    def encode(self, names: Path, value: object) -> bytes:
        if not names and not self.core.prefix:
            raise ValueError("the root of a mount of the whole keyspace has no key to write")
        return self.core.codec_for(names).encode(value)

    def _known(self, names: Path) -> int:
        """The mod_revision the tree knows for a path, 0 if it holds no key there."""
        node = self.core.root.find(names)
        return 0 if node is None else node.mod_revision

    async def set_values(
        self, base: Path, items: list[tuple[Path, object]], *, lease: Lease | int, unguarded: bool
    ) -> int:
        self.reflector.check_open()
        writes: dict[Path, bytes] = {}
        for rel, value in items:
            for sub, leaf in flatten(value, rel):
                writes[base + sub] = self.encode(base + sub, leaf)
        lid = lease_id(lease)
        ops: list[Op] = [Put(self.key_of(n), raw, lease=lid) for n, raw in writes.items()]
        guarded = [] if unguarded else list(writes)
        what = f"set {show(base + items[0][0]) if len(items) == 1 else show(base)}"
        return await self._commit(ops, guarded, None, what=what)

    async def delete_path(self, names: Path, *, recursive: bool, unguarded: bool) -> int:
        self.reflector.check_open()
        key = self.key_of(names)
        node = self.core.root.find(names)
        if (node is None or not node.has_value) and not recursive:
            raise LookupError(f"{show_bytes(key)} has no value to delete (use recursive=True)")
        own = bool(key) and (bool(names) or self.reflector.with_root_key)
        ops: list[Op] = [Delete(key)] if own else []
        if recursive:
            ops.append(Delete(key + b"/", prefix=True))
        guarded = [] if unguarded or not own else [names]
        subtree = names if recursive and not unguarded else None
        return await self._commit(ops, guarded, subtree, what=f"delete {show(names)}")

    @asynccontextmanager
    async def transaction(self, base: Path) -> AsyncIterator[Transaction]:
        self.reflector.check_open()
        txn = Transaction(self, base)
        yield txn
        ops = txn.ops()
        if not ops:
            await trio.lowlevel.checkpoint()
            return
        guarded = [n for n in txn.written if self.key_of(n)]
        txn.revision = await self._commit(
            ops, guarded, base, what=f"transaction on {show(base)}", since=txn.revision
        )

    async def retry_transaction(
        self, fn: Callable[[Transaction], object], base: Path, attempts: int
    ) -> int:
        """``Root.retry_transaction``: run ``fn`` in transactions until one commits."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.transaction(base) as txn:
                    result = fn(txn)
                    if inspect.isawaitable(result):
                        await result
            except ConflictError as exc:
                if attempt >= attempts:
                    raise
                await self.catch_up(exc)
            else:
                return txn.revision

    async def _commit(
        self,
        ops: list[Op],
        guarded: list[Path],
        subtree: Path | None,
        *,
        what: str,
        since: int | None = None,
    ) -> int:
        """Send one guarded transaction; return its revision once the tree shows it.

        Guards: each path in ``guarded`` must be as the tree knows it (its mod_revision, or
        absent); with ``subtree``, no key at or below it may be newer than ``since`` (the
        tree's revision by default). What the failure branch reads tells the caller what
        changed, and lets ``retry_transaction`` wait for the tree to catch up with it.
        """
        since = self.core.revision if since is None else since
        compares: list[Compare] = []
        failure: list[Op] = []
        known_revisions: list[int] = []
        for names in guarded:
            key = self.key_of(names)
            known = self._known(names)
            known_revisions.append(known)
            compares.append(
                Compare.mod_revision(key) == known if known else Compare.create_revision(key) == 0
            )
            failure.append(Get(key))
        if subtree is not None:
            key = self.key_of(subtree)
            compares.append(Compare.mod_revision(key + b"/", prefix=True) < since + 1)
            failure.append(
                Get(key + b"/", prefix=True, limit=1, sort_target="MOD", sort_order="DESCEND")
            )
            if key and subtree not in guarded and (subtree or self.reflector.with_root_key):
                compares.append(Compare.mod_revision(key) < since + 1)
                failure.append(Get(key))
        limit = self.max_txn_ops
        if len(ops) > limit or len(compares) > limit:
            raise TooLargeError(
                f"{len(ops)} operations and {len(compares)} compares exceed the limit of "
                f"{limit} per transaction (max_txn_ops, the server's --max-txn-ops); "
                "nothing was written",
                request=what,
            )
        history = self.reflector.histories
        result = await self.client.txn(compares, ops, failure)
        if not result.succeeded:
            raise self._conflict(
                result.responses, guarded, known_revisions, since, what, result.revision
            )
        # read-your-writes, in the history the write was made in
        await self.reflector.wait_revision(result.revision, history=history)
        return result.revision

    def _conflict(
        self,
        responses: Sequence[object],
        guarded: list[Path],
        known: list[int],
        since: int,
        what: str,
        revision: int,
    ) -> ConflictError:
        """What the failure branch's reads say changed, against what the guards expected
        (not against the tree, which may have caught up in the meantime)."""
        conflicts: dict[bytes, KeyValue | None] = {}
        reads = [r for r in responses if isinstance(r, RangeResult)]
        for names, expected, read in zip(guarded, known, reads, strict=False):
            current = read.kvs[0] if read.kvs else None
            if (current.mod_revision if current else 0) != expected:
                conflicts[self.key_of(names)] = current
        for read in reads[len(guarded) :]:
            for kv in read.kvs:
                if kv.mod_revision > since:
                    conflicts.setdefault(kv.key, kv)
        described = ", ".join(
            f"{show_bytes(k)} ({'gone' if v is None else f'now at revision {v.mod_revision}'})"
            for k, v in conflicts.items()
        )
        return ConflictError(
            f"refused: changed since the tree read it: {described or 'the subtree'}",
            conflicts=conflicts,
            revision=revision,
            request=what,
        )

    async def catch_up(self, conflict: ConflictError) -> None:
        """Wait until the tree shows what made ``conflict`` happen."""
        for key, kv in conflict.conflicts.items():
            if kv is not None:
                await self.reflector.wait_revision(kv.mod_revision)
            else:
                names = self.core.names_of(key)
                assert names is not None
                await self.reflector.wait_value(names, None)
        await trio.lowlevel.checkpoint()
