"""The wire format: etcd's v3 HTTP/JSON gateway, in and out of Python values.

This module is the seam between the client and the wire: it knows the gateway's JSON and
nothing else (no HTTP, no trio). What it relies on, measured on etcd 3.4 and 3.5:

* bytes fields (keys, values, range ends) are standard base64 with padding;
* every int64 in an answer is a JSON string, and proto3 leaves default values out: an
  empty value has no ``"value"``, a failed txn no ``"succeeded"``, a PUT event no
  ``"type"``, watch id 0 no ``"watch_id"``; so every field is read with a default;
* unary errors are ``{"error", "code", "message"}`` (3.4 and 3.5, in either key order) or
  ``{"code", "message", "details"}`` (3.6); errors inside a watch stream are
  ``{"error": {"grpc_code", "http_code", "message", "http_status"}}``.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Sequence
from typing import Any, TypeAlias

from ._errors import (
    AuthenticationError,
    CompactedError,
    EtcdError,
    FutureRevisionError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    TooLargeError,
    UnavailableError,
)
from ._txn import Compare, Delete, Get, Op, Put, Txn
from ._types import (
    DeleteResult,
    Event,
    EventType,
    KeyValue,
    LeaseInfo,
    Member,
    OpResult,
    PutResult,
    RangeResult,
    ResponseHeader,
    Status,
    TxnResult,
)
from ._util import gc_paused

Json: TypeAlias = dict[str, Any]

_a2b = binascii.a2b_base64


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def dumps(body: Json) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# --- requests ------------------------------------------------------------------------------


def range_request(
    key: bytes,
    range_end: bytes | None = None,
    *,
    limit: int = 0,
    revision: int = 0,
    keys_only: bool = False,
    count_only: bool = False,
    sort_order: str | None = None,
    sort_target: str | None = None,
    serializable: bool = False,
    min_mod_revision: int = 0,
) -> Json:
    body: Json = {"key": b64(key)}
    if range_end is not None:
        body["range_end"] = b64(range_end)
    if limit:
        body["limit"] = limit
    if revision:
        body["revision"] = revision
    if keys_only:
        body["keys_only"] = True
    if count_only:
        body["count_only"] = True
    if sort_order:
        body["sort_order"] = sort_order
    if sort_target:
        body["sort_target"] = sort_target
    if serializable:
        body["serializable"] = True
    if min_mod_revision:
        body["min_mod_revision"] = min_mod_revision
    return body


def put_request(key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False) -> Json:
    body: Json = {"key": b64(key), "value": b64(value)}
    if lease:
        body["lease"] = str(lease)
    if prev_kv:
        body["prev_kv"] = True
    return body


def delete_request(key: bytes, range_end: bytes | None = None, *, prev_kv: bool = False) -> Json:
    body: Json = {"key": b64(key)}
    if range_end is not None:
        body["range_end"] = b64(range_end)
    if prev_kv:
        body["prev_kv"] = True
    return body


def compare_request(compare: Compare) -> Json:
    body: Json = {
        "key": b64(compare.key),
        "target": compare.target.value,
        "result": compare.result.value,
    }
    if compare.range_end is not None:
        body["range_end"] = b64(compare.range_end)
    operand = compare.operand
    field = _COMPARE_FIELDS[compare.target.value]
    body[field] = b64(operand) if isinstance(operand, bytes) else str(operand)
    return body


_COMPARE_FIELDS = {
    "VALUE": "value",
    "VERSION": "version",
    "CREATE": "create_revision",
    "MOD": "mod_revision",
    "LEASE": "lease",
}


def op_request(op: Op) -> Json:
    if isinstance(op, Get):
        return {
            "request_range": range_request(
                op.key,
                op.range_end,
                limit=op.limit,
                revision=op.revision,
                keys_only=op.keys_only,
                count_only=op.count_only,
                sort_order=op.sort_order,
                sort_target=op.sort_target,
            )
        }
    if isinstance(op, Put):
        return {"request_put": put_request(op.key, op.value, lease=op.lease, prev_kv=op.prev_kv)}
    if isinstance(op, Delete):
        return {"request_delete_range": delete_request(op.key, op.range_end, prev_kv=op.prev_kv)}
    if isinstance(op, Txn):
        return {"request_txn": txn_request(op.compare, op.success, op.failure)}
    raise TypeError(f"not a transaction operation: {op!r}")


def txn_request(compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> Json:
    body: Json = {}
    if compare:
        body["compare"] = [compare_request(c) for c in compare]
    if success:
        body["success"] = [op_request(op) for op in success]
    if failure:
        body["failure"] = [op_request(op) for op in failure]
    return body


def watch_create_request(
    key: bytes,
    range_end: bytes | None,
    *,
    start_revision: int,
    prev_kv: bool,
    progress_notify: bool,
    filters: Sequence[str] = (),
) -> Json:
    create: Json = {"key": b64(key)}
    if range_end is not None:
        create["range_end"] = b64(range_end)
    if start_revision:
        create["start_revision"] = start_revision
    if prev_kv:
        create["prev_kv"] = True
    if progress_notify:
        create["progress_notify"] = True
    if filters:
        create["filters"] = list(filters)
    return {"create_request": create}


# --- answers -------------------------------------------------------------------------------


def header(data: Json) -> ResponseHeader:
    h = data.get("header")
    if not h:
        return ResponseHeader()
    return ResponseHeader(
        int(h.get("cluster_id", 0)),
        int(h.get("member_id", 0)),
        int(h.get("revision", 0)),
        int(h.get("raft_term", 0)),
    )


def kv(d: Json) -> KeyValue:
    return KeyValue(
        _a2b(d["key"]),
        _a2b(d["value"]) if "value" in d else b"",
        int(d.get("create_revision", 0)),
        int(d.get("mod_revision", 0)),
        int(d.get("version", 0)),
        int(d.get("lease", 0)),
    )


def kvs(items: list[Json] | None) -> list[KeyValue]:
    if not items:
        return []
    # the hot path of a large read: local names and no per-item function call
    a2b = _a2b
    with gc_paused():
        return [
            KeyValue(
                a2b(d["key"]),
                a2b(d["value"]) if "value" in d else b"",
                int(d.get("create_revision", 0)),
                int(d.get("mod_revision", 0)),
                int(d.get("version", 0)),
                int(d.get("lease", 0)),
            )
            for d in items
        ]


def range_result(data: Json) -> RangeResult:
    return RangeResult(
        header(data), kvs(data.get("kvs")), bool(data.get("more", False)), int(data.get("count", 0))
    )


def put_result(data: Json) -> PutResult:
    prev = data.get("prev_kv")
    return PutResult(header(data), kv(prev) if prev else None)


def delete_result(data: Json) -> DeleteResult:
    return DeleteResult(header(data), int(data.get("deleted", 0)), kvs(data.get("prev_kvs")))


def txn_result(data: Json) -> TxnResult:
    with gc_paused():
        responses = [_op_result(r) for r in data.get("responses", ())]
    return TxnResult(header(data), bool(data.get("succeeded", False)), responses)


def _op_result(data: Json) -> OpResult:
    if "response_range" in data:
        return range_result(data["response_range"])
    if "response_put" in data:
        return put_result(data["response_put"])
    if "response_delete_range" in data:
        return delete_result(data["response_delete_range"])
    if "response_txn" in data:
        return txn_result(data["response_txn"])
    raise ProtocolError(f"unknown operation result in a txn answer: {sorted(data)}")


def events(items: list[Json]) -> list[Event]:
    delete, put = EventType.DELETE, EventType.PUT
    return [
        Event(
            delete if e.get("type") == "DELETE" else put,
            new,
            kv(prev) if (prev := e.get("prev_kv")) else None,
        )
        for e, new in zip(items, kvs([e["kv"] for e in items]), strict=True)
    ]


def lease_info(data: Json) -> LeaseInfo:
    return LeaseInfo(
        int(data.get("ID", 0)),
        int(data.get("TTL", 0)),
        int(data.get("grantedTTL", 0)),
        sorted(_a2b(k) for k in data.get("keys", ())),  # etcd lists them in random order
    )


def status(data: Json) -> Status:
    return Status(
        header(data),
        str(data.get("version", "")),
        int(data.get("dbSize", 0)),
        int(data.get("leader", 0)),
        int(data.get("raftIndex", 0)),
        int(data.get("raftTerm", 0)),
    )


def members(data: Json) -> list[Member]:
    return [
        Member(
            int(m.get("ID", 0)),
            str(m.get("name", "")),
            list(m.get("peerURLs", ())),
            list(m.get("clientURLs", ())),
            bool(m.get("isLearner", False)),
        )
        for m in data.get("members", ())
    ]


# --- errors --------------------------------------------------------------------------------

# gRPC status codes the gateway passes on
CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 1, 2, 3, 4, 5
PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, OUT_OF_RANGE = 7, 8, 9, 11
UNAVAILABLE, UNAUTHENTICATED = 14, 16


def error_fields(status_code: int, content: bytes) -> tuple[int | None, str]:
    """The gRPC code and message of an error answer, in any of the gateway's dialects."""
    try:
        data = json.loads(content)
    except ValueError:
        return None, content.decode(errors="replace").strip() or f"HTTP {status_code}"
    if not isinstance(data, dict):
        return None, str(data)
    inner = data.get("error")
    if isinstance(inner, dict):  # the in-stream dialect
        return _int_or_none(inner.get("grpc_code")), str(inner.get("message", ""))
    message = data.get("message", inner if isinstance(inner, str) else "")
    return _int_or_none(data.get("code")), str(message)


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


