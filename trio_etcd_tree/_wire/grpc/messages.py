"""etcd's protobuf messages, built at import time from descriptors written here in Python.

No ``.proto`` file is compiled and no ``_pb2`` module is generated: the messages the library
uses are declared below (names and field numbers from etcd's ``api/etcdserverpb/rpc.proto``
and ``api/mvccpb/kv.proto``), turned into a ``FileDescriptorProto``, added to a private
``DescriptorPool`` and made into classes with ``message_factory.GetMessageClass``. So the
mismatch between generated code and the protobuf runtime that broke python-etcd3 for years
(its issues #1957, #2000, #2242: protobuf 4 refused its old generated modules) cannot happen
here: there is no generated code to go stale.

The classes must run on protobuf's C runtime (upb). Measured on 100k key-values (keys 34-46
bytes, 40-byte values, 8.6 MB): upb parses the whole range response in about 10 ms, and the
time left is building our ``KeyValue`` tuples; the pure-Python runtime is 5-7x slower than a
hand codec. So the pure-Python runtime is refused at import with a clear error
(:class:`ImportError`), rather than silently making every read several times slower.

Two proto3 traps this layer keeps away from callers: a ``oneof`` member is written even when
it is 0 (``Compare.create_revision = 0`` is "the key does not exist"; upb tracks presence for
oneof members, so assigning 0 sets it), and negative int64 (a lease TTL of -1) are 10-byte
varints (upb's encoding).
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal import api_implementation

__all__ = ["PROTOBUF_BACKEND", "require_upb"]

PROTOBUF_BACKEND: Final = api_implementation.Type()


def require_upb(backend: str) -> None:
    """Refuse protobuf's pure-Python runtime: it would make every read several times slower.

    Raises:
        ImportError: ``backend`` is not ``"upb"``.
    """
    if backend != "upb":
        raise ImportError(
            f"trio-etcd-tree's gRPC transport needs protobuf's C runtime (upb), but protobuf "
            f"runs its {backend!r} implementation (PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION set, "
            f"or no binary wheel for this platform); install a protobuf wheel with upb, or "
            f"use open_client(..., transport='gateway')"
        )


require_upb(PROTOBUF_BACKEND)

_F = descriptor_pb2.FieldDescriptorProto
INT64, UINT64, BOOL, BYTES, STRING = (
    _F.TYPE_INT64,
    _F.TYPE_UINT64,
    _F.TYPE_BOOL,
    _F.TYPE_BYTES,
    _F.TYPE_STRING,
)
UINT32, ENUM, MESSAGE = _F.TYPE_UINT32, _F.TYPE_ENUM, _F.TYPE_MESSAGE
REPEATED = "repeated"

# (name, number, type, [".package.Type" for messages and enums], [REPEATED or "oneof:NAME"])
_FieldSpec = tuple[Any, ...]

_KV_PROTO: Final[dict[str, list[_FieldSpec]]] = {
    "KeyValue": [
        ("key", 1, BYTES),
        ("create_revision", 2, INT64),
        ("mod_revision", 3, INT64),
        ("version", 4, INT64),
        ("value", 5, BYTES),
        ("lease", 6, INT64),
    ],
    "Event": [
        ("type", 1, INT64),  # an enum on the wire is a varint: PUT = 0, DELETE = 1
        ("kv", 2, MESSAGE, ".mvccpb.KeyValue"),
        ("prev_kv", 3, MESSAGE, ".mvccpb.KeyValue"),
    ],
}

_HEADER = ("header", 1, MESSAGE, ".etcdserverpb.ResponseHeader")
_KV = ".mvccpb.KeyValue"

_RPC_PROTO: Final[dict[str, list[_FieldSpec]]] = {
    "ResponseHeader": [
        ("cluster_id", 1, UINT64),
        ("member_id", 2, UINT64),
        ("revision", 3, INT64),
        ("raft_term", 4, UINT64),
    ],
    "RangeRequest": [
        ("key", 1, BYTES),
        ("range_end", 2, BYTES),
        ("limit", 3, INT64),
        ("revision", 4, INT64),
        ("sort_order", 5, INT64),  # enums as varints: NONE 0, ASCEND 1, DESCEND 2
        ("sort_target", 6, INT64),  # KEY 0, VERSION 1, CREATE 2, MOD 3, VALUE 4
        ("serializable", 7, BOOL),
        ("keys_only", 8, BOOL),
        ("count_only", 9, BOOL),
        ("min_mod_revision", 10, INT64),
        ("max_mod_revision", 11, INT64),
        ("min_create_revision", 12, INT64),
        ("max_create_revision", 13, INT64),
    ],
    "RangeResponse": [
        _HEADER,
        ("kvs", 2, MESSAGE, _KV, REPEATED),
        ("more", 3, BOOL),
        ("count", 4, INT64),
    ],
    "PutRequest": [
        ("key", 1, BYTES),
        ("value", 2, BYTES),
        ("lease", 3, INT64),
        ("prev_kv", 4, BOOL),
        ("ignore_value", 5, BOOL),
        ("ignore_lease", 6, BOOL),
    ],
    "PutResponse": [_HEADER, ("prev_kv", 2, MESSAGE, _KV)],
    "DeleteRangeRequest": [("key", 1, BYTES), ("range_end", 2, BYTES), ("prev_kv", 3, BOOL)],
    "DeleteRangeResponse": [
        _HEADER,
        ("deleted", 2, INT64),
        ("prev_kvs", 3, MESSAGE, _KV, REPEATED),
    ],
    "RequestOp": [
        ("request_range", 1, MESSAGE, ".etcdserverpb.RangeRequest", "oneof:request"),
        ("request_put", 2, MESSAGE, ".etcdserverpb.PutRequest", "oneof:request"),
        ("request_delete_range", 3, MESSAGE, ".etcdserverpb.DeleteRangeRequest", "oneof:request"),
        ("request_txn", 4, MESSAGE, ".etcdserverpb.TxnRequest", "oneof:request"),
    ],
    "ResponseOp": [
        ("response_range", 1, MESSAGE, ".etcdserverpb.RangeResponse", "oneof:response"),
        ("response_put", 2, MESSAGE, ".etcdserverpb.PutResponse", "oneof:response"),
        (
            "response_delete_range",
            3,
            MESSAGE,
            ".etcdserverpb.DeleteRangeResponse",
            "oneof:response",
        ),
        ("response_txn", 4, MESSAGE, ".etcdserverpb.TxnResponse", "oneof:response"),
    ],
    "Compare": [
        ("result", 1, INT64),  # EQUAL 0, GREATER 1, LESS 2, NOT_EQUAL 3
        ("target", 2, INT64),  # VERSION 0, CREATE 1, MOD 2, VALUE 3, LEASE 4
        ("key", 3, BYTES),
        ("version", 4, INT64, None, "oneof:target_union"),
        ("create_revision", 5, INT64, None, "oneof:target_union"),
        ("mod_revision", 6, INT64, None, "oneof:target_union"),
        ("value", 7, BYTES, None, "oneof:target_union"),
        ("lease", 8, INT64, None, "oneof:target_union"),
        ("range_end", 64, BYTES),
    ],
    "TxnRequest": [
        ("compare", 1, MESSAGE, ".etcdserverpb.Compare", REPEATED),
        ("success", 2, MESSAGE, ".etcdserverpb.RequestOp", REPEATED),
        ("failure", 3, MESSAGE, ".etcdserverpb.RequestOp", REPEATED),
    ],
    "TxnResponse": [
        _HEADER,
        ("succeeded", 2, BOOL),
        ("responses", 3, MESSAGE, ".etcdserverpb.ResponseOp", REPEATED),
    ],
    "CompactionRequest": [("revision", 1, INT64), ("physical", 2, BOOL)],
    "CompactionResponse": [_HEADER],
    "WatchRequest": [
        ("create_request", 1, MESSAGE, ".etcdserverpb.WatchCreateRequest", "oneof:request_union"),
        ("cancel_request", 2, MESSAGE, ".etcdserverpb.WatchCancelRequest", "oneof:request_union"),
        (
            "progress_request",
            3,
            MESSAGE,
            ".etcdserverpb.WatchProgressRequest",
            "oneof:request_union",
        ),
    ],
    "WatchCreateRequest": [
        ("key", 1, BYTES),
        ("range_end", 2, BYTES),
        ("start_revision", 3, INT64),
        ("progress_notify", 4, BOOL),
        ("filters", 5, INT64, None, REPEATED),  # NOPUT 0, NODELETE 1
        ("prev_kv", 6, BOOL),
        ("watch_id", 7, INT64),
        ("fragment", 8, BOOL),
    ],
    "WatchCancelRequest": [("watch_id", 1, INT64)],
    "WatchProgressRequest": [],
    "WatchResponse": [
        _HEADER,
        ("watch_id", 2, INT64),
        ("created", 3, BOOL),
        ("canceled", 4, BOOL),
        ("compact_revision", 5, INT64),
        ("cancel_reason", 6, STRING),
        ("fragment", 7, BOOL),
        ("events", 11, MESSAGE, ".mvccpb.Event", REPEATED),
    ],
    "LeaseGrantRequest": [("TTL", 1, INT64), ("ID", 2, INT64)],
    "LeaseGrantResponse": [_HEADER, ("ID", 2, INT64), ("TTL", 3, INT64), ("error", 4, STRING)],
    "LeaseRevokeRequest": [("ID", 1, INT64)],
    "LeaseRevokeResponse": [_HEADER],
    "LeaseKeepAliveRequest": [("ID", 1, INT64)],
    "LeaseKeepAliveResponse": [_HEADER, ("ID", 2, INT64), ("TTL", 3, INT64)],
    "LeaseTimeToLiveRequest": [("ID", 1, INT64), ("keys", 2, BOOL)],
    "LeaseTimeToLiveResponse": [
        _HEADER,
        ("ID", 2, INT64),
        ("TTL", 3, INT64),
        ("grantedTTL", 4, INT64),
        ("keys", 5, BYTES, None, REPEATED),
    ],
    "LeaseLeasesRequest": [],
    "LeaseStatus": [("ID", 1, INT64)],
    "LeaseLeasesResponse": [_HEADER, ("leases", 2, MESSAGE, ".etcdserverpb.LeaseStatus", REPEATED)],
    "AuthenticateRequest": [("name", 1, STRING), ("password", 2, STRING)],
    "AuthenticateResponse": [_HEADER, ("token", 2, STRING)],
    "StatusRequest": [],
    "StatusResponse": [
        _HEADER,
        ("version", 2, STRING),
        ("dbSize", 3, INT64),
        ("leader", 4, UINT64),
        ("raftIndex", 5, UINT64),
        ("raftTerm", 6, UINT64),
        ("dbSizeInUse", 9, INT64),
    ],
    "MemberListRequest": [("linearizable", 1, BOOL)],
    "Member": [
        ("ID", 1, UINT64),
        ("name", 2, STRING),
        ("peerURLs", 3, STRING, None, REPEATED),
        ("clientURLs", 4, STRING, None, REPEATED),
        ("isLearner", 5, BOOL),
    ],
    "MemberListResponse": [_HEADER, ("members", 2, MESSAGE, ".etcdserverpb.Member", REPEATED)],
}


def _file(
    name: str, package: str, messages: dict[str, list[_FieldSpec]], deps: list[str]
) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name=name, package=package, syntax="proto3", dependency=deps
    )
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        oneofs: dict[str, int] = {}
        for spec in fields:
            field_name, number, kind = spec[:3]
            type_name = spec[3] if len(spec) > 3 else None
            extra = spec[4] if len(spec) > 4 else None
            field = message.field.add(
                name=field_name, number=number, type=kind, label=_F.LABEL_OPTIONAL
            )
            field.json_name = field_name
            if type_name:
                field.type_name = type_name
            if extra == REPEATED:
                field.label = _F.LABEL_REPEATED
            elif extra:
                oneof = extra.removeprefix("oneof:")
                if oneof not in oneofs:
                    oneofs[oneof] = len(message.oneof_decl)
                    message.oneof_decl.add(name=oneof)
                field.oneof_index = oneofs[oneof]
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file("trio_etcd_tree/mvccpb/kv.proto", "mvccpb", _KV_PROTO, []))
_POOL.Add(
    _file(
        "trio_etcd_tree/etcdserverpb/rpc.proto",
        "etcdserverpb",
        _RPC_PROTO,
        ["trio_etcd_tree/mvccpb/kv.proto"],
    )
)


def _message(full_name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


# The classes are dynamic: mypy sees them as Any, which is what they are to it.
KeyValue: Any = _message("mvccpb.KeyValue")
Event: Any = _message("mvccpb.Event")
ResponseHeader: Any = _message("etcdserverpb.ResponseHeader")
RangeRequest: Any = _message("etcdserverpb.RangeRequest")
RangeResponse: Any = _message("etcdserverpb.RangeResponse")
PutRequest: Any = _message("etcdserverpb.PutRequest")
PutResponse: Any = _message("etcdserverpb.PutResponse")
DeleteRangeRequest: Any = _message("etcdserverpb.DeleteRangeRequest")
DeleteRangeResponse: Any = _message("etcdserverpb.DeleteRangeResponse")
RequestOp: Any = _message("etcdserverpb.RequestOp")
ResponseOp: Any = _message("etcdserverpb.ResponseOp")
Compare: Any = _message("etcdserverpb.Compare")
TxnRequest: Any = _message("etcdserverpb.TxnRequest")
TxnResponse: Any = _message("etcdserverpb.TxnResponse")
CompactionRequest: Any = _message("etcdserverpb.CompactionRequest")
CompactionResponse: Any = _message("etcdserverpb.CompactionResponse")
WatchRequest: Any = _message("etcdserverpb.WatchRequest")
WatchCreateRequest: Any = _message("etcdserverpb.WatchCreateRequest")
WatchResponse: Any = _message("etcdserverpb.WatchResponse")
LeaseGrantRequest: Any = _message("etcdserverpb.LeaseGrantRequest")
LeaseGrantResponse: Any = _message("etcdserverpb.LeaseGrantResponse")
LeaseRevokeRequest: Any = _message("etcdserverpb.LeaseRevokeRequest")
LeaseRevokeResponse: Any = _message("etcdserverpb.LeaseRevokeResponse")
LeaseKeepAliveRequest: Any = _message("etcdserverpb.LeaseKeepAliveRequest")
LeaseKeepAliveResponse: Any = _message("etcdserverpb.LeaseKeepAliveResponse")
LeaseTimeToLiveRequest: Any = _message("etcdserverpb.LeaseTimeToLiveRequest")
LeaseTimeToLiveResponse: Any = _message("etcdserverpb.LeaseTimeToLiveResponse")
LeaseLeasesRequest: Any = _message("etcdserverpb.LeaseLeasesRequest")
LeaseLeasesResponse: Any = _message("etcdserverpb.LeaseLeasesResponse")
AuthenticateRequest: Any = _message("etcdserverpb.AuthenticateRequest")
AuthenticateResponse: Any = _message("etcdserverpb.AuthenticateResponse")
StatusRequest: Any = _message("etcdserverpb.StatusRequest")
StatusResponse: Any = _message("etcdserverpb.StatusResponse")
MemberListRequest: Any = _message("etcdserverpb.MemberListRequest")
MemberListResponse: Any = _message("etcdserverpb.MemberListResponse")
