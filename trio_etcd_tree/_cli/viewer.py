"""``etcd-tree``: a terminal viewer (and editor) of a live etcd subtree.

etcd-tree /cfg                          # the etcd at ETCDCTL_ENDPOINTS or 127.0.0.1:2379
etcd-tree --endpoints host:port,URL /cfg
etcd-tree --user root --cacert ca.pem /cfg   # every etcdctl option, as the other tools
etcd-tree --embedded /demo              # a private etcd with demo data, removed afterwards
etcd-tree --embedded --load data.yaml /cfg
etcd-tree --read-only /cfg              # no editing

Needs Textual: ``pip install 'trio-etcd-tree[viewer]'``. See docs/viewer.rst.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import yaml

import trio_etcd_tree as et

from .._yaml import parse_yaml
from . import common, output

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


EXAMPLES = """\
  etcd-tree /cfg                       # the key /cfg and everything under /cfg/
  etcd-tree --embedded /demo           # a private etcd with demo data, removed afterwards
  etcd-tree --user root --cacert ca.pem --endpoints host:2379 /cfg

keys: arrows/hjkl move and open, / filter, g jump, e edit, a add, d delete, q quit.
Needs Textual: pip install 'trio-etcd-tree[viewer]'.
"""


def _parser() -> common.Parser:
    parser = common.parser(
        "etcd-tree", "Browse and edit a live etcd subtree in the terminal.", EXAMPLES
    )
    parser.add_argument("prefix", help="the subtree to show, e.g. /cfg ('/' for every key)")
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


def load_data(text: str, name: str = "<document>") -> dict[str, Any]:
    """A YAML mapping of names to values or nested mappings; scalars are kept as written
    (``NO`` stays ``NO``), as yaml2etcd stores them."""
    data = parse_yaml(text, name)
    if not isinstance(data, Mapping):
        raise ValueError("the file must hold a YAML mapping")
    return _strings(data)


def _strings(data: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k): _strings(v) if isinstance(v, Mapping) else _scalar(v) for k, v in data.items()}


def _scalar(value: object) -> str:
    """A value as the text a key gets: a string as written; anything else (a list, a
    tagged scalar) as YAML."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool | int | float) or value is None:
        return yaml.safe_dump(value).removesuffix("\n...\n").strip()
    return yaml.safe_dump(_plain(value), sort_keys=False).rstrip("\n")


def _plain(value: object) -> object:
    """``value`` with the parser's string subclass (``Plain``) turned into ``str``."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


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
    setup = None if args.embedded else common.usage("etcd-tree", lambda: common.settings(args))
    try:
        from .viewer_app import ViewerApp
        from .viewer_bridge import Bridge
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
            data = load_data(args.load.read_text(), str(args.load))
        except (OSError, ValueError) as exc:
            print(f"etcd-tree: cannot load {args.load}: {common.one_line(exc)}", file=sys.stderr)
            return 2
    with contextlib.ExitStack() as stack:
        if setup is None:
            cluster = stack.enter_context(output.embedded_etcd("etcd-tree"))
            setup = common.Settings(cluster.endpoints)
            fill = _setup(args.prefix, DEMO_DATA if data is None else data)
        else:
            fill = None
        connect: Callable[[], AbstractAsyncContextManager[et.Client]] = functools.partial(
            common.connect, setup
        )
        bridge = Bridge(connect, args.prefix, setup=fill)
        ViewerApp(bridge, read_only=args.read_only).run()
    if bridge.error is not None:
        print(f"etcd-tree: {bridge.error}", file=sys.stderr)
        return 1
    return 0
