"""The checker: what a run's history and the servers' final state must satisfy.

Each check returns :class:`Violation` objects; :func:`check` runs them all and sorts them by
time, so the first is the earliest thing that went wrong. The rules:

* ``tree``: every mount's tree equals the server's keys at the end (after healing and
  ``wait_revision``).
* ``order``: a subscriber's revisions strictly increase (a resync may go back, after a
  restore).
* ``gap``: every acknowledged write's revision between two updates a subscriber received
  was delivered, unless the later update is a resync (or the subscription overflowed).
* ``atomic``: an update at an acknowledged write's revision holds all of that write's keys
  with the values written.
* ``lost`` / ``phantom``: each key ends with its last acknowledged value (at that revision),
  or with the value of a write whose outcome is unknown that came after it; a write
  reported as not applied is never seen, neither delivered nor at the end.
* ``fence``: the counter written under the lock only grows, acknowledged write by
  acknowledged write (no two holders at once).
* ``leader``: at most one leader per election term, and the terms of successive leaders
  grow (etcd's elections go by the candidates' create revisions).
* ``stale``: while a member is frozen or cut off, a mount that says ``synced`` a bound after
  a write was acknowledged has delivered that write (the bound: one for mounts whose client
  makes requests, which meet the member's silence at once, a longer one for quiet mounts,
  whose watch alone must notice it). A mount whose watch is on a healthy member keeps up
  and passes; one stuck on the hurt member must stop saying ``synced`` within the bound.
* ``crash``: no workload ended with an unexpected error.

Writes acknowledged while a restore was under way may be gone (the restore sends the
cluster back); their outcome counts as unknown. Revisions are compared only within one
epoch (between restores).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .history import Delivery, FenceWrite, History, LeaderTerm, StateChange, WriteOp

__all__ = ["FinalState", "Violation", "check"]

_ABSENT = "<absent>"
_HURT = {"freeze": "frozen", "partition": "cut off"}


@dataclass(frozen=True, slots=True)
class FinalState:
    """The servers' state after the run, and each mount's tree then.

    Attributes:
        server: key -> (value, mod_revision) of every key under the prefix.
        revision: the server's revision when it was read.
        mounts: mount name -> its tree as key -> (value, mod_revision), or a text saying why
            the tree could not be compared (it did not reach ``revision`` in time, say).
    """

    server: dict[str, tuple[str, int]]
    revision: int
    mounts: dict[str, dict[str, tuple[str, int]] | str]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: which (see the module docs), when (seconds into the run), and what
    exactly (times in the message are seconds into the run too)."""

    rule: str
    at: float
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] at {self.at:.2f}s: {self.message}"


def check(
    history: History, final: FinalState, *, synced_bound: float, quiet_bound: float | None = None
) -> list[Violation]:
    """Every violation of the history and the final state, earliest first.

    Args:
        synced_bound: seconds a mount may go on saying ``synced`` after the member its
            client uses was frozen or cut off.
        quiet_bound: the same for the mounts in ``history.quiet`` (default: synced_bound).
    """
    found = [
        *_trees(final),
        *_subscribers(history),
        *_atomic(history),
        *_keys(history, final),
        *_fence(history),
        *_leaders(history),
        *_stale(history, synced_bound, synced_bound if quiet_bound is None else quiet_bound),
        *(Violation("crash", c.at, f"{c.process}: {c.error}") for c in history.crashes),
    ]
    return sorted((replace(v, at=v.at - history.started) for v in found), key=lambda v: v.at)


def _acknowledged(history: History, ops: Iterable[WriteOp | FenceWrite]) -> list[tuple[int, int]]:
    """(epoch, revision) of each acknowledged write that no restore can have undone."""
    return [
        (history.epoch(op.done), op.revision)
        for op in ops
        if op.outcome == "ok" and not history.rolled_back(op.done)
    ]


def _trees(final: FinalState) -> Iterable[Violation]:
    for name, tree in final.mounts.items():
        if isinstance(tree, str):
            yield Violation("tree", float("inf"), f"mount {name}: {tree}")
            continue
        wrong = sorted(
            key
            for key in tree.keys() | final.server.keys()
            if tree.get(key) != final.server.get(key)
        )
        if wrong:
            shown = "; ".join(
                f"{k}: tree {tree.get(k, _ABSENT)}, server {final.server.get(k, _ABSENT)}"
                for k in wrong[:5]
            )
            yield Violation(
                "tree",
                float("inf"),
                f"mount {name} differs from the server at revision {final.revision} "
                f"in {len(wrong)} keys: {shown}",
            )


