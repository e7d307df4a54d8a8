"""The viewer's trio side, run as a guest on Textual's asyncio loop.

:class:`Bridge` owns the client, the mount and a subscription; updates are appended to
``Bridge.pending`` and the app takes them once per frame (both run on the same thread, so a
list is all the hand-over needs). The app reads the mounted tree directly (reading nodes
never does I/O) and asks trio to write with :meth:`Bridge.call`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import outcome
import trio

import trio_etcd_tree as et

__all__ = ["Bridge"]

T = TypeVar("T")


class Bridge:
    """The trio side: connect, mount, subscribe, and run the app's requests.

    Args:
        connect: ``async with connect() as client`` opens the client (in trio).
        prefix: what to mount.
        setup: run once with the client before mounting (loads ``--embedded`` data).
        buffer: the subscription's buffer (it is cut off and renewed if it overflows).
    """

    def __init__(
        self,
        connect: Callable[[], AbstractAsyncContextManager[et.Client]],
        prefix: str,
        *,
        setup: Callable[[et.Client], Awaitable[None]] | None = None,
        buffer: int = 100_000,
    ) -> None:
        self._connect = connect
        self.prefix = prefix
        self._setup = setup
        self._buffer = buffer
        self.pending: list[et.Update] = []
        self.overflows = 0
        self.client: et.Client | None = None
        self.root: et.Root | None = None
        self.error: str | None = None
        self.outcome: outcome.Outcome[None] | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        self._finished = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the host side ---------------------------------------------------------------------

    def start(self) -> None:
        """Start trio as a guest of the running asyncio loop."""
        loop = self._loop = asyncio.get_running_loop()
        trio.lowlevel.start_guest_run(
            self._main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=self._done,
            host_uses_signal_set_wakeup_fd=True,
        )

    def take(self) -> list[et.Update]:
        """The updates since the last call."""
        pending, self.pending = self.pending, []
        return pending

    def call(self, fn: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Run ``fn()`` in trio; its result (or exception) arrives in the future. The
        future is cancelled if trio shuts down first."""
        assert self._loop is not None
        future: asyncio.Future[T] = self._loop.create_future()
        if self._token is None or self._nursery is None:
            future.set_exception(RuntimeError("not connected"))
            return future
        self._token.run_sync_soon(self._start_call, fn, future)
        return future

    async def stop(self) -> None:
        """Cancel everything in trio and wait until trio has finished."""
        if self._loop is None:
            return
        self._stopping = True
        if self._token is not None and self._scope is not None:
            try:
                self._token.run_sync_soon(self._scope.cancel)
            except trio.RunFinishedError:
                pass
        await self._finished.wait()

    def _done(self, result: outcome.Outcome[None]) -> None:
        self.outcome = result
        self._finished.set()

    # --- the trio side -----------------------------------------------------------------------

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._scope:
            if self._stopping:
                self._scope.cancel()
            try:
                async with self._connect() as client:
                    self.client = client
                    if self._setup is not None:
                        await self._setup(client)
                    async with et.mount(client, self.prefix) as root:
                        async with trio.open_nursery() as nursery:
                            self._nursery = nursery
                            await self._follow(root)
                            self.root = None
            except Exception as exc:  # shown in the status line; the app stays up
                self.error = f"{type(exc).__name__}: {exc}"
            finally:
                self._nursery = None

    async def _follow(self, root: et.Root) -> None:
        while True:
            try:
                async with root.subscribe(buffer=self._buffer) as updates:
                    self.root = root
                    async for update in updates:
                        self.pending.append(update)
                return
            except et.SubscriptionOverflow:
                self.overflows += 1

    def _start_call(self, fn: Callable[[], Awaitable[T]], future: asyncio.Future[T]) -> None:
        if self._nursery is None:
            _settle(future, RuntimeError("not connected"))
            return
        self._nursery.start_soon(self._run_call, fn, future)

    async def _run_call(self, fn: Callable[[], Awaitable[T]], future: asyncio.Future[T]) -> None:
        assert self._loop is not None
        try:
            result = await fn()
        except trio.Cancelled:
            self._loop.call_soon_threadsafe(future.cancel)
            raise
        except Exception as exc:
            self._loop.call_soon_threadsafe(_settle, future, exc)
        else:
            self._loop.call_soon_threadsafe(_settle, future, None, result)


def _settle(future: asyncio.Future[Any], exc: BaseException | None, result: Any = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
