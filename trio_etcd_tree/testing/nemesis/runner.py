"""One nemesis run: a cluster, the workloads, the nemesis, then the checker.

:func:`run` works on any :class:`~.faults.Target`; :func:`run_real` starts a real cluster
for it and :func:`run_fake` the in-memory etcd (call that one under the mock clock).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import trio

from ... import Client, Root, mount, open_client
from .._fake import open_fake_etcd
from .._launcher import EtcdCluster, find_etcd
from .checker import FinalState, Violation, check
from .faults import FakeTarget, RealTarget, Target, etcdctl, run_nemesis
from .history import History
from .schedule import FAULT_KINDS, Fault, make_schedule
from .workloads import (
    Workload,
    candidate,
    foreign_writer,
    lock_holder,
    sampler,
    subscriber,
    writer,
)

__all__ = ["Options", "Report", "run", "run_fake", "run_real"]

PREFIX = "/nemesis"
_INCONSISTENT = (
    "warning: etcd 3.5.0 to 3.5.2 can lose data when a member is killed under load "
    "(etcd-io/etcd#13766, fixed in 3.5.3): its members' revisions and data diverge, and "
    "the checker reports what follows from that; leave out kill (--faults) to test the "
    "library on these versions"
)


@dataclass(frozen=True)
class Options:
    """What a run does.

    Attributes:
        seed: the seed of the schedule and of every workload's choices.
        seconds: how long the workloads write (faults end ``settle`` seconds before).
        kinds: the faults to choose from.
        writers, observers, lockers, candidates: how many of each workload (observers are
            mounts that only subscribe).
        foreign: run the etcdctl writer.
        write_timeout: seconds a write may take before its outcome counts as unknown.
        catch_up: seconds each mount gets to reach the server's final revision.
        synced_bound: seconds a writer's mount may say synced while its client's member
            is frozen or cut off: ``open_client``'s ``attempt_timeout`` (5 s), within which
            the first request that meets the member leaves it and takes the watch along,
            with room for a loaded machine.
        quiet_bound: the same for an observer's mount (no requests of its own, its watch
            must notice alone): the watch's ``heartbeat`` (10 s) plus ``attempt_timeout``,
            with the same room.
        max_fault: cap on one fault's duration.
        transport: how the workloads' clients reach etcd, ``"grpc"`` (the default, as for
            ``open_client``) or ``"gateway"``.
    """

    seed: int = 1
    seconds: float = 60.0
    kinds: Sequence[str] = FAULT_KINDS
    writers: int = 3
    observers: int = 1
    lockers: int = 2
    candidates: int = 2
    foreign: bool = True
    write_timeout: float = 15.0
    catch_up: float = 60.0
    synced_bound: float = 10.0
    quiet_bound: float = 20.0
    max_fault: float | None = None
    transport: str = "grpc"

    def schedule(self) -> list[Fault]:
        return make_schedule(self.seed, self.seconds, kinds=self.kinds, max_duration=self.max_fault)


@dataclass
class Report:
    """A run's schedule, history, final state and violations, and counts for humans."""

    options: Options
    schedule: list[Fault]
    history: History
    final: FinalState
    violations: list[Violation]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        """What was done and found, in a few lines."""
        h = self.history
        faults = Counter(r.fault.kind for r in h.faults)
        outcomes = Counter(op.outcome for op in h.writes)
        done = ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items()))
        fences = Counter(op.outcome for op in h.fences)
        lines = [
            f"seed {self.options.seed}: {len(h.faults)} faults "
            f"({', '.join(f'{k} {n}' for k, n in sorted(faults.items())) or 'none'})",
            f"writes: {len(h.writes)} ({done})",
            f"fenced counter writes: {len(h.fences)} "
            f"({', '.join(f'{k} {n}' for k, n in sorted(fences.items()))}); "
            f"leader terms: {len(h.leaders)}; updates delivered: {len(h.deliveries)}",
            *self.history.notes,
            f"violations: {len(self.violations)}",
        ]
        return "\n".join(lines)

    def write(self, path: Path) -> None:
        """Write the options, the schedule, the history, the final state and every
        violation as JSON to ``path``."""
        document = {
            "options": asdict(self.options),
            "schedule": [asdict(f) for f in self.schedule],
            "history": asdict(self.history),
            "final": asdict(self.final),
            "violations": [asdict(v) for v in self.violations],
        }
        path.write_text(json.dumps(document, indent=1, default=str))

    def failure(self, history_path: Path) -> str:
        """The seed, the schedule and the first violation (the history goes to a file)."""
        schedule = "\n".join(f"  {f}" for f in self.schedule) or "  (no faults)"
        applied = "\n".join(
            f"  {r.fault} -> member {r.member} from {r.started - self.history.started:.2f}s "
            f"to {r.healed - self.history.started:.2f}s {r.detail}"
            for r in self.history.faults
        )
        return (
            f"nemesis run FAILED: seed {self.options.seed}\nschedule:\n{schedule}\n"
            f"faults as applied (run time):\n{applied}\n"
            f"first violation: {self.violations[0]}\n"
            f"({len(self.violations)} violations; full history in {history_path})"
        )


def _tree(root: Root) -> dict[str, tuple[str, int]]:
    return {
        node.key.decode(): (node.raw.decode(), node.mod_revision)
        for node in root.walk()
        if node.has_value and node.raw is not None
    }


