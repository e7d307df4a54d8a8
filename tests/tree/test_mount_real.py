"""``mount()`` against real etcd servers of our own: a torture run, and racing writers.

The torture run mirrors ``/torture`` while another client writes at random under it (awkward
keys included), the server is killed and restarted twice, and the mount's own connection is
cut while the history it would resume from is compacted, which forces a resync. At the end
the tree must equal a fresh read of the range, key for key, and a subscriber must have seen
every revision that touched the prefix once, in order, except those folded into a resync.

The racing tests give two clients two mounts of one prefix and let their guarded writes
collide: etcd decides, exactly one wins, the loser's ``ConflictError`` shows the winner.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import trio

import trio_etcd_tree as et
from trio_etcd_tree.testing import EtcdCluster
from trio_etcd_tree.testing.pytest_plugin import _binary

VERSIONS = ["3.4", "3.5"]


@pytest.fixture(params=VERSIONS)
def cluster(request: pytest.FixtureRequest) -> Iterator[EtcdCluster]:
    with EtcdCluster.start(_binary(request.param), progress_notify_interval=1) as cluster:
        yield cluster


async def _in_thread(fn: Callable[[], None]) -> None:
    await trio.to_thread.run_sync(fn)


# --- a transport whose connections the test can cut ------------------------------------------


class _GatedStream(httpx.AsyncByteStream):
    def __init__(self, gate: Gate, inner: httpx.AsyncByteStream) -> None:
        self._gate = gate
        self._inner = inner
        self._generation = gate.generation
        self._chunks: AsyncIterator[bytes] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:  # a class, not an async generator: nothing for the GC
        if self._chunks is None:
            self._chunks = self._inner.__aiter__()
        chunk = await self._chunks.__anext__()
        if self._gate.generation != self._generation:
            raise httpx.ReadError("the gate cut this connection")
        return chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class Gate(httpx.AsyncBaseTransport):
    """The network between one client and etcd, with a switch.

    ``close()`` breaks every open stream at its next chunk (the watch gets one at least
    every second: progress notifications) and refuses new connections until ``open()``.
    """

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.closed = False
        self.generation = 0

    def close(self) -> None:
        self.closed = True
        self.generation += 1

    def open(self) -> None:
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.closed:
            await trio.lowlevel.checkpoint()
            raise httpx.ConnectError("the gate is closed", request=request)
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_GatedStream(self, response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


# --- the torture run ---------------------------------------------------------------------------

PREFIX = b"/torture"
UNDER = PREFIX + b"/"
RANGE_END = b"/torture0"

KEYS = [
    PREFIX,  # the mount's own key: the root's value
    UNDER,  # a trailing "/": the root's child ""
    UNDER + b"a",
    UNDER + b"b",
    UNDER + b"c",
    UNDER + b"a/x",
    UNDER + b"a/y",
    UNDER + b"a/x/deep",
    UNDER + b"a/",  # a trailing "/" below a node that has a value
    UNDER + b"a//b",  # an empty segment
    UNDER + b"/lead",  # an empty first segment: root[""]["lead"]
    UNDER + b"b/x",
    UNDER + b"b/y/z",
    UNDER + b"\xff\xfe",  # not UTF-8
    UNDER + b"n\x80/x",
    UNDER + "ünï".encode(),
]
OUTSIDE = [b"/torture-x", b"/torture.y", b"/torture-x/a"]  # in the watched range, not mounted
DIRS = [UNDER + b"a/", UNDER + b"b/", UNDER + b"/", UNDER + b"n\x80/", UNDER + b"a/x/"]


def under_mount(key: bytes) -> bool:
    return key == PREFIX or key.startswith(UNDER)


def _value(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.1:
        return b""
    if kind < 0.2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))  # binary
    return f"v{rng.randrange(10**6)}".encode()


@dataclass
class TortureWriter:
    """Random writes under the prefix, riding out failures; it records what landed where."""

    client: et.Client
    rng: random.Random
    ops: int = 0
    touched: set[int] = field(default_factory=set)  # revisions that changed the mount
    outside: set[int] = field(default_factory=set)  # revisions that changed only OUTSIDE
    unknown: int = 0  # writes whose outcome is unknown
    failed: int = 0  # writes that certainly did not happen
    progress: trio.Event = field(default_factory=trio.Event)

    async def run(self, count: int) -> None:
        while self.ops < count:
            self.ops += 1
            # The test's own deadline replaces the client's request_deadline, so each write
            # gets one here: with the member down, it would otherwise retry until then.
            with trio.move_on_after(5) as scope:
                try:
                    await self.one()
                except et.UnavailableError as exc:
                    if exc.outcome_unknown:
                        self.unknown += 1
                    else:
                        self.failed += 1
                    await trio.sleep(0.02)
            if scope.cancelled_caught:
                self.unknown += 1
            self.progress.set()
            self.progress = trio.Event()

    async def wait_ops(self, n: int) -> None:
        while self.ops < n:
            await self.progress.wait()

    def _record(self, revision: int, keys: list[bytes]) -> None:
        if any(under_mount(k) for k in keys):
            self.touched.add(revision)
        elif keys:
            self.outside.add(revision)

    async def one(self) -> None:
        rng = self.rng
        kind = rng.random()
        if kind < 0.5:
            key = rng.choice(OUTSIDE) if rng.random() < 0.05 else rng.choice(KEYS)
            result = await self.client.put(key, _value(rng))
            self._record(result.revision, [key])
        elif kind < 0.65:
            key = rng.choice(KEYS + OUTSIDE[:1])
            deleted = await self.client.delete(key)
            if deleted.deleted:
                self._record(deleted.revision, [key])
        elif kind < 0.75:
            start = UNDER if rng.random() < 0.03 else rng.choice(DIRS)
            deleted = await self.client.delete(start, prefix=True)
            if deleted.deleted:
                self._record(deleted.revision, [start])
        else:
            await self.txn()

    async def txn(self) -> None:
        rng = self.rng
        keys = rng.sample(KEYS + OUTSIDE, rng.randrange(2, 6))
        ops: list[et.Put | et.Delete] = []
        puts: list[bytes] = []
        deletes: list[bytes] = []
        for key in keys:
            if rng.random() < 0.7:
                ops.append(et.Put(key, _value(rng)))
                puts.append(key)
            else:
                ops.append(et.Delete(key))
                deletes.append(key)
        directory = rng.choice(DIRS)
        if rng.random() < 0.2 and not any(k.startswith(directory) for k in keys):
            ops.append(et.Delete(directory, prefix=True))  # etcd: no overlap with the puts
            deletes.append(directory)
        result = await self.client.txn((), ops)
        assert result.succeeded
        changed = list(puts)
        for key, response in zip(
            deletes, [r for r in result.responses if isinstance(r, et.DeleteResult)], strict=True
        ):
            if response.deleted:
                changed.append(key)
        self._record(result.revision, changed)


_ABSENT = {  # (old is None, new is None) for each kind of change
    et.ChangeKind.CREATED: (True, False),
    et.ChangeKind.MODIFIED: (False, False),
    et.ChangeKind.DELETED: (False, True),
}


def _replay(state: dict[bytes, et.KeyValue], update: et.Update) -> None:
    """Apply one update's changes to a key -> KeyValue dict, checking each change's `old`."""
    for change in update.changes:
        key = (change.new or change.old).key  # type: ignore[union-attr]
        assert state.get(key) == change.old, (update.revision, change)
        assert (change.old is None, change.new is None) == _ABSENT[change.kind], change
        if change.new is None:
            del state[key]
        else:
            state[key] = change.new


async def _wait_for(condition: Callable[[], bool]) -> None:
    """Poll: a mount's state and statistics have no event to wait on."""
    while not condition():  # noqa: ASYNC110
        await trio.sleep(0.01)


