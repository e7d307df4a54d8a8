# ruff: noqa: F405 (the names of __all__ come from _public, on first use)
"""trio-etcd-tree: etcd v3 for Trio, as a client and as a live mirrored tree.

The public names are re-exported here from private modules named after what they hold;
``trio_etcd_tree.testing`` (real and in-memory etcd for tests) is imported separately.

They are imported on first use (PEP 562; ``_public`` imports them all at once): importing
the package alone imports none of them, so a tool that imports only the private modules it
needs (``etcd2yaml``: a client and the YAML dump) does not start by importing the mirrored
tree and the coordination recipes as well.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names of __all__, for type checkers (and no other names)
    from ._public import *  # noqa: F403
else:

    def __getattr__(name: str) -> Any:
        """A public name, imported with all the others on the first use of one."""
        if name not in _PUBLIC:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from . import _public

        names = vars(_public)
        globals().update((n, names[n]) for n in __all__)
        return names[name]


__version__ = "0.1.0.dev0"

__all__ = [
    "BOOL",
    "BYTES",
    "FLOAT",
    "INT",
    "JSON",
    "NOT_LOADED",
    "STR",
    "AuthenticationError",
    "Change",
    "ChangeKind",
    "Client",
    "ClusterChangedError",
    "Codec",
    "CompactedError",
    "Compare",
    "CompareResult",
    "CompareTarget",
    "ConflictError",
    "ConnectionState",
    "DecodeError",
    "Delete",
    "DeleteResult",
    "DocumentError",
    "DocumentLimitError",
    "Election",
    "EtcdError",
    "Event",
    "EventType",
    "FutureRevisionError",
    "Get",
    "InvalidRequestError",
    "KeyValue",
    "Leader",
    "Lease",
    "LeaseExpiredError",
    "LeaseGrant",
    "LeaseInfo",
    "Limits",
    "LoadPlan",
    "LoadResult",
    "Lock",
    "LockBusyError",
    "LockLostError",
    "Member",
    "MirrorError",
    "MountState",
    "MountStatistics",
    "Node",
    "NotFoundError",
    "NotLeaderError",
    "NotLoadedError",
    "Page",
    "PermissionDeniedError",
    "Progress",
    "ProtocolError",
    "Put",
    "PutResult",
    "RangeResult",
    "ResponseHeader",
    "Root",
    "Status",
    "Subscription",
    "SubscriptionOverflow",
    "TooLargeError",
    "Transaction",
    "TreeClosedError",
    "Txn",
    "TxnResult",
    "TypeRegistry",
    "UnavailableError",
    "Update",
    "WatchResponse",
    "WatchStatistics",
    "WatchStream",
    "current_leader",
    "dump_yaml",
    "election",
    "load_yaml",
    "lock",
    "mount",
    "observe_leader",
    "open_client",
    "parse_yaml",
    "plan_load",
    "prefix_end",
    "try_lock",
]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


_PUBLIC = frozenset(__all__)
