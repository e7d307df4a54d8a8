"""yaml2etcd: write a YAML document's keys under a prefix, as one guarded transaction."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import trio

from .._yaml import (
    MAX_REQUEST_BYTES,
    MAX_TXN_OPS,
    DocumentError,
    load_yaml,
    parse_yaml,
    recorded_revision,
)
from . import common

EXAMPLES = """\
  yaml2etcd cfg.yaml /cfg/                  # add and change keys under /cfg/
  yaml2etcd cfg.yaml /cfg/ --prune          # ... and delete the keys cfg.yaml does not have
  yaml2etcd cfg.yaml /cfg/ --prune --dry-run    # show the diff, write nothing
  yaml2etcd cfg.yaml /cfg/ --if-revision 1234   # only if nothing under /cfg/ changed since
  yaml2etcd cfg.yaml /cfg/ --if-revision recorded   # since the revision etcd2yaml recorded
  etcd2yaml /a/ | yaml2etcd - /b/ --prune   # copy a subtree (same keys, same bytes)

encoding of YAML values (docs/tools.rst has the details):
  nested mappings -> keys joined with "/"; a null (~) entry -> the enclosing key's own value
  string -> UTF-8; !!binary -> its bytes; int -> 42; float -> 1.5, 1e+20, .inf, .nan
  bool -> true/false; null -> the empty value; date/timestamp -> ISO 8601
  list -> one key per item: hosts/0, hosts/1, ...; int/bool/float/date mapping keys likewise
  refused: empty mappings or lists below the top, keys containing "/", sets and pairs,
  a key given twice in one mapping

atomicity:
  the changes go in ONE transaction guarded by "no key under PREFIX was created or changed
  since it was read (or since --if-revision)", when they fit the server's limits
  (--max-txn-ops operations, --max-request-bytes). Otherwise they are split into several
  transactions (8 in flight at a time), each covering a consecutive key range of PREFIX
  and guarded by "nothing in my range changed since the read": a concurrent writer in a
  range not yet loaded stops the load, but the transactions already applied stay applied,
  and readers may see a partial load meanwhile. --atomic refuses to split instead.
  Invalid YAML, a document that is not a mapping, or a value too large: nothing is written.
"""


def _revision(text: str) -> int | str:
    if text == "recorded":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a revision number or 'recorded'") from None
    if value < 1:
        raise argparse.ArgumentTypeError("a revision is at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    p = common.parser("yaml2etcd", "Write the keys of a YAML FILE under PREFIX.", EXAMPLES)
    p.add_argument("file", metavar="FILE", help='the YAML document ("-": stdin)')
    p.add_argument("prefix", metavar="PREFIX", help='the key prefix, e.g. "/cfg/"')
    p.add_argument("--prune", action="store_true", help="delete keys FILE does not have")
    p.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    p.add_argument(
        "--if-revision",
        type=_revision,
        metavar="N|recorded",
        help="apply only if nothing under PREFIX changed since revision N",
    )
    p.add_argument("--atomic", action="store_true", help="refuse rather than split the load")
    p.add_argument("--max-txn-ops", type=int, default=MAX_TXN_OPS, help="the server's limit")
    p.add_argument(
        "--max-request-bytes", type=int, default=MAX_REQUEST_BYTES, help="the server's limit"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    progress = common.Progress()

    async def load() -> int:
        name = "<stdin>" if args.file == "-" else args.file
        if args.file == "-":
            text = sys.stdin.read()
        else:
            text = await trio.Path(args.file).read_text(encoding="utf-8")
        document = parse_yaml(text, name)
        if_revision = args.if_revision or 0
        if if_revision == "recorded":
            recorded = recorded_revision(text)
            if recorded is None:
                raise DocumentError(f"{name}: no revision recorded (no etcd2yaml header)")
            if_revision = recorded
        async with common.connect(args) as client:
            result = await load_yaml(
                client,
                args.prefix,
                document,
                prune=args.prune,
                if_revision=if_revision,
                atomic=args.atomic,
                dry_run=args.dry_run,
                max_txn_ops=args.max_txn_ops,
                max_request_bytes=args.max_request_bytes,
                progress=lambda i, n: progress(f"yaml2etcd: transaction {i}/{n}"),
            )
        progress.done()
        plan = result.plan
        if args.dry_run:
            for line in plan.diff():
                print(line)
            print(f"dry run at revision {plan.revision}: {plan.summary()}; nothing written")
        elif plan.empty:
            print(f"nothing to change at revision {plan.revision}: {plan.summary()}")
        else:
            print(
                f"applied at revision {result.revision} in {result.transactions} "
                f"transaction{'s' if result.transactions > 1 else ''}: {plan.summary()}"
            )
        return 0

    return common.run("yaml2etcd", load)
