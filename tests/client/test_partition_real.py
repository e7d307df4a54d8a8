"""A real network partition between the client and a real etcd member.

Each case runs ``partition_script.py`` as root in a private network namespace (``unshare
--net --pid``: its own ``lo``, and every process in it ends with the script), where it
starts etcd on 127.0.0.1 and holds packets on ``lo`` in a 1 byte/s htb class: no ACK, no
RST, no FIN, and the senders' kernels believe the packets went out (unlike SIGSTOP, where
the kernel still accepts and ACKs). With one member every packet is held; with three, u32
filters hold those of one follower's client and peer ports. The script prints what it saw
as JSON; here are the assertions. The cases run at once (each in its own namespace), so the
module takes about one case's time: 10 s of partition on gRPC, 12-15 s in all.

Skipped, with the reason, where network namespaces, tc's htb or its u32 filter are not
available (not root, a container without CAP_SYS_ADMIN).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from trio_etcd_tree._wire.grpc.connection import KEEPALIVE_TIME, KEEPALIVE_TIMEOUT
from trio_etcd_tree.testing._launcher import EtcdNotFoundError, find_etcd
from trio_etcd_tree.testing.pytest_plugin import _binary

SCRIPT = Path(__file__).with_name("partition_script.py")
PING_BOUND = KEEPALIVE_TIME + KEEPALIVE_TIMEOUT  # the documented 10 s
MARGIN = 2.0  # seconds of slack for a loaded machine (2 cores, shared)
HEARTBEAT = 10.0  # a watch's (and a mount's) default heartbeat
RUN_LIMIT = 120.0  # seconds a case may take before it is killed
NAMESPACE = ["unshare", "--net", "--pid", "--fork", "--kill-child"]


@functools.cache
def namespaces_unavailable() -> str | None:
    """Why this machine cannot run the partition, or None."""
    missing = [tool for tool in ("unshare", "ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"no {', '.join(missing)} on PATH"
    probe = (
        "ip link set lo up && tc qdisc add dev lo root handle 1: htb"
        " && tc class add dev lo parent 1: classid 1:1 htb rate 8bit"
        " && tc filter add dev lo parent 1: protocol ip u32 match ip dport 1 0xffff flowid 1:1"
    )
    result = subprocess.run(
        [*NAMESPACE, "sh", "-c", probe], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode:
        return f"no private network namespace with tc htb and u32: {result.stderr.strip()}"
    return None


class Case(NamedTuple):
    """One run of the script: ``"3.5-grpc-1"`` (etcd version, transport, members), or
    ``"3.5-grpc-1-quiet"`` (no request sent into the partition)."""

    version: str
    transport: str
    members: int
    mode: str

    @classmethod
    def parse(cls, text: str) -> Case:
        version, transport, members, *mode = text.split("-")
        return cls(version, transport, int(members), mode[0] if mode else "requests")

    def __str__(self) -> str:
        return "-".join(map(str, self))


class Runs:
    """The processes of the cases selected, all started at once on the first request (each
    in its own namespace), each waited for once."""

    def __init__(self, directory: Path, cases: set[Case]) -> None:
        self.directory = directory
        self.cases = cases
        self.processes: dict[Case, subprocess.Popen[bytes]] = {}
        self.reports: dict[Case, dict[str, Any]] = {}

    def start_all(self) -> None:
        for case in sorted(self.cases):
            try:
                find_etcd(case.version)
            except EtcdNotFoundError:
                continue  # (its test skips or fails with the reason)
            args = [case.version, case.transport, str(self.directory), str(case.members), case.mode]
            with (
                (self.directory / f"{case}.json").open("wb") as out,
                (self.directory / f"{case}.log").open("wb") as log,
            ):
                self.processes[case] = subprocess.Popen(
                    [*NAMESPACE, sys.executable, str(SCRIPT), *args],
                    stdout=out,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                )

    def report(self, text: str) -> dict[str, Any]:
        """The report of the case ``text`` (after checking its etcd binary exists)."""
        case = Case.parse(text)
        _binary(case.version)
        if not self.processes:
            self.start_all()
        if case not in self.reports:
            assert case in self.processes, f"{case} was not started"
            process = self.processes[case]
            process.wait(RUN_LIMIT)
            output = (self.directory / f"{case}.json").read_text()
            log = (self.directory / f"{case}.log").read_text()[-3000:]
            assert process.returncode == 0 and output, f"the script failed:\n{log}"
            self.reports[case] = json.loads(output)
        return self.reports[case]

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()  # (unshare --kill-child takes the namespace's processes along)
                process.wait()


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runs]:
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)
    selected = {
        Case.parse(str(item.callspec.params["case"]))
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.module is request.module
    }
    runs = Runs(tmp_path_factory.mktemp("partition"), selected)
    try:
        yield runs
    finally:
        runs.close()


def error_of(report: dict[str, Any], name: str) -> dict[str, Any]:
    outcome = report["outcomes"][name]
    assert "error" in outcome, f"{name} did not fail: {outcome}"
    error: dict[str, Any] = outcome["error"]
    assert error["type"] == "UnavailableError", outcome
    return error


def check_partition(report: dict[str, Any]) -> None:
    """What holds for every case with requests in flight."""
    assert "failure" not in report, report["failure"]
    # the setup did what it meant to: the write lay in the member's queue, the cut held
    assert report["sent_in_member_queue"] and report["cut_complete"], report
    assert report["all_noticed"], f"not everything noticed the partition: {report}"
    # the write whose answer was lost says so; a write said not applied never is
    assert error_of(report, "sent")["outcome_unknown"]
    during = report["outcomes"]["during"]
    if "error" in during and not during["error"]["outcome_unknown"]:
        assert not report["during_applied"], during
    if "result" in during:
        assert report["during_applied"], during
    check_healed(report)


def check_healed(report: dict[str, Any]) -> None:
    """Healed: the client came back by itself; the mount and the watch caught up, equal to
    the server, with every revision once."""
    assert report["recovered"], f"the client did not come back: {report}"
    assert report["caught_up"], report
    assert report["tree_equal"], report
    keys = {"/p/b", "/p/x", "/p/y", "/p/z"} | ({"/p/mid"} if report["members"] > 1 else set())
    keys |= {"/p/sent"} if report["sent_applied"] else set()  # (never sent when quiet)
    keys |= {"/p/during"} if report["during_applied"] else set()
    assert report["tree_keys"] == sorted(keys)
    assert report["resyncs"] == 0  # resumed from its revision, not a fresh snapshot
    # every revision once, in order, with every event: the watch and the subscriber
    history = report["history"]
    assert report["watch_events"] == history
    revisions = sorted({event[0] for event in history})
    assert [update[0] for update in report["updates"]] == revisions
    assert not any(update[1] for update in report["updates"])  # no resync updates


def check_ping(report: dict[str, Any], *names: str) -> None:
    """The PINGs noticed: each of ``names`` failed within the bound, and says why."""
    for name in names:
        error = error_of(report, name)
        assert "HTTP/2 PING" in error["message"] and error["kind"] == "lost", error
        at = report["outcomes"][name]["at"]
        assert KEEPALIVE_TIMEOUT <= at <= PING_BOUND + MARGIN, report["outcomes"]


@pytest.mark.parametrize("case", ["3.4-grpc-1", "3.5-grpc-1"])
def test_partition_over_grpc(runs: Runs, case: str) -> None:
    report = runs.report(case)
    check_partition(report)
    # every call and watch on the connection fails within the PING bound
    check_ping(report, "sent", "during", "bare_read", "bare_watch")
    assert error_of(report, "during")["outcome_unknown"]  # it went out: may be applied later
    assert not error_of(report, "bare_read")["outcome_unknown"]  # (a read)
    # the member applied the write whose answer was lost (it was in its queue)
    assert report["sent_applied"]
    bound = PING_BOUND + MARGIN
    assert report["left"]["watch"] <= bound and report["left"]["mount"] <= bound, report
    # the read was not given up (attempt_timeout 30 s): tried again once healed, it succeeded
    read = report["outcomes"]["read"]
    assert "value=b'1'" in read.get("result", ""), read
    assert read["at"] >= report["healed_at"]


@pytest.mark.parametrize("case", ["3.5-gateway-1"])
def test_partition_over_gateway(runs: Runs, case: str) -> None:
    report = runs.report(case)
    check_partition(report)
    attempt = report["settings"]["attempt_timeout"]
    deadline = report["settings"]["request_deadline"]
    # no PINGs: attempt_timeout notices, for the requests and for the watches on the member
    sent = error_of(report, "sent")
    assert sent["kind"] == "timeout" and "attempt_timeout" in sent["message"], sent
    assert attempt <= report["outcomes"]["sent"]["at"] <= attempt + MARGIN
    assert report["left"]["watch"] <= attempt + MARGIN, report
    assert report["left"]["mount"] <= attempt + MARGIN, report
    # a read is tried again until request_deadline, and then says it was not applied
    read = error_of(report, "read")
    assert read["kind"] == "timeout" and not read["outcome_unknown"], read
    assert deadline <= report["outcomes"]["read"]["at"] <= deadline + MARGIN
    error_of(report, "during")
    assert report["outcomes"]["during"]["at"] <= deadline + MARGIN


@pytest.mark.parametrize("case", ["3.5-grpc-3", "3.5-gateway-3"])
def test_follower_cut_off(runs: Runs, case: str) -> None:
    """Three members; the follower the client uses loses its network (client and peer
    ports). The client leaves it within the bound and goes on with the other two."""
    report = runs.report(case)
    check_partition(report)
    if report["transport"] == "grpc":
        check_ping(report, "sent")
        bound = PING_BOUND + MARGIN
    else:
        bound = report["settings"]["attempt_timeout"] + MARGIN
        assert report["outcomes"]["sent"]["at"] <= bound
    # the read in flight was answered by another member, during the partition
    read = report["outcomes"]["read"]
    assert "value=b'1'" in read.get("result", ""), read
    assert read["at"] <= bound
    # the watch and the mount moved, and a write during the partition reached them
    assert report["moved"]["watch"] <= bound and report["moved"]["mount"] <= bound, report
    assert report["mid_seen"] and not report["mid_endpoint_is_victim"], report
    # healed, the member that was cut off catches up by itself
    assert report["victim_caught_up"], report


@pytest.mark.parametrize("case", ["3.5-grpc-1-quiet", "3.5-gateway-1-quiet"])
def test_partition_noticed_by_the_watch_alone(runs: Runs, case: str) -> None:
    """No request meets the partition: the watch and the mount notice by themselves, within
    the PING bound on gRPC, and within ``heartbeat + attempt_timeout`` on the gateway (the
    silent stream is probed with a read)."""
    report = runs.report(case)
    assert "failure" not in report, report["failure"]
    assert report["cut_complete"] and report["all_noticed"], report
    if report["transport"] == "grpc":
        bound = PING_BOUND + MARGIN
    else:
        bound = HEARTBEAT + report["settings"]["attempt_timeout"] + MARGIN
    assert report["left"]["watch"] <= bound and report["left"]["mount"] <= bound, report
    check_healed(report)
