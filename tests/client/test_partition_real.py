"""A real network partition between the client and a real etcd member.

Each case runs ``partition_script.py`` as root in a private network namespace (``unshare
--net --pid``: its own ``lo``, and every process in it ends with the script), where it
starts one etcd on 127.0.0.1 and holds every packet on ``lo`` in a 1 byte/s htb class: no
ACK, no RST, no FIN, and the senders' kernels believe the packets went out (unlike
SIGSTOP, where the kernel still accepts and ACKs). The script prints what it saw as JSON;
here are the assertions. The cases run at once (each in its own namespace), so the module
takes about one case's time: 10 s of partition on gRPC.

Skipped, with the reason, where network namespaces or tc's htb are not available (not root,
a container without CAP_SYS_ADMIN).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trio_etcd_tree._wire.grpc.connection import KEEPALIVE_TIME, KEEPALIVE_TIMEOUT
from trio_etcd_tree.testing._launcher import EtcdNotFoundError, find_etcd
from trio_etcd_tree.testing.pytest_plugin import _binary

SCRIPT = Path(__file__).with_name("partition_script.py")
PING_BOUND = KEEPALIVE_TIME + KEEPALIVE_TIMEOUT  # the documented 10 s
MARGIN = 2.0  # seconds of slack for a loaded machine (2 cores, shared)
RUN_LIMIT = 120.0  # seconds a case may take before it is killed
NAMESPACE = ["unshare", "--net", "--pid", "--fork", "--kill-child"]


@functools.cache
def namespaces_unavailable() -> str | None:
    """Why this machine cannot run the partition, or None."""
    missing = [tool for tool in ("unshare", "ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"no {', '.join(missing)} on PATH"
    probe = "ip link set lo up && tc qdisc add dev lo root handle 1: htb default 1"
    result = subprocess.run(
        [*NAMESPACE, "sh", "-c", probe], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode:
        return f"no private network namespace with tc htb: {result.stderr.strip()}"
    return None


class Runs:
    """The processes of the cases selected, all started on the first request, each waited
    for once."""

    def __init__(self, directory: Path, cases: set[tuple[str, str]]) -> None:
        self.directory = directory
        self.cases = cases
        self.processes: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self.reports: dict[tuple[str, str], dict[str, Any]] = {}

    def start_all(self) -> None:
        for version, transport in sorted(self.cases):
            try:
                find_etcd(version)
            except EtcdNotFoundError:
                continue  # (its test skips or fails with the reason)
            name = f"{version}-{transport}"
            with (
                (self.directory / f"{name}.json").open("wb") as out,
                (self.directory / f"{name}.log").open("wb") as log,
            ):
                self.processes[version, transport] = subprocess.Popen(
                    [
                        *NAMESPACE,
                        sys.executable,
                        str(SCRIPT),
                        version,
                        transport,
                        str(self.directory),
                    ],
                    stdout=out,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                )

    def report(self, version: str, transport: str) -> dict[str, Any]:
        if not self.processes:
            self.start_all()
        case = version, transport
        if case not in self.reports:
            assert case in self.processes, f"{case} was not started"
            process = self.processes[case]
            process.wait(RUN_LIMIT)
            name = f"{version}-{transport}"
            text = (self.directory / f"{name}.json").read_text()
            log = (self.directory / f"{name}.log").read_text()[-3000:]
            assert process.returncode == 0 and text, f"the script failed:\n{log}"
            self.reports[case] = json.loads(text)
        return self.reports[case]

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()  # (unshare --kill-child takes the namespace's processes along)
                process.wait()


def case_of(item: pytest.Function) -> tuple[str, str]:
    """(version, transport) of a test here: ``test_partition_over_grpc[3.4]``."""
    callspec = getattr(item, "callspec", None)
    version = str(callspec.params["version"]) if callspec is not None else "3.5"
    return version, item.originalname.rsplit("_", 1)[1]


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runs]:
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)
    selected = {
        case_of(item)
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
    """What holds on both transports."""
    assert "failure" not in report, report["failure"]
    # the setup did what it meant to: the write lay in the member's queue, the cut held
    assert report["sent_in_member_queue"] and report["cut_complete"], report
    assert report["all_noticed"], f"not everything noticed the partition: {report}"
    # the write whose answer was lost says so; a write said not applied never is
    assert error_of(report, "sent")["outcome_unknown"]
    if not error_of(report, "during")["outcome_unknown"]:
        assert not report["during_applied"]
    # healed: the client came back by itself; the mount and the watch caught up
    assert report["recovered"], f"the client did not come back: {report}"
    assert report["caught_up"], report
    assert report["tree_equal"], report
    assert report["tree_keys"] == ["/p/b", "/p/sent", "/p/x", "/p/y", "/p/z"]
    assert report["resyncs"] == 0  # resumed from its revision, not a fresh snapshot
    # every revision once, in order, with every event: the watch and the subscriber
    history = report["history"]
    assert report["watch_events"] == history
    revisions = sorted({event[0] for event in history})
    assert [update[0] for update in report["updates"]] == revisions
    assert not any(update[1] for update in report["updates"])  # no resync updates


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_partition_over_grpc(runs: Runs, version: str) -> None:
    _binary(version)
    report = runs.report(version, "grpc")
    check_partition(report)
    bound = PING_BOUND + MARGIN
    # the PINGs notice: every call and watch on the connection fails within the bound
    for name in ("sent", "during", "bare_read", "bare_watch"):
        error = error_of(report, name)
        assert "HTTP/2 PING" in error["message"] and error["kind"] == "lost", error
        assert KEEPALIVE_TIMEOUT <= report["outcomes"][name]["at"] <= bound, report["outcomes"]
    assert error_of(report, "during")["outcome_unknown"]  # it went out: may be applied later
    assert not error_of(report, "bare_read")["outcome_unknown"]  # (a read)
    # the member applied the write whose answer was lost (it was in its queue)
    assert report["sent_applied"]
    assert report["left"]["watch"] <= bound and report["left"]["mount"] <= bound, report
    # the read was not given up (attempt_timeout 30 s): tried again once healed, it succeeded
    read = report["outcomes"]["read"]
    assert "value=b'1'" in read.get("result", ""), read
    assert read["at"] >= report["healed_at"]


def test_partition_over_gateway(runs: Runs) -> None:
    _binary("3.5")
    report = runs.report("3.5", "gateway")
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
    assert report["outcomes"]["during"]["at"] <= deadline + MARGIN
