"""yaml2etcd: write a YAML document's keys under a path, as one guarded transaction."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import trio

from .._core.codecs import BOOL, BYTES, FLOAT, INT, JSON, STR, Codec
from .._core.errors import DocumentError
from .._core.keys import show_bytes
from .._tree.registry import TypeRegistry
from .._yaml import (
    MAX_REQUEST_BYTES,
    MAX_TXN_OPS,
    Limits,
    LoadPlan,
    Progress,
    apply_plan,
    load_yaml,
    parse_yaml,
    recorded_revision,
)
from .._yaml.document import limit_error
from . import common, output

EXAMPLES = """\
  yaml2etcd cfg.yaml /cfg                  # add and change keys: /cfg and under /cfg/
  yaml2etcd cfg.yaml /cfg --prune          # ... and delete the keys cfg.yaml does not have
  yaml2etcd cfg.yaml /cfg --dry-run        # show each key's bytes, write nothing
  yaml2etcd cfg.yaml /cfg --if-revision 1234   # only if nothing under /cfg changed since
  yaml2etcd cfg.yaml /cfg --if-revision recorded   # since the revision etcd2yaml recorded
  yaml2etcd cfg.yaml /cfg --type '**/port=int'  # store ports as canonical ints
  etcd2yaml /a | yaml2etcd - /b --prune    # copy a subtree (same keys, same bytes)

