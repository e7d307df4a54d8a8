"""``dump_yaml``: an etcd subtree, read at one revision, streamed out as YAML."""

from __future__ import annotations

from itertools import islice
from typing import TextIO

import trio

from .._client import Client
from .._core.keys import (
    KeyLike,
    prefix_end as _prefix_end,
    show_bytes,
    subtree_path,
)
from .._core.types import Page, last_key, pairs, undecoded
from .._core.util import gc_paused, open_service_nursery
from .emit import Entry, Node, key_text, order, write
from .progress import Progress
from .scalars import render_value

__all__ = ["dump_yaml"]

STEP = 2000
"""Keys added to the tree being written between two checkpoints."""
HEADER = "# etcd2yaml: prefix {prefix} revision {revision}\n"


async def dump_yaml(
    client: Client,
    prefix: KeyLike,
    stream: TextIO,
    *,
    revision: int = 0,
    raw: bool = False,
    page_size: int = 25_000,
    progress: Progress | None = None,
) -> int:
    """Write the subtree at the path ``prefix`` to ``stream`` as YAML; return the revision
    read.

    The path ``/cfg`` (or ``/cfg/``) covers the key ``/cfg`` (written as the top-level
    ``null`` entry) and every key under ``/cfg/``, never ``/cfgother``. The keys are read
    page by page at one revision (the current one, or ``revision``), so the dump is one
    consistent snapshot; a top-level entry is written as soon as its last key has been
    read. The first line is a comment recording the path and the revision (see
    :func:`recorded_revision`). ``progress`` is updated as pages arrive (with the total,
    counted beside the first page).

    Raises:
        CompactedError: ``revision`` has been compacted.
        ValueError: ``revision`` is negative.

    Cancellation: each page is a checkpoint; whatever was written stays written. The next
    page is read (in a task of its own) while the current one is written.
    """
    if revision < 0:
        raise ValueError(f"a revision is 0 (the current one) or more, not {revision}")
    path = subtree_path(prefix)
    below = path + b"/"
    end = _prefix_end(below)
    if path:
        own = await client.range(path, revision=revision)
        counted = None
    else:
        own = counted = await client.range(below, end, count_only=True, revision=revision)
    read_at = revision or own.header.revision
    if progress is not None:
        progress.start("reading", None if counted is None else counted.count + len(own.kvs))
        progress.advance(len(own.kvs))
    stream.write(HEADER.format(prefix=show_bytes(path or b"/"), revision=read_at))
    wrote = False
    if path and own.kvs:
        stream.write(f"null: {render_value(own.kvs[0].value, raw)}\n")
        wrote = True
    root: dict[bytes, Entry] = {}
    skip = len(below)

    def flush(last: bytes | None) -> None:
        # the entries whose keys have all been read: their key range ends at or before `last`
        nonlocal wrote
        ready = [s for s in root if last is None or order(s) <= last]
        for segment in sorted(ready, key=order):
            out: list[str] = []
            write(root.pop(segment), key_text(segment), "", raw, out)
            stream.write("".join(out))
            wrote = True

    # the next page is read while this one is written
    send, receive = trio.open_memory_channel[Page](1)

    async def read() -> None:
        async with send:
            async for page in client.range_pages(below, end, revision=read_at, page_size=page_size):
                await send.send(page)

    async def count(progress: Progress) -> None:  # (beside the first page, not before it)
        counted = await client.range(below, end, count_only=True, revision=read_at)
        progress.known_total(counted.count + len(own.kvs))

    async with open_service_nursery() as nursery, receive:
        nursery.start_soon(read)
        if progress is not None and counted is None:
            nursery.start_soon(count, progress)
        async for page in receive:
            kvs = undecoded(page)
            items = iter(pairs(kvs))  # (keys and values alone: no KeyValue made)
            parent_key = None  # the bytes before the last "/" of the key before
            siblings = root  # the entries of the node they name
            with gc_paused():  # (once per page: the collector would walk the whole tree)
                for _ in range(0, len(kvs), STEP):
                    for key, value in islice(items, STEP):
                        # the range holds only keys under the path: each starts with `below`
                        cut = key.rfind(b"/")
                        if key[:cut] != parent_key:  # (mostly the previous key's parent)
                            parent_key = key[:cut]
                            siblings = root
                            for segment in key[skip:cut].split(b"/") if cut >= skip else ():
                                node = siblings.get(segment)
                                if node is None:
                                    node = siblings[segment] = Node()
                                elif isinstance(node, bytes):  # a key with keys below it
                                    node = siblings[segment] = Node(node)
                                siblings = node.children
                        # keys come in byte order, so a key comes before every key below it
                        siblings[key[cut + 1 :]] = value
                    # (the reader gets to send its request for the next page meanwhile)
                    await trio.lowlevel.checkpoint()
                if len(kvs):
                    flush(last_key(kvs)[skip:])
            if progress is not None:
                progress.advance(len(kvs))
    flush(None)
    if not wrote:
        stream.write("{}\n")
    if progress is not None:
        progress.finish()
    return read_at
