"""trio-etcd-tree: etcd v3 for Trio, as a client and as a live mirrored tree.

The public names are re-exported here from private modules named after what they hold;
``trio_etcd_tree.testing`` (real and in-memory etcd for tests) is imported separately.
"""

from __future__ import annotations

from ._client import Client as Client, open_client as open_client
from ._errors import (
    AuthenticationError as AuthenticationError,
    ClusterChangedError as ClusterChangedError,
    CompactedError as CompactedError,
    EtcdError as EtcdError,
    FutureRevisionError as FutureRevisionError,
    InvalidRequestError as InvalidRequestError,
    LeaseExpiredError as LeaseExpiredError,
    NotFoundError as NotFoundError,
    PermissionDeniedError as PermissionDeniedError,
    ProtocolError as ProtocolError,
    TooLargeError as TooLargeError,
    UnavailableError as UnavailableError,
)
from ._keys import prefix_end as prefix_end
from ._lease import Lease as Lease
from ._txn import (
    Compare as Compare,
    CompareResult as CompareResult,
    CompareTarget as CompareTarget,
    Delete as Delete,
    Get as Get,
    Put as Put,
    Txn as Txn,
)
from ._types import (
    DeleteResult as DeleteResult,
    Event as Event,
    EventType as EventType,
    KeyValue as KeyValue,
    LeaseGrant as LeaseGrant,
    LeaseInfo as LeaseInfo,
    Member as Member,
    Page as Page,
    PutResult as PutResult,
    RangeResult as RangeResult,
    ResponseHeader as ResponseHeader,
    Status as Status,
    TxnResult as TxnResult,
    WatchResponse as WatchResponse,
)
from ._watch import (
    ConnectionState as ConnectionState,
    WatchStatistics as WatchStatistics,
    WatchStream as WatchStream,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "AuthenticationError",
    "Client",
    "ClusterChangedError",
    "CompactedError",
    "Compare",
    "CompareResult",
    "CompareTarget",
    "ConnectionState",
    "Delete",
    "DeleteResult",
    "EtcdError",
    "Event",
    "EventType",
    "FutureRevisionError",
    "Get",
    "InvalidRequestError",
    "KeyValue",
    "Lease",
    "LeaseExpiredError",
    "LeaseGrant",
    "LeaseInfo",
    "Member",
    "NotFoundError",
    "Page",
    "PermissionDeniedError",
    "ProtocolError",
    "Put",
    "PutResult",
    "RangeResult",
    "ResponseHeader",
    "Status",
    "TooLargeError",
    "Txn",
    "TxnResult",
    "UnavailableError",
    "WatchResponse",
    "WatchStatistics",
    "WatchStream",
    "open_client",
    "prefix_end",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("trio_etcd_tree._"):
        try:
            _obj.__module__ = "trio_etcd_tree"
        except (AttributeError, TypeError):  # pragma: no cover -- some objects refuse it
            pass
del _name, _obj
