"""etcd's gRPC messages in and out of the library's Python values.

Requests are built as protobuf messages (:mod:`.messages`) and serialised; answers are parsed
by upb and turned into the named tuples and dataclasses of ``_types``. The hot path is a large
read: upb parses 100k key-values in a few milliseconds, and building the ``KeyValue`` tuples
is the rest (one attribute read per field, with the garbage collector paused).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any

from ..._core.errors import ProtocolError
from ..._core.txn import Compare, CompareResult, CompareTarget, Delete, Get, Op, Put, Txn
from ..._core.types import (
    DeleteResult,
    Event,
    EventType,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    Member,
    OpResult,
    PutResult,
    RangeResult,
    ResponseHeader,
    Status,
    TxnResult,
)
from ..._core.util import gc_paused
from ..base import DeleteRangeRequest, PutRequest, RangeRequest
from . import messages as pb

__all__ = [
    "compaction_request",
    "delete_request",
    "delete_result",
    "put_request",
    "put_result",
    "range_request",
    "range_result",
    "txn_request",
    "txn_result",
]

_SORT_ORDERS = {"NONE": 0, "ASCEND": 1, "DESCEND": 2}
_SORT_TARGETS = {"KEY": 0, "VERSION": 1, "CREATE": 2, "MOD": 3, "VALUE": 4}
_COMPARE_RESULTS = {
    CompareResult.EQUAL: 0,
    CompareResult.GREATER: 1,
    CompareResult.LESS: 2,
    CompareResult.NOT_EQUAL: 3,
}
_COMPARE_TARGETS = {
    CompareTarget.VERSION: (0, "version"),
    CompareTarget.CREATE: (1, "create_revision"),
    CompareTarget.MOD: (2, "mod_revision"),
    CompareTarget.VALUE: (3, "value"),
    CompareTarget.LEASE: (4, "lease"),
}
_FILTERS = {"NOPUT": 0, "NODELETE": 1}


# --- requests ------------------------------------------------------------------------------


def _range_message(r: RangeRequest) -> Any:
    return pb.RangeRequest(
        key=r.key,
        range_end=r.range_end or b"",
        limit=r.limit,
        revision=r.revision,
        keys_only=r.keys_only,
        count_only=r.count_only,
        sort_order=_SORT_ORDERS[r.sort_order or "NONE"],
        sort_target=_SORT_TARGETS[r.sort_target or "KEY"],
        serializable=r.serializable,
        min_mod_revision=r.min_mod_revision,
    )


def range_request(r: RangeRequest) -> bytes:
    data: bytes = _range_message(r).SerializeToString()
    return data


def _put_message(r: PutRequest | Put) -> Any:
    return pb.PutRequest(key=r.key, value=r.value, lease=r.lease, prev_kv=r.prev_kv)


def put_request(r: PutRequest) -> bytes:
    data: bytes = _put_message(r).SerializeToString()
    return data


def _delete_message(r: DeleteRangeRequest | Delete) -> Any:
    return pb.DeleteRangeRequest(key=r.key, range_end=r.range_end or b"", prev_kv=r.prev_kv)


def delete_request(r: DeleteRangeRequest) -> bytes:
    data: bytes = _delete_message(r).SerializeToString()
    return data


def _compare_message(compare: Compare) -> Any:
    target, field = _COMPARE_TARGETS[compare.target]
    message = pb.Compare(
        result=_COMPARE_RESULTS[compare.result],
        target=target,
        key=compare.key,
        range_end=compare.range_end or b"",
    )
    # a oneof member is set (and written) even when it is 0: "create_revision == 0" is
    # "the key does not exist", and a missing target_union compares against nothing
    setattr(message, field, compare.operand)
    return message


def _op_message(op: Op) -> Any:
    if isinstance(op, Get):
        return pb.RequestOp(request_range=_range_message(RangeRequest.of(op)))
    if isinstance(op, Put):
        return pb.RequestOp(request_put=_put_message(op))
    if isinstance(op, Delete):
        return pb.RequestOp(request_delete_range=_delete_message(op))
    if isinstance(op, Txn):
        return pb.RequestOp(request_txn=_txn_message(op.compare, op.success, op.failure))
    raise TypeError(f"not a transaction operation: {op!r}")


def _txn_message(compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> Any:
    return pb.TxnRequest(
        compare=[_compare_message(c) for c in compare],
        success=[_op_message(op) for op in success],
        failure=[_op_message(op) for op in failure],
    )


def txn_request(compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> bytes:
    data: bytes = _txn_message(compare, success, failure).SerializeToString()
    return data


def compaction_request(revision: int, *, physical: bool = False) -> bytes:
    data: bytes = pb.CompactionRequest(revision=revision, physical=physical).SerializeToString()
    return data


def watch_create_request(
    watch_id: int,
    key: bytes,
    range_end: bytes | None,
    *,
    start_revision: int,
    prev_kv: bool,
    progress_notify: bool,
    filters: Sequence[str] = (),
) -> bytes:
    """A ``create_request`` with a watch id of our choosing (etcd >= 3.4 keeps it), so that
    creates need not wait for each other's ``created`` answer to learn their ids."""
    create = pb.WatchCreateRequest(
        key=key,
        range_end=range_end or b"",
        start_revision=start_revision,
        prev_kv=prev_kv,
        progress_notify=progress_notify,
        filters=[_FILTERS[f] for f in filters],
        watch_id=watch_id,
    )
    data: bytes = pb.WatchRequest(create_request=create).SerializeToString()
    return data