@pytest.mark.parametrize("version", VERSIONS)
async def test_torture(version: str) -> None:
    binary = _binary(version)
    with EtcdCluster.start(binary, progress_notify_interval=1) as cluster:
        member = cluster.members[0]
        gate = Gate()
        async with (
            et.open_client(cluster.endpoints) as client,
            et.open_client(cluster.endpoints, transport=gate) as mount_client,
        ):
            initial = (await client.put(b"/before", b"x")).revision
            writer = TortureWriter(client, random.Random(f"torture-{version}"))
            compacted_at = 0
            with trio.fail_after(60):
                async with (
                    et.mount(mount_client, PREFIX) as root,
                    root.subscribe(buffer=10000) as updates,
                ):
                    assert root.revision >= initial
                    assert root.statistics().keys == 0
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(writer.run, 2000)

                        await writer.wait_ops(300)
                        await _in_thread(member.kill)
                        await _in_thread(member.start)

                        # cut the mount off, write and compact behind its back: its watch
                        # cannot resume, the mirror must read a fresh snapshot
                        await writer.wait_ops(700)
                        gate.close()
                        await _wait_for(lambda: root.state is et.MountState.DISCONNECTED)
                        marker = await client.put(UNDER + b"resync-marker", b"written blind")
                        writer.touched.add(marker.revision)
                        await writer.wait_ops(writer.ops + 20)
                        compacted_at = (await client.put(UNDER + b"resync-marker", b"2")).revision
                        writer.touched.add(compacted_at)
                        await client.compact(compacted_at)
                        assert root.revision < marker.revision  # it really was cut off
                        gate.open()
                        await _wait_for(lambda: root.statistics().resyncs >= 1)

                        await writer.wait_ops(1300)
                        lost = writer.unknown + writer.failed
                        await _in_thread(member.kill)
                        while writer.unknown + writer.failed == lost:  # a write while it is down
                            await writer.progress.wait()
                        await _in_thread(member.start)

                    final = await client.range(PREFIX, RANGE_END)
                    await root.wait_revision(final.revision)
                    stats = root.statistics()

                    expected = {kv.key: kv for kv in final.kvs if under_mount(kv.key)}
                    mirrored = {
                        node.key: (
                            node.key,
                            node.raw,
                            node.create_revision,
                            node.mod_revision,
                            node.version,
                            node.lease,
                        )
                        for node in root.walk()
                        if node.has_value
                    }
                    assert set(mirrored) == set(expected)
                    for key, kv in expected.items():
                        assert mirrored[key] == tuple(kv), key
                    assert stats.keys == len(expected)
                    assert stats.state is et.MountState.SYNCED

            # the subscription was closed when its block ended; what it holds is complete
            received = [update async for update in updates]

        assert stats.resyncs >= 1, stats
        assert stats.reconnects >= 2, stats
        assert stats.overflows == 0
        assert writer.failed + writer.unknown > 0  # the restarts really hurt the writer

        revisions = [u.revision for u in received]
        assert revisions == sorted(set(revisions)), "revisions repeated or out of order"
        state: dict[bytes, et.KeyValue] = {}
        windows: list[tuple[int, int]] = []
        previous = initial
        for update in received:
            assert update.changes
            assert not update.coalesced
            for change in update.changes:
                assert change.new is None or change.new.key == root.key_of(change.path)
                if update.resync:
                    assert change.new is None or change.new.mod_revision <= update.revision
                else:
                    assert change.new is None or change.new.mod_revision == update.revision
            if update.resync:
                windows.append((previous, update.revision))
            _replay(state, update)
            previous = update.revision
        assert state == expected, "the updates do not add up to the final state"

        assert windows, "no resync update was delivered"
        assert any(lo < compacted_at <= hi for lo, hi in windows)
        plain = {u.revision for u in received if not u.resync}
        covered = {r for r in writer.touched if any(lo < r <= hi for lo, hi in windows)}
        missing = writer.touched - covered - plain
        assert not missing, f"revisions that changed the mount but were never delivered: {missing}"
        assert not plain & writer.outside, "updates for writes outside the mount"
        extra = plain - writer.touched
        assert len(extra) <= writer.unknown, f"updates for revisions nobody wrote: {extra}"
        assert final.revision > compacted_at


