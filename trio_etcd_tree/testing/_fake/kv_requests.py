"""The KV requests as the fake parses them, with the checks etcd makes before it applies one
(empty keys, too many ops, keys written twice in a txn) and the permissions each needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from .auth import Perm
from .gateway import Fields
from .store import FakeError, KeyValue, in_range

SORT_ORDERS = ("NONE", "ASCEND", "DESCEND")
SORT_TARGETS = ("KEY", "VERSION", "CREATE", "MOD", "VALUE")
COMPARE_TARGETS = ("VERSION", "CREATE", "MOD", "VALUE", "LEASE")
COMPARE_RESULTS = ("EQUAL", "GREATER", "LESS", "NOT_EQUAL")

ERR_EMPTY_KEY = "etcdserver: key is not provided"
ERR_KEY_NOT_FOUND = "etcdserver: key not found"
ERR_DUPLICATE_KEY = "etcdserver: duplicate key given in txn request"
ERR_TOO_MANY_OPS = "etcdserver: too many operations in txn request"


@dataclass
class RangeReq:
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
    def parse(cls, f: Fields) -> RangeReq:
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
class PutReq:
    key: bytes
    value: bytes
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False

    @classmethod
    def parse(cls, f: Fields) -> PutReq:
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
class DeleteReq:
    key: bytes
    range_end: bytes
    prev_kv: bool = False

    @classmethod
    def parse(cls, f: Fields) -> DeleteReq:
        return cls(f.get_bytes("key"), f.get_bytes("range_end"), f.get_bool("prev_kv"))

    def check(self) -> None:
        if not self.key:
            raise FakeError(3, ERR_EMPTY_KEY)


@dataclass
class Compare:
    key: bytes
    range_end: bytes
    target: int
    result: int
    operand: int | bytes

    FIELDS = ("version", "create_revision", "mod_revision", "value", "lease")

    @classmethod
    def parse(cls, f: Fields) -> Compare:
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


Op: TypeAlias = "RangeReq | PutReq | DeleteReq | TxnReq | EmptyOp"


@dataclass
class TxnReq:
    compare: list[Compare]
    success: list[Op]
    failure: list[Op]

    @classmethod
    def parse(cls, f: Fields) -> TxnReq:
        return cls(
            [Compare.parse(c) for c in f.msgs("compare")],
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
            if isinstance(op, TxnReq):
                op.check(max_ops)
            else:
                op.check()
        check_intervals(self.success)
        check_intervals(self.failure)


def _parse_op(f: Fields) -> Op:
    if (sub := f.msg("request_range")) is not None:
        return RangeReq.parse(sub)
    if (sub := f.msg("request_put")) is not None:
        return PutReq.parse(sub)
    if (sub := f.msg("request_delete_range")) is not None:
        return DeleteReq.parse(sub)
    if (sub := f.msg("request_txn")) is not None:
        return TxnReq.parse(sub)
    return EmptyOp()


class EmptyOp:
    """A RequestOp with no request in it: etcd rejects the txn."""

    def check(self) -> None:
        raise FakeError(3, ERR_KEY_NOT_FOUND)


def check_intervals(ops: list[Op]) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
    """Go's ``checkIntervals``: no key put twice, no put inside a deleted range."""
    dels = [(op.key, op.range_end) for op in ops if isinstance(op, DeleteReq)]

    def deleted(key: bytes) -> bool:
        return any(in_range(key, start, end) for start, end in dels)

    puts: set[bytes] = set()
    for op in ops:
        if isinstance(op, TxnReq):
            puts_then, dels_then = check_intervals(op.success)
            puts_else, dels_else = check_intervals(op.failure)
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
        if isinstance(op, PutReq):
            if op.key in puts or deleted(op.key):
                raise FakeError(3, ERR_DUPLICATE_KEY)
            puts.add(op.key)
    return puts, dels


# ---- the permissions a request needs ---------------------------------------------------


def put_perms(p: PutReq) -> list[Perm]:
    perms: list[Perm] = [(p.key, b"", "write")]
    if p.prev_kv:
        perms.append((p.key, b"", "read"))
    return perms


def delete_perms(d: DeleteReq) -> list[Perm]:
    perms: list[Perm] = [(d.key, d.range_end, "write")]
    if d.prev_kv:
        perms.append((d.key, d.range_end, "read"))
    return perms


def txn_perms(t: TxnReq) -> list[Perm]:
    perms: list[Perm] = [(c.key, c.range_end, "read") for c in t.compare]
    for op in (*t.success, *t.failure):
        if isinstance(op, RangeReq):
            perms.append((op.key, op.range_end, "read"))
        elif isinstance(op, PutReq):
            perms += put_perms(op)
        elif isinstance(op, DeleteReq):
            perms += delete_perms(op)
        else:
            assert isinstance(op, TxnReq)  # an empty op fails the checks first
            perms += txn_perms(op)
    return perms
