"""The direct hand-over of watch messages (``SinkWireWatch.sink``): a watch stream takes
ordinary messages straight from the transport's reader, and leaves everything else, and
everything after it, to its task, so that order, de-duplication and the consumer's
buffer work as without it.

The watch here is the gRPC transport's own :class:`MuxWatch`, on a mux whose stream is
never opened: the test plays the mux's reader (``_push``), the rest of the client runs
on the in-memory etcd.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from wrapped_gateway import WrappedGateway

import trio_etcd_tree as et
from trio_etcd_tree._core.types import Event, EventType, KeyValue, ResponseHeader
from trio_etcd_tree._wire import SinkWireWatch, WatchCreateRequest, WatchMessage
from trio_etcd_tree._wire.grpc.streams import MuxWatch, WatchMux
from trio_etcd_tree.testing import FakeEtcd, open_fake_etcd

CLUSTER = 7


class _Unopened:
    endpoint = "http://unopened:1"


class HandFedTransport(WrappedGateway):
    """The in-memory etcd's gateway for calls; each watch a MuxWatch the test feeds."""

    def __init__(self, fake: FakeEtcd) -> None:
        super().__init__(fake)
        self.watches: list[MuxWatch] = []

    @asynccontextmanager
    async def watch(
        self, endpoint: str, create: WatchCreateRequest, *, token: str | None
    ) -> AsyncIterator[MuxWatch]:
        mux = WatchMux(_Unopened(), max_buffered=16)  # type: ignore[arg-type]
        watch = MuxWatch(mux, len(self.watches) + 1, create)
        self.watches.append(watch)
        assert watch._push(WatchMessage(header(5), created=True), 0)  # etcd confirms it
        try:
            yield watch
        finally:
            await mux.cancel(watch)


def header(revision: int, cluster: int = CLUSTER) -> ResponseHeader:
    return ResponseHeader(cluster, 1, revision, 1)


def events(*revisions: int, key: bytes = b"/k") -> WatchMessage:
    return WatchMessage(
        header(max(revisions)),
        [Event(EventType.PUT, KeyValue(key, b"%d" % r, 2, r, r, 0)) for r in revisions],
    )


@asynccontextmanager
async def fed_watch(buffer: int = 4) -> AsyncIterator[tuple[et.WatchStream, MuxWatch, FakeEtcd]]:
    async with open_fake_etcd() as fake:
        transport = HandFedTransport(fake)
        async with et.open_client(fake.endpoints, transport=transport) as client:
            async with client.watch("/k", buffer=buffer) as stream:
                (watch,) = transport.watches
                assert isinstance(watch, SinkWireWatch)
                await trio.testing.wait_all_tasks_blocked()
                yield stream, watch, fake


async def test_ordinary_messages_go_straight_to_the_consumer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fed_watch() as (stream, watch, _):
        assert watch.sink is not None  # the stream waits in receive: it takes messages
        assert watch._push(events(6), 6)
        assert not watch._buffer  # taken at once, with no task switch ...
        got = stream.receive_nowait()  # ... so the consumer has it now
        assert got.revision == 6
        assert [e.kv.mod_revision for e in got.events] == [6]
        assert watch.next_revision == 7
        # a repeat, a half-old message and an out-of-date progress report: taken, and
        # only what is new delivered
        assert watch._push(events(6), 6)
        assert watch._push(events(6, 7), 7)
        assert watch._push(WatchMessage(header(3)), 3)
        assert watch._push(WatchMessage(header(9)), 9)  # progress: nothing changed up to 9
        assert [(r.revision, len(r.events)) for r in drain(stream)] == [(7, 1), (9, 0)]
        statistics = stream.statistics()
        assert (statistics.next_revision, statistics.responses, statistics.events) == (10, 3, 2)


def drain(stream: et.WatchStream) -> list[et.WatchResponse]:
    out = []
    while True:
        try:
            out.append(stream.receive_nowait())
        except trio.WouldBlock:
            return out


async def test_a_full_consumer_keeps_the_order(autojump_clock: trio.testing.MockClock) -> None:
    async with fed_watch(buffer=1) as (stream, watch, _):
        assert watch._push(events(6), 6)  # taken: the consumer's buffer is now full
        assert watch._push(events(7), 7)  # refused (no room): buffered, for the task
        assert len(watch._buffer or ()) == 1
        await trio.testing.wait_all_tasks_blocked()  # the task waits for room with 7
        assert watch._push(events(8), 8)  # refused: the task is busy with 7
        assert len(watch._buffer or ()) == 1
        revisions = [(await stream.receive()).revision for _ in range(3)]
        assert revisions == [6, 7, 8]
        await trio.testing.wait_all_tasks_blocked()
        assert watch._push(events(9), 9)  # all caught up: taken at once again
        assert not watch._buffer
        assert stream.receive_nowait().revision == 9


async def test_what_needs_the_task_goes_through_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fed_watch() as (stream, watch, _):
        # a message of another cluster: refused by the sink, and the task ends the stream
        assert watch._push(WatchMessage(header(6, cluster=CLUSTER + 1), events(6).events), 6)
        assert len(watch._buffer or ()) == 1
        with pytest.raises(et.ClusterChangedError, match="cluster id changed"):
            await stream.receive()
        assert watch.sink is None  # the connection was left: nothing more is handed over


async def test_a_closed_consumer_ends_the_stream(autojump_clock: trio.testing.MockClock) -> None:
    async with fed_watch() as (stream, watch, _):
        await stream.aclose()
        assert watch._push(events(6), 6)  # refused (nobody receives): left to the task
        await trio.testing.wait_all_tasks_blocked()
        assert stream.state is et.ConnectionState.CLOSED
        assert watch.sink is None


