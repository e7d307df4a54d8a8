"""``etcd-tree``: a terminal viewer (and editor) of a live etcd subtree.

etcd-tree /cfg                          # the etcd at ETCDCTL_ENDPOINTS or 127.0.0.1:2379
etcd-tree --endpoints URL,URL /cfg
etcd-tree --embedded /demo              # a private etcd with demo data, removed afterwards
etcd-tree --embedded --load data.yaml /cfg
etcd-tree --read-only /cfg              # no editing

Needs Textual: ``pip install 'trio-etcd-tree[viewer]'``. See docs/viewer.rst.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import yaml

import trio_etcd_tree as et

from . import common

__all__ = ["DEMO_DATA", "load_data", "main"]

DEMO_DATA: dict[str, Any] = {
    "db": {
        "host": "db.internal",
        "port": "5432",
        "options": '{"sslmode": "require", "pool": {"min": 2, "max": 20}}',
    },
    "services": {
        "api": {
            "replicas": "3",
            "image": "registry.local/api:2.4.1",
            "env": "LOG_LEVEL: info\nFEATURES:\n  - search\n  - export\n",
        },
        "worker": {"replicas": "8", "queue": "jobs-high"},
        "web": {"replicas": "2", "image": "registry.local/web:1.9.0"},
    },
    "features": {"dark-mode": "true", "beta-search": "false"},
    "limits": {f"tenant-{i:02}": str(100 * i) for i in range(1, 13)},
}
"""What ``--embedded`` loads when no ``--load`` file is given."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etcd-tree",
        description="Browse and edit a live etcd subtree in the terminal.",
        epilog="Keys: arrows/hjkl move and open, / filter, g jump, e edit, a add, d delete, "
        "q quit. Needs Textual: pip install 'trio-etcd-tree[viewer]'.",
    )
    parser.add_argument("prefix", help="the subtree to show, e.g. /cfg ('/' for every key)")
    parser.add_argument(
        "--endpoints",
        default=os.environ.get("ETCDCTL_ENDPOINTS", "http://127.0.0.1:2379"),
        help="comma-separated etcd endpoints (default: $ETCDCTL_ENDPOINTS or 127.0.0.1:2379)",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="start a private etcd for trying it out (with demo data unless --load)",
    )
    parser.add_argument(
        "--load", metavar="FILE", type=Path, help="with --embedded: a YAML mapping to load"
    )
    parser.add_argument("--read-only", action="store_true", help="disable editing")
    return parser


def load_data(text: str) -> dict[str, Any]:
    """A YAML mapping of names to values or nested mappings (scalars become strings)."""
    data = yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise ValueError("the file must hold a YAML mapping")
    return _strings(data)


def _strings(data: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k): _strings(v) if isinstance(v, Mapping) else _scalar(v) for k, v in data.items()}


def _scalar(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float) or value is None:
        return yaml.safe_dump(value).removesuffix("\n...\n").strip()
    return yaml.safe_dump(value, sort_keys=False).rstrip("\n")


def _setup(prefix: str, data: dict[str, Any]) -> Callable[[et.Client], Any]:
    async def load(client: et.Client) -> None:
        base = prefix.rstrip("/")
        stack: list[tuple[str, Mapping[str, Any]]] = [(base, data)]
        while stack:
            at, items = stack.pop()
            for name, value in items.items():
                if isinstance(value, Mapping):
                    stack.append((f"{at}/{name}", value))
                else:
                    await client.put(f"{at}/{name}", value)

    return load


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from .viewer_app import Bridge, ViewerApp
    except ImportError as exc:
        print(
            f"etcd-tree needs Textual ({exc}): pip install 'trio-etcd-tree[viewer]'",
            file=sys.stderr,
        )
        return 2
    data = None
    if args.load is not None:
        if not args.embedded:
            print("etcd-tree: --load only goes with --embedded", file=sys.stderr)
            return 2
        try:
            data = load_data(args.load.read_text())
        except (OSError, ValueError, yaml.YAMLError) as exc:
            print(f"etcd-tree: cannot load {args.load}: {exc}", file=sys.stderr)
            return 2
    with contextlib.ExitStack() as stack:
        if args.embedded:
            endpoints = stack.enter_context(common.embedded_etcd("etcd-tree")).endpoints
            setup = _setup(args.prefix, DEMO_DATA if data is None else data)
        else:
            endpoints = [e for e in args.endpoints.split(",") if e]
            setup = None
        connect: Callable[[], AbstractAsyncContextManager[et.Client]] = functools.partial(
            et.open_client, endpoints
        )
        bridge = Bridge(connect, args.prefix, setup=setup)
        ViewerApp(bridge, read_only=args.read_only).run()
    if bridge.error is not None:
        print(f"etcd-tree: {bridge.error}", file=sys.stderr)
        return 1
    return 0
