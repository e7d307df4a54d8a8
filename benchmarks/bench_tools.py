#!/usr/bin/env python
"""Benchmark the etcd2yaml / yaml2etcd tools against etcdctl and a bare httpx loader.

Usage::

    python benchmarks/bench_tools.py [--keys 100000] [--repeat 3] [--endpoints URL] [--quick]
                                     [--profile]

With no ``--endpoints`` it starts its own etcd 3.5 on loopback (``EtcdCluster``), loads
``bench_client.py``'s data (N keys ``/bench/app{i%100}/item{i}/field{j}``, 40-byte values)
and measures:

1. **etcd2yaml** of ``/bench/`` to a file: the whole process
   (``python tools/etcd2yaml.py --endpoints URL /bench/ -o FILE``), wall time; and
   in-process ``open_client`` + ``dump_yaml`` into a file (info). Baseline:
   ``etcdctl get --prefix /bench/ -w json > FILE`` (the etcdctl beside the etcd binary),
   wall time.
2. **yaml2etcd** of that YAML file into a fresh prefix: the whole process
   (``python tools/yaml2etcd.py FILE /bench2-N/ --endpoints URL``), each repeat into its
   own prefix; and in-process ``parse_yaml`` + ``load_yaml`` (info). Baseline: the same N
   keys in 128-op txns from 8 concurrent tasks through the gateway with bare httpx
   (``bench_client.load_keys``), in-process.

Medians of ``--repeat`` runs; target: ours within 2x of the baseline. When a target is
missed (or with ``--profile``) the in-process dump and load are run once more under
cProfile and the top functions are printed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import bench_client as bc
import httpx
import trio
from bench_client import READ_PREFIX, Row, log

from trio_etcd_tree import open_client
from trio_etcd_tree._yaml import dump_yaml, load_yaml, parse_yaml

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
TARGET = 2.0
SUBPROCESS_TIMEOUT = 600.0


class ToolRow(Row):
    """A row of ``bench_client``'s table with this script's target: time ratio <= 2."""

    def verdict(self) -> str:
        ratio = self.ratio()
        if ratio is None or self.kind == "info":
            return "(info)"
        return f"<= {TARGET:.2f} {'ok' if ratio <= TARGET else 'MISS'}"


def print_table(rows: list[Row]) -> None:
    """``bench_client.print_table``, with a neutral header for the baseline column."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bc.print_table(rows)
    old = "baseline (raw httpx + trio)"
    sys.stdout.write(out.getvalue().replace(old, "baseline".ljust(len(old)), 1))


# --- helpers -------------------------------------------------------------------------------


