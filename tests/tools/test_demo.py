"""The demo, in-process, on an embedded etcd and on a given one."""

from __future__ import annotations

import pytest
import trio

import trio_etcd_tree as et
from trio_etcd_tree._cli import demo
from trio_etcd_tree.testing import EtcdCluster, EtcdNotFoundError
from trio_etcd_tree.testing.pytest_plugin import Servers

EXPECTED = [
    "loaded the example configuration: 8 keys",
    "  services/web/replicas = 2",
    "another client set services/web/replicas to 4; the subscription delivered it",
    "the tree shows it: web has 4 replicas",
    "guarded write: db/port = 5433",
    "conflict caught, nothing written: transaction on the root: refused: changed since the "
    "tree read it: /demo-",
    "an atomic transaction changed four keys at one revision",
    "    host: db2.internal",
    "    audit: true",
    "      replicas: 5",
    "cleaned up",
]


def test_demo_on_embedded_etcd(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("started etcd 3.")
    for line in EXPECTED:
        assert line in out


def test_demo_with_endpoints(etcd_servers: Servers, capsys: pytest.CaptureFixture[str]) -> None:
    endpoints = etcd_servers.get("3.5").endpoints
    assert demo.main(["--endpoints", ",".join(endpoints)]) == 0
    out = capsys.readouterr().out
    assert "started etcd" not in out
    for line in EXPECTED:
        assert line in out


def test_demo_reports_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fails(*args: object) -> None:
        raise et.UnavailableError("no endpoint answered", request="status")

    async def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", fails)
    assert demo.main(["--endpoints", "127.0.0.1:1"]) == 1
    assert capsys.readouterr().err == (
        "trio-etcd-tree-demo: no endpoint answered (endpoints http://127.0.0.1:1)\n"
    )
    monkeypatch.setenv("ETCDCTL_ENDPOINTS", "127.0.0.1:1")
    monkeypatch.setattr(demo, "run_demo", interrupted)
    assert demo.main([]) == 130
    with pytest.raises(SystemExit) as exited:
        demo.main(["--endpoints", "http://[::1"])
    assert exited.value.code == 2


def test_serve_keeps_an_etcd_running_until_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []

    async def use_it() -> None:
        printed = capsys.readouterr()
        endpoint = printed.out.removeprefix("export ETCDCTL_ENDPOINTS=").strip()
        seen.extend([endpoint, printed.err])

        async with et.open_client(endpoint) as client:
            await client.put("/tried", "yes")
        raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr(trio, "sleep_forever", use_it)
    assert demo.serve_main([]) == 0
    assert seen[0].startswith("http://127.0.0.1:")
    assert "is running at" in seen[1] and "Ctrl-C stops it" in seen[1]
    assert capsys.readouterr().err == "trio-etcd-tree-demo: stopped\n"


def test_demo_without_etcd(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*args: object, **kwargs: object) -> EtcdCluster:
        raise EtcdNotFoundError("no etcd binary found")

    monkeypatch.setattr(EtcdCluster, "start", missing)
    monkeypatch.delenv("ETCDCTL_ENDPOINTS", raising=False)
    with pytest.raises(SystemExit, match="trio-etcd-tree-demo: no etcd binary found"):
        demo.main([])
