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
from collections.abc import Callable
from typing import Any, TypeAlias

from ..._core.errors import ProtocolError
from ..._core.txn import Compare, Delete, Get, Op, Put, Txn
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
from ..base import (
    AuthenticateRequest,
    CompactRequest,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseLeasesRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    MemberListRequest,
    PutRequest,
    RangeRequest,
    Request,
    StatusRequest,
    TxnRequest,
    WatchCreateRequest,
    WatchMessage,
)
from ..errors import cancel_reason_fields, error_for

Json: TypeAlias = dict[str, Any]

_a2b = binascii.a2b_base64


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def dumps(body: Json) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# --- requests ------------------------------------------------------------------------------


def range_request(r: RangeRequest) -> Json:
    body: Json = {"key": b64(r.key)}
    if r.range_end is not None:
        body["range_end"] = b64(r.range_end)
    if r.limit:
        body["limit"] = r.limit
    if r.revision:
        body["revision"] = r.revision
    if r.keys_only:
        body["keys_only"] = True
    if r.count_only:
        body["count_only"] = True
    if r.sort_order:
        body["sort_order"] = r.sort_order
    if r.sort_target:
        body["sort_target"] = r.sort_target
    if r.serializable:
        body["serializable"] = True
    if r.min_mod_revision:
        body["min_mod_revision"] = r.min_mod_revision
    return body


def put_request(r: PutRequest | Put) -> Json:
    body: Json = {"key": b64(r.key), "value": b64(r.value)}
    if r.lease:
        body["lease"] = str(r.lease)
    if r.prev_kv:
        body["prev_kv"] = True
    return body


def delete_request(r: DeleteRangeRequest | Delete) -> Json:
    body: Json = {"key": b64(r.key)}
    if r.range_end is not None:
        body["range_end"] = b64(r.range_end)
    if r.prev_kv:
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
        return {"request_range": range_request(RangeRequest.of(op))}
    if isinstance(op, Put):
        return {"request_put": put_request(op)}
    if isinstance(op, Delete):
        return {"request_delete_range": delete_request(op)}
    if isinstance(op, Txn):
        return {"request_txn": txn_request(TxnRequest(op.compare, op.success, op.failure))}
    raise TypeError(f"not a transaction operation: {op!r}")


def txn_request(r: TxnRequest) -> Json:
    body: Json = {}
    if r.compare:
        body["compare"] = [compare_request(c) for c in r.compare]
    if r.success:
        body["success"] = [op_request(op) for op in r.success]
    if r.failure:
        body["failure"] = [op_request(op) for op in r.failure]
    return body


def watch_create_request(c: WatchCreateRequest) -> Json:
    create: Json = {"key": b64(c.key)}
    if c.range_end is not None:
        create["range_end"] = b64(c.range_end)
    if c.start_revision:
        create["start_revision"] = c.start_revision
    if c.prev_kv:
        create["prev_kv"] = True
    if c.progress_notify:
        create["progress_notify"] = True
    if c.filters:
        create["filters"] = list(c.filters)
    return {"create_request": create}


def _compact_request(r: CompactRequest) -> Json:
    body: Json = {"revision": r.revision}
    if r.physical:
        body["physical"] = True
    return body


def _grant_request(r: LeaseGrantRequest) -> Json:
    body: Json = {"TTL": r.ttl}
    if r.id:
        body["ID"] = str(r.id)
    return body


def _ttl_request(r: LeaseTimeToLiveRequest) -> Json:
    body: Json = {"ID": str(r.id)}
    if r.keys:
        body["keys"] = True
    return body


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
        int(data.get("dbSizeInUse", 0)),
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


def watch_message(result: Json, what: str, endpoint: str) -> WatchMessage:
    """One watch message (the ``result`` of a line of the watch stream)."""
    canceled = bool(result.get("canceled"))
    compact_revision = int(result.get("compact_revision", 0))
    error = None
    if canceled and not compact_revision:
        code, message = cancel_reason_fields(str(result.get("cancel_reason", "")))
        error = error_for(
            code, message or "the server canceled the watch", request=what, endpoint=endpoint
        )
    items = result.get("events")
    return WatchMessage(
        header(result),
        events(items) if items else [],
        created=bool(result.get("created")),
        canceled=canceled,
        compact_revision=compact_revision,
        error=error,
    )


# --- the calls: path, request body, answer ------------------------------------------------


def _empty(_: object) -> Json:
    return {}


def _leases(data: Json) -> list[int]:
    return [int(item["ID"]) for item in data.get("leases", ())]


def _keep_alive(data: Json) -> int:
    # a streaming endpoint: one {"result": ...} (or in-stream {"error": ...}) per request
    return int(stream_result(data, "keep lease alive").get("TTL", 0))


CALLS: dict[type[Request[Any]], tuple[str, Callable[[Any], Json], Callable[[Json], Any]]] = {
    RangeRequest: ("/v3/kv/range", range_request, range_result),
    PutRequest: ("/v3/kv/put", put_request, put_result),
    DeleteRangeRequest: ("/v3/kv/deleterange", delete_request, delete_result),
    TxnRequest: ("/v3/kv/txn", txn_request, txn_result),
    CompactRequest: ("/v3/kv/compaction", _compact_request, header),
    LeaseGrantRequest: (
        "/v3/lease/grant",
        _grant_request,
        lambda d: LeaseGrant(int(d["ID"]), int(d.get("TTL", 0)), header(d)),
    ),
    LeaseRevokeRequest: ("/v3/lease/revoke", lambda r: {"ID": str(r.id)}, header),
    LeaseKeepAliveRequest: ("/v3/lease/keepalive", lambda r: {"ID": str(r.id)}, _keep_alive),
    LeaseTimeToLiveRequest: ("/v3/lease/timetolive", _ttl_request, lease_info),
    LeaseLeasesRequest: ("/v3/lease/leases", _empty, _leases),
    AuthenticateRequest: (
        "/v3/auth/authenticate",
        lambda r: {"name": r.name, "password": r.password},
        lambda d: str(d["token"]),
    ),
    StatusRequest: ("/v3/maintenance/status", _empty, status),
    MemberListRequest: ("/v3/cluster/member/list", _empty, members),
}
"""For each request type: the gateway path, the body builder, the answer parser."""
