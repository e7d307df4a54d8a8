"""What the tree reports: changes, updates, and the mount's state.

These are plain values: the apply core makes them, subscriptions carry them, and the
tree's users read them. Nothing here knows about nodes or the network.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NamedTuple

from .._core.codecs import Codec
from .._core.errors import NotLoadedError
from .._core.types import KeyValue
from .paths import Path, show

__all__ = ["NOT_LOADED", "Change", "ChangeKind", "MountState", "MountStatistics", "Update"]


class _NotLoaded(bytes):
    """The type of ``NOT_LOADED``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<not loaded>"


#: The raw value of a node whose key exists but whose value a lazy mount has not loaded
#: yet (and the ``value`` of a :class:`KeyValue` in a :class:`Change` for such a key). It
#: is a ``bytes`` equal to ``b""``, so "has a key" stays ``raw is not None``; tell it
#: apart by identity (``raw is NOT_LOADED``).
NOT_LOADED: bytes = _NotLoaded()


class ChangeKind(enum.Enum):
    CREATED = "created"  #: the key did not exist before
    MODIFIED = "modified"  #: the key's value (or lease) changed
    DELETED = "deleted"  #: the key is gone


class Change(NamedTuple):
    """One key's change: where, what kind, and the key before and after (as KeyValues)."""

    path: Path
    kind: ChangeKind
    old: KeyValue | None
    new: KeyValue | None
    codec: Codec

    @property
    def old_value(self) -> Any:
        """The old value, decoded (``None`` if the key was created).

        Raises:
            NotLoadedError: a lazy mount had not loaded the old value (``old.value`` is
                ``NOT_LOADED``; its revisions are right).
        """
        return None if self.old is None else self._decode(self.old.value)

    @property
    def new_value(self) -> Any:
        """The new value, decoded (``None`` if the key was deleted).

        Raises:
            NotLoadedError: a lazy mount's resync found the key changed and did not load
                the new value (``new.value`` is ``NOT_LOADED``; the node has it unloaded).
        """
        return None if self.new is None else self._decode(self.new.value)

    def _decode(self, raw: bytes) -> Any:
        if raw is NOT_LOADED:
            raise NotLoadedError(f"the value of {show(self.path)} was not loaded (a lazy mount)")
        return self.codec.decode(raw)


@dataclass(frozen=True, slots=True)
class Update:
    """What a subscriber receives: the changes of one revision below its node, in key
    order. ``resync`` marks the changes found by comparing a fresh snapshot after the
    watch could not resume (compaction, a restored cluster); ``coalesced`` marks a
    debounced summary of several revisions (``revision`` is the last one)."""

    revision: int
    changes: tuple[Change, ...]
    resync: bool = False
    coalesced: bool = False


class MountState(enum.Enum):
    """Where a mounted tree stands (``root.state``)."""

    SYNCED = "synced"  #: the watch is connected; the tree follows etcd
    DISCONNECTED = "disconnected"  #: the watch is reconnecting; the tree may be behind
    RESYNCING = "resyncing"  #: reading a fresh snapshot after the watch could not resume
    CLOSED = "closed"  #: the mount was left; the tree is a frozen snapshot


@dataclass(frozen=True, slots=True)
class MountStatistics:
    """What a mount has been through (``root.statistics()``)."""

    state: MountState
    since: float  #: trio time of the last state change
    revision: int  #: the revision the tree reflects
    keys: int  #: keys in the tree
    revisions_applied: int  #: watch revisions applied (progress notifications excluded)
    events_applied: int
    reconnects: int  #: how often the watch lost its connection (and reconnected)
    resyncs: int  #: fresh snapshots read after the watch could not resume
    subscribers: int
    overflows: int  #: subscriptions cut off because their subscriber fell behind
