"""Transactions, written as Python: compares and operations.

A transaction is ``if all(compares) then success else failure``, applied atomically at one
revision::

    from trio_etcd_tree import Compare, Delete, Get, Put

    result = await client.txn(
        compare=[Compare.mod_revision("/cfg/port") == 7],
        success=[Put("/cfg/port", b"5433"), Delete("/cfg/old")],
        failure=[Get("/cfg/port")],
    )
    if not result.succeeded:
        current = result.responses[0].kvs        # what the key holds now

A compare can cover a whole range: ``Compare.mod_revision("/cfg/", prefix=True) < 42``
holds when no key under ``/cfg/`` was created or changed after revision 41 (a deleted key
is not there to compare, so pair it with a count when deletions matter).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, final

from .keys import KeyLike, key_bytes, range_end_for

__all__ = ["Compare", "CompareResult", "CompareTarget", "Delete", "Get", "Op", "Put", "Txn"]


class CompareTarget(enum.Enum):
    VALUE = "VALUE"
    VERSION = "VERSION"
    CREATE = "CREATE"
    MOD = "MOD"
    LEASE = "LEASE"


class CompareResult(enum.Enum):
    EQUAL = "EQUAL"
    GREATER = "GREATER"
    LESS = "LESS"
    NOT_EQUAL = "NOT_EQUAL"


@final
@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a transaction. Build it with a class method and an operator::

    Compare.value("/a") == b"x"
    Compare.version("/a") > 0            # the key exists
    Compare.create_revision("/a") == 0   # the key does not exist
    Compare.mod_revision("/a") == 17
    Compare.lease("/a") != 0
    Compare.mod_revision("/p/", prefix=True) < 42   # every key under /p/
    """

    key: bytes
    target: CompareTarget
    result: CompareResult
    operand: int | bytes
    range_end: bytes | None = None

    @classmethod
    def value(
        cls, key: KeyLike, *, prefix: bool = False, range_end: KeyLike | None = None
    ) -> _Operand:
        return _Operand(key, CompareTarget.VALUE, prefix, range_end)

    @classmethod
    def version(
        cls, key: KeyLike, *, prefix: bool = False, range_end: KeyLike | None = None
    ) -> _Operand:
        return _Operand(key, CompareTarget.VERSION, prefix, range_end)

    @classmethod
    def create_revision(
        cls, key: KeyLike, *, prefix: bool = False, range_end: KeyLike | None = None
    ) -> _Operand:
        return _Operand(key, CompareTarget.CREATE, prefix, range_end)

    @classmethod
    def mod_revision(
        cls, key: KeyLike, *, prefix: bool = False, range_end: KeyLike | None = None
    ) -> _Operand:
        return _Operand(key, CompareTarget.MOD, prefix, range_end)

    @classmethod
    def lease(
        cls, key: KeyLike, *, prefix: bool = False, range_end: KeyLike | None = None
    ) -> _Operand:
        return _Operand(key, CompareTarget.LEASE, prefix, range_end)


@final
class _Operand:
    """The left side of a compare, waiting for its operator (``==``, ``!=``, ``<``, ``>``)."""

    __slots__ = ("_key", "_range_end", "_target")

    def __init__(
        self, key: KeyLike, target: CompareTarget, prefix: bool, range_end: KeyLike | None
    ) -> None:
        self._key = key_bytes(key)
        self._target = target
        self._range_end = range_end_for(self._key, range_end, prefix)

    def _make(self, result: CompareResult, operand: object) -> Compare:
        if self._target is CompareTarget.VALUE:
            if isinstance(operand, str):
                operand = operand.encode()
            if not isinstance(operand, bytes):
                raise TypeError(f"a value compare needs bytes or str, not {operand!r}")
        elif isinstance(operand, bool) or not isinstance(operand, int):
            raise TypeError(f"a {self._target.name} compare needs an int, not {operand!r}")
        return Compare(self._key, self._target, result, operand, self._range_end)

    def __eq__(self, operand: object) -> Compare:  # type: ignore[override]
        return self._make(CompareResult.EQUAL, operand)

    def __ne__(self, operand: object) -> Compare:  # type: ignore[override]
        return self._make(CompareResult.NOT_EQUAL, operand)

    def __lt__(self, operand: object) -> Compare:
        return self._make(CompareResult.LESS, operand)

    def __gt__(self, operand: object) -> Compare:
        return self._make(CompareResult.GREATER, operand)

    __hash__ = None  # type: ignore[assignment]


@final
@dataclass(frozen=True, slots=True, init=False)
class Get:
    """Read a key (or a range, or a prefix) inside a transaction."""

    key: bytes
    range_end: bytes | None
    limit: int
    revision: int
    keys_only: bool
    count_only: bool
    sort_order: str | None
    sort_target: str | None

    def __init__(
        self,
        key: KeyLike,
        *,
        prefix: bool = False,
        range_end: KeyLike | None = None,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        sort_order: Literal["NONE", "ASCEND", "DESCEND"] | None = None,
        sort_target: Literal["KEY", "VERSION", "CREATE", "MOD", "VALUE"] | None = None,
    ) -> None:
        k = key_bytes(key)
        object.__setattr__(self, "key", k)
        object.__setattr__(self, "range_end", range_end_for(k, range_end, prefix))
        object.__setattr__(self, "limit", limit)
        object.__setattr__(self, "revision", revision)
        object.__setattr__(self, "keys_only", keys_only)
        object.__setattr__(self, "count_only", count_only)
        object.__setattr__(self, "sort_order", sort_order)
        object.__setattr__(self, "sort_target", sort_target)


@final
@dataclass(frozen=True, slots=True, init=False)
class Put:
    """Write a value inside a transaction, optionally attached to a lease."""

    key: bytes
    value: bytes
    lease: int
    prev_kv: bool

    def __init__(
        self, key: KeyLike, value: bytes | str, *, lease: int = 0, prev_kv: bool = False
    ) -> None:
        object.__setattr__(self, "key", key_bytes(key))
        object.__setattr__(self, "value", key_bytes(value))
        object.__setattr__(self, "lease", lease)
        object.__setattr__(self, "prev_kv", prev_kv)


@final
@dataclass(frozen=True, slots=True, init=False)
class Delete:
    """Delete a key (or a range, or a prefix) inside a transaction."""

    key: bytes
    range_end: bytes | None
    prev_kv: bool

    def __init__(
        self,
        key: KeyLike,
        *,
        prefix: bool = False,
        range_end: KeyLike | None = None,
        prev_kv: bool = False,
    ) -> None:
        k = key_bytes(key)
        object.__setattr__(self, "key", k)
        object.__setattr__(self, "range_end", range_end_for(k, range_end, prefix))
        object.__setattr__(self, "prev_kv", prev_kv)


@final
@dataclass(frozen=True, slots=True)
class Txn:
    """A nested transaction, as an operation of an outer one."""

    compare: Sequence[Compare] = ()
    success: Sequence[Op] = ()
    failure: Sequence[Op] = field(default=())


Op: TypeAlias = Get | Put | Delete | Txn