def timed_process(args: Sequence[str], stdout_path: Path | None = None) -> float:
    """Run a process to completion; its wall time (fails loudly on a non-zero exit)."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(stdout_path.open("wb")) if stdout_path else subprocess.DEVNULL
        started = time.perf_counter()
        done = subprocess.run(
            list(args),
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=SUBPROCESS_TIMEOUT,
            check=False,
        )
        took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr[-500:]!r}")
    return took


async def count_keys(endpoint: str, prefix: bytes) -> int:
    async with bc.bare_http() as http:
        body = {
            "key": bc.b64e(prefix),
            "range_end": bc.b64e(bc.prefix_end(prefix)),
            "count_only": True,
        }
        data = await bc.bare_post(http, endpoint + "/v3/kv/range", body)
        return int(data.get("count", 0))


async def delete_prefix(endpoint: str, prefix: bytes) -> None:
    async with bc.bare_http() as http:
        body = {"key": bc.b64e(prefix), "range_end": bc.b64e(bc.prefix_end(prefix))}
        await bc.bare_post(http, endpoint + "/v3/kv/deleterange", body)


async def dump_in_process(endpoint: str, path: Path) -> float:
    started = time.perf_counter()
    with path.open("w", encoding="utf-8") as stream:
        async with open_client(endpoint) as client:
            await dump_yaml(client, READ_PREFIX, stream)
    return time.perf_counter() - started


async def load_in_process(endpoint: str, path: Path, prefix: str) -> tuple[float, float]:
    """(parse seconds, parse + connect + load seconds)."""
    started = time.perf_counter()
    text = await trio.Path(path).read_text(encoding="utf-8")
    document = parse_yaml(text, str(path))
    parsed = time.perf_counter() - started
    async with open_client(endpoint) as client:
        await load_yaml(client, prefix, document)
    return parsed, time.perf_counter() - started


def check_etcdctl_json(path: Path, keys: int) -> None:
    import json

    data = json.loads(path.read_bytes())
    got = int(data.get("count", len(data.get("kvs", ()))))
    assert got == keys, f"etcdctl dumped {got} keys, expected {keys}"
    first = base64.b64decode(data["kvs"][0]["key"])
    assert first.startswith(READ_PREFIX), first


# --- the measurements ----------------------------------------------------------------------


@dataclass
class Settings:
    keys: int
    repeat: int
    profile: bool


def run_all(endpoint: str, etcdctl: Path, s: Settings, work: Path) -> tuple[list[Row], Path]:
    python = sys.executable
    yaml_file = work / "bench.yaml"
    inproc_file = work / "bench-inproc.yaml"
    json_file = work / "bench.json"
    rows: list[Row] = []

    log(f"loading {s.keys} keys ({bc.TXN_OPS}-op txns, {bc.LOAD_TASKS} tasks) ...")
    took = trio.run(bc.load_keys, endpoint, s.keys)
    log(f"  {took:.2f} s, {s.keys / took:.0f} keys/s")

    # (1) etcd2yaml vs etcdctl get -w json
    dump_cmd = [python, str(TOOLS / "etcd2yaml.py"), "--endpoints", endpoint, "/bench/"]
    dump_cmd += ["-o", str(yaml_file)]
    ctl_cmd = [str(etcdctl), "--endpoints", endpoint, "get", "--prefix", "/bench/", "-w", "json"]
    log(f"(1) dump: {' '.join(dump_cmd)}")
    log(f"    vs    {' '.join(ctl_cmd)} > {json_file}")
    ours: list[float] = []
    ctl: list[float] = []
    inproc: list[float] = []
    timed_process(ctl_cmd, json_file)  # warm-up: server caches, page cache of the binaries
    timed_process(dump_cmd)
    for r in range(s.repeat):
        order: list[Callable[[], None]] = [
            lambda: ours.append(timed_process(dump_cmd)),
            lambda: ctl.append(timed_process(ctl_cmd, json_file)),
            lambda: inproc.append(trio.run(dump_in_process, endpoint, inproc_file)),
        ]
        for run in order if r % 2 == 0 else order[::-1]:
            run()
        log(
            f"  repeat {r + 1}/{s.repeat}: etcd2yaml {ours[-1]:.3f}s, etcdctl {ctl[-1]:.3f}s, "
            f"dump_yaml in-process {inproc[-1]:.3f}s"
        )
    startup = [timed_process([python, str(TOOLS / "etcd2yaml.py"), "--help"]) for _ in ours]
    ctl_startup = [timed_process([str(etcdctl), "version"]) for _ in ctl]
    check_etcdctl_json(json_file, s.keys)
    body = [f.read_bytes().split(b"\n", 1)[1] for f in (yaml_file, inproc_file)]
    assert body[0] == body[1], "etcd2yaml and dump_yaml wrote different documents"
    log(
        f"  YAML {yaml_file.stat().st_size / 1e6:.1f} MB, "
        f"etcdctl JSON {json_file.stat().st_size / 1e6:.1f} MB"
    )
    rows += [
        ToolRow(
            f"etcd2yaml {s.keys} keys, process vs etcdctl get -w json (s)", ours, ctl, 3, "time"
        ),
        ToolRow("  in-process open_client + dump_yaml vs etcdctl (s)", inproc, ctl, 3, "info"),
        ToolRow(
            "  start-up: etcd2yaml --help vs etcdctl version (s)", startup, ctl_startup, 3, "info"
        ),
    ]

    # (2) yaml2etcd vs 128-op txns from 8 bare httpx tasks
    tag = f"{os.getpid()}-{time.time_ns() % 10**6}"
    ours2: list[float] = []
    bare: list[float] = []
    inproc2: list[float] = []
    parse: list[float] = []
    used: list[bytes] = []
    log(
        f"(2) load: {python} {TOOLS / 'yaml2etcd.py'} {yaml_file} /bench2-{tag}-N/ "
        f"--endpoints {endpoint}"
    )
    log(f"    vs    bench_client.load_keys ({bc.TXN_OPS}-op txns, {bc.LOAD_TASKS} httpx tasks)")

    def ours_load(r: int) -> None:
        prefix = f"/bench2-{tag}-{r}/"
        used.append(prefix.encode())
        cmd = [python, str(TOOLS / "yaml2etcd.py"), str(yaml_file), prefix]
        ours2.append(timed_process([*cmd, "--endpoints", endpoint]))
        got = trio.run(count_keys, endpoint, prefix.encode())
        assert got == s.keys, f"yaml2etcd wrote {got} keys under {prefix}, expected {s.keys}"

    def inproc_load(r: int) -> None:
        prefix = f"/bench3-{tag}-{r}/"
        used.append(prefix.encode())
        p, total = trio.run(load_in_process, endpoint, yaml_file, prefix)
        parse.append(p)
        inproc2.append(total)

    def bare_load(r: int) -> None:
        bare.append(trio.run(bc.load_keys, endpoint, s.keys))  # replaces /bench/ (not timed)

    for r in range(s.repeat):
        steps = [ours_load, bare_load, inproc_load]
        for step in steps if r % 2 == 0 else steps[::-1]:
            step(r)
        log(
            f"  repeat {r + 1}/{s.repeat}: yaml2etcd {ours2[-1]:.3f}s, bare txns {bare[-1]:.3f}s, "
            f"in-process {inproc2[-1]:.3f}s (parse_yaml {parse[-1]:.3f}s)"
        )
    for prefix in used:  # keep the server small for the next part
        trio.run(delete_prefix, endpoint, prefix)
    rows += [
        ToolRow(
            f"yaml2etcd {s.keys} keys, process vs bare 128-op txns x8 (s)", ours2, bare, 3, "time"
        ),
        ToolRow("  in-process parse_yaml + load_yaml vs bare (s)", inproc2, bare, 3, "info"),
        ToolRow("  of which parse_yaml (s)", parse, bare, 3, "info"),
    ]
    return rows, yaml_file


def profile(endpoint: str, yaml_file: Path, work: Path, top: int = 15) -> None:
    """The in-process dump and load under cProfile: the top functions, ours first."""
    jobs: list[tuple[str, Callable[[], object]]] = [
        ("dump_yaml", lambda: trio.run(dump_in_process, endpoint, work / "profile.yaml")),
        (
            "parse_yaml + load_yaml",
            lambda: trio.run(load_in_process, endpoint, yaml_file, "/bench-profile/"),
        ),
    ]
    for name, job in jobs:
        profiler = cProfile.Profile()
        profiler.enable()
        job()
        profiler.disable()
        stats = pstats.Stats(profiler)
        entries = stats.stats  # type: ignore[attr-defined]
        total = sum(tt for _cc, _nc, tt, _ct, _callers in entries.values())
        print(f"\ncProfile, {name} (total own time {total:.2f} s): top functions by own time")
        ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)
        ours = [item for item in ranked if "trio_etcd_tree" in item[0][0]]
        for title, items in (("in trio_etcd_tree", ours), ("overall", ranked)):
            print(f"  {title}:")
            for (filename, line, func), (_cc, calls, tt, ct, _callers) in items[:top]:
                where = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
                print(
                    f"    {tt:7.3f}s own {ct:7.3f}s cum {calls:>9} calls  {func} ({where}:{line})"
                )
    trio.run(delete_prefix, endpoint, b"/bench-profile/")


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> tuple[Settings, str | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, help="keys to dump and load (100000, --quick 10000)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per measurement (3)")
    parser.add_argument("--endpoints", help="use this etcd instead of starting one")
    parser.add_argument("--quick", action="store_true", help="10000 keys")
    parser.add_argument("--profile", action="store_true", help="always run the cProfile pass")
    parser.add_argument("--json", metavar="FILE", help=bc.JSON_HELP)
    args = parser.parse_args(argv)
    keys = args.keys or (10_000 if args.quick else 100_000)
    return Settings(keys, args.repeat, bool(args.profile)), args.endpoints


def main(argv: list[str]) -> None:
    settings, endpoints = parse_args(argv)
    started = time.perf_counter()
    from trio_etcd_tree.testing import find_etcd

    binary = find_etcd("3.5")
    etcdctl = binary.etcdctl
    if etcdctl is None:
        raise SystemExit(f"no etcdctl beside {binary.path}")
    with tempfile.TemporaryDirectory(prefix="bench-tools-") as tmp:
        work = Path(tmp)
        with bc.bench_etcd(endpoints) as (endpoint, server):
            rows, yaml_file = run_all(endpoint, etcdctl, settings, work)
            misses = [row.metric.strip() for row in rows if "MISS" in row.verdict()]
            print()
            print(
                f"etcd2yaml / yaml2etcd vs etcdctl and bare httpx; {server}; python "
                f"{sys.version.split()[0]}, trio {trio.__version__}, httpx {httpx.__version__}, "
                f"{os.cpu_count()} CPUs"
            )
            print(
                f"keys={settings.keys} repeats={settings.repeat}; median (min-max) wall "
                f"seconds; target: ratio <= {TARGET:.1f}"
            )
            print_table(rows)
            print(f"{len(misses)} target(s) missed" + (": " + "; ".join(misses) if misses else ""))
            json_file = bc.json_option(argv)
            if json_file is not None:
                title = f"etcd2yaml / yaml2etcd vs etcdctl and bare httpx; {server}"
                bc.write_json(json_file, "bench_tools.py", title, settings, rows)
            if misses or settings.profile:
                profile(endpoint, yaml_file, work)
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
