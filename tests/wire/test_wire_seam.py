"""The wire seam holds: only ``trio_etcd_tree/_wire/`` knows a wire format.

The import graph is read from the source (every ``import``, including those under
``TYPE_CHECKING`` and inside functions), so nothing can slip past by importing late.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import trio

PACKAGE = Path(__file__).resolve().parent.parent.parent / "trio_etcd_tree"

# Modules that carry etcd's wire format: only the wire itself may import them.
WIRE_FORMAT = ("httpx", "httpcore", "h2", "hpack", "google.protobuf", "grpc")
# json is also a plain data format: allowed where it is not etcd's wire format.
JSON_ALLOWED = (
    "_core/codecs.py",  # the JSON value codec of typed nodes
    "_cli/",  # tools that print JSON lines or read JSON
    "testing/",  # the in-memory etcd is a server of the gateway's JSON, and the launcher
)
# The test helpers serve the gateway and check servers' health over HTTP.
HTTP_ALLOWED = ("testing/",)
# The in-memory etcd's gRPC front speaks with the gRPC transport's own message classes.
MESSAGES_ALLOWED = ("testing/_fake/grpc_dialect.py",)
MESSAGES = "trio_etcd_tree._wire.grpc.messages"


def imports_of(path: Path) -> list[str]:
    """Every module ``path`` imports, as absolute names."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names.append(target)
            names += [f"{target}.{alias.name}" for alias in node.names]
    return names


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith("_wire/"):
            continue
        for name in imports_of(path):
            top = name.split(".")
            if where in MESSAGES_ALLOWED and (
                name.startswith(MESSAGES) or MESSAGES.startswith(name + ".")  # or its package
            ):
                continue
            if name.startswith("trio_etcd_tree._wire.") and top[2] not in ("base", "errors"):
                # the interface is open to all; a transport's own modules are not
                if len(top) > 3 or top[2] in ("gateway", "grpc"):
                    found.append(f"{where} imports the transport module {name}")
            elif any(name == m or name.startswith(m + ".") for m in WIRE_FORMAT):
                if not where.startswith(HTTP_ALLOWED):
                    found.append(f"{where} imports {name}")
            elif name == "json" and not where.startswith(JSON_ALLOWED):
                found.append(f"{where} imports json")
    return sorted(set(found))


def test_only_the_wire_knows_a_wire_format() -> None:
    assert violations() == []


def test_the_check_catches_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "trio_etcd_tree"
    (fake / "_client").mkdir(parents=True)
    (fake / "_wire" / "gateway").mkdir(parents=True)
    (fake / "_client" / "bad.py").write_text(
        "import json\n"
        "from typing import TYPE_CHECKING\n"
        "from .._wire import base\n"
        "if TYPE_CHECKING:\n"
        "    from .._wire.gateway import transport\n"
        "def late():\n"
        "    import httpx\n"
    )
    (fake / "_wire" / "gateway" / "ok.py").write_text("import httpx\nimport json\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert violations() == [
        "_client/bad.py imports httpx",
        "_client/bad.py imports json",
        "_client/bad.py imports the transport module trio_etcd_tree._wire.gateway",
        "_client/bad.py imports the transport module trio_etcd_tree._wire.gateway.transport",
    ]


def test_importing_the_package_loads_no_transport() -> None:
    code = (
        "import sys, trio_etcd_tree\n"
        "trio_etcd_tree.mount  # (the public names are imported on first use)\n"
        "loaded = [m for m in sys.modules if m.startswith(('httpx', 'trio_etcd_tree._wire.'))]\n"
        "print(sorted(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "['trio_etcd_tree._wire.base']"


def test_every_request_describes_itself() -> None:
    """What an error says was asked: keys as text, never a byte repr."""
    from trio_etcd_tree import Get, Put
    from trio_etcd_tree._wire import base

    assert [
        base.RangeRequest(b"/a", b"/b").describe(),
        base.RangeRequest.of(Get("/a", prefix=True)).describe(),
        base.PutRequest(b"/a b", b"v").describe(),
        base.DeleteRangeRequest(b"/\xff").describe(),
        base.TxnRequest((), (Put("/a", "1"),)).describe(),
        base.CompactRequest(7).describe(),
        base.LeaseGrantRequest(5).describe(),
        base.LeaseRevokeRequest(12).describe(),
        base.LeaseKeepAliveRequest(12).describe(),
        base.LeaseTimeToLiveRequest(12).describe(),
        base.LeaseLeasesRequest().describe(),
        base.AuthenticateRequest("root", "pw").describe(),
        base.StatusRequest().describe(),
        base.MemberListRequest().describe(),
        base.WatchCreateRequest(b"/w/", b"/w0", 3).describe(),
    ] == [
        "range /a../b",
        "range /a../b",
        'put "/a b"',
        'delete "/\\xff"',
        "txn (0 compares, 1/0 operations)",
        "compact at 7",
        "grant lease of 5 s",
        "revoke lease 12",
        "keep lease 12 alive",
        "lease 12 ttl",
        "list leases",
        "authenticate as 'root'",
        "status",
        "member list",
        "watch /w/../w0 from revision 3",
    ]
    assert "pw" not in repr(base.AuthenticateRequest("root", "pw"))


def test_call_state_lifts_its_scopes_deadline_once_answered() -> None:
    """A transport marks the answer's start; the attempt's limit then no longer applies
    (the client's own attempts use a subclass that keeps the request deadline)."""
    from trio_etcd_tree._wire.base import CallState

    scope = trio.CancelScope(deadline=5.0)
    state = CallState(scope)
    state.mark_sent()
    state.mark_answered()
    assert state.sent and state.answered and scope.deadline == float("inf")
    CallState().mark_answered()  # without a scope: nothing to lift
