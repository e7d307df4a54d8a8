"""The viewer's Textual app driven headless by Textual's Pilot, for the tests that run it
(test_viewer.py, and test_tools_secure.py through ``main()``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from trio_etcd_tree._cli.viewer_app import ViewerApp

from textual.pilot import Pilot  # isort: skip


async def wait_for(pilot: Pilot[None], test: Callable[[], object], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {test}")
        await pilot.pause(0.02)


def run_headless(monkeypatch: pytest.MonkeyPatch) -> list[ViewerApp]:
    """Make ViewerApp.run headless: it waits for the tree (or a failure), then quits. The
    list gets each app run (a ``headless`` fixture's value)."""
    apps: list[ViewerApp] = []

    def fake_run(self: ViewerApp) -> None:
        async def main() -> None:
            async with self.run_test() as pilot:
                await wait_for(pilot, lambda: self.model or self.bridge.error, timeout=60)
                apps.append(self)
                await pilot.press("q")

        asyncio.run(main())

    monkeypatch.setattr(ViewerApp, "run", fake_run)
    return apps
