"""Fault injection in the fake: errors, delays and lost answers for the next requests, members
down or frozen, and watch streams broken or stalled; on the gRPC front also answers cut
mid-message or reset (RST_STREAM), and PINGs left unanswered."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from .watch import Break, Watches


@dataclass
class Fault:
    """What to do to the next ``count`` requests to ``path`` (None: any)."""

    path: str | None
    count: int
    code: int = 0
    message: str = ""
    status: int | None = None
    seconds: float = 0.0


def take(faults: list[Fault], path: str) -> Fault | None:
    """The first fault for ``path``, counted down (and dropped once used up), or None."""
    for fault in faults:
        if fault.path is None or fault.path == path:
            fault.count -= 1
            if fault.count <= 0:
                faults.remove(fault)
            return fault
    return None


class Faults:
    """The faults waiting for requests, and the state of each member (down, frozen)."""

    def __init__(self, watches: Watches) -> None:
        self._watches = watches
        self._errors: list[Fault] = []
        self._delays: list[Fault] = []
        self._lost: list[Fault] = []
        self._cuts: list[Fault] = []
        self._resets: list[Fault] = []
        self._deaf: set[int] = set()  # members that leave PINGs unanswered
        self._down: set[int] = set()
        self._frozen: set[int] = set()
        self._thawed = trio.Event()

    # ---- the next requests -----------------------------------------------------------------

    def fail_next(
        self, path: str | None, code: int, message: str, count: int, status: int | None
    ) -> None:
        self._errors.append(Fault(path, count, code, message, status))

    def delay_next(self, path: str | None, seconds: float, count: int) -> None:
        self._delays.append(Fault(path, count, seconds=seconds))

    def lose_answers(self, path: str | None, count: int) -> None:
        self._lost.append(Fault(path, count))

    def cut_next(self, path: str | None, count: int) -> None:
        self._cuts.append(Fault(path, count))

    def reset_next(self, path: str | None, code: int, count: int) -> None:
        self._resets.append(Fault(path, count, code))

    def take_error(self, path: str) -> Fault | None:
        """The error to answer a request to ``path`` with, if one is due."""
        return take(self._errors, path)

    def take_delay(self, path: str) -> Fault | None:
        """The delay due for a request to ``path``, if any."""
        return take(self._delays, path)

    def take_lost(self, path: str) -> bool:
        """Whether the answer to this request to ``path`` is to be lost."""
        return take(self._lost, path) is not None

    def take_cut(self, path: str) -> bool:
        """Whether this gRPC answer on ``path`` is to be cut mid-message."""
        return take(self._cuts, path) is not None

    def take_reset(self, path: str) -> Fault | None:
        """The RST_STREAM to send instead of this gRPC answer on ``path``, if one is due."""
        return take(self._resets, path)

    # ---- PINGs -----------------------------------------------------------------------------

    def ignore_pings(self, member: int) -> None:
        self._deaf.add(member)

    def answer_pings(self, member: int) -> None:
        self._deaf.discard(member)

    def is_deaf(self, member: int) -> bool:
        return member in self._deaf

    # ---- members ---------------------------------------------------------------------------

    def is_down(self, member: int) -> bool:
        return member in self._down

    def is_frozen(self, member: int) -> bool:
        return member in self._frozen

    async def wait_thawed(self, member: int) -> None:
        """Return once ``member`` is not frozen (at once if it is not)."""
        while member in self._frozen:
            await self._thawed.wait()

    def member_down(self, index: int) -> None:
        self._down.add(index)
        for stream in list(self._watches.streams):
            if stream.member == index:
                stream.end("mid-line")

    def member_up(self, index: int) -> None:
        self._down.discard(index)

    def freeze_member(self, index: int) -> None:
        self._frozen.add(index)
        for stream in self._watches.streams:
            if stream.member == index:
                stream.freeze()

    def thaw_member(self, index: int) -> None:
        self._frozen.discard(index)
        self._thawed.set()
        self._thawed = trio.Event()
        for stream in list(self._watches.streams):
            if stream.member == index:
                stream.thaw()

    # ---- watch streams ---------------------------------------------------------------------

    def break_watches(self, how: Break) -> None:
        for stream in list(self._watches.streams):
            stream.end(how)

    def stall_watches(self) -> None:
        for stream in self._watches.streams:
            stream.stalled = True