def _subscribers(history: History) -> Iterable[Violation]:
    known: dict[int, list[int]] = defaultdict(list)  # epoch -> revisions, sorted
    for epoch, revision in _acknowledged(history, [*history.writes, *history.fences]):
        known[epoch].append(revision)
    for revisions in known.values():
        revisions.sort()
    by_mount: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in history.deliveries:
        by_mount[delivery.mount].append(delivery)
    for name, deliveries in by_mount.items():
        previous: Delivery | None = None
        for delivery in deliveries:
            if delivery.revision < 0:  # the subscription overflowed: a gap we were told of
                previous = None
                continue
            if previous is not None and not delivery.resync:
                yield from _next_update(history, name, previous, delivery, known)
            previous = delivery


def _next_update(
    history: History,
    name: str,
    previous: Delivery,
    delivery: Delivery,
    known: dict[int, list[int]],
) -> Iterable[Violation]:
    if delivery.revision <= previous.revision:
        yield Violation(
            "order",
            delivery.at,
            f"mount {name} delivered revision {delivery.revision} after {previous.revision}",
        )
        return
    epoch = history.epoch(previous.at)
    if history.epoch(delivery.at) != epoch:
        return
    revisions = known.get(epoch, [])
    first = bisect.bisect_right(revisions, previous.revision)
    missed = revisions[first : bisect.bisect_left(revisions, delivery.revision)]
    if missed:
        yield Violation(
            "gap",
            delivery.at,
            f"mount {name} went from revision {previous.revision} to {delivery.revision} "
            f"without a resync, skipping acknowledged writes at {missed[:10]}",
        )


def _atomic(history: History) -> Iterable[Violation]:
    delivered: dict[tuple[int, int], list[Delivery]] = defaultdict(list)
    for delivery in history.deliveries:
        if not delivery.resync and delivery.revision > 0:
            delivered[history.epoch(delivery.at), delivery.revision].append(delivery)
    for op in history.writes:
        if op.outcome != "ok" or history.rolled_back(op.done):
            continue
        for delivery in delivered.get((history.epoch(op.done), op.revision), ()):
            wrong = {
                key: delivery.changes.get(key, _ABSENT)
                for key, value in op.writes.items()
                if delivery.changes.get(key, _ABSENT) != value
            }
            if wrong:
                undone = [end for start, end in history.rollbacks() if op.sent <= end <= op.done]
                why = (
                    f" (the write was sent before the restore that ended at "
                    f"{undone[0] - history.started:.2f}s, and returned at "
                    f"{op.done - history.started:.2f}s with a revision of the restored history)"
                    if undone
                    else ""
                )
                yield Violation(
                    "atomic",
                    delivery.at,
                    f"mount {delivery.mount}'s update at revision {op.revision} does not show "
                    f"{op.process}'s {op.kind} {op.writes} as written: it has {wrong}{why}",
                )


def _keys(history: History, final: FinalState) -> Iterable[Violation]:
    failed = {
        value: op
        for op in history.writes
        if op.outcome == "failed"
        for value in op.writes.values()
        if value is not None
    }
    for delivery in history.deliveries:
        for key, value in delivery.changes.items():
            if value in failed:
                op = failed[value]
                yield Violation(
                    "phantom",
                    delivery.at,
                    f"mount {delivery.mount} delivered {key}={value} at revision "
                    f"{delivery.revision}, written by {op.process}'s {op.kind} reported as "
                    f"not applied ({op.error})",
                )
    by_key: dict[str, list[WriteOp]] = defaultdict(list)
    for op in history.writes:
        for key in op.writes:
            by_key[key].append(op)
    for key, ops in by_key.items():
        yield from _final_value(history, final, key, ops, failed)


