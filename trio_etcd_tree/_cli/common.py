"""What the tools share: one etcdctl-style command line, the connection it opens, error
lines and exit codes (the progress line and JSON fields are in ``output``).

Every tool (etcd2yaml, yaml2etcd, etcdmon, etcd-tree, the demo) takes the options of
:func:`parser` and opens its client with :func:`connect`; :func:`run` turns failures into
one line on stderr and the documented exit codes.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import ssl
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO, TypeVar

import trio

from .._client import Client, endpoint_urls, open_client
from .._core.errors import EtcdError, UnavailableError
from .._wire import TRANSPORTS

T = TypeVar("T")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PIPE = 0, 1, 2, 130, 141

CONNECTION_HELP = """\
connection (as etcdctl; each option also from its ETCDCTL_* variable):
  --endpoints URLS        ETCDCTL_ENDPOINTS; comma-separated, scheme optional
                          (default 127.0.0.1:2379; https:// when a TLS option is given)
  --user NAME[:PASSWORD]  ETCDCTL_USER; the password is asked for on the terminal when
                          not given (no terminal: an error)
  --password PASSWORD     ETCDCTL_PASSWORD
  --cacert FILE           ETCDCTL_CACERT: the CA that signed the servers' certificates
  --cert FILE, --key FILE ETCDCTL_CERT, ETCDCTL_KEY: our client certificate and its key
  --insecure-skip-tls-verify   ETCDCTL_INSECURE_SKIP_TLS_VERIFY: do not check the
                          servers' certificates
  --dial-timeout DURATION      ETCDCTL_DIAL_TIMEOUT (2s): to open a connection
  --command-timeout DURATION   ETCDCTL_COMMAND_TIMEOUT (5s): per request
  --transport {grpc,gateway}   TRIO_ETCD_TREE_TRANSPORT (grpc): etcd's gRPC over
                          HTTP/2, or its HTTP/JSON gateway (for HTTP/1.1-only paths)
  durations as Go writes them: 500ms, 5s, 1m30s, 1h (a bare number is seconds)

exit status: 0 done; 1 an error (one line on stderr naming the file, endpoint or option);
2 bad usage; 130 interrupted (Ctrl-C); 141 the output was closed (| head), quietly
"""

_ENV = {
    "endpoints": "ETCDCTL_ENDPOINTS",
    "user": "ETCDCTL_USER",
    "password": "ETCDCTL_PASSWORD",
    "cacert": "ETCDCTL_CACERT",
    "cert": "ETCDCTL_CERT",
    "key": "ETCDCTL_KEY",
    "insecure_skip_tls_verify": "ETCDCTL_INSECURE_SKIP_TLS_VERIFY",
    "dial_timeout": "ETCDCTL_DIAL_TIMEOUT",
    "command_timeout": "ETCDCTL_COMMAND_TIMEOUT",
    "transport": "TRIO_ETCD_TREE_TRANSPORT",
    "write_out": "ETCDCTL_WRITE_OUT",
}
_DURATION = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class UsageError(Exception):
    """A bad option or environment variable: one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with etcdctl's options, whose errors are one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def parser(prog: str, description: str, examples: str, *, outputs: tuple[str, ...] = ()) -> Parser:
    """A parser with the connection options (and ``-w/--write-out`` when the tool has
    ``outputs``), and an epilog of examples."""
    p = Parser(
        prog=prog,
        description=description,
        epilog=f"examples:\n{examples}\n{CONNECTION_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("connection (etcdctl's options; see below)")
    g.add_argument("--endpoints", metavar="URLS")
    g.add_argument("--user", metavar="NAME[:PASSWORD]")
    g.add_argument("--password", metavar="PASSWORD")
    g.add_argument("--cacert", metavar="FILE")
    g.add_argument("--cert", metavar="FILE")
    g.add_argument("--key", metavar="FILE")
    g.add_argument("--insecure-skip-tls-verify", action="store_true", default=None)
    g.add_argument("--dial-timeout", metavar="DURATION")
    g.add_argument("--command-timeout", metavar="DURATION")
    g.add_argument("--transport", metavar="{grpc,gateway}")
    if outputs:
        p.add_argument(
            "-w", "--write-out", choices=outputs, help=f"output format (default {outputs[0]})"
        )
    return p


def duration(text: str) -> float:
    """A Go duration (``500ms``, ``1m30s``, ``1h``) or a bare number of seconds, in
    seconds; ``ValueError`` unless it is one and positive."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pos, value = 0, 0.0
        for match in _DURATION.finditer(text):
            if match.start() != pos:
                break
            value += float(match[1]) * _UNITS[match[2]]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"not a duration: {text!r} (say 500ms, 5s, 1m30s)") from None
    if not value > 0:
        raise ValueError(f"not a positive duration: {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """The connection, as the options and ``ETCDCTL_*`` variables give it."""

    endpoints: list[str]
    username: str | None = None
    password: str | None = None
    verify: ssl.SSLContext | None = None
    dial_timeout: float = 2.0
    command_timeout: float = 5.0
    transport: str = "grpc"

    def __repr__(self) -> str:  # never the password
        return f"Settings(endpoints={self.endpoints!r}, username={self.username!r})"


def _option(args: argparse.Namespace, name: str) -> tuple[Any, str]:
    """An option's value (the command line, else its variable) and how to name it."""
    value = getattr(args, name, None)
    if value is not None:
        return value, "--" + name.replace("_", "-")
    env = _ENV[name]
    return os.environ.get(env), "$" + env


def has_terminal() -> bool:
    """Whether there is a terminal to ask for a password on."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


def settings(args: argparse.Namespace) -> Settings:
    """The connection settings; :class:`UsageError` naming the option or variable at
    fault. Asks for the password on the terminal when only a user name is given."""

    def value(name: str, parse: Callable[[str], Any], default: Any = None) -> Any:
        given, where = _option(args, name)
        if given is None:
            return default
        try:
            return parse(given)
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}") from None

    tls_given = any(_option(args, n)[0] for n in ("cacert", "cert", "key"))
    urls = value("endpoints", lambda t: endpoint_urls(t, tls=tls_given), None)
    if urls is None:
        urls = endpoint_urls("127.0.0.1:2379", tls=tls_given)
    user, user_where = _option(args, "user")
    password, _ = _option(args, "password")
    if user is not None and ":" in user and password is None:
        user, password = user.split(":", 1)
    if user is not None and password is None:
        if not has_terminal():
            raise UsageError(
                f"{user_where} {user}: no password given and no terminal to ask for it "
                "(give --user NAME:PASSWORD, --password or ETCDCTL_PASSWORD)"
            )
        try:
            password = getpass.getpass(f"Password for {user}: ")
        except EOFError:
            raise UsageError(f"{user_where} {user}: no password given") from None
    if password is not None and user is None:
        raise UsageError("--password needs --user (or ETCDCTL_USER)")
    return Settings(
        urls,
        user,
        password,
        _tls(args),
        value("dial_timeout", duration, 2.0),
        value("command_timeout", duration, 5.0),
        value("transport", _transport, "grpc"),
    )


def _transport(text: str) -> str:
    if text not in TRANSPORTS:
        raise ValueError(f"{text!r} is not one of {', '.join(TRANSPORTS)}")
    return text


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not true or false: {text!r}")


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    cacert, cacert_where = _option(args, "cacert")
    cert, cert_where = _option(args, "cert")
    key, key_where = _option(args, "key")
    insecure, insecure_where = _option(args, "insecure_skip_tls_verify")
    if isinstance(insecure, str):
        try:
            insecure = _flag(insecure)
        except ValueError as exc:
            raise UsageError(f"{insecure_where}: {exc}") from None
    if key and not cert:
        raise UsageError(f"{key_where} {key}: a key without a certificate (give --cert too)")
    if not (cacert or cert or insecure):
        return None
    context = ssl.create_default_context()
    if cacert:
        try:
            context.load_verify_locations(cacert)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"{cacert_where} {cacert}: {_reason(exc)}") from None
    if cert:
        try:
            context.load_cert_chain(cert, key or None)
        except (OSError, ssl.SSLError) as exc:
            files = f"{cert_where} {cert}" + (f", {key_where} {key}" if key else "")
            raise UsageError(f"{files}: {_reason(exc)}") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not a usable PEM certificate or key ({exc.reason or exc})"
    return exc.strerror or str(exc)


def connect(setup: Settings, **options: Any) -> AbstractAsyncContextManager[Client]:
    """``open_client`` with the settings (``options`` go to it as they are)."""
    return open_client(
        setup.endpoints,
        username=setup.username,
        password=setup.password,
        ssl_context=setup.verify,
        dial_timeout=setup.dial_timeout,
        transport=options.pop("transport", setup.transport),
        request_deadline=setup.command_timeout,
        **options,
    )


def positive(what: str) -> Callable[[str], int]:
    """An argparse type: a whole number of at least 1 (a revision, a limit)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"a {what} is at least 1, not {value}")
        return value

    return parse


def write_out(args: argparse.Namespace, default: str) -> str:
    """``-w``/``--write-out`` or ``$ETCDCTL_WRITE_OUT``, checked against the choices."""
    given, where = _option(args, "write_out")
    if given is None:
        return default
    choices = ("simple", "json")
    if given not in choices:
        raise UsageError(f"{where}: {given!r} is not one of {', '.join(choices)}")
    return str(given)


def one_line(error: BaseException, endpoints: list[str] | None = None) -> str:
    """An error as one line: what happened, where (the file, the endpoint) and its notes;
    never a traceback or a Python repr of bytes."""
    if isinstance(error, EtcdError):
        text = error.message
        if error.endpoint:
            text += f" (endpoint {error.endpoint})"
        elif (
            endpoints
            and isinstance(error, UnavailableError)
            and not any(e in text for e in endpoints)
        ):
            text += f" (endpoints {','.join(endpoints)})"
        if error.server_message and error.server_message not in error.message:
            text += f"; the server said: {error.server_message}"
    elif isinstance(error, OSError) and error.filename is not None:
        text = f"{error.filename}: {error.strerror or error}"
    else:
        text = str(error)
    notes = getattr(error, "__notes__", [])
    text = "; ".join([text, *notes])
    return " ".join(text.split()) or type(error).__name__


def run(
    prog: str,
    fn: Callable[[], Awaitable[int]],
    err: TextIO | None = None,
    endpoints: list[str] | None = None,
) -> int:
    """``trio.run(fn)``, turning failures into one line on stderr and an exit status (see
    :data:`CONNECTION_HELP`)."""
    err = err or sys.stderr
    try:
        return trio.run(fn)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=err)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE
    except UsageError as exc:
        print(f"{prog}: {exc}", file=err)
        return EXIT_USAGE
    except (EtcdError, OSError, ValueError) as exc:
        print(f"{prog}: {one_line(exc, endpoints)}", file=err)
        return EXIT_ERROR


def usage(prog: str, fn: Callable[[], T]) -> T:
    """``fn()`` (reading options), or ``SystemExit(2)`` after one line on stderr."""
    try:
        return fn()
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the flush at exit is quiet."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
