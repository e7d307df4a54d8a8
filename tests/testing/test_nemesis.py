"""The fault-injection suite's deterministic part: schedules, the checker's rules, whole
runs on the in-memory etcd under the mock clock (a correct mirror passes, a broken one
fails), and the command line."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing

import trio_etcd_tree as et
from trio_etcd_tree import mount, open_client
from trio_etcd_tree.testing import open_fake_etcd
from trio_etcd_tree.testing._fake import watch as fake_watch
from trio_etcd_tree.testing._fake.store import Event as FakeEvent
from trio_etcd_tree.testing.nemesis import (
    FAULT_KINDS,
    Fault,
    FinalState,
    History,
    Options,
    __main__ as cli,
    check,
    faults,
    make_schedule,
    run_fake,
    runner,
    workloads,
)
from trio_etcd_tree.testing.nemesis.history import (
    Crash,
    Delivery,
    FaultRecord,
    FenceWrite,
    LeaderTerm,
    StateChange,
    WriteOp,
)
from trio_etcd_tree.testing.pytest_plugin import _run_on_autojump_clock

autojump = pytest.mark.trio(run=_run_on_autojump_clock)

# -- schedules ------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_schedule() -> None:
    first = make_schedule(7, 120)
    assert first == make_schedule(7, 120)
    assert first != make_schedule(8, 120)
    assert first[0].at == 2.0  # the warmup
    for fault, following in itertools.pairwise(first):
        assert following.at >= fault.at + fault.duration + 0.5  # one fault at a time
    assert first[-1].at + first[-1].duration <= 120 - 3.0  # healed before the settling time
    long = [f for f in make_schedule(1, 3600) if f.duration >= 35]
    assert long and {f.kind for f in long} == {"freeze", "partition"}  # past every bound
    kinds = Counter(f.kind for f in make_schedule(1, 3600))
    assert set(kinds) == set(FAULT_KINDS)
    for fault in make_schedule(1, 3600):
        assert (fault.role != "") == (fault.kind in {"kill", "freeze", "partition", "defrag"})
        assert (fault.duration > 0) == (fault.kind in {"kill", "freeze", "partition", "restore"})


def test_schedule_options() -> None:
    only = make_schedule(3, 300, kinds=["freeze"], max_duration=1.5)
    assert {f.kind for f in only} == {"freeze"}
    assert max(f.duration for f in only) == 1.5
    assert make_schedule(3, 4) == []  # no room for a fault
    with pytest.raises(ValueError, match=r"unknown fault kinds \['nap'\]"):
        make_schedule(1, 60, kinds=["kill", "nap"])
    with pytest.raises(ValueError, match="unknown fault kinds"):
        make_schedule(1, 60, kinds=[])


def test_fault_text() -> None:
    assert str(Fault(2.0, "freeze", "leader", 3.25)) == "   2.00s freeze leader for 3.2s"
    assert str(Fault(10.5, "compact", "", 0.0)) == "  10.50s compact"


# -- the checker's rules ---------------------------------------------------------------------------


def _history(**lists: object) -> History:
    history = History(seed=1, started=100.0)
    for name, value in lists.items():
        setattr(history, name, value)
    return history


def _write(
    kind: str,
    writes: dict[str, str | None],
    outcome: str = "ok",
    revision: int = 0,
    done: float = 101.0,
    process: str = "w0",
) -> WriteOp:
    return WriteOp(process, kind, writes, done - 0.5, done, outcome, revision, "")


def _final(server: dict[str, tuple[str, int]], **mounts: object) -> FinalState:
    trees = {name: (dict(server) if tree is None else tree) for name, tree in mounts.items()}
    return FinalState(server, 50, trees)  # type: ignore[arg-type]


def _rules(history: History, final: FinalState, bound: float = 5.0) -> list[str]:
    return [v.rule for v in check(history, final, synced_bound=bound)]


def test_a_clean_history_passes() -> None:
    ops = [
        _write("put", {"/n/w0/k0": "w0.1"}, revision=10, done=101),
        _write("txn", {"/n/w0/k0": "w0.2", "/n/w0/k1": "w0.2"}, revision=11, done=102),
        _write("delete", {"/n/w0/k1": None}, revision=12, done=103),
        _write("put", {"/n/w0/k1": "w0.4"}, "failed", done=104),
        _write("put", {"/n/w0/k2": "w0.5"}, "unknown", done=105),
    ]
    deliveries = [
        Delivery("m", 101, 10, False, {"/n/w0/k0": "w0.1"}),
        Delivery("m", 102, 11, False, {"/n/w0/k0": "w0.2", "/n/w0/k1": "w0.2"}),
        Delivery("m", 103, 12, False, {"/n/w0/k1": None}),
    ]
    history = _history(writes=ops, deliveries=deliveries)
    assert _rules(history, _final({"/n/w0/k0": ("w0.2", 11)}, m=None)) == []
    # the unknown write may as well have been applied
    with_unknown = {"/n/w0/k0": ("w0.2", 11), "/n/w0/k2": ("w0.5", 13)}
    assert _rules(history, _final(with_unknown, m=None)) == []


def test_tree_rule() -> None:
    server = {"/n/a": ("1", 5)}
    violations = check(
        _history(),
        _final(server, good=None, wrong={"/n/a": ("2", 6)}, late="did not reach revision 50"),
        synced_bound=5,
    )
    assert [v.rule for v in violations] == ["tree", "tree"]
    assert "mount wrong differs from the server at revision 50 in 1 keys" in str(violations[0])
    assert "tree ('2', 6), server ('1', 5)" in violations[0].message
    assert "mount late: did not reach revision 50" in violations[1].message


def test_order_and_gap_rules() -> None:
    acked = [_write("put", {"/n/w0/k0": f"w0.{r}"}, revision=r, done=100 + r) for r in (3, 4, 5)]
    final = _final({"/n/w0/k0": ("w0.5", 5)})
    # 4 skipped without a resync: a gap
    at3 = Delivery("m", 101, 3, False, {"/n/w0/k0": "w0.3"})
    skipped = [at3, Delivery("m", 102, 5, False, {"/n/w0/k0": "w0.5"})]
    violations = check(_history(writes=acked, deliveries=skipped), final, synced_bound=5)
    assert [v.rule for v in violations] == ["gap"]
    assert "from revision 3 to 5 without a resync, skipping acknowledged writes at [4]" in str(
        violations[0]
    )
    resynced = [at3, Delivery("m", 102, 5, True, {})]
    assert _rules(_history(writes=acked, deliveries=resynced), final) == []
    overflowed = [at3, Delivery("m", 101.5, -1, True, {}), skipped[1]]
    assert _rules(_history(writes=acked, deliveries=overflowed), final) == []
    backwards = [skipped[1], Delivery("m", 106, 5, False, {"/n/w0/k0": "w0.5"})]
    assert _rules(_history(writes=acked, deliveries=backwards), final) == ["order"]


def test_revisions_after_a_restore_are_not_compared_with_those_before() -> None:
    restore = FaultRecord(Fault(1, "restore", "", 2), None, "", 101.0, 104.0)
    # acked at 100.5 (before the backup, survives), then the cluster goes back to 3
    acked = [
        _write("put", {"/n/w0/k0": "w0.1"}, revision=3, done=100.5),
        _write("put", {"/n/w0/k0": "w0.2"}, revision=4, done=102),  # in the window: may be gone
        _write("put", {"/n/w0/k1": "w0.3"}, revision=4, done=105),  # after: revision 4 again
    ]
    deliveries = [
        Delivery("m", 100.5, 3, False, {"/n/w0/k0": "w0.1"}),
        Delivery("m", 102, 4, False, {"/n/w0/k0": "w0.2"}),
        Delivery("m", 104.5, 3, True, {"/n/w0/k0": "w0.1"}),
        Delivery("m", 105, 4, False, {"/n/w0/k1": "w0.3"}),
        Delivery("m", 106, 9, False, {}),
        Delivery("other", 103, 2, False, {}),  # before the restore ended...
        Delivery("other", 105, 4, False, {"/n/w0/k1": "w0.3"}),  # ...after: not compared
    ]
    server = {"/n/w0/k0": ("w0.1", 3), "/n/w0/k1": ("w0.3", 4)}
    history = _history(writes=acked, deliveries=deliveries, faults=[restore])
    assert _rules(history, _final(server, m=None)) == []
    assert history.epoch(103) == 0 and history.epoch(104) == 1
    unfinished = FaultRecord(Fault(1, "restore", "", 2), None, "", 101.0)
    assert _history(faults=[unfinished]).rolled_back(1e9)


def test_atomic_rule() -> None:
    op = _write("txn", {"/n/w0/k0": "w0.1", "/n/w0/k1": "w0.1"}, revision=7)
    half = Delivery("m", 101, 7, False, {"/n/w0/k0": "w0.1"})
    server = {"/n/w0/k0": ("w0.1", 7), "/n/w0/k1": ("w0.1", 7)}
    violations = check(_history(writes=[op], deliveries=[half]), _final(server), synced_bound=5)
    assert [v.rule for v in violations] == ["atomic"]
    assert "it has {'/n/w0/k1': '<absent>'}" in violations[0].message


def test_lost_and_phantom_rules() -> None:
    acked = _write("put", {"/n/w0/k0": "w0.1"}, revision=7, done=101)
    refused = _write("put", {"/n/w0/k0": "w0.2"}, "failed", done=102)
    refused.error = "ConflictError: ..."
    history = _history(writes=[acked, refused])
    assert _rules(history, _final({})) == ["lost"]  # the acknowledged value is gone
    assert _rules(history, _final({"/n/w0/k0": ("w0.1", 8)})) == ["lost"]  # altered revision
    phantom = check(history, _final({"/n/w0/k0": ("w0.2", 8)}), synced_bound=5)
    assert [v.rule for v in phantom] == ["phantom"]
    assert "reported as not applied (ConflictError: ...)" in phantom[0].message
    seen = _history(
        writes=[acked, refused], deliveries=[Delivery("m", 102, 8, False, {"/n/w0/k0": "w0.2"})]
    )
    assert _rules(seen, _final({"/n/w0/k0": ("w0.1", 7)})) == ["phantom"]
    # nothing acknowledged: absent is fine, a value nobody wrote is not
    never = _history(writes=[_write("put", {"/n/w0/k0": "w0.1"}, "unknown")])
    assert _rules(never, _final({})) == []
    assert _rules(never, _final({"/n/w0/k0": ("other", 3)})) == ["lost"]
    # an unknown guarded write before the last acknowledged one cannot come back...
    stale = [
        _write("put", {"/n/w0/k0": "w0.1"}, "unknown", done=101),
        _write("put", {"/n/w0/k0": "w0.2"}, revision=8, done=102),
    ]
    assert _rules(_history(writes=stale), _final({"/n/w0/k0": ("w0.1", 9)})) == ["lost"]
    # ...but an unguarded foreign one may be applied late
    late = [
        _write("foreign", {"/n/foreign/k0": "f.1"}, "unknown", done=101, process="foreign"),
        _write("foreign", {"/n/foreign/k0": "f.2"}, revision=8, done=102, process="foreign"),
    ]
    assert _rules(_history(writes=late), _final({"/n/foreign/k0": ("f.1", 9)})) == []


def test_fence_rule() -> None:
    def fence(process: str, value: int, revision: int, outcome: str = "ok") -> FenceWrite:
        return FenceWrite(process, 1, value, 100.0, 100.0 + revision, outcome, revision)

    fine = [fence("l0", 1, 3), fence("l1", 2, 5), fence("l0", 2, 0, "failed"), fence("l0", 3, 8)]
    assert _rules(_history(fences=fine), _final({})) == []
    twice = [fence("l0", 1, 3), fence("l1", 2, 5), fence("l0", 2, 6)]
    violations = check(_history(fences=twice), _final({}), synced_bound=5)
    assert [v.rule for v in violations] == ["fence"]
    assert "went from 2 (l1, lock revision 1, at revision 5) to 2 (l0" in violations[0].message


def test_leader_rule() -> None:
    terms = [LeaderTerm("c0", 5, 101), LeaderTerm("c1", 9, 102), LeaderTerm("c0", 12, 103)]
    assert _rules(_history(leaders=terms), _final({})) == []
    twice = [*terms, LeaderTerm("c1", 12, 103.5)]
    violations = check(_history(leaders=twice), _final({}), synced_bound=5)
    assert [v.message for v in violations] == ["c0 and c1 both led in term 12"]
    back = [*terms, LeaderTerm("c1", 10, 104)]
    violations = check(_history(leaders=back), _final({}), synced_bound=5)
    assert [v.message for v in violations] == ["c1 led in term 10 after c0 in term 12"]
    # a restore sends the terms back
    restore = FaultRecord(Fault(3, "restore", "", 1), None, "", 103.2, 103.8)
    assert _rules(_history(leaders=back, faults=[restore]), _final({})) == []
    during = FaultRecord(Fault(3, "restore", "", 1), None, "", 103.2, 104.5)
    assert _rules(_history(leaders=back, faults=[during]), _final({})) == []


def test_stale_rule() -> None:
    frozen = FaultRecord(Fault(1, "freeze", "client", 12), 0, "http://a", 101.0, 113.0)
    cut = FaultRecord(Fault(20, "partition", "leader", 3), 1, "http://b", 120.0, 123.0)
    running = FaultRecord(Fault(30, "freeze", "leader", 9), 1, "http://b", 130.0)
    writes = [  # acknowledged by other writers, on healthy members, during the freeze
        _write("put", {"/n/w1/k0": "w1.1"}, revision=10, done=101.5, process="w1"),
        _write("put", {"/n/w1/k0": "w1.2"}, revision=11, done=104.0, process="w1"),
        _write("put", {"/n/w1/k0": "w1.3"}, revision=12, done=110.0, process="w1"),
    ]
    states = [  # m stays on the frozen member, then moves
        StateChange("m", 100.0, "synced", "http://a"),
        StateChange("m", 108.0, "disconnected", "http://a"),
        StateChange("m", 109.0, "synced", "http://b"),
        StateChange("other", 100.0, "synced", "http://b"),
    ]
    deliveries = [
        Delivery("m", 100.5, 9, False, {}),
        Delivery("m", 109.5, 12, True, {"/n/w1/k0": "w1.3"}),  # resumed elsewhere
        *(Delivery("other", op.done + 0.1, op.revision, False, op.writes) for op in writes),
    ]
    lists = {"writes": writes, "states": states, "deliveries": deliveries}
    final = _final({"/n/w1/k0": ("w1.3", 12)})
    violations = check(_history(faults=[frozen, cut, running], **lists), final, synced_bound=5)
    assert [(v.rule, v.at) for v in violations] == [("stale", 6.5)]
    assert violations[0].message == (
        "mount m said synced at 6.50s (on http://a) but had delivered revision 9, 5s after "
        "revision 10 was acknowledged, while member 0 (http://a) was frozen from 1.00s to "
        "13.00s (freeze client)"
    )
    # within a longer bound m said "disconnected", or had moved and caught up
    assert check(_history(faults=[frozen], **lists), final, synced_bound=6.5) == []
    assert check(_history(faults=[frozen], **lists), final, synced_bound=20) == []
    # a quiet mount (no requests of its own) has its own bound
    quiet = _history(faults=[frozen], quiet=["m"], **lists)
    assert check(quiet, final, synced_bound=5, quiet_bound=8) == []
    assert [v.rule for v in check(quiet, final, synced_bound=20, quiet_bound=5)] == ["stale"]
    # a mount that never delivered anything
    silent = [StateChange("s", 100.0, "synced", "http://a")]
    violations = check(
        _history(faults=[frozen], writes=writes, states=silent), final, synced_bound=5
    )
    assert "had delivered nothing" in violations[0].message


def test_crash_rule() -> None:
    history = _history(crashes=[Crash("w0", 105.0, "MirrorError: gone")])
    assert [str(v) for v in check(history, _final({}), synced_bound=5)] == [
        "[crash] at 5.00s: w0: MirrorError: gone"
    ]


# -- whole runs on the in-memory etcd -------------------------------------------------------------


@autojump
@pytest.mark.parametrize("wire", ["grpc", "gateway"])
async def test_a_run_with_every_fault_passes_on_the_in_memory_etcd(wire: str) -> None:
    report = await run_fake(Options(seed=145, seconds=30, max_fault=3, transport=wire))
    assert report.ok, report.failure(Path("-"))
    kinds = {r.fault.kind for r in report.history.faults}
    assert kinds == set(FAULT_KINDS)
    assert [r.fault for r in report.history.faults] == report.schedule  # the schedule, replayed
    outcomes = Counter(op.outcome for op in report.history.writes)
    assert outcomes["ok"] > 300
    assert {op.kind for op in report.history.writes} == {"put", "txn", "delete", "foreign"}
    assert len(report.history.fences) > 30 and len(report.history.leaders) > 10
    assert any(d.resync for d in report.history.deliveries)  # the restore was reported
    assert set(report.final.mounts) == {"w0", "w1", "w2", "o0"}
    summary = report.summary()
    assert summary.startswith(f"seed 145: {len(report.history.faults)} faults (compact ")
    assert summary.endswith(f"in-memory etcd, 3 members, over {wire}\nviolations: 0")


@autojump
async def test_a_broken_mirror_fails_the_checker(monkeypatch: pytest.MonkeyPatch) -> None:
    deliver = fake_watch.WatchStream.deliver
    dropped: list[int] = []

    def forgetful(
        self: fake_watch.WatchStream, w: fake_watch._Watcher, events: list[FakeEvent], revision: int
    ) -> None:
        # a watch that loses the first change of one key: a mirror missing a revision
        kept = [ev for ev in events if not (ev.kv.key.endswith(b"/w1/k2") and not dropped)]
        if len(kept) < len(events):
            dropped.append(revision)
        deliver(self, w, kept, revision)

    monkeypatch.setattr(fake_watch.WatchStream, "deliver", forgetful)
    report = await run_fake(Options(seed=2, seconds=20, kinds=["compact"], write_timeout=3))
    assert dropped
    assert not report.ok
    assert {v.rule for v in report.violations} <= {"atomic", "tree", "gap", "lost"}
    assert all("/w1/k2" in v.message or v.rule == "gap" for v in report.violations)
    text = report.failure(Path("/tmp/h.json"))
    assert text.startswith("nemesis run FAILED: seed 2\nschedule:\n")
    assert f"first violation: {report.violations[0]}" in text
    assert "full history in /tmp/h.json" in text


@autojump
async def test_a_nemesis_request_that_fails_is_recorded() -> None:
    async with open_fake_etcd(members=3) as fake:
        target = faults.FakeTarget(fake, "gateway")
        async with open_client(fake.endpoints, transport=fake) as client:
            history = History(seed=1, started=trio.current_time())
            fake.fail_next("/v3/kv/compaction", code=3, message="nope", status=400)
            schedule = [Fault(0, "compact", "", 0), Fault(1, "lease", "", 0)]
            schedule += [Fault(2, "kill", "follower", 1), Fault(4, "defrag", "leader", 0)]
            await faults.run_nemesis(
                target,
                client,
                schedule,
                history,
                start=trio.current_time(),
                end=trio.current_time() + 10,
                client_of_first=client,
                seed=1,
            )
            details = [r.detail for r in history.faults]
            assert (
                details[0]
                == " failed: InvalidRequestError: compact at 1: nope (endpoint http://fake-0.etcd:2379)"
            )
            assert details[1] == "no lease to revoke"
            assert details[3] == "nothing to defragment in memory"
            assert [r.member for r in history.faults] == [None, None, 1, 0]
            late = [Fault(0, "freeze", "leader", 5), Fault(1, "freeze", "leader", 5)]
            start = trio.current_time()
            await faults.run_nemesis(
                target,
                client,
                late,
                history,
                start=start,
                end=start + 6,
                client_of_first=client,
                seed=1,
            )  # the first takes until 5 s: the second would end at 10, past the end
            assert history.notes == [
                "1 faults left out: earlier ones took longer than scheduled and the run's "
                "end came first"
            ]
            # looking for the leader skips members that are down or do not answer
            fake.member_down(0)
            assert await faults._leader_by_status(client, fake.endpoints, [True] * 3) == 0
            fake.member_up(0)
            assert await faults._leader_by_status(client, fake.endpoints, [False] * 3) == 0
            assert await faults._leader_by_status(client, fake.endpoints, [True] * 3) == 0


# -- the command line -----------------------------------------------------------------------------


def test_command_line_run_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--in-memory", "--seconds", "15", "--seed", "4", "--faults", "kill"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nemesis: seed 4, ")
    assert out.endswith("violations: 0\n")


def test_command_line_failure_writes_the_history(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    crash = Crash("w0", 0.0, "boom")

    real_run = cli.run_fake  # type: ignore[attr-defined]

    async def crashing(options: Options, *, members: int) -> object:
        report = await real_run(options, members=members)
        report.history.crashes.append(crash)
        report.violations[:] = check(report.history, report.final, synced_bound=10)
        return report

    monkeypatch.setattr(cli, "run_fake", crashing)
    path = tmp_path / "history.json"
    args = ["--in-memory", "--seconds", "8", "--seed", "9", "--history", str(path)]
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert "first violation: [crash]" in out
    assert f"full history in {path}" in out
    document = json.loads(path.read_text())
    assert document["history"]["crashes"][0]["error"] == "boom"
    assert document["violations"][0]["rule"] == "crash"
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--in-memory", "--seconds", "8", "--seed", "9"]) == 1
    assert (tmp_path / "nemesis-history-9.json").exists()


def test_command_line_refuses_unknown_faults(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--faults", "kill,nap"]) == 2
    assert "error: unknown fault kinds ['nap']" in capsys.readouterr().err


def test_random_seed_is_printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("random.randrange", lambda n: 1234)
    assert cli.main(["--in-memory", "--seconds", "5"]) == 0
    assert capsys.readouterr().out.startswith("nemesis: seed 1234, 1 faults in 5s")


# -- the workloads and the runner, one by one ----------------------------------------------------


async def test_outcomes_follow_the_errors_outcome_unknown() -> None:
    """Regression: a put applied, then a restore while the mount waited for its revision:
    ``ClusterChangedError`` says it may or may not have been applied (outcome_unknown), and
    the workload recorded it as failed (only UnavailableError's counted), a false phantom."""
    cases = [
        (None, "ok"),
        (et.ClusterChangedError("restored", outcome_unknown=True), "unknown"),
        (et.UnavailableError("lost", outcome_unknown=True), "unknown"),
        (et.UnavailableError("refused"), "failed"),
        (et.ConflictError("changed", conflicts={}, revision=5), "failed"),
        (trio.TooSlowError(), "unknown"),
    ]
    for error, outcome in cases:
        op = _write("put", {"/n/k": "v"}, outcome="pending")
        workloads._outcome(op, error)
        assert op.outcome == outcome, error


def _work(history: History, end: float, **options: float) -> workloads.Workload:
    return workloads.Workload(history, "/n", end, options.get("write_timeout", 5.0), 1)


@autojump
async def test_an_overflowing_subscription_is_recorded_and_reopened() -> None:
    async with open_fake_etcd() as fake, open_client(fake.endpoints, transport=fake) as client:
        async with mount(client, "/n") as root, trio.open_nursery() as nursery:
            history = History(seed=1, started=trio.current_time())
            work = _work(history, 0.0)
            work.buffer = 1
            nursery.start_soon(workloads.subscriber, work, "m", root)
            await trio.testing.wait_all_tasks_blocked()
            fake.break_watches("eof")  # the watch resumes with three revisions in one message
            for name in "abc":
                fake.put(f"/n/{name}", "1")
            await root.wait_revision(fake.revision)
            await trio.testing.wait_all_tasks_blocked()
            fake.put("/n/d", "2")
            await root.wait_revision(fake.revision)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    revisions = [d.revision for d in history.deliveries]
    assert -1 in revisions  # the overflow, then the subscription again
    assert revisions[-1] == fake.revision


@autojump
async def test_a_fenced_write_without_an_answer_is_unknown() -> None:
    async with open_fake_etcd() as fake, open_client(fake.endpoints, transport=fake) as client:
        history = History(seed=1, started=trio.current_time())
        work = _work(history, trio.current_time() + 5.0, write_timeout=1.0)
        fake.delay_next("/v3/kv/txn", 2.0, count=2)  # the lock's key, then the fenced write
        await workloads.lock_holder(work, "l0", client)
    assert history.fences[0].outcome == "unknown"
    assert history.fences[0].error.startswith("TooSlowError")


class _FailingTool:
    async def foreign_put(self, key: str, value: str) -> int:
        await trio.lowlevel.checkpoint()
        raise faults.ForeignWriteError("Error: context deadline exceeded")


@autojump
async def test_a_failing_foreign_write_is_unknown() -> None:
    history = History(seed=1, started=trio.current_time())
    await workloads.foreign_writer(
        _work(history, trio.current_time() + 0.1), cast(faults.Target, _FailingTool())
    )
    assert [op.outcome for op in history.writes] == ["unknown"]
    assert history.writes[0].error == "ForeignWriteError: Error: context deadline exceeded"


async def test_a_workload_that_raises_is_a_crash() -> None:
    history = History(seed=1, started=0.0)

    async def broken() -> None:
        await trio.lowlevel.checkpoint()
        raise ExceptionGroup("two", [ValueError("x"), KeyError("y")])

    await runner._guard(_work(history, 0.0), "w0", broken)
    assert [c.error for c in history.crashes] == [
        "ExceptionGroup: two (2 sub-exceptions) [ValueError: x; KeyError: 'y']"
    ]


@autojump
async def test_a_mount_that_does_not_catch_up_is_reported() -> None:
    async with open_fake_etcd() as fake, open_client(fake.endpoints, transport=fake) as client:
        async with mount(client, runner.PREFIX) as root:
            fake.stall_watches()
            fake.put(f"{runner.PREFIX}/x", "1")
            final = await runner._final_state(client, {"m": root}, 0.5)
    assert final.mounts["m"] == (
        f"did not reach revision {final.revision} in 0.5s (it is at {final.revision - 1}, synced)"
    )


@autojump
async def test_looking_for_the_leader_gives_up_on_a_member_that_does_not_answer() -> None:
    async with open_fake_etcd(members=2) as fake:
        async with open_client(fake.endpoints, transport=fake) as client:
            fake.delay_next("/v3/maintenance/status", 60.0)
            start = trio.current_time()
            assert await faults._leader_by_status(client, fake.endpoints, [True, True]) == 0
            assert trio.current_time() - start == pytest.approx(3.0)
