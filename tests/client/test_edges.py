"""Edge cases of the client's building blocks: keys, compares, the wire format, groups."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing

import trio_etcd_tree as et
from trio_etcd_tree._core.keys import key_bytes, prefix_end, range_end_for
from trio_etcd_tree._core.util import Backoff, gc_paused, open_service_nursery
from trio_etcd_tree._wire import errors as wire_errors
from trio_etcd_tree._wire.base import _has_writes
from trio_etcd_tree._wire.gateway import codec as gw
from trio_etcd_tree.testing.pytest_plugin import EtcdBackend, _binary


def test_keys() -> None:
    with pytest.raises(TypeError, match="bytes or str, not int"):
        key_bytes(1)  # type: ignore[arg-type]
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert prefix_end(b"") == b"\0"
    with pytest.raises(ValueError, match="either prefix=True or range_end"):
        range_end_for(b"a", b"b", True)


def test_compare_operands() -> None:
    compare = et.Compare.value("a") == "x"
    assert compare == et.Compare(b"a", et.CompareTarget.VALUE, et.CompareResult.EQUAL, b"x")
    with pytest.raises(TypeError, match="value compare needs bytes or str"):
        _ = et.Compare.value("a") == 5
    with pytest.raises(TypeError, match="VERSION compare needs an int"):
        _ = et.Compare.version("a") > "1"
    with pytest.raises(TypeError, match="LEASE compare needs an int"):
        _ = et.Compare.lease("a") != True  # noqa: E712
    assert (et.Compare.create_revision("a", range_end="b") < 3).range_end == b"b"


def test_has_writes() -> None:
    assert not _has_writes([et.Txn(success=[et.Get("a")], failure=[et.Get("b")])])
    assert _has_writes([et.Txn(failure=[et.Delete("b")])])


def test_cancel_reasons_and_stream_results() -> None:
    assert wire_errors.cancel_reason_fields("just words") == (None, "just words")
    assert wire_errors.cancel_reason_fields("rpc error: code = Weird desc = x") == (None, "x")
    with pytest.raises(et.ProtocolError, match="without a result"):
        gw.stream_result({"what": 1}, "watch")


def test_error_text() -> None:
    assert str(et.EtcdError("plain")) == "plain"
    error = et.EtcdError("boom: the reason", request="put", server_message="the reason")
    assert str(error) == "put: boom: the reason"
    other = et.EtcdError("boom", server_message="the reason")
    assert str(other) == "boom server said: 'the reason'"


class Body(httpx.AsyncByteStream, AsyncIterator[bytes]):
    """A streamed answer: these bytes, then the stream stays open (as etcd's does)."""

    def __init__(self, data: bytes) -> None:
        self.data: bytes | None = data

    def __aiter__(self) -> Body:
        return self

    async def __anext__(self) -> bytes:
        data, self.data = self.data, None
        if data is None:
            await trio.sleep_forever()
        assert data is not None
        return data


def scripted(*bodies: bytes) -> httpx.MockTransport:
    queue = list(bodies)

    def handler(request: httpx.Request) -> httpx.Response:
        data = queue.pop(0)
        if request.url.path == "/v3/watch":
            return httpx.Response(200, stream=Body(data))
        return httpx.Response(200, content=data)

    return httpx.MockTransport(handler)


async def test_unknown_txn_result_and_bad_operation() -> None:
    transport = scripted(b'{"succeeded":true,"responses":[{"response_odd":{}}]}', b"{}")
    async with et.open_client("http://x:1", transport=transport) as client:
        with pytest.raises(et.ProtocolError, match="unknown operation result"):
            await client.txn()
        result = await client.range("a", serializable=True)
        assert result.kvs == []
        with pytest.raises(TypeError, match="not a transaction operation"):
            await client.txn(success=[object()])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="page_size"):
            async for _ in client.range_pages("a", page_size=0):
                pass  # pragma: no cover
        with pytest.raises(ValueError, match="start_revision"):
            async with client.watch("a", start_revision=-1):
                pass  # pragma: no cover


CREATED = b'{"result":{"header":{"revision":"5"},"created":true}}\n'


def event(revision: int) -> bytes:
    kv = f'{{"key":"YQ==","mod_revision":"{revision}","create_revision":"{revision}"}}'
    return (
        f'{{"result":{{"header":{{"revision":"{revision}"}},"events":[{{"kv":{kv}}}]}}}}\n'.encode()
    )


