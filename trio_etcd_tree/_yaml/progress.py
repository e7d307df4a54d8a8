"""Progress of long YAML work, as statistics another task reads while the work runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

__all__ = ["Progress"]


@dataclass(slots=True)
class Progress:
    """How far a :func:`dump_yaml` or :func:`load_yaml` has come.

    Pass one in (``progress=Progress()``) and read it from another task: the work updates
    it as pages are read or transactions applied, and never waits for the reader. The
    tools draw their progress line from it; :meth:`wait_changed` wakes on each update.
    """

    phase: str = ""  #: what is being done: "reading", "writing", "done"
    done: int = 0  #: keys read or written so far
    total: int | None = None  #: keys in all, once known
    started: float | None = None  #: trio time the phase started
    _changed: trio.Event = field(default_factory=trio.Event, repr=False, compare=False)

    def start(self, phase: str, total: int | None) -> None:
        """Begin a phase of ``total`` keys (``None``: not known)."""
        self.phase, self.done, self.total = phase, 0, total
        self.started = trio.current_time()
        self._wake()

    def known_total(self, total: int) -> None:
        """The phase's total, learnt after it began."""
        self.total = total
        self._wake()

    def advance(self, keys: int) -> None:
        """Count ``keys`` more keys done."""
        self.done += keys
        self._wake()

    def finish(self) -> None:
        """The work is over (done or failed)."""
        self.phase = "done"
        self._wake()

    async def wait_changed(self) -> None:
        """Wait for the next update.

        Cancellation: a plain wait; nothing to undo.
        """
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def rate(self) -> float | None:
        """Keys a second in this phase so far, once it has taken measurable time."""
        if self.started is None:
            return None
        elapsed = trio.current_time() - self.started
        return self.done / elapsed if elapsed > 0 else None

    def time_left(self) -> float | None:
        """Seconds until the phase is done at the rate so far, if that can be told."""
        rate = self.rate()
        if not rate or self.total is None:
            return None
        return max(self.total - self.done, 0) / rate