# --- racing writers ------------------------------------------------------------------------
#
# Two clients, two mounts of /race. Both writers build their guards from the same view of the
# tree, in the same scheduling batch; mount B's client holds its transaction back until A's
# write has returned (applied by etcd and by A's tree), so B's guard is stale when etcd
# evaluates it. The outcome is then certain: A wins, B gets a ConflictError that shows A's
# write.


class HeldBack(httpx.AsyncBaseTransport):
    """Holds transactions back while ``release`` is an event not yet set."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.release: trio.Event | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/kv/txn" and self.release is not None:
            await self.release.wait()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Race:
    """Both writers' outcomes: a revision, or the ConflictError."""

    results: dict[str, int] = field(default_factory=dict)
    errors: dict[str, et.ConflictError] = field(default_factory=dict)
    crashed: AssertionError | None = None

    @classmethod
    async def run(
        cls, a: Callable[[], Awaitable[int]], b: Callable[[], Awaitable[int]], held: HeldBack
    ) -> Race:
        """A's write and B's, B's transaction held back (by ``held``) until A's returned."""
        race = cls()
        release = held.release = trio.Event()

        async def one(name: str, attempt: Callable[[], Awaitable[int]]) -> None:
            try:
                race.results[name] = await attempt()
            except et.ConflictError as exc:
                race.errors[name] = exc
            except AssertionError as exc:  # the library's own; raised bare below
                race.crashed = exc
            finally:
                if name == "a":
                    release.set()

        async with trio.open_nursery() as nursery:  # both build their guards right away
            nursery.start_soon(one, "a", a)
            nursery.start_soon(one, "b", b)
        if race.crashed is not None:
            raise race.crashed
        return race

    def a_won(self) -> tuple[int, et.ConflictError]:
        assert set(self.results) == {"a"}, (self.results, self.errors)
        assert set(self.errors) == {"b"}, (self.results, self.errors)
        return self.results["a"], self.errors["b"]


