"""An in-memory etcd that speaks the etcd v3 HTTP/JSON gateway protocol as an httpx transport.

``httpx.AsyncClient(transport=fake)`` talks to it exactly as to a real etcd 3.5 gateway, and
everything runs on the Trio clock, so tests are deterministic under
``trio.testing.MockClock(autojump_threshold=0)``.  The MVCC model lives in
:mod:`._fake_store`; this module is the HTTP shell, the watch streams, auth and fault injection.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import random
import string
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import httpx
import trio

from ._fake_store import (
    Event,
    FakeError,
    KeyValue,
    Lease,
    Lessor,
    MvccStore,
    WriteTxn,
    in_range,
    prefix_end,
)

__all__ = ["FakeCall", "FakeError", "FakeEtcd", "open_fake_etcd"]

Json: TypeAlias = dict[str, Any]

HTTP_STATUS = {3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 11: 400, 14: 503, 16: 401}
"""HTTP status for a gRPC code, as the gateway maps them (anything else: 500)."""

GRPC_OVERHEAD = 512 * 1024
RAFT_TERM = 2
VERSION = "3.5.0-fake"

ERR_EMPTY_KEY = "etcdserver: key is not provided"
ERR_KEY_NOT_FOUND = "etcdserver: key not found"
ERR_DUPLICATE_KEY = "etcdserver: duplicate key given in txn request"
ERR_TOO_MANY_OPS = "etcdserver: too many operations in txn request"
ERR_TOO_LARGE = "etcdserver: request is too large"
ERR_PERMISSION = "etcdserver: permission denied"
ERR_NO_USER = "etcdserver: user name is empty"
ERR_BAD_TOKEN = "etcdserver: invalid auth token"
ERR_AUTH_FAILED = "etcdserver: authentication failed, invalid user ID or password"
WATCH_PERMISSION_DENIED = "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
BROKEN_BODY = (
    "peer closed connection without sending complete message body (incomplete chunked read)"
)

SORT_ORDERS = ("NONE", "ASCEND", "DESCEND")
SORT_TARGETS = ("KEY", "VERSION", "CREATE", "MOD", "VALUE")
COMPARE_TARGETS = ("VERSION", "CREATE", "MOD", "VALUE", "LEASE")
COMPARE_RESULTS = ("EQUAL", "GREATER", "LESS", "NOT_EQUAL")
FILTER_TYPES = ("NOPUT", "NODELETE")
BYTES_FIELDS = frozenset({"key", "value", "range_end", "rangeEnd"})


@dataclass(frozen=True)
class FakeCall:
    """One request the fake received."""

    endpoint: str
    path: str
    body: bytes


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


class _Fields:
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

    def msgs(self, name: str) -> list[_Fields]:
        return [_Fields(item) for item in self.raw(name) or []]

    def msg(self, name: str) -> _Fields | None:
        value = self.raw(name)
        return None if value is None else _Fields(value)


_RAW_MAP = "map[string]json.RawMessage"


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


def _parse_one(body: bytes) -> Any:
    """The first JSON value of a unary body (the gateway ignores what follows it)."""
    return next(_parse_stream(body), {})  # an empty body is an empty request


def _parse_stream(body: bytes) -> Iterator[Any]:
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


def _dumps(obj: Json) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kv_json(kv: KeyValue, *, keys_only: bool = False) -> Json:
    """A kv as the gateway writes it: proto3 JSON, defaults left out, int64 as strings."""
    out: Json = {"key": _b64(kv.key)}
    for name in ("create_revision", "mod_revision", "version"):
        if getattr(kv, name):
            out[name] = str(getattr(kv, name))
    if kv.value and not keys_only:
        out["value"] = _b64(kv.value)
    if kv.lease:
        out["lease"] = str(kv.lease)
    return out


def _event_json(ev: Event, prev: KeyValue | None) -> Json:
    out: Json = {} if ev.type == "PUT" else {"type": "DELETE"}
    out["kv"] = kv_json(ev.kv)
    if prev is not None:
        out["prev_kv"] = kv_json(prev)
    return out


def _text(status: int, text: str) -> httpx.Response:
    return httpx.Response(
        status, headers={"content-type": "text/plain; charset=utf-8"}, content=text.encode()
    )


def _json_response(body: Json, status: int = 200) -> httpx.Response:
    return httpx.Response(
        status, headers={"content-type": "application/json"}, content=_dumps(body)
    )


def error_response(code: int, message: str, status: int | None = None) -> httpx.Response:
    """The gateway's error answer for a unary call."""
    body = {"error": message, "code": code, "message": message}
    return _json_response(body, status or HTTP_STATUS.get(code, 500))


# ---- parsed requests -------------------------------------------------------------------------


@dataclass
class _RangeReq:
    key: bytes
    range_end: bytes
    limit: int = 0
    revision: int = 0
    sort_order: int = 0
    sort_target: int = 0
    keys_only: bool = False
    count_only: bool = False
    min_mod: int = 0
    max_mod: int = 0
    min_create: int = 0
    max_create: int = 0

    @classmethod
    def parse(cls, f: _Fields) -> _RangeReq:
        return cls(
            f.get_bytes("key"),
            f.get_bytes("range_end"),
            f.get_int("limit"),
            f.get_int("revision"),
            f.enum("sort_order", SORT_ORDERS, "RangeRequest.SortOrder"),
            f.enum("sort_target", SORT_TARGETS, "RangeRequest.SortTarget"),
            f.get_bool("keys_only"),
            f.get_bool("count_only"),
            f.get_int("min_mod_revision"),
            f.get_int("max_mod_revision"),
            f.get_int("min_create_revision"),
            f.get_int("max_create_revision"),
        )

    def check(self) -> None:
        if not self.key:
            raise FakeError(3, ERR_EMPTY_KEY)


