"""One etcd process of a test cluster: started, stopped, killed, frozen and thawed by its PID."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import NoReturn

import httpx

from ._binaries import EtcdStartError

__all__ = ["EtcdMember"]

_STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
_LOG_TAIL_LINES = 20


def _wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Return once every thread of ``pid`` is stopped (or it is gone, or ``timeout`` passed):
    SIGSTOP only asks, and a thread busy on another CPU may still answer for a moment."""
    deadline = time.monotonic() + timeout
    while not _stopped(pid) and time.monotonic() < deadline:
        time.sleep(0.001)


def _stopped(pid: int) -> bool:
    try:
        stats = [(task / "stat").read_text() for task in Path(f"/proc/{pid}/task").iterdir()]
    except FileNotFoundError:  # it exited
        return True
    return all(stat.rsplit(")", 1)[1].split()[0] in ("T", "t") for stat in stats)


def _log_tail(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _etcd_environment() -> dict[str, str]:
    # etcd reads any ETCD_* variable as a flag, so a stray ETCD_DATA_DIR must not reach it.
    keep = {"ETCD_UNSUPPORTED_ARCH"}
    return {k: v for k, v in os.environ.items() if not k.startswith("ETCD_") or k in keep}


class EtcdMember:
    """One etcd process of an :class:`EtcdCluster`; it keeps its data dir across restarts.

    Attributes:
        name: The member name (``--name``).
        client_url: The client URL, ``http://127.0.0.1:PORT`` or ``https://...``.
        peer_url: The (plaintext) peer URL.
        data_dir: The member's data directory.
        log_path: Where the process's stdout and stderr go (appended on each start).
    """

    def __init__(
        self,
        name: str,
        client_url: str,
        peer_url: str,
        directory: Path,
        ssl_context: ssl.SSLContext | bool,
    ) -> None:
        self.name = name
        self.client_url = client_url
        self.peer_url = peer_url
        self.data_dir = directory / "data"
        self.log_path = directory / "etcd.log"
        self._ssl_context = ssl_context
        self._args: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process ID while the member runs, else None."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Start the process (no-op if it runs) and wait until it reports healthy.

        Raises:
            EtcdStartError: The process exited, or was not healthy within ``timeout`` seconds.
        """
        if not self.running:
            self._spawn()
        self._wait_healthy(time.monotonic() + timeout)

    def stop(self) -> None:
        """Send SIGTERM and wait; escalate to SIGKILL if it has not exited after 10 s."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL and wait for the process to exit."""
        self._signal(signal.SIGKILL)

    def restart(self) -> None:
        """Stop gracefully, then start again with the same data dir and wait until healthy."""
        self.stop()
        self.start()

    def freeze(self) -> None:
        """Pause the process with SIGSTOP: it keeps its sockets open but answers nothing
        (what a long GC pause or a stalled VM looks like to clients and peers)."""
        if (pid := self.pid) is not None:
            os.kill(pid, signal.SIGSTOP)
            _wait_stopped(pid)

    def thaw(self) -> None:
        """Let a frozen process go on with SIGCONT (no-op if it does not run)."""
        if (pid := self.pid) is not None:
            os.kill(pid, signal.SIGCONT)

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_etcd_environment(),
            )

    def _signal(self, signum: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _is_healthy(self, client: httpx.Client) -> bool:
        try:
            response = client.get(f"{self.client_url}/health", timeout=2)
        except httpx.HTTPError:
            return False
        # {"health":"true"} (3.4) or {"health":"true","reason":""} (3.5); 503 with "false" if not.
        return b'"health":"true"' in response.content

    def _wait_healthy(self, deadline: float) -> None:
        with httpx.Client(verify=self._ssl_context) as client:
            while self.running and not self._is_healthy(client):
                if time.monotonic() > deadline:
                    self._fail("did not become healthy in time")
                time.sleep(0.05)
        if not self.running:
            self._fail("exited")

    def _fail(self, reason: str) -> NoReturn:
        raise EtcdStartError(
            f"etcd member {self.name} ({self.client_url}) {reason}; "
            f"last lines of {self.log_path}:\n{_log_tail(self.log_path)}"
        )