@dataclass
class Racers:
    client: et.Client
    a: et.Root
    b: et.Root
    held: HeldBack  # mount B's transport

    async def race(self, a: Callable[[], Awaitable[int]], b: Callable[[], Awaitable[int]]) -> Race:
        return await Race.run(a, b, self.held)

    async def at(self, revision: int) -> None:
        await self.a.wait_revision(revision)
        await self.b.wait_revision(revision)

    async def check_equal_to_etcd(self) -> None:
        final = await self.client.range("/race", prefix=True)
        await self.at(final.revision)
        for root in (self.a, self.b):
            got = {n.key: n.kv for n in root.walk() if n.has_value}
            assert got == {kv.key: kv for kv in final.kvs}


@asynccontextmanager
async def racers(version: str) -> AsyncIterator[Racers]:
    """A fresh server with /race/k, /race/dir/{a,b}; two clients and two mounts of /race."""
    held = HeldBack()
    with EtcdCluster.start(_binary(version), progress_notify_interval=1) as cluster:
        async with (
            et.open_client(cluster.endpoints) as client_a,
            et.open_client(cluster.endpoints, transport=held) as client_b,
        ):
            seed = await client_a.txn(
                (),
                [et.Put("/race/k", "v0"), et.Put("/race/dir/a", "1"), et.Put("/race/dir/b", "2")],
            )
            with trio.fail_after(20):
                async with et.mount(client_a, "/race") as a, et.mount(client_b, "/race") as b:
                    racers = Racers(client_a, a, b, held)
                    await racers.at(seed.revision)
                    yield racers
                    await racers.check_equal_to_etcd()


@pytest.mark.parametrize("version", VERSIONS)
async def test_race_same_key(version: str) -> None:
    async with racers(version) as r:
        ka, kb = r.a["k"], r.b["k"]
        assert ka.mod_revision == kb.mod_revision
        race = await r.race(lambda: ka.set("from a"), lambda: kb.set("from b"))
        revision, error = race.a_won()
        assert error.key == b"/race/k"
        assert error.current is not None
        assert error.current.value == b"from a"
        assert error.current.mod_revision == revision
        assert error.current.version == 2
        await r.at(revision)
        for root in (r.a, r.b):
            assert root["k"].value == "from a"
            assert root["k"].kv == error.current


@pytest.mark.parametrize("version", VERSIONS)
async def test_race_create_same_new_key(version: str) -> None:
    async with racers(version) as r:
        da, db = r.a["dir"], r.b["dir"]
        race = await r.race(lambda: da.set("new", "A"), lambda: db.set("new", "B"))
        revision, error = race.a_won()
        assert error.key == b"/race/dir/new"
        assert error.current is not None
        assert error.current.value == b"A"
        assert error.current.create_revision == error.current.mod_revision == revision
        await r.at(revision)
        for root in (r.a, r.b):
            assert root.lookup("dir/new").kv == error.current


@pytest.mark.parametrize("version", VERSIONS)
async def test_race_recursive_delete_beats_put(version: str) -> None:
    async with racers(version) as r:
        race = await r.race(
            lambda: r.a["dir"].delete(recursive=True), lambda: r.b.lookup("dir/a").set("changed")
        )
        revision, error = race.a_won()
        assert error.key == b"/race/dir/a"
        assert error.current is None  # deleted by the winner
        await r.at(revision)
        for root in (r.a, r.b):
            assert "dir" not in root


@pytest.mark.parametrize("version", VERSIONS)
async def test_race_put_beats_recursive_delete(version: str) -> None:
    async with racers(version) as r:
        race = await r.race(
            lambda: r.a.lookup("dir/a").set("changed"), lambda: r.b["dir"].delete(recursive=True)
        )
        revision, error = race.a_won()
        assert error.key == b"/race/dir/a"
        assert error.current is not None
        assert error.current.value == b"changed"
        assert error.current.mod_revision == revision
        await r.at(revision)
        for root in (r.a, r.b):
            assert list(root["dir"]) == ["a", "b"]
            assert root.lookup("dir/a").value == "changed"


@pytest.mark.parametrize("version", VERSIONS)
async def test_race_recursive_delete_and_create_below(version: str) -> None:
    """ "Delete the subtree, then create a key in it" is a valid order: both succeed. The
    other way round the delete must be refused: the subtree gained a key it never saw."""
    async with racers(version) as r:
        race = await r.race(
            lambda: r.a["dir"].delete(recursive=True), lambda: r.b["dir"].set("fresh", "x")
        )
        assert not race.errors, race.errors
        assert race.results["a"] < race.results["b"]
        await r.at(race.results["b"])
        for root in (r.a, r.b):
            assert list(root["dir"]) == ["fresh"]

        race = await r.race(
            lambda: r.a["dir"].set("newer", "y"), lambda: r.b["dir"].delete(recursive=True)
        )
        revision, error = race.a_won()
        assert error.key == b"/race/dir/newer"
        assert error.current is not None
        assert error.current.mod_revision == revision
        await r.at(revision)
        for root in (r.a, r.b):
            assert list(root["dir"]) == ["fresh", "newer"]
