"""etcd2yaml: dump the keys under a prefix as YAML, consistent at one revision."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import TextIO

from .._yaml import dump_yaml
from . import common

EXAMPLES = """\
  etcd2yaml /cfg/                      # everything under /cfg/, to stdout
  etcd2yaml /cfg/ -o cfg.yaml          # to a file (replaced only when the dump is complete)
  etcd2yaml /cfg/ --revision 1234      # as it was at revision 1234
  etcd2yaml /cfg/ --raw                # every UTF-8 value as a string

the form (docs/tools.rst has the details):
  keys are split at "/" into nested mappings: /cfg/db/port -> {db: {port: 5432}}
  a value is an int, float, bool or date only when its bytes are exactly that scalar's
    canonical form (5432, 1.5, true, 2024-05-01); anything else is a string
  a key with a value and keys below it: a mapping whose null (~) entry is its own value
    db: {~: primary, port: 5432}
  a value or key segment that is not UTF-8: !!binary (base64)
  the first line is a comment with the prefix and the revision:
    # etcd2yaml: prefix /cfg/ revision 1234   (yaml2etcd --if-revision recorded uses it)
"""


def _parser() -> argparse.ArgumentParser:
    p = common.parser("etcd2yaml", "Dump the keys under PREFIX as YAML.", EXAMPLES)
    p.add_argument("prefix", metavar="PREFIX", help='the key prefix, e.g. "/cfg/"')
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--revision", type=int, default=0, help="dump as of this past revision")
    p.add_argument("--raw", action="store_true", help="every UTF-8 value as a string")
    p.add_argument("--page-size", type=int, default=10_000, help=argparse.SUPPRESS)
    return p


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """stdout, or a temporary file beside ``path`` renamed onto it on success."""
    if path is None:
        yield sys.stdout
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".etcd2yaml-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            yield stream
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    progress = common.Progress()

    async def dump() -> int:
        with _output(args.output) as stream:
            async with common.connect(args) as client:
                revision = await dump_yaml(
                    client,
                    args.prefix,
                    stream,
                    revision=args.revision,
                    raw=args.raw,
                    page_size=args.page_size,
                    progress=lambda n: progress(f"etcd2yaml: {n} keys"),
                )
        progress.done()
        if args.output is not None:
            print(f"etcd2yaml: wrote {args.output} at revision {revision}", file=sys.stderr)
        return 0

    return common.run("etcd2yaml", dump)
