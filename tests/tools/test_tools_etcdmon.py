"""etcdmon: its lines (quoted so each reads one way), what it says on stderr (where it
connected, the start revision, failed attempts, losses and reconnects, compaction), JSON,
and a subprocess across a real server's restart."""

from __future__ import annotations

import base64
import functools
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

import trio_etcd_tree as et
from trio_etcd_tree import ConnectionState, Event, EventType, KeyValue
from trio_etcd_tree._cli import common, etcdmon
from trio_etcd_tree.testing import EtcdCluster, find_etcd, open_fake_etcd

TOOLS = Path(__file__).parent.parent.parent / "tools"


def test_lines_start_compaction_and_reconnects() -> None:
    async def main() -> None:
        async with open_fake_etcd() as fake, et.open_client(fake.endpoints, transport=fake) as c:
            fake.put("/m/a", "1")
            fake.put("/m/a", "2")
            compacted = fake.put("/m/a", "3")
            fake.compact(compacted)
            out, err = io.StringIO(), io.StringIO()
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    functools.partial(
                        etcdmon.monitor, c, "/m", out, err, from_revision=1, prev=True
                    )
                )
                fake.put("/m/b", b"\xff")
                fake.put("/mother", "not under /m")
                fake.put("/m-x", "not under /m either")
                fake.put("/m", "own")
                fake.delete("/m/a")
                await trio.sleep(1)
                fake.member_down(0)
                await trio.sleep(1)
                fake.put("/m/new key", "hello world")
                fake.member_up(0)
                await trio.sleep(5)
                nursery.cancel_scope.cancel()
            assert out.getvalue().splitlines() == [
                f'{compacted + 1} PUT /m/b "\\xff" (new)',
                f"{compacted + 4} PUT /m own (new)",
                f"{compacted + 5} DELETE /m/a 3",
                f'{compacted + 6} PUT "/m/new key" "hello world" (new)',
            ]
            lines = err.getvalue().splitlines()
            assert lines[0] == (
                "etcdmon: connected to http://fake-0.etcd:2379; watching /m from revision 1"
            )
            assert lines[1] == (
                f"etcdmon: revision 1 is compacted (up to {compacted}); resync: continuing at "
                f"revision {compacted + 1}, changes before it are not shown"
            )
            assert lines[2].startswith("etcdmon: connection lost (")
            assert lines[2].endswith(f"reconnecting, to resume at revision {compacted + 6}")
            assert lines[-1].startswith("etcdmon: reconnected to http://fake-0.etcd:2379")

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_it_says_when_it_cannot_connect() -> None:
    async def main() -> None:
        async with open_fake_etcd() as fake:
            async with et.open_client(fake.endpoints, transport=fake, request_deadline=1) as c:
                rev = fake.put("/w/a", "1")
                fake.member_down(0)
                out, err = io.StringIO(), io.StringIO()
                async with trio.open_nursery() as nursery:

                    async def up_later() -> None:
                        await trio.sleep(5)
                        fake.member_up(0)

                    nursery.start_soon(up_later)
                    await nursery.start(functools.partial(etcdmon.monitor, c, "/w/", out, err))
                    fake.put("/w/a", "2")
                    await trio.sleep(1)
                    nursery.cancel_scope.cancel()
                lines = err.getvalue().splitlines()
                assert lines[0].startswith("etcdmon: cannot connect: ")
                assert lines[0].endswith("; trying again in 1 s")
                assert "http://fake-0.etcd:2379" in lines[0]
                assert lines[1].endswith("; trying again in 2 s")
                assert lines[-1] == (
                    f"etcdmon: connected to http://fake-0.etcd:2379; watching /w from revision "
                    f"{rev + 1}"
                )
                assert out.getvalue() == f"{rev + 1} PUT /w/a 2\n"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_json_lines() -> None:
    kv = KeyValue(b"/p/k", b"v", 1, 5, 1, 0)
    old = KeyValue(b"/p/k", b"\xff", 1, 4, 1, 0)
    put = Event(EventType.PUT, kv, old)
    assert etcdmon.format_event(put, 5, as_json=True) == (
        '{"revision": 5, "action": "PUT", "key": "/p/k", "value": "v"}'
    )
    assert etcdmon.format_event(put, 5, as_json=True, prev=True).endswith(
        '"value": "v", "prev_value_base64": "/w=="}'
    )
    gone = Event(EventType.DELETE, kv)
    assert etcdmon.format_event(gone, 6, as_json=True).endswith('"prev_value": null}')
    assert etcdmon.format_event(gone, 6) == "6 DELETE /p/k"
    assert etcdmon.format_event(put, 5) == "5 PUT /p/k v"
    assert etcdmon.format_event(put, 5, prev=True) == '5 PUT /p/k v (was "\\xff")'


def test_report_ends_with_the_stream() -> None:
    class Ended:
        state = ConnectionState.CONNECTED

        async def wait_state_change(self, state: ConnectionState) -> ConnectionState:
            return ConnectionState.CLOSED

        def statistics(self) -> None:
            return None

    err = io.StringIO()
    trio.run(etcdmon._report, Ended(), err)  # type: ignore[arg-type]
    assert err.getvalue() == ""


def test_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert common.positive("revision")("5") == 5
    with pytest.raises(SystemExit):
        etcdmon.main(["--help"])
    assert "--from-revision 1200" in capsys.readouterr().out
    for bad in (
        ["/x", "--from-revision", "0"],
        ["/x", "--from-revision", "x"],
        ["/x", "-w", "table"],
    ):
        with pytest.raises(SystemExit) as exited:
            etcdmon.main(bad)
        assert exited.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_subprocess_across_a_restart(tmp_path: Path) -> None:
    with EtcdCluster.start(find_etcd("3.5")) as cluster:
        url = cluster.endpoints[0]
        out, err = (tmp_path / "out").open("w+"), (tmp_path / "err").open("w+")
        now = httpx.post(f"{url}/v3/kv/range", json={"key": "AA=="}, timeout=10).json()
        start = int(now["header"]["revision"]) + 1  # however late the tool starts to watch
        command = [sys.executable, str(TOOLS / "etcdmon.py"), "/s", "-w", "json"]
        command += ["--endpoints", url.removeprefix("http://")]
        proc = subprocess.Popen([*command, "--from-revision", str(start)], stdout=out, stderr=err)
        try:

            def lines_out(n: int) -> None:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    out.seek(0)
                    if len(out.read().splitlines()) >= n:
                        return
                    time.sleep(0.1)
                raise AssertionError(f"etcdmon printed fewer than {n} lines")

            def put(i: int) -> int:
                body = {
                    "key": base64.b64encode(f"/s/k{i % 7}".encode()).decode(),
                    "value": base64.b64encode(str(i).encode()).decode(),
                }
                r = httpx.post(f"{url}/v3/kv/put", json=body, timeout=10).json()
                return int(r["header"]["revision"])

            revisions = [put(i) for i in range(20)]
            lines_out(20)  # the watch is up
            cluster.members[0].restart()
            revisions += [put(i) for i in range(20, 41)]
            lines_out(41)  # a change printed twice would come before the last one
        finally:
            proc.terminate()
            proc.wait(10)
        out.seek(0)
        seen = [json.loads(line)["revision"] for line in out.read().splitlines()]
        assert seen == revisions  # every change once, in order
        err.seek(0)
        report = err.read()
        assert report.startswith(f"etcdmon: connected to {url}; watching /s from revision {start}")
        assert "etcdmon: connection lost" in report
        assert "etcdmon: reconnected to" in report
        assert "Traceback" not in report
        out.close()
        err.close()