_GRPC_CODES = {
    "Canceled": CANCELLED,
    "Unknown": UNKNOWN,
    "InvalidArgument": INVALID_ARGUMENT,
    "DeadlineExceeded": DEADLINE_EXCEEDED,
    "NotFound": NOT_FOUND,
    "PermissionDenied": PERMISSION_DENIED,
    "ResourceExhausted": RESOURCE_EXHAUSTED,
    "FailedPrecondition": FAILED_PRECONDITION,
    "OutOfRange": OUT_OF_RANGE,
    "Unavailable": UNAVAILABLE,
    "Unauthenticated": UNAUTHENTICATED,
}


def cancel_reason_fields(reason: str) -> tuple[int | None, str]:
    """Code and message of a watch's ``cancel_reason``, which reads
    ``rpc error: code = PermissionDenied desc = etcdserver: permission denied``."""
    code: int | None = None
    message = reason
    if "code = " in reason:
        name = reason.split("code = ", 1)[1].split(" ", 1)[0]
        code = _GRPC_CODES.get(name)
    if "desc = " in reason:
        message = reason.split("desc = ", 1)[1]
    return code, message


def error_for(
    code: int | None,
    message: str,
    *,
    request: str,
    endpoint: str | None = None,
    http_status: int | None = None,
) -> EtcdError:
    """The most specific error class for what the server said."""
    cls: type[EtcdError]
    text = message.lower()
    if code == UNAUTHENTICATED or "authentication failed" in text or "user name is empty" in text:
        cls = AuthenticationError
    elif code == PERMISSION_DENIED:
        cls = PermissionDeniedError
    elif "compacted" in text:
        cls = CompactedError
    elif "future revision" in text:
        cls = FutureRevisionError
    elif (
        "too many operations" in text or "request is too large" in text or "larger than max" in text
    ):
        cls = TooLargeError
    elif code == NOT_FOUND:
        cls = NotFoundError
    elif code in (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE) or (
        http_status is not None and 400 <= http_status < 500 and code is None
    ):
        cls = InvalidRequestError
    else:
        cls = UnavailableError
    return cls(
        message or "the server gave no reason",
        request=request,
        endpoint=endpoint,
        code=code,
        server_message=message,
        http_status=http_status,
    )


def stream_result(data: Json, what: str, endpoint: str | None = None) -> Json:
    """The ``result`` of one message of a streaming endpoint (watch, lease keep-alive); an
    in-stream ``{"error": ...}`` message is raised as the matching error."""
    if "error" in data:
        code, message = error_fields(200, dumps(data))
        raise error_for(code, message, request=what, endpoint=endpoint)
    result = data.get("result")
    if not isinstance(result, dict):
        raise ProtocolError(f"a stream message without a result: {data!r}"[:300], request=what)
    return result