@dataclass
class _PutReq:
    key: bytes
    value: bytes
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False

    @classmethod
    def parse(cls, f: _Fields) -> _PutReq:
        return cls(
            f.get_bytes("key"),
            f.get_bytes("value"),
            f.get_int("lease"),
            f.get_bool("prev_kv"),
            f.get_bool("ignore_value"),
            f.get_bool("ignore_lease"),
        )

    def check(self) -> None:
        if not self.key:
            raise FakeError(3, ERR_EMPTY_KEY)
        if self.ignore_value and self.value:
            raise FakeError(3, "etcdserver: value is provided")
        if self.ignore_lease and self.lease:
            raise FakeError(3, "etcdserver: lease is provided")


@dataclass
class _DeleteReq:
    key: bytes
    range_end: bytes
    prev_kv: bool = False

    @classmethod
    def parse(cls, f: _Fields) -> _DeleteReq:
        return cls(f.get_bytes("key"), f.get_bytes("range_end"), f.get_bool("prev_kv"))

    def check(self) -> None:
        if not self.key:
            raise FakeError(3, ERR_EMPTY_KEY)


@dataclass
class _Compare:
    key: bytes
    range_end: bytes
    target: int
    result: int
    operand: int | bytes

    FIELDS = ("version", "create_revision", "mod_revision", "value", "lease")

    @classmethod
    def parse(cls, f: _Fields) -> _Compare:
        target = f.enum("target", COMPARE_TARGETS, "Compare.CompareTarget")
        result = f.enum("result", COMPARE_RESULTS, "Compare.CompareResult")
        name = cls.FIELDS[target] if 0 <= target < len(cls.FIELDS) else "version"
        operand: int | bytes = f.get_bytes(name) if name == "value" else f.get_int(name)
        return cls(f.get_bytes("key"), f.get_bytes("range_end"), target, result, operand)

    def holds_for(self, kv: KeyValue) -> bool:
        """Whether one kv satisfies the compare (Go's ``compareKV``)."""
        mine: int | bytes = getattr(kv, self.FIELDS[self.target])
        cmp = (mine > self.operand) - (mine < self.operand)  # type: ignore[operator]
        return (cmp == 0, cmp > 0, cmp < 0, cmp != 0)[self.result]


_Op: TypeAlias = "_RangeReq | _PutReq | _DeleteReq | _TxnReq | _EmptyOp"


@dataclass
class _TxnReq:
    compare: list[_Compare]
    success: list[_Op]
    failure: list[_Op]

    @classmethod
    def parse(cls, f: _Fields) -> _TxnReq:
        return cls(
            [_Compare.parse(c) for c in f.msgs("compare")],
            [_parse_op(op) for op in f.msgs("success")],
            [_parse_op(op) for op in f.msgs("failure")],
        )

    def check(self, max_ops: int) -> None:
        """The gRPC-level checks: sizes, empty keys, duplicate keys."""
        if max(len(self.compare), len(self.success), len(self.failure)) > max_ops:
            raise FakeError(3, ERR_TOO_MANY_OPS)
        for c in self.compare:
            if not c.key:
                raise FakeError(3, ERR_EMPTY_KEY)
        for op in (*self.success, *self.failure):
            if isinstance(op, _TxnReq):
                op.check(max_ops)
            else:
                op.check()
        _check_intervals(self.success)
        _check_intervals(self.failure)


def _parse_op(f: _Fields) -> _Op:
    if (sub := f.msg("request_range")) is not None:
        return _RangeReq.parse(sub)
    if (sub := f.msg("request_put")) is not None:
        return _PutReq.parse(sub)
    if (sub := f.msg("request_delete_range")) is not None:
        return _DeleteReq.parse(sub)
    if (sub := f.msg("request_txn")) is not None:
        return _TxnReq.parse(sub)
    return _EmptyOp()


class _EmptyOp:
    """A RequestOp with no request in it: etcd rejects the txn."""

    def check(self) -> None:
        raise FakeError(3, ERR_KEY_NOT_FOUND)


def _check_intervals(ops: list[_Op]) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
    """Go's ``checkIntervals``: no key put twice, no put inside a deleted range."""
    dels = [(op.key, op.range_end) for op in ops if isinstance(op, _DeleteReq)]

    def deleted(key: bytes) -> bool:
        return any(in_range(key, start, end) for start, end in dels)

    puts: set[bytes] = set()
    for op in ops:
        if isinstance(op, _TxnReq):
            puts_then, dels_then = _check_intervals(op.success)
            puts_else, dels_else = _check_intervals(op.failure)
            for key in puts_then:
                if key in puts or deleted(key):
                    raise FakeError(3, ERR_DUPLICATE_KEY)
                puts.add(key)
            for key in puts_else:
                if (key in puts and key not in puts_then) or deleted(key):
                    raise FakeError(3, ERR_DUPLICATE_KEY)
                puts.add(key)
            dels += dels_then + dels_else
    for op in ops:
        if isinstance(op, _PutReq):
            if op.key in puts or deleted(op.key):
                raise FakeError(3, ERR_DUPLICATE_KEY)
            puts.add(op.key)
    return puts, dels


# ---- watches ---------------------------------------------------------------------------------


