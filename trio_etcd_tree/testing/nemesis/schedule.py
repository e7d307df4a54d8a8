"""Fault schedules: which fault, on which member, when and for how long, drawn from a seed.

A schedule is a pure function of its seed and its settings, so a failing run is replayed
exactly by running the same seed again. Faults come one after another (each is healed
before the next starts); members are named by role (the leader, a follower, the member
the first workload's client uses), resolved when the fault starts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["FAULT_KINDS", "ROLES", "Fault", "make_schedule"]

FAULT_KINDS = ("kill", "freeze", "partition", "compact", "restore", "lease", "defrag")
"""Every fault the nemesis knows:

* ``kill``: SIGKILL a member, restart it after ``duration``;
* ``freeze``: SIGSTOP a member, SIGCONT after ``duration``;
* ``partition``: cut a member off from the clients for ``duration`` (the cluster still
  sees it);
* ``compact``: compact the history at the current revision;
* ``restore``: back the cluster up, and after ``duration`` restore it from that backup
  (the revision goes back);
* ``lease``: revoke a lease of a lock holder or an election candidate, as if it expired;
* ``defrag``: defragment a member.
"""

ROLES = ("leader", "follower", "client")
"""Which member a member fault hits: the raft leader, a follower, or the member the first
workload's client sends its requests to."""

_MEMBER_FAULTS = frozenset({"kill", "freeze", "partition", "defrag"})
_DURATIONS = {  # seconds a fault lasts before it is healed: (shortest, longest)
    "kill": (1.0, 4.0),
    "freeze": (2.0, 14.0),
    "partition": (2.0, 14.0),
    "restore": (2.0, 6.0),
}
_LONG = (35.0, 50.0)  # one freeze or partition in five lasts this long: past every bound
_LONG_KINDS = frozenset({"freeze", "partition"})


@dataclass(frozen=True, slots=True)
class Fault:
    """One scheduled fault.

    Attributes:
        at: seconds after the workloads started.
        kind: one of :data:`FAULT_KINDS`.
        role: for a member fault, one of :data:`ROLES`; else ``""``.
        duration: seconds until it is healed (0 for a fault that is over at once).
    """

    at: float
    kind: str
    role: str
    duration: float

    def __str__(self) -> str:
        target = f" {self.role}" if self.role else ""
        lasting = f" for {self.duration:.1f}s" if self.duration else ""
        return f"{self.at:7.2f}s {self.kind}{target}{lasting}"


def make_schedule(
    seed: int,
    seconds: float,
    *,
    kinds: Sequence[str] = FAULT_KINDS,
    warmup: float = 2.0,
    settle: float = 3.0,
    gap: tuple[float, float] = (0.5, 3.0),
    max_duration: float | None = None,
) -> list[Fault]:
    """The faults of a run of ``seconds``, drawn from ``seed``.

    Args:
        seed: the same seed gives the same schedule.
        seconds: the length of the run; every fault is healed ``settle`` seconds before
            its end.
        kinds: the faults to choose from (a subset of :data:`FAULT_KINDS`).
        warmup: seconds before the first fault.
        gap: the shortest and longest pause between one fault's healing and the next.
        max_duration: cap each fault's duration (short CI runs).

    Raises:
        ValueError: an unknown fault kind, or no kinds at all.
    """
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown or not kinds:
        raise ValueError(f"unknown fault kinds {unknown} (known: {', '.join(FAULT_KINDS)})")
    rng = random.Random(seed)
    faults: list[Fault] = []
    at = warmup
    while True:
        kind = rng.choice(list(kinds))
        role = rng.choice(ROLES) if kind in _MEMBER_FAULTS else ""
        shortest, longest = _DURATIONS.get(kind, (0.0, 0.0))
        if kind in _LONG_KINDS and rng.random() < 0.2:
            shortest, longest = _LONG
        duration = rng.uniform(shortest, longest)
        if max_duration is not None:
            duration = min(duration, max_duration)
        if at + duration > seconds - settle:
            return faults
        faults.append(Fault(round(at, 2), kind, role, round(duration, 2)))
        at += duration + rng.uniform(*gap)
