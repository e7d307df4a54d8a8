"""The workloads a nemesis run drives at once, each recording into the history:

* writers: each owns a few keys under ``<prefix>/<name>/`` and, through its own mount,
  makes guarded single puts, multi-key transactions and deletes;
* subscribers: every mount's root is subscribed to, and every update recorded;
* samplers: every mount's ``state`` and its client's endpoint, at each change;
* lock holders: under one lock, read the counter and write it plus one, guarded by the
  lock (fencing);
* election candidates: campaign, lead a moment (recording the term), resign;
* a foreign writer: ``etcdctl put`` under ``<prefix>/foreign/``, which the library does
  not see being made.

Each write call is recorded before it is sent and given its outcome when it returns:
acknowledged (with its revision), ``unknown`` (the error's ``outcome_unknown``, or no
answer within the write timeout), or ``failed`` (certainly not applied).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import trio

from ... import (
    Client,
    ConflictError,
    EtcdError,
    LeaseExpiredError,
    Put,
    Root,
    SubscriptionOverflow,
    election,
    lock,
)
from .faults import ForeignWriteError, Target
from .history import Crash, Delivery, FenceWrite, History, LeaderTerm, StateChange, WriteOp

__all__ = [
    "Workload",
    "candidate",
    "foreign_writer",
    "lock_holder",
    "sampler",
    "subscriber",
    "writer",
]

KEYS_PER_WRITER = 4
SAMPLE_EVERY = 0.1  # seconds between two looks at a mount's state


@dataclass
class Workload:
    """What every workload shares: the history, the key prefix, when to stop writing,
    how long one write may take, the seed its random choices come from, and the buffer of
    each subscription."""

    history: History
    prefix: str
    end: float
    write_timeout: float
    seed: int
    buffer: int = 100_000

    def rng(self, name: str) -> random.Random:
        return random.Random(f"{self.seed}:{name}")

    def crash(self, name: str, error: BaseException) -> None:
        self.history.crashes.append(Crash(name, trio.current_time(), _describe(error)))


def _describe(error: BaseException) -> str:
    """The error's type and message; a group's with those of what it holds."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, BaseExceptionGroup):
        text += " [" + "; ".join(_describe(e) for e in error.exceptions) + "]"
    return text


def _outcome(op: WriteOp | FenceWrite, error: BaseException | None) -> None:
    op.done = trio.current_time()
    if error is None:
        op.outcome = "ok"
        return
    op.error = f"{type(error).__name__}: {error}"
    unknown = isinstance(error, EtcdError) and error.outcome_unknown
    op.outcome = "unknown" if unknown or isinstance(error, trio.TooSlowError) else "failed"


def _choose(root: Root, name: str, rng: random.Random, value: str) -> WriteOp:
    """The next write of the writer ``name``, its kind and keys drawn from ``rng``."""
    prefix = root.prefix.decode()
    keys = [f"k{i}" for i in range(KEYS_PER_WRITER)]
    chosen = rng.random()
    own = root.get(name)
    present = [
        k for k in keys if own is not None and (node := own.get(k)) is not None and node.has_value
    ]
    if chosen < 0.15 and present:
        key = rng.choice(present)
        op = WriteOp(name, "delete", {f"{prefix}/{name}/{key}": None}, trio.current_time())
    elif chosen < 0.45:
        several = sorted(rng.sample(keys, rng.randint(2, KEYS_PER_WRITER)))
        writes: dict[str, str | None] = {f"{prefix}/{name}/{k}": value for k in several}
        op = WriteOp(name, "txn", writes, trio.current_time())
    else:
        key = rng.choice(keys)
        op = WriteOp(name, "put", {f"{prefix}/{name}/{key}": value}, trio.current_time())
    return op


async def _perform(root: Root, name: str, op: WriteOp) -> int:
    names = [key.rsplit("/", 1)[1] for key in op.writes]
    own = root[name] if op.kind == "delete" else None
    if own is not None:
        return await own[names[0]].delete()
    if op.kind == "txn":
        async with root.transaction(name) as txn:
            for key in names:
                txn.set(key, next(iter(op.writes.values())))
        return txn.revision
    return await root.set(name, {names[0]: op.writes[next(iter(op.writes))]})