async def _final_state(client: Client, mounts: dict[str, Root], catch_up: float) -> FinalState:
    result = await client.range(PREFIX, prefix=True)
    server = {kv.key.decode(): (kv.value.decode(), kv.mod_revision) for kv in result.kvs}
    revision = result.header.revision
    trees: dict[str, dict[str, tuple[str, int]] | str] = {}
    for name, root in mounts.items():
        with trio.move_on_after(catch_up) as scope:
            await root.wait_revision(revision)
        if scope.cancelled_caught:
            trees[name] = (
                f"did not reach revision {revision} in {catch_up:g}s (it is at {root.revision}, "
                f"{root.state.value})"
            )
        else:
            trees[name] = _tree(root)
    return FinalState(server, revision, trees)


async def _guard(work: Workload, name: str, fn: Callable[[], Awaitable[None]]) -> None:
    """Run a workload; an error it lets out is recorded as a crash."""
    try:
        await fn()
    except Exception as error:  # any error that ends a workload is a finding
        work.crash(name, error)


async def run(target: Target, options: Options, notes: Sequence[str] = ()) -> Report:
    """Drive the workloads and the nemesis on ``target``, then check.

    Cancellation: everything started is cancelled and closed; nothing is reported.
    """
    schedule = options.schedule()
    start = trio.current_time()
    history = History(options.seed, start, notes=list(notes))
    history.quiet = [f"o{i}" for i in range(options.observers)]
    work = Workload(history, PREFIX, start + options.seconds, options.write_timeout, options.seed)
    names = [f"w{i}" for i in range(options.writers)]
    names += [f"o{i}" for i in range(options.observers)]
    async with AsyncExitStack() as stack:

        def client_for(index: int) -> Awaitable[Client]:
            ordered = target.endpoints[index:] + target.endpoints[:index]
            return stack.enter_async_context(open_client(ordered, transport=target.transport))

        control = await stack.enter_async_context(
            open_client(target.direct, transport=target.transport)
        )
        await control.delete(PREFIX, prefix=True)
        clients = {name: await client_for(i % target.size) for i, name in enumerate(names)}
        mounts = {
            name: await stack.enter_async_context(mount(clients[name], PREFIX)) for name in names
        }
        coordination = [await client_for(i % target.size) for i in range(2)]
        async with trio.open_nursery() as background:
            for name, root in mounts.items():
                background.start_soon(
                    _guard, work, name, lambda r=root, n=name: subscriber(work, n, r)
                )
                background.start_soon(
                    _guard, work, name, lambda r=root, n=name: sampler(work, n, r, clients[n])
                )
            async with trio.open_nursery() as active:
                active.start_soon(
                    _guard,
                    work,
                    "nemesis",
                    lambda: run_nemesis(
                        target,
                        control,
                        schedule,
                        history,
                        start=start,
                        end=work.end,
                        client_of_first=clients[names[0]],
                        seed=options.seed,
                    ),
                )
                for name in names[: options.writers]:
                    active.start_soon(_guard, work, name, lambda n=name: writer(work, n, mounts[n]))
                for i in range(options.lockers):
                    client = coordination[i % 2]
                    active.start_soon(
                        _guard, work, f"l{i}", lambda n=f"l{i}", c=client: lock_holder(work, n, c)
                    )
                for i in range(options.candidates):
                    client = coordination[(i + 1) % 2]
                    active.start_soon(
                        _guard, work, f"c{i}", lambda n=f"c{i}", c=client: candidate(work, n, c)
                    )
                if options.foreign:
                    active.start_soon(_guard, work, "foreign", lambda: foreign_writer(work, target))
            await target.heal_all()
            final = await _final_state(control, mounts, options.catch_up)
            background.cancel_scope.cancel()
    violations = check(
        history, final, synced_bound=options.synced_bound, quiet_bound=options.quiet_bound
    )
    return Report(options, schedule, history, final, violations, list(notes))


async def run_real(options: Options, *, version: str | None = None, members: int = 3) -> Report:
    """Start a real cluster of ``members`` (etcd ``version``, any by default), run, end it.

    Clients reach each member through a proxy of the nemesis (the ``partition`` fault cuts
    it); the foreign writer and ``defrag`` need an ``etcdctl`` and are left out without one.

    Cancellation: the cluster is ended (its processes killed) either way.
    """
    binary = find_etcd(version)
    tool = etcdctl()
    notes = [
        f"etcd {binary.version_string}, {members} members, over {options.transport}",
        "partition: a TCP proxy of the nemesis between the clients and each member",
    ]
    if tool is None:
        notes.append("no etcdctl found: no foreign writer, and defrag does nothing")
        options = replace(options, foreign=False)
    if (3, 5, 0) <= binary.version < (3, 5, 3) and "kill" in options.kinds:
        notes.append(_INCONSISTENT)
    cluster = await trio.to_thread.run_sync(
        functools.partial(EtcdCluster.start, binary, size=members)
    )
    try:
        target = RealTarget(cluster, tool, options.transport)
        async with trio.open_nursery() as nursery:
            await nursery.start(target.serve)
            report = await run(target, options, notes)
            nursery.cancel_scope.cancel()
        return report
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(cluster.close)


async def run_fake(options: Options, *, members: int = 3) -> Report:
    """Run on the in-memory etcd; the schedule and the workloads' choices come from the
    seed, and under ``MockClock(autojump_threshold=0)`` no real time passes.

    Cancellation: everything started is cancelled and closed; nothing is reported.
    """
    async with open_fake_etcd(members=members) as fake:
        target = FakeTarget(fake, options.transport)
        return await run(
            target, options, [f"in-memory etcd, {members} members, over {options.transport}"]
        )
