"""The gRPC dialect of the fake: etcd's methods, and their protobuf messages turned into the
proto3 JSON objects the services take and back.

The services (:mod:`.kv`, :mod:`.leases`, :mod:`.watch`, ...) are written once, against the
gateway's JSON; the gRPC front converts each request message to the same object the gateway
would have parsed (bytes as base64, enums and int64 as numbers) and each answer back to its
protobuf message, with the message classes of the client's own transport
(:mod:`trio_etcd_tree._wire.grpc.messages`). A request over the size limits is refused as
grpc-go and etcd refuse it.
"""

from __future__ import annotations

import base64
from collections.abc import MutableSequence
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.descriptor import FieldDescriptor

from ..._wire.grpc import messages as pb
from .gateway import ERR_TOO_LARGE, GRPC_OVERHEAD, Json, b64
from .store import FakeError


@dataclass(frozen=True)
class GrpcMethod:
    """One of etcd's gRPC methods, and the gateway path it shares its service and faults
    with (``fail_next("/v3/kv/put", ...)`` fails the next put on either front)."""

    path: str
    request: Any
    response: Any
    streaming: bool = False


METHODS: Final = {
    "/etcdserverpb.KV/Range": GrpcMethod("/v3/kv/range", pb.RangeRequest, pb.RangeResponse),
    "/etcdserverpb.KV/Put": GrpcMethod("/v3/kv/put", pb.PutRequest, pb.PutResponse),
    "/etcdserverpb.KV/DeleteRange": GrpcMethod(
        "/v3/kv/deleterange", pb.DeleteRangeRequest, pb.DeleteRangeResponse
    ),
    "/etcdserverpb.KV/Txn": GrpcMethod("/v3/kv/txn", pb.TxnRequest, pb.TxnResponse),
    "/etcdserverpb.KV/Compact": GrpcMethod(
        "/v3/kv/compaction", pb.CompactionRequest, pb.CompactionResponse
    ),
    "/etcdserverpb.Lease/LeaseGrant": GrpcMethod(
        "/v3/lease/grant", pb.LeaseGrantRequest, pb.LeaseGrantResponse
    ),
    "/etcdserverpb.Lease/LeaseRevoke": GrpcMethod(
        "/v3/lease/revoke", pb.LeaseRevokeRequest, pb.LeaseRevokeResponse
    ),
    "/etcdserverpb.Lease/LeaseTimeToLive": GrpcMethod(
        "/v3/lease/timetolive", pb.LeaseTimeToLiveRequest, pb.LeaseTimeToLiveResponse
    ),
    "/etcdserverpb.Lease/LeaseLeases": GrpcMethod(
        "/v3/lease/leases", pb.LeaseLeasesRequest, pb.LeaseLeasesResponse
    ),
    "/etcdserverpb.Lease/LeaseKeepAlive": GrpcMethod(
        "/v3/lease/keepalive", pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse, True
    ),
    "/etcdserverpb.Watch/Watch": GrpcMethod("/v3/watch", pb.WatchRequest, pb.WatchResponse, True),
    "/etcdserverpb.Auth/Authenticate": GrpcMethod(
        "/v3/auth/authenticate", pb.AuthenticateRequest, pb.AuthenticateResponse
    ),
    "/etcdserverpb.Maintenance/Status": GrpcMethod(
        "/v3/maintenance/status", pb.StatusRequest, pb.StatusResponse
    ),
    "/etcdserverpb.Cluster/MemberList": GrpcMethod(
        "/v3/cluster/member/list", pb.MemberListRequest, pb.MemberListResponse
    ),
}

_UNDECLARED: Final = frozenset({"raftAppliedIndex"})
"""Answer fields etcd sends that the client's messages do not declare (left out: a client
skips unknown fields)."""
_EVENT_TYPES: Final = {"PUT": 0, "DELETE": 1}
_INTEGERS: Final = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_ENUM,
    }
)


def method_of(grpc_path: str) -> GrpcMethod:
    """The method of a request's ``:path``, refused with grpc-go's UNIMPLEMENTED."""
    method = METHODS.get(grpc_path)
    if method is None:
        service, _, name = grpc_path.lstrip("/").rpartition("/")
        known = {p.rpartition("/")[0].lstrip("/") for p in METHODS}
        if service not in known:
            raise FakeError(12, f"unknown service {service}")
        raise FakeError(12, f"unknown method {name} for service {service}")
    return method


def request_json(method: GrpcMethod, data: bytes, max_request_bytes: int) -> Json:
    """A request message as the JSON object the gateway would have parsed.

    Raises:
        FakeError: over the size limits (grpc-go's RESOURCE_EXHAUSTED above the limit plus
            gRPC's overhead, etcd's "request is too large" above the limit), or not a
            message of the method.
    """
    limit = max_request_bytes + GRPC_OVERHEAD
    if len(data) > limit:
        raise FakeError(8, f"grpc: received message larger than max ({len(data)} vs. {limit})")
    if len(data) > max_request_bytes and not method.streaming:
        raise FakeError(3, ERR_TOO_LARGE)
    try:
        message = method.request.FromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise FakeError(13, f"grpc: error unmarshalling request: {exc}") from None
    return _to_json(message)


def _to_json(message: Any) -> Json:
    # (a repeated field's value is a sequence: protobuf 4 has no ``is_repeated``, 7 no
    # ``label``)
    return {
        field.name: [_value_json(field, item) for item in value]
        if isinstance(value, MutableSequence)
        else _value_json(field, value)
        for field, value in message.ListFields()
    }


def _value_json(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _to_json(value)
    return b64(value) if field.type == FieldDescriptor.TYPE_BYTES else value


def answer_bytes(method: GrpcMethod, answer: Json) -> bytes:
    """A service's JSON answer as the method's serialised response message."""
    message = method.response()
    _fill(message, answer)
    return message.SerializeToString()  # type: ignore[no-any-return]


def _fill(message: Any, obj: Json) -> None:
    fields = message.DESCRIPTOR.fields_by_name
    for name, value in obj.items():
        if name in _UNDECLARED:
            continue
        field = fields[name]
        repeated = isinstance(value, list)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if repeated:
                for item in value:
                    _fill(getattr(message, name).add(), item)
            else:
                sub = getattr(message, name)
                sub.SetInParent()
                _fill(sub, value)
        elif repeated:
            getattr(message, name).extend(_scalar(field, item) for item in value)
        else:
            setattr(message, name, _scalar(field, value))


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64decode(value)
    if field.type in _INTEGERS:
        return int(_EVENT_TYPES.get(value, value))
    return value


def frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\0" + len(message).to_bytes(4, "big") + message


def grpc_message(text: str) -> bytes:
    """``grpc-message``: percent-encoded as grpc-go does (bytes outside printable ASCII,
    and ``%``)."""
    out = bytearray()
    for byte in text.encode():
        if 0x20 <= byte <= 0x7E and byte != ord("%"):
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)