async def writer(work: Workload, name: str, root: Root) -> None:
    """Write through ``root`` until ``work.end``.

    Cancellation: a write in flight stays ``pending`` in the history (it may be applied).
    """
    rng = work.rng(name)
    count = 0
    while trio.current_time() < work.end:
        count += 1
        op = _choose(root, name, rng, f"{name}.{count}")
        work.history.writes.append(op)
        try:
            with trio.fail_after(work.write_timeout):
                op.revision = await _perform(root, name, op)
        except (EtcdError, trio.TooSlowError) as error:
            _outcome(op, error)
            if not isinstance(error, ConflictError):
                await trio.sleep(0.1)
        else:
            _outcome(op, None)
        await trio.sleep(rng.uniform(0.0, 0.05))


async def subscriber(work: Workload, name: str, root: Root) -> None:
    """Record every update of the whole mount until cancelled; an overflow is recorded
    (revision -1) and the subscription opened again.

    Cancellation: the subscription is closed; what was delivered is recorded.
    """
    while True:
        try:
            async with root.subscribe(buffer=work.buffer) as updates:
                async for update in updates:
                    changes = {
                        (kv.key.decode()): (c.new.value.decode() if c.new is not None else None)
                        for c in update.changes
                        if (kv := c.new or c.old) is not None
                    }
                    work.history.deliveries.append(
                        Delivery(name, trio.current_time(), update.revision, update.resync, changes)
                    )
        except SubscriptionOverflow:
            work.history.deliveries.append(Delivery(name, trio.current_time(), -1, True, {}))


async def sampler(work: Workload, name: str, root: Root, client: Client) -> None:
    """Record each change of the mount's state or of its client's endpoint until cancelled.

    Cancellation: nothing to undo.
    """
    last = ("", "")
    while True:
        now = (root.state.value, client.endpoint)
        if now != last:
            last = now
            work.history.states.append(StateChange(name, trio.current_time(), *now))
        await trio.sleep(SAMPLE_EVERY)


async def lock_holder(work: Workload, name: str, client: Client) -> None:
    """Take the lock, read the counter, write it plus one guarded by the lock, release;
    until ``work.end``. A lost lease or an unavailable cluster starts over.

    Cancellation: the lock is released (by ``lock``); a fenced write in flight stays
    ``pending``.
    """
    rng = work.rng(name)
    counter = f"{work.prefix}/fence/counter"
    while trio.current_time() < work.end:
        try:
            with trio.move_on_at(work.end):
                async with lock(client, f"{work.prefix}/lock", ttl=3) as held:
                    with trio.fail_after(work.write_timeout):
                        current = await client.get(counter)
                    value = int(current.value) + 1 if current is not None else 1
                    op = FenceWrite(name, held.revision, value, trio.current_time())
                    work.history.fences.append(op)
                    try:
                        with trio.fail_after(work.write_timeout):
                            result = await client.txn([held.guard()], [Put(counter, str(value))])
                    except (EtcdError, trio.TooSlowError) as error:
                        _outcome(op, error)
                    else:
                        op.revision = result.header.revision
                        _outcome(op, None if result.succeeded else LeaseExpiredError("lock lost"))
                    await trio.sleep(rng.uniform(0.0, 0.2))
        except (EtcdError, trio.TooSlowError):
            await trio.sleep(0.2)


async def candidate(work: Workload, name: str, client: Client) -> None:
    """Campaign, record the term, lead a moment, resign; until ``work.end``.

    Cancellation: the candidacy is withdrawn (by ``election``).
    """
    rng = work.rng(name)
    while trio.current_time() < work.end:
        try:
            with trio.move_on_at(work.end):
                async with election(client, f"{work.prefix}/election", ttl=3) as candidacy:
                    await candidacy.campaign(name)
                    term = LeaderTerm(name, candidacy.revision, trio.current_time())
                    work.history.leaders.append(term)
                    await trio.sleep(rng.uniform(0.1, 0.6))
        except (EtcdError, trio.TooSlowError):
            await trio.sleep(0.2)


async def foreign_writer(work: Workload, target: Target) -> None:
    """Put keys under ``<prefix>/foreign/`` with the target's foreign tool until
    ``work.end``; a failure of the tool leaves the outcome unknown.

    Cancellation: the tool is killed; its write stays ``pending`` (it may be applied).
    """
    rng = work.rng("foreign")
    count = 0
    while trio.current_time() < work.end:
        count += 1
        key = f"{work.prefix}/foreign/k{rng.randrange(3)}"
        op = WriteOp("foreign", "foreign", {key: f"foreign.{count}"}, trio.current_time())
        work.history.writes.append(op)
        try:
            op.revision = await target.foreign_put(key, f"foreign.{count}")
        except ForeignWriteError as error:
            _outcome(op, error)
            op.outcome = "unknown"
        else:
            _outcome(op, None)
        await trio.sleep(rng.uniform(0.2, 0.6))