async def test_scripted_watch_stream(autojump_clock: trio.testing.MockClock) -> None:
    """Blank lines, repeated revisions and stale progress reports are skipped."""
    body = b"".join(
        [
            CREATED,
            b"\n  \n",
            event(6),
            event(6),  # a repeat: dropped
            b'{"result":{"header":{"revision":"7"},"events":['
            + event(6)[event(6).index(b'{"kv"') : -4]
            + b","
            + event(7)[event(7).index(b'{"kv"') : -4]
            + b"]}}\n",  # half old, half new: the old half is dropped
            b'{"result":{"header":{"revision":"3"}}}\n',  # stale progress: dropped
            b'{"result":{"header":{"revision":"9"}}}\n',
        ]
    )
    async with et.open_client("http://x:1", transport=scripted(body)) as client:
        async with client.watch("a") as stream:
            got = [await stream.receive() for _ in range(3)]
    assert [(r.revision, len(r.events)) for r in got] == [(6, 1), (7, 1), (9, 0)]
    assert got[2].is_progress_notify


async def test_watch_line_that_is_not_json(autojump_clock: trio.testing.MockClock) -> None:
    transport = scripted(CREATED + b"<html>\n")
    async with et.open_client("http://x:1", transport=transport) as client:
        async with client.watch("a") as stream:
            with pytest.raises(et.ProtocolError, match="not JSON"):
                await stream.receive()


async def test_service_nursery_groups(autojump_clock: trio.testing.MockClock) -> None:
    async def fail(exc: BaseException) -> None:
        raise exc

    with pytest.raises(ValueError, match="inner"):  # nested groups are flattened
        async with open_service_nursery() as nursery:
            nursery.start_soon(fail, ExceptionGroup("outer", [ValueError("inner")]))
    with pytest.raises(ExceptionGroup) as info:  # two real errors stay a group
        async with open_service_nursery() as nursery:
            nursery.start_soon(fail, ValueError("one"))
            nursery.start_soon(fail, KeyError("two"))
            await trio.sleep_forever()
    assert len(info.value.exceptions) == 2
    error = KeyError("the block's own")
    with pytest.raises(KeyError) as raised:  # it comes out as it was raised
        async with open_service_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise error
    assert raised.value is error and raised.value.__context__ is None
    assert [entry.name for entry in raised.traceback] == ["test_service_nursery_groups"]
    child = ValueError("a task's")
    with pytest.raises(ValueError) as from_task:  # a task's error: its context kept
        async with open_service_nursery() as nursery:
            nursery.start_soon(fail, child)
            await trio.sleep_forever()
    assert from_task.value is child and from_task.value.__context__ is None
    with trio.move_on_after(1) as scope:  # only Cancelled: one of them goes on
        async with open_service_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            await trio.sleep_forever()
    assert scope.cancelled_caught


def test_backoff_after_a_long_outage() -> None:
    backoff = Backoff(base=0.05, cap=2.0)
    delays = [backoff.next_delay() for _ in range(5000)]  # 2.0 ** 1024 would overflow
    assert 0.025 <= delays[0] <= 0.05 and all(1.0 <= d <= 2.0 for d in delays[10:])
    backoff.reset()
    assert backoff.next_delay() <= 0.05


def test_gc_paused_restores_the_collector() -> None:
    assert gc.isenabled()
    with pytest.raises(KeyError):
        with gc_paused():
            assert not gc.isenabled()
            with gc_paused():  # nested: the outer one turns it back on
                pass
            assert not gc.isenabled()
            raise KeyError
    assert gc.isenabled()
    gc.disable()  # the application keeps it off: so do we
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_missing_etcd_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIO_ETCD_TREE_REQUIRE_ETCD", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"9\.9"):
        _binary("9.9")
    monkeypatch.setenv("TRIO_ETCD_TREE_REQUIRE_ETCD", "1")
    with pytest.raises(pytest.fail.Exception, match="is set but"):
        _binary("9.9")


@pytest.mark.real_only  # the in-memory etcd reports a made-up version
async def test_status_reports_the_server_version(etcd_backend: EtcdBackend) -> None:
    async with etcd_backend.client() as client:
        status = await client.status()
    assert status.version.startswith(etcd_backend.kind + ".")