async def test_nothing_is_taken_while_the_task_handles_a_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fed_watch() as (stream, watch, fake):
        for i in range(6):
            fake.put("/other", str(i))  # the store is at revision 7
        # a confirmation behind what was seen: the task asks the member (frozen: it waits)
        fake.freeze_member(0)
        assert watch._push(WatchMessage(header(3), created=True), 0)
        await trio.testing.wait_all_tasks_blocked()
        assert watch._push(events(6), 6)  # refused: the task is not done with the last one
        assert len(watch._buffer or ()) == 1
        fake.thaw_member(0)  # the store is not behind: no error, and then revision 6
        assert (await stream.receive()).revision == 6


@asynccontextmanager
async def applied_watch(
    apply: Callable[[et.WatchResponse], None], backlog: Callable[[], bool] = lambda: False
) -> AsyncIterator[tuple[et.WatchStream, MuxWatch, FakeEtcd, list[Exception]]]:
    """The mount's kind of watch (``Client._applied_watch``), on a hand-fed MuxWatch, run
    by a task of the test's (as a mount's reflector runs it); what ended it is in the list."""
    ended: list[Exception] = []
    async with open_fake_etcd() as fake:
        transport = HandFedTransport(fake)
        async with et.open_client(fake.endpoints, transport=transport) as client:
            for i in range(6):
                fake.put("/other", str(i))  # the store is at revision 7
            stream = client._applied_watch(
                b"/k", b"/l", start_revision=0, apply=apply, backlog=backlog
            )

            async def run(*, task_status: trio.TaskStatus[None]) -> None:
                try:
                    await stream.run_applied(task_status.started)
                except Exception as exc:
                    ended.append(exc)

            async with trio.open_nursery() as nursery:
                await nursery.start(run)  # (once the server confirmed the watch)
                await trio.testing.wait_all_tasks_blocked()
                yield stream, transport.watches[0], fake, ended
                nursery.cancel_scope.cancel()


async def test_an_applied_watch_applies_in_the_reader_or_in_its_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    applied: list[int] = []
    behind = False

    def apply(response: et.WatchResponse) -> None:
        applied.append(response.revision)

    async with applied_watch(apply, lambda: behind) as (stream, watch, fake, ended):
        assert watch._push(events(6), 6)
        assert applied == [6]  # in the reader's call, with no task switch
        behind = True  # what apply feeds is behind: the task applies the next one
        assert watch._push(events(7), 7)
        assert applied == [6]
        await trio.testing.wait_all_tasks_blocked()
        assert applied == [6, 7]
        behind = False
        fake.freeze_member(0)  # a confirmation behind what was seen: the task asks
        assert watch._push(WatchMessage(header(3), created=True), 0)
        await trio.testing.wait_all_tasks_blocked()
        assert watch._push(events(8), 8)  # refused: the task applies it, after the answer
        assert applied == [6, 7]
        fake.thaw_member(0)
        await trio.testing.wait_all_tasks_blocked()
        assert applied == [6, 7, 8]
        assert stream.statistics().next_revision == 9
        assert stream.state is et.ConnectionState.CONNECTED
        assert ended == []


@pytest.mark.parametrize("where", ["reader", "task"])
async def test_what_apply_raises_ends_the_stream(
    where: str, autojump_clock: trio.testing.MockClock
) -> None:
    def apply(response: et.WatchResponse) -> None:
        raise RuntimeError(f"cannot apply revision {response.revision}")

    async with applied_watch(apply) as (stream, watch, fake, ended):
        if where == "task":  # the task is busy with a confirmation: it applies what's next
            fake.freeze_member(0)
            assert watch._push(WatchMessage(header(3), created=True), 0)
            await trio.testing.wait_all_tasks_blocked()
        assert watch._push(events(6), 6)  # taken (the reader goes on), or left to the task
        fake.thaw_member(0)
        await trio.testing.wait_all_tasks_blocked()
        (error,) = ended  # either way the stream ends with the error, raised by run_applied
        assert isinstance(error, RuntimeError)
        assert str(error) == "cannot apply revision 6"
        assert stream.state is et.ConnectionState.CLOSED
        assert watch.sink is None
        assert stream.statistics().next_revision == 6  # (it was not applied)


@pytest.mark.parametrize(("buffer", "at_once"), [(1, 1), (2, 2), (100, 2)])
async def test_a_burst_reaches_a_mounts_subscriber_at_its_pace(
    autojump_clock: trio.testing.MockClock, buffer: int, at_once: int
) -> None:
    """Messages read at once are handed over by the reader one after the other, with no
    checkpoint between them; a mount applies them at its subscribers' pace (in the
    stream's task) once one has two updates waiting (one, if its buffer holds one), so a
    subscriber that keeps up with the changes is not cut off by their arriving together."""
    async with open_fake_etcd() as fake:
        transport = HandFedTransport(fake)
        async with et.open_client(fake.endpoints, transport=transport) as client:
            async with et.mount(client, "/m") as root, root.subscribe(buffer=buffer) as updates:
                (watch,) = transport.watches
                burst = range(root.revision + 1, root.revision + 11)
                for revision in burst:
                    assert watch._push(events(revision, key=b"/m/a"), revision)
                assert len(watch._buffer or ()) == 10 - at_once  # (applied in the reader)
                got = [(await updates.receive()).revision for _ in burst]
                assert got == list(burst)
                assert root.statistics().overflows == 0
                assert root["a"].value == str(burst[-1])
