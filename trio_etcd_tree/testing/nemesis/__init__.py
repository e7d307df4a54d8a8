"""A fault-injection suite: workloads on an etcd cluster, a nemesis that hurts it, and a
checker of the recorded history (etcd's robustness tests and Jepsen, for this library).

``python -m trio_etcd_tree.testing.nemesis --seconds 60 --seed 7 --etcd 3.5`` runs once on
a real 3-member cluster; the same seed gives the same fault schedule. See
:mod:`.schedule` (the faults), :mod:`.faults` (the nemesis), :mod:`.workloads`,
:mod:`.history` and :mod:`.checker` (the rules).
"""

from __future__ import annotations

from .checker import FinalState as FinalState, Violation as Violation, check as check
from .history import History as History
from .runner import (
    Options as Options,
    Report as Report,
    run as run,
    run_fake as run_fake,
    run_real as run_real,
)
from .schedule import FAULT_KINDS as FAULT_KINDS, Fault as Fault, make_schedule as make_schedule

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "FinalState",
    "History",
    "Options",
    "Report",
    "Violation",
    "check",
    "make_schedule",
    "run",
    "run_fake",
    "run_real",
]
