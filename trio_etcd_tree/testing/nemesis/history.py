"""What a nemesis run recorded: every operation with its outcome, every update delivered,
every state change of the mounts, every fault with its healing.

Times are trio clock seconds (``trio.current_time()``); keys and values are text (the
workloads write UTF-8 only). ``Report.write`` writes it as JSON for the post mortem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .schedule import Fault

__all__ = [
    "OUTCOMES",
    "Crash",
    "Delivery",
    "FaultRecord",
    "FenceWrite",
    "History",
    "LeaderTerm",
    "StateChange",
    "WriteOp",
]

OUTCOMES = ("ok", "unknown", "failed", "pending")
"""A write's outcome: acknowledged; failed with ``outcome_unknown`` (or given up on after
it was sent); failed and certainly not applied; still waiting when the run ended."""


@dataclass(slots=True)
class WriteOp:
    """One write call.

    Attributes:
        process: the workload that made it.
        kind: ``put``, ``txn`` (several keys at once), ``delete`` or ``foreign`` (etcdctl).
        writes: key -> new value, or None for a deletion.
        sent, done: when the call was made and when it returned.
        outcome: one of :data:`OUTCOMES`.
        revision: the revision of an acknowledged write, else 0.
        error: the error's type and message for a failed one.
    """

    process: str
    kind: str
    writes: dict[str, str | None]
    sent: float
    done: float = 0.0
    outcome: str = "pending"
    revision: int = 0
    error: str = ""


@dataclass(slots=True)
class FenceWrite:
    """A lock holder's write of the fenced counter (guarded by its lock).

    ``value`` is what it wrote (the value it read plus one); ``outcome`` as in
    :class:`WriteOp`, ``failed`` also when the guard did not hold (the lock was lost).
    """

    process: str
    lock_revision: int
    value: int
    sent: float
    done: float = 0.0
    outcome: str = "pending"
    revision: int = 0
    error: str = ""


@dataclass(slots=True)
class LeaderTerm:
    """An election candidate became leader: ``term`` is its key's create revision."""

    process: str
    term: int
    at: float


@dataclass(slots=True)
class Delivery:
    """An update a subscriber received: key -> new value (None: deleted)."""

    mount: str
    at: float
    revision: int
    resync: bool
    changes: dict[str, str | None]


@dataclass(slots=True)
class StateChange:
    """A mount's ``state`` or its client's endpoint changed (sampled)."""

    mount: str
    at: float
    state: str
    endpoint: str


@dataclass(slots=True)
class FaultRecord:
    """A fault as it happened: which member it hit (its index, and its client URL as the
    workloads know it), when it started and when it was healed (0: not yet)."""

    fault: Fault
    member: int | None
    endpoint: str
    started: float
    healed: float = 0.0
    detail: str = ""


@dataclass(slots=True)
class Crash:
    """A workload ended with an error it should not have had."""

    process: str
    at: float
    error: str


@dataclass
class History:
    """Everything a run recorded, in the order it happened (per list)."""

    seed: int
    started: float
    writes: list[WriteOp] = field(default_factory=list)
    fences: list[FenceWrite] = field(default_factory=list)
    leaders: list[LeaderTerm] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    states: list[StateChange] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    crashes: list[Crash] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    quiet: list[str] = field(default_factory=list)  #: mounts that only read (no writes)

    def rollbacks(self) -> list[tuple[float, float]]:
        """The windows of the restores: (backup taken, restore done). A write acknowledged
        in such a window may be gone afterwards."""
        return [(r.started, r.healed or math.inf) for r in self.faults if r.fault.kind == "restore"]

    def epoch(self, at: float) -> int:
        """How many restores were done by ``at``: revisions are comparable only within
        one epoch (a restore sends them back)."""
        return sum(1 for r in self.faults if r.fault.kind == "restore" and 0 < r.healed <= at)

    def rolled_back(self, done: float) -> bool:
        """Whether something acknowledged at ``done`` may have been undone by a restore."""
        return any(start <= done <= end for start, end in self.rollbacks())