def _final_value(
    history: History, final: FinalState, key: str, ops: list[WriteOp], failed: dict[str, WriteOp]
) -> Iterable[Violation]:
    actual = final.server.get(key)
    value = actual[0] if actual is not None else None
    if value is not None and value in failed:
        culprit = failed[value]
        yield Violation(
            "phantom",
            culprit.done,
            f"{key} ends as {value}, written by {culprit.process}'s {culprit.kind} reported "
            f"as not applied ({culprit.error})",
        )
        return
    certain = [
        i for i, op in enumerate(ops) if op.outcome == "ok" and not history.rolled_back(op.done)
    ]
    last = certain[-1] if certain else -1
    allowed: dict[str | None, WriteOp | None] = {} if certain else {None: None}
    if certain:
        allowed[ops[last].writes[key]] = ops[last]
    # A foreign (unguarded) write whose answer was lost may still be applied late.
    later = ops if ops[0].kind == "foreign" else ops[last + 1 :]
    for op in later:
        if op.outcome != "failed":
            allowed.setdefault(op.writes[key], op)
    if value not in allowed:
        expected = ", ".join(str(v) for v in allowed)
        at = ops[last].done if certain else ops[0].sent
        yield Violation(
            "lost",
            at,
            f"{key} ends as {value if actual else _ABSENT}, but after the history it can only "
            f"be one of: {expected}",
        )
        return
    source = allowed[value]
    if (
        actual is not None
        and source is not None
        and source.outcome == "ok"
        and not history.rolled_back(source.done)
        and actual[1] != source.revision
    ):
        yield Violation(
            "lost",
            source.done,
            f"{key} ends with {source.process}'s value at mod_revision {actual[1]}, "
            f"but the write was acknowledged at revision {source.revision}",
        )


def _fence(history: History) -> Iterable[Violation]:
    by_epoch: dict[int, list[FenceWrite]] = defaultdict(list)
    for op in history.fences:
        if op.outcome == "ok" and not history.rolled_back(op.done):
            by_epoch[history.epoch(op.done)].append(op)
    for ops in by_epoch.values():
        ops.sort(key=lambda op: op.revision)
        for before, after in itertools.pairwise(ops):
            if after.value <= before.value:
                yield Violation(
                    "fence",
                    after.done,
                    f"the fenced counter went from {before.value} ({before.process}, lock "
                    f"revision {before.lock_revision}, at revision {before.revision}) to "
                    f"{after.value} ({after.process}, lock revision {after.lock_revision}, "
                    f"at revision {after.revision}): two holders at once",
                )


def _leaders(history: History) -> Iterable[Violation]:
    last: dict[int, LeaderTerm] = {}
    for term in history.leaders:
        if history.rolled_back(term.at):  # which history it was in is not known
            continue
        epoch = history.epoch(term.at)
        before = last.get(epoch)
        if before is not None and term.term <= before.term:
            message = (
                f"{before.process} and {term.process} both led in term {term.term}"
                if term.term == before.term
                else f"{term.process} led in term {term.term} after {before.process} "
                f"in term {before.term}"
            )
            yield Violation("leader", term.at, message)
        last[epoch] = term


def _stale(history: History, busy: float, quiet: float) -> Iterable[Violation]:
    """While a member is frozen or cut off: a mount that says ``synced`` a bound after a
    write was acknowledged must have delivered that write's revision by then."""
    windows = [
        r for r in history.faults if r.fault.kind in _HURT and r.healed and r.member is not None
    ]
    ops: list[WriteOp | FenceWrite] = [*history.writes, *history.fences]
    acked = sorted(
        (op.done, op.revision)
        for op in ops
        if op.outcome == "ok" and not history.rolled_back(op.done)
    )
    deliveries: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in history.deliveries:
        if delivery.revision >= 0:
            deliveries[delivery.mount].append(delivery)
    states: dict[str, list[StateChange]] = defaultdict(list)
    for change in history.states:
        states[change.mount].append(change)
    for name, changes in states.items():
        bound = quiet if name in history.quiet else busy
        times = [d.at for d in deliveries[name]]
        state_times = [c.at for c in changes]
        for record in windows:
            first = bisect.bisect_left(acked, (record.started, -1))
            stop = bisect.bisect_right(acked, (record.healed - bound, math.inf))
            for done, revision in acked[first:stop]:
                at = done + bound
                where = bisect.bisect_right(state_times, at) - 1
                index = bisect.bisect_right(times, at) - 1
                last = deliveries[name][index] if index >= 0 else None
                state = changes[where]
                if (
                    where < 0
                    or state.state != "synced"
                    or history.epoch(at) != history.epoch(done)
                    or (last is not None and history.epoch(last.at) != history.epoch(done))
                    or (last is not None and last.revision >= revision)
                ):
                    continue
                t0 = history.started
                shown = "nothing" if last is None else f"revision {last.revision}"
                yield Violation(
                    "stale",
                    at,
                    f"mount {name} said synced at {at - t0:.2f}s (on {state.endpoint}) but had "
                    f"delivered {shown}, {bound:g}s after revision {revision} was acknowledged, "
                    f"while member {record.member} ({record.endpoint}) was "
                    f"{_HURT[record.fault.kind]} from {record.started - t0:.2f}s to "
                    f"{record.healed - t0:.2f}s ({record.fault.kind} {record.fault.role})",
                )
                break  # one violation per mount and fault
