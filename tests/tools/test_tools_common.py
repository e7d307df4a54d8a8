"""The tools' one etcdctl-style command line (_cli/common.py): options, variables, TLS
files, passwords, error lines, exit codes and the progress line. No etcd needed."""

from __future__ import annotations

import argparse
import io
import ssl
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_etcd_tree as et
from trio_etcd_tree._cli import common, output
from trio_etcd_tree._client import endpoint_urls
from trio_etcd_tree._yaml import Progress


def parse(argv: Sequence[str], outputs: tuple[str, ...] = ()) -> argparse.Namespace:
    return common.parser("tool", "A tool.", "  tool x", outputs=outputs).parse_args(argv)


def settings(*argv: str) -> common.Settings:
    return common.settings(parse(argv))


def usage_error(*argv: str) -> str:
    with pytest.raises(common.UsageError) as failed:
        settings(*argv)
    return str(failed.value)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in common._ENV.values():
        monkeypatch.delenv(name, raising=False)


def test_durations() -> None:
    assert common.duration("5") == 5.0
    assert common.duration("5s") == 5.0
    assert common.duration("500ms") == 0.5
    assert common.duration("1m30s") == 90.0
    assert common.duration("1h2m3.5s") == 3723.5
    assert common.duration("250us") == pytest.approx(0.00025)
    for bad in ("x", "0", "0s", "", "5 s", "1m30", "s", "-1s"):
        with pytest.raises(ValueError, match="duration"):
            common.duration(bad)


def test_endpoints() -> None:
    assert endpoint_urls("a:1, http://b:2,", tls=False) == ["http://a:1", "http://b:2"]
    assert endpoint_urls("a:1", tls=True) == ["https://a:1"]
    assert endpoint_urls("[::1]:2379", tls=False) == ["http://[::1]:2379"]
    with pytest.raises(ValueError, match=r"^not an endpoint: 'http://\[::1' \("):
        endpoint_urls("http://[::1", tls=False)
    with pytest.raises(ValueError, match=r"^not an endpoint: 'ftp://x' \(say host:port"):
        endpoint_urls("ftp://x", tls=False)
    with pytest.raises(ValueError, match="at least one endpoint is needed"):
        endpoint_urls(" , ", tls=False)


def test_settings_from_options_and_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    setup = settings()
    assert setup.endpoints == ["http://127.0.0.1:2379"]
    assert (setup.username, setup.verify, setup.dial_timeout, setup.command_timeout) == (
        None,
        None,
        2.0,
        5.0,
    )
    setup = settings("--endpoints", "h:1", "--command-timeout", "1m30s", "--dial-timeout", "3s")
    assert (setup.endpoints, setup.command_timeout, setup.dial_timeout) == (["http://h:1"], 90, 3)
    monkeypatch.setenv("ETCDCTL_ENDPOINTS", "e:1,e:2")
    monkeypatch.setenv("ETCDCTL_COMMAND_TIMEOUT", "2s")
    monkeypatch.setenv("ETCDCTL_USER", "me:secret")
    setup = settings()
    assert setup.endpoints == ["http://e:1", "http://e:2"] and setup.command_timeout == 2
    assert (setup.username, setup.password) == ("me", "secret")
    assert "secret" not in repr(setup)
    assert settings("--endpoints", "o:1").endpoints == ["http://o:1"]  # the option wins
    monkeypatch.setenv("ETCDCTL_COMMAND_TIMEOUT", "soon")
    assert (
        usage_error() == "$ETCDCTL_COMMAND_TIMEOUT: not a duration: 'soon' (say 500ms, 5s, 1m30s)"
    )
    assert usage_error("--command-timeout", "1m30") == (
        "--command-timeout: not a duration: '1m30' (say 500ms, 5s, 1m30s)"
    )
    monkeypatch.delenv("ETCDCTL_COMMAND_TIMEOUT")
    assert usage_error("--endpoints", "http://[::1").startswith(
        "--endpoints: not an endpoint: 'http://[::1'"
    )