def watch_cancel_request(watch_id: int) -> bytes:
    data: bytes = pb.WatchRequest(cancel_request={"watch_id": watch_id}).SerializeToString()
    return data


WATCH_PROGRESS_REQUEST: bytes = pb.WatchRequest(progress_request={}).SerializeToString()


def lease_grant_request(ttl: int, lease_id: int = 0) -> bytes:
    data: bytes = pb.LeaseGrantRequest(TTL=ttl, ID=lease_id).SerializeToString()
    return data


def lease_id_request(lease_id: int) -> bytes:
    """The body of LeaseRevoke and LeaseKeepAlive: both are ``int64 ID = 1``."""
    data: bytes = pb.LeaseRevokeRequest(ID=lease_id).SerializeToString()
    return data


def lease_time_to_live_request(lease_id: int, *, keys: bool = False) -> bytes:
    data: bytes = pb.LeaseTimeToLiveRequest(ID=lease_id, keys=keys).SerializeToString()
    return data


def authenticate_request(name: str, password: str) -> bytes:
    data: bytes = pb.AuthenticateRequest(name=name, password=password).SerializeToString()
    return data


EMPTY_REQUEST = b""
"""StatusRequest, LeaseLeasesRequest and a non-linearizable MemberListRequest: no fields."""


# --- answers -------------------------------------------------------------------------------


def _parse(cls: Any, data: bytes | bytearray) -> Any:
    try:
        return cls.FromString(data)
    except Exception as exc:  # upb raises google.protobuf.message.DecodeError
        raise ProtocolError(f"unparsable {cls.DESCRIPTOR.name}: {exc}") from exc


def header(h: Any) -> ResponseHeader:
    return ResponseHeader(h.cluster_id, h.member_id, h.revision, h.raft_term)


def _kv(k: Any) -> KeyValue:
    return KeyValue(k.key, k.value, k.create_revision, k.mod_revision, k.version, k.lease)


_KV_FIELDS = attrgetter(*KeyValue._fields)  # (the proto's KeyValue has these six names)


def _kvs(items: Any) -> list[KeyValue]:
    # the hot path of a large read (100k keys): no Python code runs per key. attrgetter
    # reads the six fields of each upb message into a tuple, and tuple.__new__ makes that
    # a KeyValue, both in C: 20% faster than a comprehension calling KeyValue(...)
    with gc_paused():
        return list(map(tuple.__new__, repeat(KeyValue), map(_KV_FIELDS, items)))


class _KeyValues:
    """The key-values of a parsed range answer, made into ``KeyValue`` objects when first
    read (see ``KeyValueSource``): the paging asks for the next page with the last key
    alone, and a mount's load reads the fields straight into its tree."""

    __slots__ = ("_items", "_size")

    def __init__(self, items: Any, size: int) -> None:
        self._items = items
        self._size = size

    def __len__(self) -> int:
        return len(self._items)

    def decode(self) -> list[KeyValue]:
        return _kvs(self._items)

    def records(self) -> Sequence[Any]:
        records: Sequence[Any] = self._items
        return records

    def size(self) -> int:
        return self._size


