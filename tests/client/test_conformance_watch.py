"""Conformance of watches: the same tests on the in-memory fake and on real etcd 3.4 and 3.5.

No test sleeps to synchronise: a watch is confirmed by the server before ``async with``
returns, and the tests then wait for responses (with a deadline, so a hang fails).
"""

from __future__ import annotations

import pytest
import trio
from conformance import current_revision, event_responses, flat

from trio_etcd_tree import (
    CompactedError,
    ConnectionState,
    Delete,
    Event,
    EventType,
    KeyValue,
    Put,
)
from trio_etcd_tree.testing.pytest_plugin import EtcdBackend

PUT, DELETE = EventType.PUT, EventType.DELETE


async def test_watch_puts_and_deletes_in_order(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            async with client.watch(p, prefix=True) as stream:
                r = await current_revision(client)
                assert stream.next_revision == r + 1
                await client.put(p + b"a", b"1")
                await client.put(p + b"b", b"")
                await client.put(p + b"a", b"2")
                await client.delete(p + b"a")
                await client.delete(p + b"missing")  # no event, no revision
                await client.put(p + b"\xff", b"\x00\xff")

                responses = await event_responses(stream, 5)
                # live events: one revision per response
                assert [len(resp.events) for resp in responses] == [1] * 5
                assert [resp.revision for resp in responses] == [r + 1, r + 2, r + 3, r + 4, r + 5]
                assert [resp.header.revision for resp in responses] == [
                    r + 1,
                    r + 2,
                    r + 3,
                    r + 4,
                    r + 5,
                ]
                assert flat(responses) == [
                    Event(PUT, KeyValue(p + b"a", b"1", r + 1, r + 1, 1, 0)),
                    Event(PUT, KeyValue(p + b"b", b"", r + 2, r + 2, 1, 0)),
                    Event(PUT, KeyValue(p + b"a", b"2", r + 1, r + 3, 2, 0)),
                    Event(DELETE, KeyValue(p + b"a", b"", 0, r + 4, 0, 0)),
                    Event(PUT, KeyValue(p + b"\xff", b"\x00\xff", r + 5, r + 5, 1, 0)),
                ]
                assert not any(resp.is_progress_notify for resp in responses)
                assert stream.next_revision == r + 6
                stats = stream.statistics()
                assert stats.state is ConnectionState.CONNECTED
                assert stats.endpoint == client.endpoint
                assert stats.next_revision == r + 6
                assert stats.events == 5
                assert stats.responses >= 5  # progress reports may have come in between
                assert stats.reconnects == 0
                assert stats.stalls == 0
                assert stats.last_error is None
            # leaving the block ends the stream
            assert stream.state is ConnectionState.CLOSED
            with pytest.raises(trio.EndOfChannel):
                await stream.receive()


async def test_watch_txn_and_prefix_delete_in_one_response(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            await client.put(p + b"old", b"o")
            async with client.watch(p, prefix=True) as stream:
                r = await current_revision(client)
                await client.txn(
                    success=[
                        Put(p + b"x", b"1"),
                        Delete(p + b"old"),
                        Put(p + b"y", b"2"),
                        Put(etcd_backend.prefix[:-1] + b"-outside", b"3"),
                    ]
                )
                await client.delete(p, prefix=True)
                responses = await event_responses(stream, 5)
                assert len(responses) == 2
                txn, deletes = responses
                assert txn.revision == r + 1
                assert txn.events == [
                    Event(PUT, KeyValue(p + b"x", b"1", r + 1, r + 1, 1, 0)),
                    Event(DELETE, KeyValue(p + b"old", b"", 0, r + 1, 0, 0)),
                    Event(PUT, KeyValue(p + b"y", b"2", r + 1, r + 1, 1, 0)),
                ]
                assert deletes.revision == r + 2
                assert deletes.events == [
                    Event(DELETE, KeyValue(p + b"x", b"", 0, r + 2, 0, 0)),
                    Event(DELETE, KeyValue(p + b"y", b"", 0, r + 2, 0, 0)),
                ]
            await client.delete(etcd_backend.prefix[:-1] + b"-outside")


async def test_watch_prev_kv(etcd_backend: EtcdBackend) -> None:
    k = etcd_backend.key("k")
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            async with client.watch(k, prev_kv=True) as stream:
                r = await current_revision(client)
                await client.put(k, b"1")
                await client.put(k, b"2")
                await client.delete(k)
                await client.put(k, b"3")
                events = flat(await event_responses(stream, 4))
            v1 = KeyValue(k, b"1", r + 1, r + 1, 1, 0)
            v2 = KeyValue(k, b"2", r + 1, r + 2, 2, 0)
            assert events == [
                Event(PUT, v1, None),
                Event(PUT, v2, v1),
                Event(DELETE, KeyValue(k, b"", 0, r + 3, 0, 0), v2),
                Event(PUT, KeyValue(k, b"3", r + 4, r + 4, 1, 0), None),
            ]
            # without prev_kv, no previous values
            async with client.watch(k, start_revision=r + 1) as stream:
                assert [e.prev_kv for e in flat(await event_responses(stream, 4))] == [None] * 4


async def test_watch_filters(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            async with (
                client.watch(p, prefix=True, filters=["NOPUT"]) as deletes,
                client.watch(p, prefix=True, filters=["NODELETE"]) as puts,
                client.watch(p, prefix=True, filters=["NOPUT", "NODELETE"]) as neither,
            ):
                r = await current_revision(client)
                await client.put(p + b"a", b"1")
                await client.delete(p + b"a")
                await client.put(p + b"b", b"2")
                await client.delete(p + b"b")
                got_deletes = await event_responses(deletes, 2)
                got_puts = await event_responses(puts, 2)
                assert [(e.type, e.kv.key, e.kv.mod_revision) for e in flat(got_deletes)] == [
                    (DELETE, p + b"a", r + 2),
                    (DELETE, p + b"b", r + 4),
                ]
                assert [(e.type, e.kv.key, e.kv.mod_revision) for e in flat(got_puts)] == [
                    (PUT, p + b"a", r + 1),
                    (PUT, p + b"b", r + 3),
                ]
                assert [resp.revision for resp in got_deletes] == [r + 2, r + 4]
                assert deletes.next_revision == r + 5
                assert puts.next_revision == r + 4
                assert neither.statistics().events == 0


async def test_watch_history_then_live(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            r1 = (await client.put(p + b"a", b"1")).revision
            await client.put(etcd_backend.prefix[:-1] + b"-neighbour", b"x")
            await client.txn(success=[Put(p + b"b", b"2"), Put(p + b"c", b"3")])
            await client.delete(p + b"a")
            r = await current_revision(client)
            assert r == r1 + 3

            async with client.watch(p, prefix=True, start_revision=r1) as stream:
                history = await event_responses(stream, 4)
                assert [(e.type, e.kv.key, e.kv.mod_revision) for e in flat(history)] == [
                    (PUT, p + b"a", r1),
                    (PUT, p + b"b", r1 + 2),
                    (PUT, p + b"c", r1 + 2),
                    (DELETE, p + b"a", r1 + 3),
                ]
                assert history[-1].revision == r1 + 3
                assert stream.next_revision == r1 + 4
                live = (await client.put(p + b"d", b"4")).revision
                (response,) = await event_responses(stream, 1)
                assert response.events == [Event(PUT, KeyValue(p + b"d", b"4", live, live, 1, 0))]
                assert response.revision == live == r1 + 4
                assert stream.next_revision == r1 + 5

            await client.delete(etcd_backend.prefix[:-1] + b"-neighbour")


async def test_watch_future_start_revision(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            r = await current_revision(client)
            # a start revision in the future: the watch waits for it
            async with client.watch(p, prefix=True, start_revision=r + 2) as stream:
                assert stream.next_revision == r + 2
                await client.put(p + b"e", b"5")  # r + 1: before the start
                await client.put(p + b"f", b"6")  # r + 2
                (response,) = await event_responses(stream, 1)
                assert [e.kv.key for e in response.events] == [p + b"f"]
                assert response.revision == r + 2


async def test_watch_single_key_ignores_neighbours(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    k = p + b"a"
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            async with client.watch(k) as stream:
                for neighbour in (p + b"a/", p + b"ab", p + b"a\x00", p + b"`", p + b"b"):
                    await client.put(neighbour, b"n")
                rev = (await client.put(k, b"mine")).revision
                await client.put(p + b"ab", b"again")
                await client.delete(p + b"a/")
                rev2 = (await client.delete(k)).revision
                responses = await event_responses(stream, 2)
                assert [(e.type, e.kv.key, e.kv.mod_revision) for e in flat(responses)] == [
                    (PUT, k, rev),
                    (DELETE, k, rev2),
                ]
                assert rev2 == rev + 3


async def test_watch_progress_notifications(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            async with client.watch(p, prefix=True) as stream:
                r = await current_revision(client)
                # nothing happens under the prefix: a progress report comes within ~1 s
                first = await stream.receive()
                assert first.is_progress_notify
                assert first.events == []
                assert first.revision == r
                assert first.header.revision == r
                assert stream.next_revision == r + 1

                # a write elsewhere moves the revision, and the next report says so
                other = (await client.put(etcd_backend.prefix[:-1] + b"-elsewhere", b"x")).revision
                put = (await client.put(p + b"a", b"1")).revision
                assert (other, put) == (r + 1, r + 2)
                (response,) = await event_responses(stream, 1)
                assert response.revision == put
                assert stream.next_revision == put + 1
                stats = stream.statistics()
                assert stats.events == 1
                assert stats.responses >= 2
            await client.delete(etcd_backend.prefix[:-1] + b"-elsewhere")

            # without progress_notify: only events (and a put to end the wait)
            async with client.watch(p, prefix=True, progress_notify=False) as quiet:
                with trio.move_on_after(1.5):
                    await quiet.receive()
                    pytest.fail("a watch without progress_notify got a response")
                assert quiet.statistics().responses == 0


async def test_watch_compacted_start_revision(etcd_backend: EtcdBackend) -> None:
    k = etcd_backend.key("k")
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            r1 = (await client.put(k, b"1")).revision
            r2 = (await client.put(k, b"2")).revision
            r3 = (await client.put(k, b"3")).revision
            await client.compact(r2)

            with pytest.raises(CompactedError) as info:
                async with client.watch(k, start_revision=r1) as stream:
                    async for _response in stream:
                        pytest.fail("no response should come from a compacted watch")
            error = info.value
            assert error.compact_revision == r2
            assert error.request == f"watch from revision {r1}"
            assert error.endpoint == client.endpoint
            assert str(r1) in str(error)
            assert stream.state is ConnectionState.CLOSED
            assert stream.statistics().last_error == str(error)

            # the compaction revision itself can still be watched from
            async with client.watch(k, start_revision=r2, prev_kv=True) as stream:
                events = flat(await event_responses(stream, 2))
            assert events == [
                # the previous value of the first event is compacted away
                Event(PUT, KeyValue(k, b"2", r1, r2, 2, 0), None),
                Event(PUT, KeyValue(k, b"3", r1, r3, 3, 0), KeyValue(k, b"2", r1, r2, 2, 0)),
            ]


async def test_watch_ranges_and_replayed_prev_kv(etcd_backend: EtcdBackend) -> None:
    p = etcd_backend.prefix
    async with etcd_backend.client() as client:
        with trio.fail_after(30):
            r = await current_revision(client)
            for name in (b"a", b"b", b"c", b"b"):
                await client.put(p + name, name)
            await client.delete(p + b"a")
            # [a, c): a and b, replayed from history, with their previous values
            async with client.watch(p + b"a", p + b"c", start_revision=r + 1, prev_kv=True) as s:
                events = flat(await event_responses(s, 4))
            a1 = KeyValue(p + b"a", b"a", r + 1, r + 1, 1, 0)
            b1 = KeyValue(p + b"b", b"b", r + 2, r + 2, 1, 0)
            assert events == [
                Event(PUT, a1, None),
                Event(PUT, b1, None),
                Event(PUT, KeyValue(p + b"b", b"b", r + 2, r + 4, 2, 0), b1),
                Event(DELETE, KeyValue(p + b"a", b"", 0, r + 5, 0, 0), a1),
            ]
            # range_end b"\0": every key from the start key on
            async with client.watch(p + b"b", b"\0", start_revision=r + 1) as s:
                events = flat(await event_responses(s, 3))
            assert [(e.kv.key, e.kv.mod_revision) for e in events] == [
                (p + b"b", r + 2),
                (p + b"c", r + 3),
                (p + b"b", r + 4),
            ]
