"""The gateway's dialect: requests read and answers written as etcd's HTTP/JSON gateway does.

Requests are proto3 JSON (proto or lowerCamel field names, int64 as numbers or strings, bytes as
standard base64); errors carry Go's own texts, byte offsets included.  Answers leave defaults
out and write int64 as strings.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx

from .store import Event, FakeError, KeyValue

Json: TypeAlias = dict[str, Any]

HTTP_STATUS = {3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 11: 400, 14: 503, 16: 401}
"""HTTP status for a gRPC code, as the gateway maps them (anything else: 500)."""

GRPC_OVERHEAD = 512 * 1024
ERR_TOO_LARGE = "etcdserver: request is too large"
BYTES_FIELDS = frozenset({"key", "value", "range_end", "rangeEnd"})
_RAW_MAP = "map[string]json.RawMessage"


@dataclass
class Ctx:
    """What a handler knows about its request."""

    member: int
    token: str | None = None
    """The auth token the request carries (the gateway's ``Authorization`` header, gRPC's
    ``token`` metadata)."""

    @classmethod
    def of_gateway(cls, member: int, headers: httpx.Headers) -> Ctx:
        token = headers.get("authorization") or headers.get("grpc-metadata-authorization")
        return cls(member, token)


# ---- JSON in ---------------------------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _go_b64decode(text: str) -> bytes:
    """Decode standard padded base64 with Go's error message and byte offset."""
    alphabet = frozenset(string.ascii_letters + string.digits + "+/")

    def fail(at: int) -> FakeError:
        return FakeError(3, f"illegal base64 data at input byte {at}")

    def skip_newlines(i: int) -> int:
        while i < len(text) and text[i] in "\r\n":
            i += 1
        return i

    si = j = 0
    while True:
        si = skip_newlines(si)
        if si == len(text):
            if j:
                raise fail(si - j)
            break
        ch = text[si]
        si += 1
        if ch in alphabet:
            j = (j + 1) % 4
            continue
        if ch != "=" or j < 2:
            raise fail(si - 1)
        if j == 2:
            si = skip_newlines(si)
            if si == len(text):
                raise fail(si)
            if text[si] != "=":
                raise fail(si - 1)
            si += 1
        si = skip_newlines(si)
        if si < len(text):
            raise fail(si)
        break
    return base64.b64decode(text.replace("\r", "").replace("\n", ""))


class Fields:
    """Typed access to a request object, by proto name or lowerCamel name."""

    def __init__(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise FakeError(
                3, f"json: cannot unmarshal {_go_kind(obj)} into Go value of type {_RAW_MAP}"
            )
        self.obj: Json = obj

    def raw(self, name: str) -> Any:
        value = self.obj.get(name)
        return self.obj.get(_camel(name)) if value is None else value

    def get_bytes(self, name: str) -> bytes:
        value = self.raw(name)
        if value is None:
            return b""
        if not isinstance(value, str):
            raise FakeError(
                3, f"json: cannot unmarshal {_go_kind(value)} into Go value of type []uint8"
            )
        return _go_b64decode(value)

    def get_int(self, name: str) -> int:
        value = self.raw(name)
        if value is None:
            return 0
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise FakeError(3, _invalid_character(value)) from None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        kind = f"number {value}" if isinstance(value, float) else _go_kind(value)
        raise FakeError(3, f"json: cannot unmarshal {kind} into Go value of type int64")

    def get_bool(self, name: str) -> bool:
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return value is True
        raise FakeError(3, f"json: cannot unmarshal {_go_kind(value)} into Go value of type bool")

    def enum(self, name: str, names: Sequence[str], type_name: str) -> int:
        value = self.raw(name)
        if value is None:
            return 0
        if isinstance(value, str) and value in names:
            return names.index(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise FakeError(3, f'unknown value "\\"{value}\\"" for enum etcdserverpb.{type_name}')

    def msgs(self, name: str) -> list[Fields]:
        return [Fields(item) for item in self.raw(name) or []]

    def msg(self, name: str) -> Fields | None:
        value = self.raw(name)
        return None if value is None else Fields(value)


def _go_kind(value: Any) -> str:
    """The JSON kind of a value, as Go's decoder names it in errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    kinds: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return kinds.get(type(value), "null")


def _invalid_character(text: str) -> str:
    return f"invalid character {text[:1]!r} looking for beginning of value"


def _json_error(exc: json.JSONDecodeError, code: int = 3) -> FakeError:
    rest = exc.doc[exc.pos :].strip()
    if not rest or exc.msg.startswith("Unterminated string"):
        return FakeError(code, "unexpected EOF")
    return FakeError(code, _invalid_character(rest))


def parse_unary(body: bytes, max_request_bytes: int) -> Fields:
    """The request of a unary body: its first JSON value (the gateway ignores what follows
    it), refused as gRPC refuses a message over the size limits."""
    obj: Any = next(parse_stream(body), {})  # an empty body is an empty request
    size = _proto_size(obj)
    limit = max_request_bytes + GRPC_OVERHEAD
    if size > limit:
        raise FakeError(8, f"grpc: received message larger than max ({size} vs. {limit})")
    if size > max_request_bytes:
        raise FakeError(3, ERR_TOO_LARGE)
    return Fields(obj)


def parse_stream(body: bytes) -> Iterator[Any]:
    """The JSON objects of a streaming request body, concatenated or newline separated."""
    text = body.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise _json_error(exc) from None
        yield obj


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def _proto_size(obj: Any, name: str = "") -> int:
    """Roughly the protobuf size of a decoded JSON request (exact for bytes fields)."""
    if isinstance(obj, dict):
        return sum(_proto_size(v, k) for k, v in obj.items())
    if isinstance(obj, list):
        return sum(_proto_size(item, name) for item in obj)
    if isinstance(obj, str) and name in BYTES_FIELDS:
        n = len(obj) * 3 // 4 - obj[-2:].count("=")
        return 1 + _varint_len(n) + n
    if isinstance(obj, str):
        n = len(obj.encode())
        return 1 + _varint_len(n) + n
    return 2 if obj else 0  # a number or a bool (proto3 leaves zeros out)


# ---- JSON out --------------------------------------------------------------------------------


def dumps(obj: Json) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def result_line(result: Json) -> bytes:
    """One message of a streaming answer: ``{"result": ...}`` and a newline."""
    return dumps({"result": result}) + b"\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kv_json(kv: KeyValue, *, keys_only: bool = False) -> Json:
    """A kv as the gateway writes it: proto3 JSON, defaults left out, int64 as strings."""
    out: Json = {"key": b64(kv.key)}
    for name in ("create_revision", "mod_revision", "version"):
        if getattr(kv, name):
            out[name] = str(getattr(kv, name))
    if kv.value and not keys_only:
        out["value"] = b64(kv.value)
    if kv.lease:
        out["lease"] = str(kv.lease)
    return out


def event_json(ev: Event, prev: KeyValue | None) -> Json:
    out: Json = {} if ev.type == "PUT" else {"type": "DELETE"}
    out["kv"] = kv_json(ev.kv)
    if prev is not None:
        out["prev_kv"] = kv_json(prev)
    return out


def text_response(status: int, text: str) -> httpx.Response:
    return httpx.Response(
        status, headers={"content-type": "text/plain; charset=utf-8"}, content=text.encode()
    )


def json_response(body: Json, status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/json"}, content=dumps(body))


def error_response(code: int, message: str, status: int | None = None) -> httpx.Response:
    """The gateway's error answer for a unary call."""
    body = {"error": message, "code": code, "message": message}
    return json_response(body, status or HTTP_STATUS.get(code, 500))
