"""etcd2yaml: dump the keys under a path as YAML, consistent at one revision."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import TextIO

from .._yaml import Progress, dump_yaml
from . import common, output

EXAMPLES = """\
  etcd2yaml /cfg                       # the key /cfg and everything under /cfg/, to stdout
  etcd2yaml /cfg -o cfg.yaml           # to a file (replaced only when the dump is complete)
  etcd2yaml /cfg --revision 1234       # as it was at revision 1234
  etcd2yaml /cfg --raw                 # every UTF-8 value as a string

the form (docs/tools.rst has the details):
  keys are split at "/" into nested mappings: /cfg/db/port -> {db: {port: 5432}}
  PATH /cfg covers /cfg and /cfg/..., never /cfgother; /cfg itself is the top "null:" entry
  values are written so that any YAML reader gets the same text back: plain when they are
    a plain word or a canonical number, bool or date (5432, 1.5, true, 2024-05-01);
    anything else quoted ("NO", "0755", "1.10", "a b")
  a key with a value and keys below it: a mapping whose null entry is its own value
    db: {null: primary, port: 5432}
  keys 0, 1, ... n-1 below a key (and no value of its own): a list
  a value or key segment that is not UTF-8: !!binary (base64)
  the first line is a comment with the path and the revision:
    # etcd2yaml: prefix /cfg revision 1234   (yaml2etcd --if-revision recorded uses it)
"""


def _parser() -> common.Parser:
    p = common.parser("etcd2yaml", "Dump the keys under PATH as YAML.", EXAMPLES)
    p.add_argument("prefix", metavar="PATH", help='the subtree, e.g. "/cfg"')
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument(
        "--revision",
        type=common.positive("revision"),
        default=0,
        help="dump as of this past revision",
    )
    p.add_argument("--raw", action="store_true", help="every UTF-8 value as a quoted string")
    p.add_argument("--page-size", type=int, default=25_000, help=argparse.SUPPRESS)
    return p


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """stdout, or a temporary file beside ``path`` renamed onto it on success (with the
    mode a new file gets, or the mode of the file it replaces)."""
    if path is None:
        yield sys.stdout
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".etcd2yaml-", suffix=".tmp", dir=directory)
    try:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            yield stream
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup = common.usage("etcd2yaml", lambda: common.settings(args))
    progress = Progress()

    async def dump() -> int:
        with _output(args.output) as stream:
            async with common.connect(setup) as client:
                async with output.progress_line(progress, "etcd2yaml", beside=stream):
                    revision = await dump_yaml(
                        client,
                        args.prefix,
                        stream,
                        revision=args.revision,
                        raw=args.raw,
                        page_size=args.page_size,
                        progress=progress,
                    )
            stream.flush()
        if args.output is not None:
            print(
                f"etcd2yaml: wrote {progress.done} keys to {args.output} at revision {revision}",
                file=sys.stderr,
            )
        return 0

    return common.run("etcd2yaml", dump, endpoints=setup.endpoints)
