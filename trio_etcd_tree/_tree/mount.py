"""``mount()``: a live, writable mirror of an etcd subtree (the thin public entry).

A mount is a tree of nodes (``node.py``) changed only by the apply core (``core.py``),
which the reflector (``reflector.py``) feeds from etcd: a snapshot, then the watch,
revision by revision, and a fresh snapshot when the watch cannot resume. Writes go through
the writer (``writer.py``) as guarded transactions and return once the reflector has
brought them back. :class:`Mirror` ties them together behind the handle the nodes use.

A lazy mount (``lazy=True``) reads keys only: the tree has its full shape and every key's
revisions, and ``Node.load`` reads the values of a subtree at the revision the tree has
applied. Events carry values, so whatever the watch touches is loaded; writes guard on
``mod_revision``, which is known for unloaded keys too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from .._client import Client
from .._core.codecs import Codec
from .._core.keys import KeyLike, key_bytes
from .._core.util import open_service_nursery
from .changes import MountState, MountStatistics
from .core import TreeCore
from .node import PRIVATE, Root
from .paths import Path
from .reflector import Reflector
from .registry import TypeRegistry
from .subscribe import Subscription
from .transaction import Transaction
from .writer import Writer

if TYPE_CHECKING:
    from .._client import Lease

__all__ = ["Mirror", "mirror_of", "mount"]


class Mirror:
    """One mount: its tree, reflector and writer, as the :class:`TreeHandle` of its root."""

    __slots__ = (
        "core",
        "reflector",
        "root",
        "subscriptions",
        "writer",
    )

    def __init__(
        self,
        client: Client,
        prefix: bytes,
        registry: TypeRegistry,
        *,
        page_size: int,
        max_txn_ops: int,
        lazy: bool = False,
    ) -> None:
        self.root = Root(self, PRIVATE)
        self.core = TreeCore(self.root, prefix, registry)
        self.reflector = Reflector(client, self.core, page_size=page_size, lazy=lazy)
        self.writer = Writer(self.reflector, max_txn_ops=max_txn_ops)
        self.subscriptions = self.reflector.subscriptions

    # --- reads -----------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self.core.revision

    @property
    def prefix(self) -> bytes:
        return self.core.prefix

    @property
    def state(self) -> MountState:
        return self.reflector.state

    @property
    def since(self) -> float:
        return self.reflector.since

    def statistics(self) -> MountStatistics:
        return self.reflector.statistics()

    def key_of(self, names: Path) -> bytes:
        return self.core.key_of(names)

    def codec_for(self, names: Path) -> Codec:
        return self.core.codec_for(names)

    # --- waiting and loading -----------------------------------------------------------------

    async def load(self, names: Path, *, subtree: bool = True) -> None:
        await self.reflector.load(names, subtree=subtree)

    async def wait_revision(self, revision: int) -> None:
        await self.reflector.wait_revision(revision)

    async def wait_value(self, path: Path, predicate: object) -> Any:
        return await self.reflector.wait_value(path, predicate)

    def subscribe(
        self,
        path: Path,
        *,
        buffer: int,
        update_delay: float | None,
        max_update_delay: float | None,
    ) -> AbstractAsyncContextManager[Subscription]:
        return self.subscriptions.subscribe(
            path, buffer=buffer, update_delay=update_delay, max_update_delay=max_update_delay
        )

    # --- writing ---------------------------------------------------------------------------

    async def set_values(
        self, base: Path, items: list[tuple[Path, object]], *, lease: Lease | int, unguarded: bool
    ) -> int:
        return await self.writer.set_values(base, items, lease=lease, unguarded=unguarded)

    async def delete_path(self, names: Path, *, recursive: bool, unguarded: bool) -> int:
        return await self.writer.delete_path(names, recursive=recursive, unguarded=unguarded)

    def transaction(self, base: Path) -> AbstractAsyncContextManager[Transaction]:
        return self.writer.transaction(base)

    async def retry_transaction(
        self, fn: Callable[[Transaction], object], base: Path, attempts: int
    ) -> int:
        return await self.writer.retry_transaction(fn, base, attempts)

    def close(self) -> None:
        """Freeze the tree: wake every waiter, end every subscription."""
        self.reflector.close()


def mirror_of(root: Root) -> Mirror:
    """The mount behind a root (for tests that drive its machinery directly)."""
    mirror = root._mirror
    assert isinstance(mirror, Mirror)
    return mirror


@asynccontextmanager
async def mount(
    client: Client,
    prefix: KeyLike,
    *,
    types: TypeRegistry | None = None,
    page_size: int = 100_000,
    max_txn_ops: int = 128,
    lazy: bool = False,
) -> AsyncIterator[Root]:
    """Mirror the etcd subtree at ``prefix`` for the life of the ``async with`` block.

    ``async with mount(client, "/cfg") as root:`` yields the root :class:`Node` once the
    whole subtree is loaded, consistent at one revision; from then on a task in the
    block's own nursery applies every change, revision by revision, surviving broken
    connections, failover, compaction and restored clusters (see the module docs).

    Args:
        prefix: the subtree; ``"/cfg"`` covers the key ``/cfg`` (the root's value) and every
            key under ``/cfg/``. ``"/"`` or ``""`` mirrors every key that starts with ``/``.
            A user whose role grants only ``/cfg/`` (``--prefix readwrite /cfg/``) mounts
            the keys under ``/cfg/``; the root's own key is then left out.
        types: the :class:`TypeRegistry` giving paths their codecs and node classes.
        page_size: keys per page of the snapshot reads (each page also costs the server a
            count of the keys left in the range: fewer, larger pages load faster).
        max_txn_ops: the server's ``--max-txn-ops``; larger writes are refused before
            anything is sent.
        lazy: read keys only (with their revisions): values are loaded when awaited,
            ``await node.load()`` for a subtree, and by the watch for what it changes;
            until then ``value`` and ``raw`` raise :class:`NotLoadedError`.

    Raises:
        MirrorError: the mirror cannot go on (lost permission, say); out of the block.
            Whatever the block raises comes out unchanged.

    After the block the tree is a frozen snapshot: reads work, writes raise
    :class:`TreeClosedError`, subscriptions have ended.

    Cancellation: entering waits for the snapshot (cancellable; nothing is left behind);
    leaving cancels the watch at once and never blocks on the network.
    """
    raw = key_bytes(prefix)
    raw = raw.rstrip(b"/") if raw.strip(b"/") else b""
    if page_size < 1:
        raise ValueError("page_size must be >= 1")
    mirror = Mirror(
        client,
        raw,
        types or TypeRegistry(),
        page_size=page_size,
        max_txn_ops=max_txn_ops,
        lazy=lazy,
    )
    try:
        async with open_service_nursery() as nursery:
            await nursery.start(mirror.reflector.run)
            try:
                yield mirror.root
            finally:
                nursery.cancel_scope.cancel(reason="the mount block was left")
    finally:
        mirror.close()