what etcd gets (docs/tools.rst has the details):
  a plain scalar is stored as written: NO, 0755, 1.10, yes, ~ stay NO, 0755, 1.10, yes, ~
  a quoted scalar as its string; !!binary as its bytes; an empty value as the empty value
  an explicit tag converts: !!int 0755 -> 493, !!bool yes -> true
  --type PATTERN=CODEC (int, float, bool, json, str, bytes) converts the values at the
    paths PATTERN matches (as TypeRegistry patterns: db/port, **/port, services/*)
  nested mappings -> keys joined with "/"; a null (~) key -> the enclosing key's own value
  a list -> one key per item: hosts/0, hosts/1, ... (etcd2yaml writes them as a list)
  refused: empty mappings or lists below the top, keys containing "/", a key given twice

atomicity:
  the changes go in ONE transaction guarded by "no key under PATH was created or changed
  since it was read (or since --if-revision)" when they fit the server's limits
  (--max-txn-ops operations, --max-request-bytes). Otherwise yaml2etcd says so before it
  writes, and splits them into several transactions (--dry-run says how many), each
  guarded for its own key range: a failure part way leaves whole transactions applied,
  and the error says how many keys landed; running the same load again completes it.
  --atomic refuses to split instead. A bad document: nothing is written.

limits (a document over one fails at once, naming the file, line and limit):
  --max-document-bytes (64 MiB), --max-depth (100), --max-keys (1000000),
  --max-alias-expansion (10000 values added by aliases), --max-request-bytes (one value)
"""

_CODECS: dict[str, Codec] = {c.name: c for c in (STR, BYTES, INT, FLOAT, BOOL, JSON)}


def _revision(text: str) -> int | str:
    return text if text == "recorded" else common.positive("revision")(text)


def _type(text: str) -> tuple[str, Codec]:
    pattern, _, name = text.rpartition("=")
    codec = _CODECS.get(name)
    if not pattern or codec is None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give PATTERN=CODEC, CODEC one of {', '.join(_CODECS)}"
        )
    return pattern, codec


def _parser() -> common.Parser:
    p = common.parser(
        "yaml2etcd",
        "Write the keys of a YAML FILE under PATH.",
        EXAMPLES,
        outputs=("simple", "json"),
    )
    p.add_argument("file", metavar="FILE", help='the YAML document ("-": stdin)')
    p.add_argument("prefix", metavar="PATH", help='the subtree, e.g. "/cfg"')
    p.add_argument("--prune", action="store_true", help="delete keys FILE does not have")
    p.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    p.add_argument(
        "--if-revision",
        type=_revision,
        metavar="N|recorded",
        help="apply only if nothing under PATH changed since revision N",
    )
    p.add_argument("--atomic", action="store_true", help="refuse rather than split the load")
    p.add_argument(
        "--type",
        type=_type,
        action="append",
        default=[],
        metavar="PATTERN=CODEC",
        help="convert the values at PATTERN with CODEC (repeatable)",
    )
    d = Limits()
    g = p.add_argument_group("limits")
    g.add_argument(
        "--max-txn-ops", type=common.positive("limit"), default=MAX_TXN_OPS, help="the server's"
    )
    g.add_argument(
        "--max-request-bytes",
        type=common.positive("limit"),
        default=MAX_REQUEST_BYTES,
        help="the server's",
    )
    g.add_argument(
        "--max-document-bytes", type=common.positive("limit"), default=d.max_document_bytes
    )
    g.add_argument("--max-depth", type=common.positive("limit"), default=d.max_depth)
    g.add_argument("--max-keys", type=common.positive("limit"), default=d.max_keys)
    g.add_argument(
        "--max-alias-expansion", type=common.positive("limit"), default=d.max_alias_expansion
    )
    return p


async def _read(path: str, name: str, limit: int) -> bytes:
    """The file's bytes, refusing (before reading it all) a file over ``limit``."""
    if path == "-":
        data: bytes = await trio.to_thread.run_sync(sys.stdin.buffer.read, limit + 1)
        size = len(data)
    else:
        file = trio.Path(path)
        size = (await file.stat()).st_size
        data = b"" if size > limit else await file.read_bytes()
    if size > limit:
        raise limit_error("max_document_bytes", limit, f"more than {limit} bytes", name)
    return data


def _json(plan: LoadPlan, transactions: int, dry_run: bool, revision: int) -> str:
    changes: list[dict[str, object]] = []
    for key, value in plan.added:
        changes.append({"op": "put", "key": key, "value": value})
    for key, old, new in plan.changed:
        changes.append({"op": "put", "key": key, "value": new, "prev_value": old})
    for key, old in plan.deleted:
        changes.append({"op": "delete", "key": key, "prev_value": old})
    changes.sort(key=lambda c: c["key"])  # type: ignore[arg-type,return-value]
    records = []
    for change in changes:
        record: dict[str, object] = {"op": change["op"]}
        for name in ("key", "value", "prev_value"):
            if name in change:
                output.json_field(record, name, change[name])  # type: ignore[arg-type]
        records.append(record)
    return json.dumps(
        {
            "dry_run": dry_run,
            "revision": revision,
            "transactions": transactions,
            "added": len(plan.added),
            "changed": len(plan.changed),
            "deleted": len(plan.deleted),
            "unchanged": plan.unchanged,
            "changes": records,
        },
        ensure_ascii=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup = common.usage("yaml2etcd", lambda: common.settings(args))
    form = common.usage("yaml2etcd", lambda: common.write_out(args, "simple"))
    limits = Limits(
        max_document_bytes=args.max_document_bytes,
        max_depth=args.max_depth,
        max_keys=args.max_keys,
        max_alias_expansion=args.max_alias_expansion,
        max_value_bytes=args.max_request_bytes,
    )
    types = None
    if args.type:
        types = TypeRegistry()
        for pattern, codec in args.type:
            types.register(pattern, codec=codec)
    progress = Progress()
    split = {"max_txn_ops": args.max_txn_ops, "max_request_bytes": args.max_request_bytes}

    async def load() -> int:
        name = "<stdin>" if args.file == "-" else args.file
        text = await _read(args.file, name, limits.max_document_bytes)
        document = parse_yaml(text, name, limits=limits)
        if not isinstance(document, dict):
            kind = "empty" if document is None else f"a {type(document).__name__}"
            raise DocumentError(f"{name}: the document is {kind}, not a mapping", source=name)
        if_revision = args.if_revision or 0
        if if_revision == "recorded":
            recorded = recorded_revision(text)
            if recorded is None:
                raise DocumentError(
                    f"{name}: no revision recorded (no etcd2yaml header)", source=name
                )
            if_revision = recorded
        async with common.connect(setup) as client:
            try:
                planned = await load_yaml(
                    client,
                    args.prefix,
                    document,
                    prune=args.prune,
                    if_revision=if_revision,
                    dry_run=True,
                    types=types,
                    max_request_bytes=args.max_request_bytes,
                )
            except DocumentError as exc:  # a path in the document: say which file too
                raise DocumentError(f"{name}: {exc}", source=name) from None
            plan = planned.plan
            n = plan.transactions(**split)
            if args.dry_run:
                if form == "json":
                    print(_json(plan, n, True, plan.revision))
                    return 0
                for line in plan.diff():
                    print(line)
                how = f"{n} transaction{'s' if n != 1 else ''}"
                if n > 1:
                    how += f", not atomic (over --max-txn-ops {args.max_txn_ops})"
                print(
                    f"dry run at revision {plan.revision}: {plan.summary()}; "
                    f"would take {how}; nothing written"
                )
                return 0
            if n > 1 and not args.atomic:
                print(
                    f"yaml2etcd: {len(plan.operations())} changes take {n} transactions "
                    f"(over --max-txn-ops {args.max_txn_ops} or --max-request-bytes): "
                    "not atomic, readers may see a partial load (--atomic refuses)",
                    file=sys.stderr,
                    flush=True,
                )
            async with output.progress_line(progress, "yaml2etcd"):
                result = await apply_plan(
                    client,
                    plan,
                    if_revision=if_revision,
                    atomic=args.atomic,
                    progress=progress,
                    **split,
                )
        if form == "json":
            print(_json(plan, result.transactions, False, result.revision))
        elif plan.empty:
            print(f"nothing to change at revision {plan.revision}: {plan.summary()}")
        else:
            print(
                f"applied at revision {result.revision} in {result.transactions} "
                f"transaction{'s' if result.transactions > 1 else ''} under "
                f"{show_bytes(plan.prefix or b'/')}: {plan.summary()}"
            )
        return 0

    return common.run("yaml2etcd", load, endpoints=setup.endpoints)