@dataclass
class _Watcher:
    id: int
    key: bytes
    range_end: bytes
    next_rev: int
    prev_kv: bool
    progress_notify: bool
    filters: frozenset[int]
    quiet: bool = True  # no events sent since the last progress tick

    def select(self, events: list[Event]) -> list[Event]:
        return [
            ev
            for ev in events
            if in_range(ev.kv.key, self.key, self.range_end)
            and (0 if ev.type == "PUT" else 1) not in self.filters
        ]


_Mode: TypeAlias = Literal["read", "write", "readwrite"]
_Break: TypeAlias = Literal["mid-line", "eof", "error"]


class _WatchStream(httpx.AsyncByteStream):
    """One ``/v3/watch`` response: its watchers and the channel of lines waiting to be read."""

    def __init__(self, fake: FakeEtcd, member: int) -> None:
        self.fake = fake
        self.member = member
        self.watchers: dict[int, _Watcher] = {}
        self.next_id = 0
        self.stalled = False
        self.frozen: list[bytes] | None = None  # held while the member is frozen
        self.ended = False
        self.send, self.receive = trio.open_memory_channel[bytes | _Break](math.inf)
        self.first: bytes | _Break | None = None
        self.ticker = trio.CancelScope()

    # -- producing

    def emit(self, result: Json) -> None:
        if self.frozen is not None:
            self.frozen.append(_dumps({"result": result}) + b"\n")
        elif not (self.stalled or self.ended):
            self.send.send_nowait(_dumps({"result": result}) + b"\n")

    def thaw(self) -> None:
        held, self.frozen = self.frozen or [], None
        for line in held:  # (an ended stream is no longer among the fake's streams)
            self.send.send_nowait(line)

    def end(self, how: _Break | None) -> None:
        """Stop serving: drop the watchers, and end the body the given way (None = plain EOF)."""
        if self.ended:
            return
        self.ended = True
        self.fake._streams.discard(self)
        self.ticker.cancel()
        self.send.send_nowait(how or "eof")
        self.send.close()

    def header(self, revision: int | None = None) -> Json:
        return self.fake._header(self.member, revision)

    def create(self, f: _Fields, auth_ok: bool) -> None:
        """Handle a ``create_request``."""
        key, end = f.get_bytes("key"), f.get_bytes("range_end")
        wid, start = f.get_int("watch_id"), f.get_int("start_revision")
        prev_kv, progress = f.get_bool("prev_kv"), f.get_bool("progress_notify")
        filters = frozenset(
            _Fields({"filter": x}).enum("filter", FILTER_TYPES, "WatchCreateRequest.FilterType")
            for x in f.raw("filters") or []
        )
        out: Json = {"header": self.header()}
        if not auth_ok:
            if wid:
                out["watch_id"] = str(wid)
            reason = WATCH_PERMISSION_DENIED
            self.emit({**out, "created": True, "canceled": True, "cancel_reason": reason})
            return
        if wid and wid in self.watchers:
            reason = "mvcc: duplicate watch ID provided on the WatchStream"
            out |= {"watch_id": "-1", "created": True, "canceled": True, "cancel_reason": reason}
            self.emit(out)
            return
        if wid == 0:
            while self.next_id in self.watchers:
                self.next_id += 1
            wid = self.next_id
            self.next_id += 1
        store = self.fake._store
        w = _Watcher(wid, key, end, start or store.revision + 1, prev_kv, progress, filters)
        if wid:
            out["watch_id"] = str(wid)
        self.emit({**out, "created": True})
        if w.next_rev < store.compact_revision:
            compacted: Json = {"header": self.header()}
            del compacted["header"]["revision"]
            if wid:
                compacted["watch_id"] = str(wid)
            compacted |= {"canceled": True, "compact_revision": str(store.compact_revision)}
            self.emit(compacted)
            return
        self.watchers[wid] = w
        self.catch_up(w)

    def catch_up(self, w: _Watcher) -> None:
        """Send the history from ``w.next_rev`` on, at most 1000 revisions a message."""
        store = self.fake._store
        batch: list[Event] = []
        revs = 0
        for _rev, events in store.events(w.next_rev, store.revision):
            mine = [ev for ev in events if in_range(ev.kv.key, w.key, w.range_end)]
            if not mine:
                continue
            batch += mine
            revs += 1
            if revs == 1000:
                self.deliver(w, batch, store.revision)
                batch, revs = [], 0
        self.deliver(w, batch, store.revision)
        w.next_rev = max(w.next_rev, store.revision + 1)

    def deliver(self, w: _Watcher, events: list[Event], revision: int) -> None:
        """Send ``events`` (already in range) to ``w``, after its filters."""
        events = w.select(events)
        if not events:
            return
        compact = self.fake._store.compact_revision
        out: Json = {"header": self.header(revision)}
        if w.id:
            out["watch_id"] = str(w.id)
        out["events"] = [
            _event_json(
                ev,
                ev.prev_kv
                if w.prev_kv
                and ev.prev_kv is not None
                and not (ev.type == "PUT" and ev.kv.version == 1)
                and ev.kv.mod_revision - 1 >= compact
                else None,
            )
            for ev in events
        ]
        w.quiet = False
        self.emit(out)

    def on_commit(self, revision: int, events: list[Event]) -> None:
        for w in list(self.watchers.values()):
            if w.next_rev <= revision:
                self.deliver(w, events, revision)
                w.next_rev = revision + 1

    def cancel(self, f: _Fields) -> None:
        wid = f.get_int("watch_id")
        if self.watchers.pop(wid, None) is not None:
            out: Json = {"header": self.header()}
            if wid:
                out["watch_id"] = str(wid)
            self.emit({**out, "canceled": True})

    async def tick_progress(self, interval: float) -> None:
        """Every ``interval`` seconds, a progress notification to each quiet watcher that asked."""
        with self.ticker:
            while True:
                await trio.sleep(interval)
                for w in list(self.watchers.values()):
                    if w.progress_notify and w.quiet:
                        out: Json = {"header": self.header()}
                        if w.id:
                            out["watch_id"] = str(w.id)
                        self.emit(out)
                    w.quiet = True

    # -- consuming

    async def wait_first(self, request: httpx.Request) -> None:
        """Wait for the first message: the response headers only go out with it."""
        self.first = await self.receive.receive()  # a stream always ends with a _Break item
        if not isinstance(self.first, bytes):
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )

    def _chunks(self, data: bytes) -> Iterator[bytes]:
        size = self.fake.chunk_size
        if not size:
            yield data
            return
        for i in range(0, len(data), size):
            yield data[i : i + size]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        item = self.first
        while item != "eof":
            if item == "mid-line":
                yield b'{"result":{"header":{"cluster_id":"'
                raise httpx.RemoteProtocolError(BROKEN_BODY)
            if item == "error":
                yield _dumps({"error": self.fake._stream_error}) + b"\n"
                return
            assert isinstance(item, bytes)
            for chunk in self._chunks(item):
                yield chunk
            item = await self.receive.receive()

    async def aclose(self) -> None:
        self.end(None)
        self.receive.close()