def test_has_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def no_tty(path: str, flags: int) -> int:
        raise OSError(6, "No such device or address")

    monkeypatch.setattr(os, "open", no_tty)
    assert common.has_terminal() is False
    monkeypatch.setattr(os, "open", lambda path, flags: os.dup(0))
    assert common.has_terminal() is True


def test_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (settings("--user", "u", "--password", "p").password) == "p"
    assert settings("--user", "u:p:q").password == "p:q"
    monkeypatch.setattr(common, "has_terminal", lambda: False)
    assert usage_error("--user", "root") == (
        "--user root: no password given and no terminal to ask for it "
        "(give --user NAME:PASSWORD, --password or ETCDCTL_PASSWORD)"
    )
    monkeypatch.setenv("ETCDCTL_USER", "env")
    assert usage_error().startswith("$ETCDCTL_USER env: no password given")
    monkeypatch.delenv("ETCDCTL_USER")
    monkeypatch.setattr(common, "has_terminal", lambda: True)
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return "typed"

    monkeypatch.setattr("getpass.getpass", ask)
    assert settings("--user", "root").password == "typed"
    assert asked == ["Password for root: "]

    def eof(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr("getpass.getpass", eof)
    assert usage_error("--user", "root") == "--user root: no password given"
    assert usage_error("--password", "p") == "--password needs --user (or ETCDCTL_USER)"


def test_tls_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("client")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    setup = settings("--endpoints", "h:1", "--cacert", str(ca_file))
    assert setup.endpoints == ["https://h:1"] and isinstance(setup.verify, ssl.SSLContext)
    setup = settings("--cacert", str(ca_file), "--cert", str(cert_file), "--key", str(key_file))
    assert setup.verify is not None and setup.verify.verify_mode is ssl.CERT_REQUIRED
    setup = settings("--insecure-skip-tls-verify", "--endpoints", "https://h:1")
    assert setup.verify is not None and setup.verify.verify_mode is ssl.CERT_NONE
    monkeypatch.setenv("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true")
    assert settings().verify is not None
    monkeypatch.setenv("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "false")
    assert settings().verify is None
    monkeypatch.setenv("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "maybe")
    assert usage_error() == "$ETCDCTL_INSECURE_SKIP_TLS_VERIFY: not true or false: 'maybe'"
    monkeypatch.delenv("ETCDCTL_INSECURE_SKIP_TLS_VERIFY")
    assert usage_error("--key", str(key_file)) == (
        f"--key {key_file}: a key without a certificate (give --cert too)"
    )
    missing = tmp_path / "missing.pem"
    assert usage_error("--cacert", str(missing)) == f"--cacert {missing}: No such file or directory"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    assert usage_error("--cacert", str(garbage)).startswith(
        f"--cacert {garbage}: not a usable PEM certificate or key ("
    )
    assert usage_error("--cert", str(garbage), "--key", str(key_file)).startswith(
        f"--cert {garbage}, --key {key_file}: not a usable PEM"
    )
    monkeypatch.setenv("ETCDCTL_CERT", str(missing))
    assert usage_error() == f"$ETCDCTL_CERT {missing}: No such file or directory"


def test_write_out(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = ("simple", "json")
    assert common.write_out(parse([], outputs), "simple") == "simple"
    assert common.write_out(parse(["-w", "json"], outputs), "simple") == "json"
    monkeypatch.setenv("ETCDCTL_WRITE_OUT", "json")
    assert common.write_out(parse([], outputs), "simple") == "json"
    monkeypatch.setenv("ETCDCTL_WRITE_OUT", "table")
    with pytest.raises(common.UsageError, match=r"^\$ETCDCTL_WRITE_OUT: 'table' is not one of"):
        common.write_out(parse([], outputs), "simple")


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["--nope"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "tool: unrecognized arguments: --nope (see --help)\n"

    def bad() -> common.Settings:
        raise common.UsageError("--x: wrong")

    with pytest.raises(SystemExit) as exited:
        common.usage("tool", bad)
    assert exited.value.code == 2
    assert capsys.readouterr().err == "tool: --x: wrong\n"


def test_error_lines() -> None:
    error = et.UnavailableError("no answer within 1 s", request="range b'/x'..b'/y'")
    assert common.one_line(error, ["http://h:1"]) == "no answer within 1 s (endpoints http://h:1)"
    denied = et.PermissionDeniedError(
        "permission denied", endpoint="http://h:1", server_message="etcdserver: denied"
    )
    denied.add_note("loading under /x: at least 3 of 9 keys were written")
    assert common.one_line(denied) == (
        "permission denied (endpoint http://h:1); the server said: etcdserver: denied; "
        "loading under /x: at least 3 of 9 keys were written"
    )
    missing = FileNotFoundError(2, "No such file or directory", "f.yaml")
    assert common.one_line(missing) == "f.yaml: No such file or directory"
    assert common.one_line(ValueError("a\nb")) == "a b"
    assert common.one_line(ValueError()) == "ValueError"
    document = et.DocumentError("f.yaml:1:2: bad", source="f.yaml")
    assert common.one_line(document, ["http://h:1"]) == "f.yaml:1:2: bad"


@pytest.mark.parametrize(
    ("raised", "status", "line"),
    [
        (KeyboardInterrupt(), 130, "tool: interrupted\n"),
        (BrokenPipeError(), 141, ""),
        (common.UsageError("--x: bad"), 2, "tool: --x: bad\n"),
        (et.UnavailableError("gone"), 1, "tool: gone (endpoints http://h:1)\n"),
        (OSError(2, "No such file or directory", "f"), 1, "tool: f: No such file or directory\n"),
        (ValueError("bad value"), 1, "tool: bad value\n"),
    ],
)
def test_run_exit_statuses(
    raised: BaseException, status: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fails() -> int:
        raise raised

    assert common.run("tool", fails, endpoints=["http://h:1"]) == status
    assert capsys.readouterr().err == line


def test_a_closed_pipe_silences_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = (tmp_path / "out").open("w")
    monkeypatch.setattr("sys.stdout", out)

    async def fails() -> int:
        raise BrokenPipeError

    assert common.run("tool", fails) == 141
    out.write("lost")
    out.close()
    assert (tmp_path / "out").read_text() == ""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_on_a_terminal_only() -> None:
    async def main() -> None:
        progress = Progress()
        tty, pipe = Terminal(), io.StringIO()
        async with output.progress_line(progress, "tool", tty):
            async with output.progress_line(progress, "tool", pipe):
                progress.start("writing", 1000)
                await trio.sleep(0.5)
                assert tty.getvalue() == ""  # nothing in the first second
                progress.advance(500)
                await trio.sleep(0.6)
                assert tty.getvalue().endswith(
                    "\rtool: writing 500 of 1,000 keys, 500 keys/s, 1 s left\x1b[K"
                )
        assert tty.getvalue().endswith("\r\x1b[K")
        assert pipe.getvalue() == ""
        quick = Terminal()
        async with output.progress_line(progress, "tool", quick):
            pass
        assert quick.getvalue() == ""
        shared = Terminal()  # the data goes to the same terminal: no line between it
        async with output.progress_line(progress, "tool", shared, beside=shared):
            await trio.sleep(2)
        assert shared.getvalue() == ""
        progress = Progress()
        assert output.describe(progress, "t") == "t:  0 keys"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_json_field() -> None:
    record: dict[str, object] = {}
    output.json_field(record, "a", b"text")
    output.json_field(record, "b", b"\xff")
    output.json_field(record, "c", None)
    assert record == {"a": "text", "b_base64": "/w==", "c": None}


def test_a_user_without_a_password_or_a_terminal_is_one_line() -> None:
    """As a cron job or CI would run it: no controlling terminal, stdin not a terminal."""
    import subprocess
    import sys

    tool = Path(__file__).parent.parent.parent / "tools" / "etcd2yaml.py"
    done = subprocess.run(
        [sys.executable, str(tool), "--user", "root", "/x"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,  # no controlling terminal
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert done.stderr == (
        "etcd2yaml: --user root: no password given and no terminal to ask for it "
        "(give --user NAME:PASSWORD, --password or ETCDCTL_PASSWORD)\n"
    )
