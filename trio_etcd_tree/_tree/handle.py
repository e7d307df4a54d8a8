"""The narrow handle through which a tree's nodes reach their mount.

A node reads its own state; for everything else (its key, its codec, loading, writing,
waiting, subscribing) it asks the handle its root holds. The mount implements it, so the
nodes know nothing of the mount's machinery and nothing here imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from .._core.codecs import Codec
from .changes import MountState, MountStatistics
from .paths import Path
from .subscribe import Subscription
from .transaction import Transaction

if TYPE_CHECKING:
    from .._client import Lease

__all__ = ["TreeHandle"]


class TreeHandle(Protocol):
    """What a tree's nodes need from its mount (``Root._mirror``); the mount implements it.

    Reads that need no I/O, and the writes and waits that do."""

    @property
    def revision(self) -> int: ...
    @property
    def prefix(self) -> bytes: ...
    @property
    def state(self) -> MountState: ...
    @property
    def since(self) -> float: ...
    def statistics(self) -> MountStatistics: ...
    def key_of(self, names: Path) -> bytes: ...
    def codec_for(self, names: Path) -> Codec: ...
    async def load(self, names: Path, *, subtree: bool = True) -> None: ...
    async def set_values(
        self, base: Path, items: list[tuple[Path, object]], *, lease: Lease | int, unguarded: bool
    ) -> int: ...
    async def delete_path(self, names: Path, *, recursive: bool, unguarded: bool) -> int: ...
    def subscribe(
        self,
        path: Path,
        *,
        buffer: int,
        update_delay: float | None,
        max_update_delay: float | None,
    ) -> AbstractAsyncContextManager[Subscription]: ...
    async def wait_value(self, path: Path, predicate: object) -> Any: ...
    async def wait_revision(self, revision: int) -> None: ...
    def transaction(self, base: Path) -> AbstractAsyncContextManager[Transaction]: ...
    async def retry_transaction(
        self, fn: Callable[[Transaction], object], base: Path, attempts: int
    ) -> int: ...
