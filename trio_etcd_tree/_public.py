"""The public names of trio_etcd_tree, imported from the private modules that hold them.

The package imports this module on the first use of a public name (``trio_etcd_tree.mount``,
``from trio_etcd_tree import Client``): ``import trio_etcd_tree`` alone, or a tool that imports
only the private modules it uses, does not pay for the rest. Each re-exported class and
function is shown as ``trio_etcd_tree.X`` (its ``__module__``), as the reference docs name it.
"""

from __future__ import annotations

import sys as _sys

from ._client import (
    Client as Client,
    ConnectionState as ConnectionState,
    Lease as Lease,
    WatchStatistics as WatchStatistics,
    WatchStream as WatchStream,
    open_client as open_client,
)
from ._coord.election import (
    Election as Election,
    Leader as Leader,
    current_leader as current_leader,
    election as election,
    observe_leader as observe_leader,
)
from ._coord.lock import Lock as Lock, lock as lock, try_lock as try_lock
from ._core.codecs import (
    BOOL as BOOL,
    BYTES as BYTES,
    FLOAT as FLOAT,
    INT as INT,
    JSON as JSON,
    STR as STR,
    Codec as Codec,
)
from ._core.errors import (
    AuthenticationError as AuthenticationError,
    ClusterChangedError as ClusterChangedError,
    CompactedError as CompactedError,
    ConflictError as ConflictError,
    DecodeError as DecodeError,
    DocumentError as DocumentError,
    DocumentLimitError as DocumentLimitError,
    EtcdError as EtcdError,
    FutureRevisionError as FutureRevisionError,
    InvalidRequestError as InvalidRequestError,
    LeaseExpiredError as LeaseExpiredError,
    LockBusyError as LockBusyError,
    LockLostError as LockLostError,
    MirrorError as MirrorError,
    NotFoundError as NotFoundError,
    NotLeaderError as NotLeaderError,
    NotLoadedError as NotLoadedError,
    PermissionDeniedError as PermissionDeniedError,
    ProtocolError as ProtocolError,
    SubscriptionOverflow as SubscriptionOverflow,
    TooLargeError as TooLargeError,
    TreeClosedError as TreeClosedError,
    UnavailableError as UnavailableError,
)
from ._core.keys import prefix_end as prefix_end
from ._core.txn import (
    Compare as Compare,
    CompareResult as CompareResult,
    CompareTarget as CompareTarget,
    Delete as Delete,
    Get as Get,
    Put as Put,
    Txn as Txn,
)
from ._core.types import (
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
from ._tree.changes import (
    NOT_LOADED as NOT_LOADED,
    Change as Change,
    ChangeKind as ChangeKind,
    MountState as MountState,
    MountStatistics as MountStatistics,
    Update as Update,
)
from ._tree.mount import mount as mount
from ._tree.node import Node as Node, Root as Root
from ._tree.registry import TypeRegistry as TypeRegistry
from ._tree.subscribe import Subscription as Subscription
from ._tree.transaction import Transaction as Transaction
from ._yaml import (
    Limits as Limits,
    LoadPlan as LoadPlan,
    LoadResult as LoadResult,
    dump_yaml as dump_yaml,
    load_yaml as load_yaml,
    parse_yaml as parse_yaml,
    plan_load as plan_load,
)
from ._yaml.progress import Progress as Progress

for _name in _sys.modules[__package__].__all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or (callable(_obj) and hasattr(_obj, "__code__")):
        _obj.__module__ = "trio_etcd_tree"
del _name, _obj