# ---- the fake server -------------------------------------------------------------------------


@dataclass
class _Fault:
    path: str | None
    count: int
    code: int = 0
    message: str = ""
    status: int | None = None
    seconds: float = 0.0


@dataclass
class _Auth:
    users: dict[str, str]
    perms: dict[str, list[tuple[bytes, bytes, bool, bool]]]
    token_ttl: float
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)


@dataclass
class _Ctx:
    """What a handler knows about its request."""

    member: int
    headers: httpx.Headers


_Perm: TypeAlias = tuple[bytes, bytes, Literal["read", "write"]]
_Handler: TypeAlias = Callable[["FakeEtcd", _Ctx, _Fields], Json]


class FakeEtcd(httpx.AsyncBaseTransport):
    """An in-memory etcd cluster behind an httpx transport.  Open it with :func:`open_fake_etcd`.

    Every member serves the same store (a healthy cluster); requests are routed by host.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        members: int = 1,
        progress_notify_interval: float = 600.0,
        max_txn_ops: int = 128,
        max_request_bytes: int = 1572864,
        cluster_id: int = 0x1234,
    ) -> None:
        self._nursery = nursery
        self._store = MvccStore()
        self._store.listeners.append(self._on_commit)
        self._lessor = Lessor()
        self._rng = random.Random(cluster_id)
        self.endpoints = [f"http://fake-{i}.etcd:2379" for i in range(members)]
        self._member_ids = [self._rng.getrandbits(63) | 1 for _ in range(members)]
        self._cluster_id = cluster_id
        self._progress_interval = progress_notify_interval
        self._max_txn_ops = max_txn_ops
        self._max_request_bytes = max_request_bytes
        self._down: set[int] = set()
        self._faults: list[_Fault] = []
        self._delays: list[_Fault] = []
        self._lost: list[_Fault] = []
        self._frozen: set[int] = set()
        self._thawed = trio.Event()
        self._streams: set[_WatchStream] = set()
        self._auth: _Auth | None = None
        self._raft_index = 4
        self._lease_changed = trio.Event()
        self._stream_error: Json = {}
        self.calls: list[FakeCall] = []
        self.chunk_size: int | None = None

    # ---- state ----------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._store.revision

    @property
    def compact_revision(self) -> int:
        return self._store.compact_revision

    def _header(self, member: int, revision: int | None = None) -> Json:
        return {
            "cluster_id": str(self._cluster_id),
            "member_id": str(self._member_ids[member]),
            "revision": str(self._store.revision if revision is None else revision),
            "raft_term": str(RAFT_TERM),
        }

    def _write(self) -> WriteTxn:
        self._raft_index += 1
        return WriteTxn(self._store, lessor=self._lessor)

    def _on_commit(self, revision: int, events: list[Event]) -> None:
        for stream in list(self._streams):
            stream.on_commit(revision, events)

    # ---- direct manipulation (as if another client wrote) ----------------------------------

    def put(self, key: bytes | str, value: bytes | str, *, lease: int = 0) -> int:
        """Write a key; returns the new revision."""
        if lease:
            self._lessor.get(lease)
        with self._write() as w:
            w.put(_as_bytes(key), _as_bytes(value), lease)
        return self.revision

    def delete(self, key: bytes | str, range_end: bytes | str | None = None) -> int:
        """Delete a key or range; returns the revision (unchanged if nothing was deleted)."""
        with self._write() as w:
            w.delete_range(_as_bytes(key), _as_bytes(range_end or b""))
        return self.revision

    def get(self, key: bytes | str) -> dict[str, Any] | None:
        """The current kv of ``key`` as a dict, or None."""
        kv = self._store.latest(_as_bytes(key))
        if kv is None:
            return None
        return {
            "key": kv.key,
            "value": kv.value,
            "create_revision": kv.create_revision,
            "mod_revision": kv.mod_revision,
            "version": kv.version,
            "lease": kv.lease,
        }

    def compact(self, revision: int) -> None:
        """Compact the history up to ``revision``."""
        self._store.compact(revision)

    def restore(self, revision: int) -> None:
        """Go back to the state at ``revision`` (a restored backup); open watches break."""
        self._store.restore(revision)
        self._lessor.reattach(self._store.range(b"\0", b"\0"))
        self.break_watches("mid-line")

    def new_cluster_id(self, cluster_id: int | None = None) -> None:
        """Answer with another cluster id from now on."""
        self._cluster_id = cluster_id if cluster_id is not None else self._rng.getrandbits(63)

    # ---- fault injection -------------------------------------------------------------------

    def fail_next(
        self,
        path: str | None,
        *,
        code: int,
        message: str,
        count: int = 1,
        status: int | None = None,
    ) -> None:
        """Answer the next ``count`` requests to ``path`` (None: any) with this error."""
        self._faults.append(_Fault(path, count, code, message, status))

    def delay_next(self, path: str | None, seconds: float, count: int = 1) -> None:
        """Make the next ``count`` requests to ``path`` (None: any) wait ``seconds`` first."""
        self._delays.append(_Fault(path, count, seconds=seconds))

    def break_watches(self, how: _Break = "mid-line") -> None:
        """End every open watch stream: cut mid-line, a clean EOF, or an in-stream error."""
        self._stream_error = {
            "grpc_code": 14,
            "http_code": 503,
            "message": "error reading from server: EOF",
            "http_status": "Service Unavailable",
        }
        for stream in list(self._streams):
            stream.end(how)

    def stall_watches(self) -> None:
        """Open watch streams stay open but never send anything again."""
        for stream in self._streams:
            stream.stalled = True

    def member_down(self, index: int) -> None:
        """Requests to that member fail to connect; its watch streams break mid-line."""
        self._down.add(index)
        for stream in list(self._streams):
            if stream.member == index:
                stream.end("mid-line")

    def member_up(self, index: int) -> None:
        self._down.discard(index)

    def freeze_member(self, index: int) -> None:
        """The member stops answering, as a process stopped with SIGSTOP does: connections
        are still accepted and requests still sent, but nothing comes back (its open watch
        streams fall silent) until :meth:`thaw_member`; then it serves what it was sent."""
        self._frozen.add(index)
        for stream in self._streams:
            if stream.member == index and stream.frozen is None:
                stream.frozen = []

    def thaw_member(self, index: int) -> None:
        self._frozen.discard(index)
        self._thawed.set()
        self._thawed = trio.Event()
        for stream in list(self._streams):
            if stream.member == index:
                stream.thaw()

    def lose_answers(self, path: str | None, count: int = 1) -> None:
        """Serve the next ``count`` requests to ``path`` (None: any), then break the
        connection instead of answering: the request took effect, its answer is lost."""
        self._lost.append(_Fault(path, count))

    def enable_auth(
        self,
        users: Mapping[str, str],
        *,
        permissions: Mapping[str, Sequence[tuple[bytes | str, _Mode]]] | None = None,
        token_ttl: float = 300.0,
    ) -> None:
        """Turn auth on: ``users`` maps names to passwords; "root" may do anything, the others
        only what ``permissions`` grants them (key prefixes)."""
        perms = {
            user: [
                (_as_bytes(p), prefix_end(_as_bytes(p)), "read" in mode, "write" in mode)
                for p, mode in grants
            ]
            for user, grants in (permissions or {}).items()
        }
        self._auth = _Auth(dict(users), perms, token_ttl)

    def _take(self, faults: list[_Fault], path: str) -> _Fault | None:
        for fault in faults:
            if fault.path is None or fault.path == path:
                fault.count -= 1
                if fault.count <= 0:
                    faults.remove(fault)
                return fault
        return None

    # ---- auth ------------------------------------------------------------------------------

    def _check_auth(self, ctx: _Ctx, perms: Sequence[_Perm]) -> None:
        """Raise unless the request's token is valid and grants ``perms``."""
        auth = self._auth
        if auth is None:
            return
        headers = ctx.headers
        token = headers.get("authorization") or headers.get("grpc-metadata-authorization")
        if not token:
            raise FakeError(3, ERR_NO_USER)
        now = trio.current_time()
        entry = auth.tokens.get(token)
        if entry is None or entry[1] <= now:
            auth.tokens.pop(token, None)
            raise FakeError(16, ERR_BAD_TOKEN)
        user = entry[0]
        auth.tokens[token] = (user, now + auth.token_ttl)
        if user == "root":
            return
        grants = auth.perms.get(user, [])
        for key, end, mode in perms:
            if not any(_covers(g, key, end, mode) for g in grants):
                raise FakeError(7, ERR_PERMISSION)

    def _authenticate(self, ctx: _Ctx, f: _Fields) -> Json:
        auth = self._auth
        name, password = f.raw("name"), f.raw("password")
        if auth is None:
            raise FakeError(9, "etcdserver: authentication is not enabled")
        if not name or auth.users.get(name) != password:
            raise FakeError(3, ERR_AUTH_FAILED)
        self._raft_index += 1
        letters = string.ascii_letters
        token = "".join(self._rng.choice(letters) for _ in range(16)) + f".{self._raft_index}"
        auth.tokens[token] = (name, trio.current_time() + auth.token_ttl)
        return {"header": self._header(ctx.member), "token": token}

    # ---- kv --------------------------------------------------------------------------------

    def _do_range(self, r: _RangeReq, header_rev: int) -> Json:
        kvs = self._store.range(r.key, r.range_end, r.revision)
        count = len(kvs)
        if r.max_mod:
            kvs = [kv for kv in kvs if kv.mod_revision <= r.max_mod]
        if r.min_mod:
            kvs = [kv for kv in kvs if kv.mod_revision >= r.min_mod]
        if r.max_create:
            kvs = [kv for kv in kvs if kv.create_revision <= r.max_create]
        if r.min_create:
            kvs = [kv for kv in kvs if kv.create_revision >= r.min_create]
        order = r.sort_order or (1 if r.sort_target else 0)
        if order:
            attr = ("key", "version", "create_revision", "mod_revision", "value")[r.sort_target]
            kvs.sort(key=lambda kv: getattr(kv, attr), reverse=order == 2)
        out: Json = {"header": {"revision": str(header_rev)}}
        more = r.limit > 0 and len(kvs) > r.limit
        if more:
            kvs = kvs[: r.limit]
        if kvs and not r.count_only:
            out["kvs"] = [kv_json(kv, keys_only=r.keys_only) for kv in kvs]
        if more and not r.count_only:
            out["more"] = True
        if count:
            out["count"] = str(count)
        return out

    def _do_put(self, w: WriteTxn, p: _PutReq) -> Json:
        prev = w.put(
            p.key, p.value, p.lease, ignore_value=p.ignore_value, ignore_lease=p.ignore_lease
        )
        out: Json = {"header": {"revision": str(w.revision)}}
        if p.prev_kv and prev is not None:
            out["prev_kv"] = kv_json(prev)
        return out

    def _do_delete(self, w: WriteTxn, d: _DeleteReq) -> Json:
        deleted = w.delete_range(d.key, d.range_end)
        out: Json = {"header": {"revision": str(w.revision)}}
        if deleted:
            out["deleted"] = str(len(deleted))
        if d.prev_kv and deleted:
            out["prev_kvs"] = [kv_json(kv) for kv in deleted]
        return out

    def _check_put_apply(self, p: _PutReq) -> None:
        if (p.ignore_value or p.ignore_lease) and self._store.latest(p.key) is None:
            raise FakeError(3, ERR_KEY_NOT_FOUND)
        if p.lease:
            self._lessor.get(p.lease)

    def _range(self, ctx: _Ctx, f: _Fields) -> Json:
        r = _RangeReq.parse(f)
        r.check()
        self._check_auth(ctx, [(r.key, r.range_end, "read")])
        out = self._do_range(r, self.revision)
        return {**out, "header": self._header(ctx.member)}

    def _put(self, ctx: _Ctx, f: _Fields) -> Json:
        p = _PutReq.parse(f)
        p.check()
        self._check_auth(ctx, _put_perms(p))
        self._check_put_apply(p)
        with self._write() as w:
            out = self._do_put(w, p)
        return {**out, "header": self._header(ctx.member)}

    def _deleterange(self, ctx: _Ctx, f: _Fields) -> Json:
        d = _DeleteReq.parse(f)
        d.check()
        self._check_auth(ctx, _delete_perms(d))
        with self._write() as w:
            out = self._do_delete(w, d)
        return {**out, "header": self._header(ctx.member)}

    def _txn(self, ctx: _Ctx, f: _Fields) -> Json:
        t = _TxnReq.parse(f)
        t.check(self._max_txn_ops)
        self._check_auth(ctx, _txn_perms(t))
        choices: dict[int, bool] = {}
        self._check_txn_apply(t, choices)
        with self._write() as w:
            out = self._apply_txn(w, t, choices)
        return {"header": self._header(ctx.member), **out}

    def _compares(self, t: _TxnReq) -> bool:
        """Go's ``applyCompare`` for every compare (a missing key compares as a zero kv)."""
        for c in t.compare:
            kvs = self._store.range(c.key, c.range_end)
            if not kvs and c.target == COMPARE_TARGETS.index("VALUE"):
                return False
            if not all(c.holds_for(kv) for kv in kvs or [KeyValue(c.key)]):
                return False
        return True

    def _check_txn_apply(self, t: _TxnReq, choices: dict[int, bool]) -> None:
        """Choose every branch (before any write) and check the chosen ops can apply."""
        ok = choices[id(t)] = self._compares(t)
        for op in t.success if ok else t.failure:
            if isinstance(op, _RangeReq):
                self._store.check_revision(op.revision)
            elif isinstance(op, _PutReq):
                self._check_put_apply(op)
            elif isinstance(op, _TxnReq):
                self._check_txn_apply(op, choices)

    def _apply_txn(self, w: WriteTxn, t: _TxnReq, choices: dict[int, bool]) -> Json:
        ok = choices[id(t)]
        out: Json = {"succeeded": True} if ok else {}
        responses: list[Json] = []
        for op in t.success if ok else t.failure:
            if isinstance(op, _RangeReq):
                responses.append({"response_range": self._do_range(op, w.revision)})
            elif isinstance(op, _PutReq):
                responses.append({"response_put": self._do_put(w, op)})
            elif isinstance(op, _DeleteReq):
                responses.append({"response_delete_range": self._do_delete(w, op)})
            else:
                assert isinstance(op, _TxnReq)  # an empty op fails the checks
                inner = {"header": {}, **self._apply_txn(w, op, choices)}
                responses.append({"response_txn": inner})
        if responses:
            out["responses"] = responses
        return out

    def _compaction(self, ctx: _Ctx, f: _Fields) -> Json:
        revision = f.get_int("revision")
        self._raft_index += 1
        self._store.compact(revision)
        return {"header": self._header(ctx.member)}

    # ---- leases ----------------------------------------------------------------------------

    def _kick_leases(self) -> None:
        self._lease_changed.set()

    def _revoke_lease(self, lease: Lease) -> None:
        del self._lessor.leases[lease.id]
        with self._write() as w:
            for key in sorted(lease.keys):
                w.delete_range(key, b"")
        self._kick_leases()

    def _expire_leases(self) -> None:
        for lease in self._lessor.expired(trio.current_time()):
            self._revoke_lease(lease)

    async def _lease_loop(self) -> None:
        """Revoke each lease when its deadline passes."""
        while True:
            self._expire_leases()
            self._lease_changed = trio.Event()
            deadline = self._lessor.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._lease_changed.wait()

    def _next_lease_id(self) -> int:
        while True:
            lease_id = self._rng.getrandbits(63)
            if lease_id and lease_id not in self._lessor.leases:
                return lease_id

    def _grant(self, ctx: _Ctx, f: _Fields) -> Json:
        lease_id = f.get_int("ID") or self._next_lease_id()
        self._raft_index += 1
        lease = self._lessor.grant(lease_id, f.get_int("TTL"), trio.current_time())
        self._kick_leases()
        return {"header": self._header(ctx.member), "ID": str(lease.id), "TTL": str(lease.ttl)}

    def _revoke(self, ctx: _Ctx, f: _Fields) -> Json:
        lease = self._lessor.get(f.get_int("ID"))
        if lease.keys:
            self._check_auth(ctx, [(key, b"", "write") for key in sorted(lease.keys)])
        self._revoke_lease(lease)
        return {"header": self._header(ctx.member)}

    def _timetolive(self, ctx: _Ctx, f: _Fields) -> Json:
        lease_id = f.get_int("ID")
        out: Json = {"header": self._header(ctx.member), "ID": str(lease_id)}
        lease = self._lessor.leases.get(lease_id)
        if lease is None:
            return {**out, "TTL": "-1"}
        out |= {"TTL": str(lease.remaining(trio.current_time())), "grantedTTL": str(lease.ttl)}
        if f.get_bool("keys") and lease.keys:
            out["keys"] = [_b64(key) for key in sorted(lease.keys)]
        return out

    def _leases(self, ctx: _Ctx, f: _Fields) -> Json:
        out: Json = {"header": self._header(ctx.member)}
        if self._lessor.leases:
            out["leases"] = [{"ID": str(i)} for i in self._lessor.leases]
        return out

    def _keepalive(self, ctx: _Ctx, body: bytes) -> httpx.Response:
        lines = []
        for obj in _parse_stream(body):
            lease_id = _Fields(obj).get_int("ID")
            ttl = self._lessor.renew(lease_id, trio.current_time())
            result: Json = {"header": self._header(ctx.member), "ID": str(lease_id)}
            if ttl:
                result["TTL"] = str(ttl)
            lines.append(_dumps({"result": result}) + b"\n")
        self._kick_leases()
        return httpx.Response(
            200, headers={"content-type": "application/json"}, content=b"".join(lines)
        )

    # ---- maintenance and cluster -----------------------------------------------------------

    def _status(self, ctx: _Ctx, f: _Fields) -> Json:
        size = 20480 + 4096 * len(self._store._keys)
        return {
            "header": self._header(ctx.member),
            "version": VERSION,
            "dbSize": str(size),
            "leader": str(self._member_ids[0]),
            "raftIndex": str(self._raft_index),
            "raftTerm": str(RAFT_TERM),
            "raftAppliedIndex": str(self._raft_index),
            "dbSizeInUse": str(size),
        }

    def _member_list(self, ctx: _Ctx, f: _Fields) -> Json:
        members = [
            {
                "ID": str(self._member_ids[i]),
                "name": f"fake-{i}",
                "peerURLs": [endpoint.replace(":2379", ":2380")],
                "clientURLs": [endpoint],
            }
            for i, endpoint in enumerate(self.endpoints)
        ]
        header = self._header(ctx.member)
        del header["revision"]
        return {"header": header, "members": members}

    # ---- watch -----------------------------------------------------------------------------

    async def _watch(self, ctx: _Ctx, body: bytes, request: httpx.Request) -> httpx.Response:
        requests = _parse_stream(body)
        try:
            first = next(requests, None)
        except FakeError as exc:
            raise FakeError(2, exc.message) from None
        stream = _WatchStream(self, ctx.member)
        self._streams.add(stream)
        self._nursery.start_soon(stream.tick_progress, self._progress_interval)
        try:
            for obj in itertools.chain([first] if first is not None else [], requests):
                self._watch_request(ctx, stream, _Fields(obj))
        except FakeError:
            pass  # the gateway stops reading the body; the stream goes on
        await stream.wait_first(request)
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=stream)

    def _watch_request(self, ctx: _Ctx, stream: _WatchStream, f: _Fields) -> None:
        """Serve one WatchRequest of the body."""
        if (create := f.msg("create_request")) is not None:
            stream.create(create, self._watch_permitted(ctx, create))
        elif (cancel := f.msg("cancel_request")) is not None:
            stream.cancel(cancel)
        elif f.msg("progress_request") is not None:
            stream.emit({"header": stream.header(), "watch_id": "-1"})

    def _watch_permitted(self, ctx: _Ctx, create: _Fields) -> bool:
        try:
            self._check_auth(
                ctx, [(create.get_bytes("key"), create.get_bytes("range_end"), "read")]
            )
        except FakeError:
            return False
        return True

    # ---- the transport ---------------------------------------------------------------------

    UNARY: Mapping[str, _Handler] = {
        "/v3/kv/range": _range,
        "/v3/kv/put": _put,
        "/v3/kv/deleterange": _deleterange,
        "/v3/kv/txn": _txn,
        "/v3/kv/compaction": _compaction,
        "/v3/lease/grant": _grant,
        "/v3/lease/revoke": _revoke,
        "/v3/kv/lease/revoke": _revoke,
        "/v3/lease/timetolive": _timetolive,
        "/v3/kv/lease/timetolive": _timetolive,
        "/v3/lease/leases": _leases,
        "/v3/kv/lease/leases": _leases,
        "/v3/maintenance/status": _status,
        "/v3/cluster/member/list": _member_list,
        "/v3/auth/authenticate": _authenticate,
    }
    STREAMING = frozenset({"/v3/watch", "/v3/lease/keepalive"})

    def _member_of(self, request: httpx.Request) -> int:
        url = request.url
        endpoint = f"{url.scheme}://{url.host}:{url.port or 80}"
        if endpoint not in self.endpoints or self.endpoints.index(endpoint) in self._down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return self.endpoints.index(endpoint)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        member = self._member_of(request)
        body = await request.aread()
        path = request.url.path
        self.calls.append(FakeCall(self.endpoints[member], path, body))
        delay = self._take(self._delays, path)
        if delay is None and member not in self._frozen:
            return await self._handle(member, request, path, body)
        # The server has the request: it serves it in its own time, whether or not the
        # client is still waiting for the answer (a write may land after the client gave up).
        answer: list[httpx.Response | httpx.TransportError] = []
        done = trio.Event()

        async def serve() -> None:
            if delay is not None:
                await trio.sleep(delay.seconds)
            while member in self._frozen:
                await self._thawed.wait()
            try:
                answer.append(await self._handle(self._member_of(request), request, path, body))
            except httpx.TransportError as exc:  # went down meanwhile, or lost the answer
                answer.append(exc)
            done.set()

        self._nursery.start_soon(serve)
        await done.wait()
        if isinstance(answer[0], httpx.TransportError):
            raise answer[0]
        return answer[0]

    async def _handle(
        self, member: int, request: httpx.Request, path: str, body: bytes
    ) -> httpx.Response:
        fault = self._take(self._faults, path)
        if fault is not None:
            response = error_response(fault.code, fault.message, fault.status)
        else:
            self._expire_leases()
            try:
                response = await self._serve(_Ctx(member, request.headers), request, path, body)
            except FakeError as exc:
                response = error_response(exc.code, exc.message)
        if self._take(self._lost, path) is not None:
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        return response

    async def _serve(
        self, ctx: _Ctx, request: httpx.Request, path: str, body: bytes
    ) -> httpx.Response:
        if path in ("/version", "/health"):
            if request.method != "GET":
                return _text(405, "Method Not Allowed\n")
            if path == "/version":
                return _json_response({"etcdserver": "3.5.0", "etcdcluster": "3.5.0"})
            return _json_response({"health": "true", "reason": ""})
        if path not in self.UNARY and path not in self.STREAMING:
            return _text(404, "Not Found\n" if path.startswith("/v3/") else "404 page not found\n")
        if request.method != "POST":
            return _text(405, "Method Not Allowed\n")
        if path == "/v3/watch":
            return await self._watch(ctx, body, request)
        if path == "/v3/lease/keepalive":
            return self._keepalive(ctx, body)
        obj = _parse_one(body)
        size = _proto_size(obj)
        limit = self._max_request_bytes + GRPC_OVERHEAD
        if size > limit:
            raise FakeError(8, f"grpc: received message larger than max ({size} vs. {limit})")
        if size > self._max_request_bytes:
            raise FakeError(3, ERR_TOO_LARGE)
        return _json_response(self.UNARY[path](self, ctx, _Fields(obj)))

    async def aclose(self) -> None:
        """Nothing to release: the fake's life is that of :func:`open_fake_etcd`."""


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


