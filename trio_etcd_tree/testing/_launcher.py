"""Start real etcd processes for tests: single nodes and small clusters, on loopback only.

This is synchronous code (:mod:`subprocess` and a sync :class:`httpx.Client`), so it can run from
session-scoped pytest fixtures as well as from users' own test setup. Every process started here
is ended by its PID, by :meth:`EtcdCluster.close` or, if a test run dies first, by an :mod:`atexit`
hook.
"""

from __future__ import annotations

import atexit
import base64
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from ._binaries import (
    EtcdBinary,
    EtcdNotFoundError,
    EtcdStartError,
    find_etcd,
    find_etcd_binaries,
    supports_flag,
    tool_beside,
)
from ._member import EtcdMember

__all__ = [
    "EtcdBinary",
    "EtcdCluster",
    "EtcdMember",
    "EtcdNotFoundError",
    "EtcdStartError",
    "find_etcd",
    "find_etcd_binaries",
]

_START_ATTEMPTS = 3  # fresh ports each time, if a port was taken between probe and bind


def _run(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode:
        output = (result.stdout + result.stderr).strip()
        raise RuntimeError(f"{Path(args[0]).name} {args[1]} {args[2]} failed:\n{output}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with ``prefix`` (``b"\\0"``: to the end)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class EtcdCluster:
    """Real etcd members on 127.0.0.1 with temporary data dirs; use it as a context manager.

    Attributes:
        binary: The etcd binary the members run.
        members: The members, in ``--initial-cluster`` order.
        ca_path: The CA certificate (PEM) when started with ``tls=True``, else None.
        client_cert_path: A client certificate signed by that CA (TLS only), else None.
        client_key_path: Its private key (TLS only), else None.
        root_password: The root password once :meth:`enable_auth` ran, else None.
        directory: The temporary cluster directory (certificates, member dirs and logs).

    Create clusters with :meth:`start`, not with the constructor.
    """

    binary: EtcdBinary
    members: list[EtcdMember]
    ca_path: Path | None
    client_cert_path: Path | None
    client_key_path: Path | None
    root_password: str | None

    def __init__(self, binary: EtcdBinary, base_dir: Path | None) -> None:
        self.binary = binary
        self.members = []
        self.ca_path = self.client_cert_path = self.client_key_path = None
        self.root_password = None
        self.directory = Path(tempfile.mkdtemp(prefix="trio-etcd-tree-", dir=base_dir))
        self._closed = False
        atexit.register(self.close)

    @classmethod
    def start(
        cls,
        binary: EtcdBinary | None = None,
        *,
        size: int = 1,
        tls: bool = False,
        client_cert_auth: bool = False,
        progress_notify_interval: float | None = None,
        auth_token_ttl: int | None = None,
        extra_args: Sequence[str] = (),
        base_dir: Path | None = None,
    ) -> EtcdCluster:
        """Start ``size`` members and wait until every one is healthy.

        Args:
            binary: The etcd to run; default :func:`find_etcd`.
            size: The number of members.
            tls: Serve clients over HTTPS with a fresh trustme CA (peers stay plaintext).
            client_cert_auth: Also require client certificates (implies ``tls``).
            progress_notify_interval: Seconds between watch progress notifications.
            auth_token_ttl: Seconds a simple auth token lives (``--auth-token-ttl``).
            extra_args: More command-line arguments for every member.
            base_dir: Where to create the temporary cluster directory; default the system tmp.

        Returns:
            The running cluster; :meth:`close` it (or use ``with``) to end it.

        Raises:
            EtcdStartError: A member exited or did not become healthy (after three tries if a
                port was taken).
        """
        cluster = cls(binary or find_etcd(), base_dir)
        try:
            ssl_context = (
                cluster._make_certificates(client_cert_auth) if tls or client_cert_auth else True
            )
            options = cluster._common_args(
                client_cert_auth, progress_notify_interval, auth_token_ttl
            )
            attempts_left = _START_ATTEMPTS
            while True:
                attempts_left -= 1
                cluster._create_members(size, ssl_context, [*options, *extra_args])
                try:
                    cluster.wait_ready()
                    return cluster
                except EtcdStartError as error:
                    if "address already in use" not in str(error) or not attempts_left:
                        raise
        except BaseException:
            cluster.close()
            raise

    @property
    def endpoints(self) -> list[str]:
        """The client URLs of all members."""
        return [member.client_url for member in self.members]

    def ssl_context(self) -> ssl.SSLContext | None:
        """An SSL context trusting the cluster's CA and presenting the client certificate.

        Returns:
            None if the cluster was started without TLS.
        """
        if self.ca_path is None or self.client_cert_path is None or self.client_key_path is None:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_path))
        context.load_cert_chain(self.client_cert_path, self.client_key_path)
        return context

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until every running member answers ``GET /health`` with ``{"health":"true"}``.

        Raises:
            EtcdStartError: A member exited, or was not healthy within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        for member in self.members:
            if member.running:
                member._wait_healthy(deadline)

    def start_all(self, timeout: float = 30) -> None:
        """Start every member that does not run, all at once (a member of a stopped
        cluster only becomes healthy once a quorum runs), and wait until all are healthy.

        Raises:
            EtcdStartError: A member exited, or was not healthy within ``timeout`` seconds.
        """
        for member in self.members:
            if not member.running:
                member._spawn()
        self.wait_ready(timeout)

    def snapshot_save(self, path: Path) -> None:
        """Save a snapshot of the running cluster to ``path`` (``etcdctl snapshot save``).

        Raises:
            EtcdNotFoundError: no etcdctl beside the etcd binary.
            RuntimeError: etcdctl failed (the message ends with its output).
        """
        endpoint = next(m.client_url for m in self.members if m.running)
        tool = tool_beside(self.binary.etcdctl, "etcdctl")
        _run([str(tool), f"--endpoints={endpoint}", "snapshot", "save", str(path)])

    def snapshot_restore(self, path: Path, timeout: float = 30) -> None:
        """Stop every member, replace its data by the snapshot at ``path`` (``etcdutl
        snapshot restore``, with a new cluster token: the cluster id changes, the revision
        is the snapshot's), and start the cluster again.

        Raises:
            EtcdNotFoundError: no etcdutl beside the etcd binary (etcd 3.4 has none).
            RuntimeError: etcdutl failed (the message ends with its output).
            EtcdStartError: a member did not become healthy again.
        """
        tool = tool_beside(self.binary.etcdutl, "etcdutl")
        initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        token = uuid.uuid4().hex
        for member in self.members:
            member.stop()
        for member in self.members:
            shutil.rmtree(member.data_dir, ignore_errors=True)
            _run(
                [
                    str(tool),
                    *("snapshot", "restore", str(path), "--data-dir", str(member.data_dir)),
                    *("--name", member.name, "--initial-cluster", initial_cluster),
                    *("--initial-cluster-token", token),
                    *("--initial-advertise-peer-urls", member.peer_url),
                ]
            )
        self.start_all(timeout)

    def close(self) -> None:
        """Kill every member and remove the cluster directory. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for member in self.members:
            member.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def enable_auth(self, root_password: str = "root") -> None:
        """Create user ``root`` with role ``root`` and turn authentication on.

        Raises:
            RuntimeError: The gateway refused a step (for example, auth is already enabled).
        """
        self._post("/v3/auth/user/add", {"name": "root", "password": root_password})
        self._post("/v3/auth/user/grant", {"user": "root", "role": "root"})
        self._post("/v3/auth/enable", {})
        self.root_password = root_password

    def add_user(
        self,
        name: str,
        password: str,
        *,
        read: Sequence[str] = (),
        write: Sequence[str] = (),
        readwrite: Sequence[str] = (),
    ) -> None:
        """Create a user with role ``f"{name}-role"`` holding prefix permissions.

        Works with auth on (it authenticates as root) or off.

        Args:
            name: The user name.
            password: Its password.
            read: Key prefixes the user may read.
            write: Key prefixes the user may write.
            readwrite: Key prefixes the user may read and write.

        Raises:
            RuntimeError: The gateway refused a step (for example, the user exists).
        """
        token = None
        if self.root_password is not None:
            auth = {"name": "root", "password": self.root_password}
            token = self._post("/v3/auth/authenticate", auth)["token"]
        role = f"{name}-role"
        self._post("/v3/auth/user/add", {"name": name, "password": password}, token)
        self._post("/v3/auth/role/add", {"name": role}, token)
        for perm_type, prefixes in (("READ", read), ("WRITE", write), ("READWRITE", readwrite)):
            for prefix in prefixes:
                raw = prefix.encode()
                perm = {  # the empty prefix means every key: key and range_end both b"\0"
                    "permType": perm_type,
                    "key": _b64(raw or b"\0"),
                    "range_end": _b64(_prefix_end(raw)),
                }
                self._post("/v3/auth/role/grant", {"name": role, "perm": perm}, token)
        self._post("/v3/auth/user/grant", {"user": name, "role": role}, token)

    # -- internals --

    def _make_certificates(self, client_cert_auth: bool) -> ssl.SSLContext:
        import trustme  # only TLS clusters need it

        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("trio-etcd-tree-client")
        self.ca_path = self.directory / "ca.pem"
        self.client_cert_path = self.directory / "client.pem"
        self.client_key_path = self.directory / "client-key.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        for cert, stem in ((server, "server"), (client, "client")):
            (self.directory / f"{stem}.pem").write_bytes(
                b"".join(p.bytes() for p in cert.cert_chain_pems)
            )
            cert.private_key_pem.write_to_path(str(self.directory / f"{stem}-key.pem"))
        context = self.ssl_context()
        assert context is not None
        return context

    def _common_args(
        self, client_cert_auth: bool, progress_interval: float | None, token_ttl: int | None
    ) -> list[str]:
        args = ["--logger", "zap", "--log-level", "warn", "--enable-pprof=false"]
        args += ["--initial-cluster-state", "new", "--initial-cluster-token", uuid.uuid4().hex]
        if supports_flag(self.binary.path, "--unsafe-no-fsync"):
            args.append("--unsafe-no-fsync")
        if self.ca_path is not None:
            args += ["--cert-file", str(self.directory / "server.pem")]
            args += ["--key-file", str(self.directory / "server-key.pem")]
        if client_cert_auth:
            args += ["--client-cert-auth", "--trusted-ca-file", str(self.ca_path)]
        if progress_interval is not None:
            interval = f"{round(progress_interval * 1000)}ms"
            args += ["--experimental-watch-progress-notify-interval", interval]
        if token_ttl is not None:
            args += ["--auth-token-ttl", str(token_ttl)]
        return args

    def _create_members(
        self, size: int, ssl_context: ssl.SSLContext | bool, options: list[str]
    ) -> None:
        for member in self.members:  # a failed earlier attempt
            member.kill()
            shutil.rmtree(member.data_dir.parent, ignore_errors=True)
        ports: set[int] = set()
        while len(ports) < 2 * size:
            ports.add(_free_port())
        port_list = sorted(ports)
        scheme = "https" if self.ca_path is not None else "http"
        self.members = []
        for index in range(size):
            directory = self.directory / f"member{index}"
            directory.mkdir()
            client_url = f"{scheme}://127.0.0.1:{port_list[2 * index]}"
            peer_url = f"http://127.0.0.1:{port_list[2 * index + 1]}"
            self.members.append(
                EtcdMember(f"member{index}", client_url, peer_url, directory, ssl_context)
            )
        initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for member in self.members:
            member._args = [
                str(self.binary.path),
                *("--name", member.name, "--data-dir", str(member.data_dir)),
                *(
                    "--listen-client-urls",
                    member.client_url,
                    "--advertise-client-urls",
                    member.client_url,
                ),
                *(
                    "--listen-peer-urls",
                    member.peer_url,
                    "--initial-advertise-peer-urls",
                    member.peer_url,
                ),
                *("--initial-cluster", initial_cluster, *options),
            ]
            member._spawn()

    def _post(self, path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": token} if token else {}
        endpoint = next(m.client_url for m in self.members if m.running)
        with httpx.Client(verify=self.ssl_context() or True, timeout=10) as client:
            response = client.post(f"{endpoint}{path}", json=body, headers=headers)
        if response.status_code != httpx.codes.OK:
            raise RuntimeError(f"POST {path} failed: HTTP {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result
