"""Small helpers: nurseries that do not wrap a lone error, jittered backoff, and a pause
of the garbage collector while many objects are built at once."""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import final

import trio

__all__ = ["Backoff", "ServiceNursery", "gc_paused", "leaves_of", "open_service_nursery"]


def open_service_nursery() -> ServiceNursery:
    """A nursery for our own background tasks, which raises a single error unwrapped.

    Trio wraps whatever leaves a nursery in an ``ExceptionGroup``. Our background tasks
    report through channels and raise only what is meant to end the block (a lost lease,
    say), so the group holds one real error, which we raise as it is, preferring it over
    the ``Cancelled`` it caused elsewhere (option 2 of trio's "Designing for multiple
    errors"). A group of several real errors is raised unchanged.

    (A class rather than an ``asynccontextmanager``: a mount holds two of these for its
    whole life, and a generator's frame and context manager cost ~0.4 KB more each.)
    """
    return ServiceNursery()


@final
class ServiceNursery:
    """``async with open_service_nursery() as nursery`` (see there)."""

    __slots__ = ("_manager",)

    async def __aenter__(self) -> trio.Nursery:
        self._manager = manager = trio.open_nursery()
        return await manager.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            return await self._manager.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            real = [e for e in leaves_of(group) if not isinstance(e, trio.Cancelled)]
            if len(real) > 1:
                raise
            single = real[0] if real else leaves_of(group)[0]
            if single is exc:
                return False  # the block's own error goes on as it was raised
            context = single.__context__
            try:
                raise single
            finally:
                single.__context__ = context
                del single, group


def leaves_of(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(leaves_of(exc))
        else:
            out.append(exc)
    return out


class Backoff:
    """Exponential backoff with jitter.

    The n-th wait is uniform in [c/2, c] where c = min(cap, base * 2**n).

    ``reset()`` after a success so the next failure waits briefly again.
    """

    def __init__(self, base: float = 0.05, cap: float = 2.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        # (the exponent stops growing: 2.0 ** 1024 would overflow after a long outage)
        ceiling = min(self.cap, self.base * 2.0 ** min(self.attempt, 64))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    async def wait(self) -> None:
        await trio.sleep(self.next_delay())

    def reset(self) -> None:
        self.attempt = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a block that builds many objects that
    stay alive (a page of keys, a tree, a parsed document) and holds no checkpoint, or only
    a few, briefly (a page going into a mount's tree: other tasks run with it paused too).

    Each collection walks every object of its generations, and while a large structure is
    being built most of them are the new, still-live ones: at 100,000 keys the collections
    took 50-75% of the time. Reference counting still frees what the block drops; the
    collector runs again after it (if it was running before).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