def _covers(grant: tuple[bytes, bytes, bool, bool], key: bytes, end: bytes, mode: str) -> bool:
    start, stop, read, write = grant
    if not (read if mode == "read" else write):
        return False
    if not end:
        return start <= key < stop
    top = b"\xff" * 64 if end == b"\0" else end
    return start <= key and top <= stop


def _put_perms(p: _PutReq) -> list[_Perm]:
    perms: list[_Perm] = [(p.key, b"", "write")]
    if p.prev_kv:
        perms.append((p.key, b"", "read"))
    return perms


def _delete_perms(d: _DeleteReq) -> list[_Perm]:
    perms: list[_Perm] = [(d.key, d.range_end, "write")]
    if d.prev_kv:
        perms.append((d.key, d.range_end, "read"))
    return perms


def _txn_perms(t: _TxnReq) -> list[_Perm]:
    perms: list[_Perm] = [(c.key, c.range_end, "read") for c in t.compare]
    for op in (*t.success, *t.failure):
        if isinstance(op, _RangeReq):
            perms.append((op.key, op.range_end, "read"))
        elif isinstance(op, _PutReq):
            perms += _put_perms(op)
        elif isinstance(op, _DeleteReq):
            perms += _delete_perms(op)
        else:
            assert isinstance(op, _TxnReq)  # an empty op fails the checks first
            perms += _txn_perms(op)
    return perms


@asynccontextmanager
async def open_fake_etcd(
    *,
    members: int = 1,
    progress_notify_interval: float = 600.0,
    max_txn_ops: int = 128,
    max_request_bytes: int = 1572864,
    cluster_id: int = 0x1234,
) -> AsyncIterator[FakeEtcd]:
    """Run an in-memory etcd for the duration of the block (its timers on the Trio clock)."""
    async with trio.open_nursery() as nursery:
        fake = FakeEtcd(
            nursery,
            members=members,
            progress_notify_interval=progress_notify_interval,
            max_txn_ops=max_txn_ops,
            max_request_bytes=max_request_bytes,
            cluster_id=cluster_id,
        )
        nursery.start_soon(fake._lease_loop)
        try:
            yield fake
        finally:
            for stream in list(fake._streams):
                stream.end(None)
            nursery.cancel_scope.cancel()
