"""Every tool, the viewer included, reaches an auth + TLS cluster with the same etcdctl
options; and all of them agree on what a path covers (mount, etcd2yaml, yaml2etcd
--prune, etcdmon and the viewer, with /cfgother and /cfg-old beside /cfg)."""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from headless_viewer import run_headless

import trio_etcd_tree as et
from trio_etcd_tree import _yaml as y
from trio_etcd_tree._cli import common, etcd2yaml, etcdmon, viewer, yaml2etcd
from trio_etcd_tree._cli.viewer_app import ViewerApp
from trio_etcd_tree._wire import TRANSPORTS
from trio_etcd_tree.testing import EtcdCluster, find_etcd
from trio_etcd_tree.testing.pytest_plugin import Servers


@pytest.fixture
def headless(monkeypatch: pytest.MonkeyPatch) -> list[ViewerApp]:
    """ViewerApp.run, headless: waits for the tree (or a failure) and quits."""
    return run_headless(monkeypatch)


def mounted_keys(root: et.Root) -> set[bytes]:
    base = root.prefix
    return {
        base + b"".join(b"/" + name.encode() for name in node.path)
        for node in root.walk()
        if node.has_value
    }


@pytest.fixture(scope="module")
def secure() -> Iterator[EtcdCluster]:
    with EtcdCluster.start(find_etcd("3.5"), tls=True, client_cert_auth=True) as cluster:
        cluster.enable_auth("rootpw")
        yield cluster


def test_the_same_options_reach_a_secure_cluster(
    secure: EtcdCluster,
    headless: list[ViewerApp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Must-show 5: the viewer connects to an auth + TLS cluster like the other tools."""
    host = secure.endpoints[0].removeprefix("https://")  # no scheme: TLS options mean https
    options = [
        "--endpoints",
        host,
        "--cacert",
        str(secure.ca_path),
        "--cert",
        str(secure.client_cert_path),
        "--key",
        str(secure.client_key_path),
        "--user",
        "root:rootpw",
    ]
    f = tmp_path / "cfg.yaml"
    f.write_text("a: 1\nbin: !!binary /wA=\n")
    assert yaml2etcd.main([*options, str(f), "/sec"]) == 0
    assert etcd2yaml.main([*options, "/sec"]) == 0
    assert "a: 1\n" in capsys.readouterr().out
    assert viewer.main([*options, "/sec"]) == 0
    app = headless[0]
    assert app.model is not None and app.bridge.error is None
    assert mounted_keys(app.model.root) == {b"/sec/a", b"/sec/bin"}
    binary = next(row for row in app.model.rows if row.path == ("bin",))
    assert app.model.cells(binary)[1] == '"\\xff\\x00"'  # binary: escaped bytes
    # the variables work the same, for the viewer too
    for name, value in zip(options[::2], options[1::2], strict=True):
        monkeypatch.setenv(common._ENV[name[2:].replace("-", "_")], value)
    assert viewer.main(["/sec"]) == 0
    assert headless[1].model is not None
    # wrong password, missing certificate: one line, for every tool
    monkeypatch.setenv("ETCDCTL_USER", "root:wrong")
    for tool in (etcd2yaml, etcdmon):
        assert tool.main(["/sec"]) == 1
        err = capsys.readouterr().err
        assert "authentication failed" in err and err.count("\n") == 1
    monkeypatch.setenv("ETCDCTL_USER", "root:rootpw")
    monkeypatch.delenv("ETCDCTL_CACERT")
    for transport in TRANSPORTS:  # an untrusted server: the same line over both
        assert etcd2yaml.main(["/sec", "--command-timeout", "2s", "--transport", transport]) == 1
        err = capsys.readouterr().err
        assert "TLS handshake failed" in err and "CERTIFICATE_VERIFY_FAILED" in err
    assert etcd2yaml.main(["/sec", "--insecure-skip-tls-verify"]) == 0
    capsys.readouterr()
    monkeypatch.delenv("ETCDCTL_CERT")
    with pytest.raises(SystemExit) as exited:
        viewer.main(["/sec"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        f"etcd-tree: $ETCDCTL_KEY {secure.client_key_path}: a key without a certificate "
        "(give --cert too)\n"
    )


def test_one_path_model(
    etcd_servers: Servers,
    headless: list[ViewerApp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 11, must-show 4: every tool and mount agree on which keys are under /cfg."""
    cluster = etcd_servers.get("3.5")
    base = f"/paths-{id(tmp_path)}"
    path = f"{base}/cfg"
    under = {path, f"{path}/a", f"{path}/b/c", f"{path}/"}
    beside = {f"{path}other", f"{path}other/x", f"{path}-old", f"{path}0"}
    endpoints = ["--endpoints", cluster.endpoints[0]]

    async def fill_and_mount() -> set[bytes]:
        async with et.open_client(cluster.endpoints) as client:
            for key in sorted(under | beside):
                await client.put(key, "v")
            async with et.mount(client, path) as root:
                return mounted_keys(root)

    expected = {k.encode() for k in under}
    assert trio.run(fill_and_mount) == expected
    # etcd2yaml
    dump = tmp_path / "dump.yaml"
    assert etcd2yaml.main([*endpoints, path, "-o", str(dump)]) == 0
    assert set(y.document_keys(y.parse_yaml(dump.read_text()), path)) == expected
    # yaml2etcd --prune: an empty document would delete exactly these
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    capsys.readouterr()
    assert yaml2etcd.main([*endpoints, str(empty), path, "--prune", "--dry-run", "-w", "json"]) == 0
    changes = json.loads(capsys.readouterr().out)["changes"]
    assert {c["key"].encode() for c in changes if c["op"] == "delete"} == expected

    # etcdmon: touch every key, see only those; a marker under the path, written last,
    # ends the wait
    class Output(io.StringIO):
        marker = "never"
        seen = trio.Event()

        def write(self, text: str) -> int:
            if self.marker in text:
                self.seen.set()
            return super().write(text)

    async def monitor() -> set[bytes]:
        async with et.open_client(cluster.endpoints) as client:
            out, err = Output(), io.StringIO()
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    functools.partial(etcdmon.monitor, client, path, out, err, as_json=True)
                )
                for key in sorted(under | beside):
                    await client.put(key, "w")
                out.marker = '"value": "end"'
                await client.put(f"{path}/b/c", "end")
                await out.seen.wait()
                nursery.cancel_scope.cancel()
            lines = out.getvalue().splitlines()
            assert len(lines) == len(under) + 1
            return {json.loads(line)["key"].encode() for line in lines}

    assert trio.run(monitor) == expected
    # the viewer
    assert viewer.main([*endpoints, path]) == 0
    model = headless[0].model
    assert model is not None and mounted_keys(model.root) == expected