def _range_result(r: Any, size: int = 0) -> RangeResult:
    return RangeResult(header(r.header), _KeyValues(r.kvs, size or r.ByteSize()), r.more, r.count)


def _put_result(r: Any) -> PutResult:
    return PutResult(header(r.header), _kv(r.prev_kv) if r.HasField("prev_kv") else None)


def _delete_result(r: Any) -> DeleteResult:
    return DeleteResult(header(r.header), r.deleted, _kvs(r.prev_kvs))


def _txn_result(r: Any) -> TxnResult:
    return TxnResult(header(r.header), r.succeeded, [_op_result(op) for op in r.responses])


def _op_result(op: Any) -> OpResult:
    kind = op.WhichOneof("response")
    if kind == "response_range":
        return _range_result(op.response_range)
    if kind == "response_put":
        return _put_result(op.response_put)
    if kind == "response_delete_range":
        return _delete_result(op.response_delete_range)
    if kind == "response_txn":
        return _txn_result(op.response_txn)
    raise ProtocolError("an operation result of no known kind in a txn answer")


def range_result(data: bytes | bytearray) -> RangeResult:
    return _range_result(_parse(pb.RangeResponse, data), len(data))


def put_result(data: bytes | bytearray) -> PutResult:
    return _put_result(_parse(pb.PutResponse, data))


def delete_result(data: bytes | bytearray) -> DeleteResult:
    return _delete_result(_parse(pb.DeleteRangeResponse, data))


def txn_result(data: bytes | bytearray) -> TxnResult:
    return _txn_result(_parse(pb.TxnResponse, data))


def header_only(data: bytes | bytearray) -> ResponseHeader:
    """The answer to Compact and LeaseRevoke: a header and nothing else."""
    return header(_parse(pb.CompactionResponse, data).header)


def lease_grant(data: bytes | bytearray) -> LeaseGrant:
    r = _parse(pb.LeaseGrantResponse, data)
    if r.error:
        raise ProtocolError(f"lease grant refused: {r.error}")
    return LeaseGrant(r.ID, r.TTL, header(r.header))


def lease_keep_alive(data: bytes | bytearray) -> tuple[int, int]:
    """``(lease id, ttl)``: a TTL of 0 or less means the lease is gone."""
    r = _parse(pb.LeaseKeepAliveResponse, data)
    return r.ID, r.TTL


def lease_info(data: bytes | bytearray) -> LeaseInfo:
    r = _parse(pb.LeaseTimeToLiveResponse, data)
    return LeaseInfo(r.ID, r.TTL, r.grantedTTL, sorted(r.keys))  # etcd lists them at random


def leases(data: bytes | bytearray) -> list[int]:
    return [lease.ID for lease in _parse(pb.LeaseLeasesResponse, data).leases]


def token(data: bytes | bytearray) -> str:
    result: str = _parse(pb.AuthenticateResponse, data).token
    return result


def status(data: bytes | bytearray) -> Status:
    r = _parse(pb.StatusResponse, data)
    return Status(
        header(r.header), r.version, r.dbSize, r.leader, r.raftIndex, r.raftTerm, r.dbSizeInUse
    )


def members(data: bytes | bytearray) -> list[Member]:
    return [
        Member(m.ID, m.name, list(m.peerURLs), list(m.clientURLs), m.isLearner)
        for m in _parse(pb.MemberListResponse, data).members
    ]


_PUT, _DELETE = EventType.PUT, EventType.DELETE
_MANY_EVENTS = 64
"""From this many events on (a catch-up message), the collector is paused while they are
built; for the one event of a live message pausing it costs more than it saves."""


def events(items: Any) -> list[Event]:
    if len(items) >= _MANY_EVENTS:
        with gc_paused():
            return _events(items)
    return _events(items)


def _events(items: Any) -> list[Event]:
    # tuple.__new__ builds the named tuples without their Python-level __new__, as _kvs does
    new = tuple.__new__
    return [
        new(
            Event,
            (
                _DELETE if e.type else _PUT,
                new(KeyValue, _KV_FIELDS(e.kv)),
                new(KeyValue, _KV_FIELDS(e.prev_kv)) if e.HasField("prev_kv") else None,
            ),
        )
        for e in items
    ]


def watch_response(data: bytes | bytearray) -> Any:
    """The parsed WatchResponse message (the watch multiplexer reads its routing fields)."""
    return _parse(pb.WatchResponse, data)
