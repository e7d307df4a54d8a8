"""``Transaction``: writes collected in ``async with root.transaction()``.

The transaction only collects: it encodes each value at once (so a bad value fails in the
block, not at commit) and turns the writes into etcd operations. Guarding and committing
them is the writer's work (``writer.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, final

from .._core.keys import prefix_end
from .._core.txn import Delete, Op, Put
from .paths import Path, PathLike, flatten, split_path

if TYPE_CHECKING:
    from .._client import Lease

__all__ = ["Encoder", "Transaction", "lease_id"]


class Encoder(Protocol):
    """What a transaction needs from its mount: keys, codecs and the tree's revision."""

    @property
    def revision(self) -> int: ...
    def key_of(self, names: Path) -> bytes: ...
    def encode(self, names: Path, value: object) -> bytes: ...


@final
class Transaction:
    """Writes collected by ``root.transaction()``; committed when the block ends."""

    def __init__(self, encoder: Encoder, base: Path) -> None:
        self._encoder = encoder
        self._base = base
        self.revision = encoder.revision  #: the guard's revision; the commit's after
        self._writes: dict[Path, tuple[bytes, int]] = {}
        self._deletes: list[tuple[Path, bool]] = []

    def set(self, path: PathLike, value: object, *, lease: Lease | int = 0) -> None:
        """Write ``value`` (a mapping writes a subtree) at ``path`` below the transaction's
        node; encoded now with the target's codec."""
        names = self._base + split_path(path)
        for sub, leaf in flatten(value):
            full = names + sub
            self._writes[full] = (self._encoder.encode(full, leaf), lease_id(lease))

    def delete(self, path: PathLike, *, recursive: bool = False) -> None:
        """Delete the key at ``path`` (with ``recursive``, everything below it too)."""
        names = self._base + split_path(path)
        n = len(names)
        for written in list(self._writes):  # a later delete wins over earlier writes
            if written == names or (recursive and written[:n] == names):
                del self._writes[written]
        self._deletes.append((names, recursive))

    @property
    def written(self) -> list[Path]:
        """The paths written or deleted, each once (what the commit guards)."""
        paths = list(self._writes)
        return paths + [n for n, _ in self._deletes if n not in self._writes]

    def ops(self) -> list[Op]:
        """The deletes, then the puts. etcd refuses a transaction that deletes and puts the
        same key ("duplicate key"), so a deleted range is cut around the keys put into it:
        the effect is the same as deleting everything first."""
        key_of = self._encoder.key_of
        puts = sorted(key_of(names) for names in self._writes)
        ops: list[Op] = []
        for names, recursive in self._deletes:
            key = key_of(names)
            if key and key not in puts:
                ops.append(Delete(key))
            if recursive:
                ops.extend(_cut(key + b"/", prefix_end(key + b"/"), puts))
        for names, write in self._writes.items():
            ops.append(Put(key_of(names), write[0], lease=write[1]))
        return ops


def _cut(start: bytes, end: bytes, keys: list[bytes]) -> list[Op]:
    """Deletes covering [start, end) except the given (sorted) keys."""
    ops: list[Op] = []
    for key in keys:
        if start <= key < end:
            if start < key:
                ops.append(Delete(start, range_end=key))
            start = key + b"\0"
    ops.append(Delete(start, range_end=end))  # a key in the range is below `end`, so is start
    return ops


def lease_id(lease: Lease | int) -> int:
    """A lease's id (a ``Lease`` or an id already)."""
    return lease if isinstance(lease, int) else lease.id
