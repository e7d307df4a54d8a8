"""``python -m trio_etcd_tree.testing.nemesis``: one nemesis run, from the command line.

Exits 0 when the checker found nothing, 1 with the seed, the schedule and the first
violation (and the full history written to a file) when it found something, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import trio
import trio.testing

from ..._wire import TRANSPORTS
from .runner import Options, Report, run_fake, run_real
from .schedule import FAULT_KINDS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trio_etcd_tree.testing.nemesis",
        description="Run workloads on an etcd cluster under random faults and check the history.",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to write")
    parser.add_argument("--seed", type=int, help="the seed (default: a random one, printed)")
    parser.add_argument("--etcd", metavar="VERSION", help="etcd version, e.g. 3.5 or 3.4")
    parser.add_argument("--members", type=int, default=3, help="cluster size (default 3)")
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated fault kinds (default: all of {','.join(FAULT_KINDS)})",
    )
    parser.add_argument("--max-fault", type=float, help="cap on one fault's seconds")
    parser.add_argument(
        "--synced-bound",
        type=float,
        default=Options.synced_bound,
        help="seconds a mount may say synced while its member is frozen or cut off",
    )
    parser.add_argument(
        "--quiet-bound",
        type=float,
        default=Options.quiet_bound,
        help="the same for a mount that makes no requests of its own",
    )
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=Options.transport,
        help=f"how the workloads reach etcd (default {Options.transport})",
    )
    parser.add_argument("--history", type=Path, help="where to write the history of a failure")
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="use the in-memory etcd under a mock clock instead of real processes",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run once; see the module docs for the exit status."""
    args = _parser().parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    options = Options(
        seed=seed,
        seconds=args.seconds,
        kinds=tuple(k.strip() for k in args.faults.split(",") if k.strip()),
        max_fault=args.max_fault,
        synced_bound=args.synced_bound,
        quiet_bound=args.quiet_bound,
        transport=args.transport,
    )
    try:
        schedule = options.schedule()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"nemesis: seed {seed}, {len(schedule)} faults in {args.seconds:g}s", flush=True)
    report: Report
    if args.in_memory:
        report = trio.run(
            functools.partial(run_fake, options, members=args.members),
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
    else:
        report = trio.run(
            functools.partial(run_real, options, version=args.etcd, members=args.members)
        )
    print(report.summary())
    if report.ok:
        return 0
    path = args.history or Path(f"nemesis-history-{seed}.json")
    report.write(path)
    print(report.failure(path))
    return 1


if __name__ == "__main__":
    sys.exit(main())
