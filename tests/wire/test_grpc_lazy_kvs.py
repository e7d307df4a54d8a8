"""Range answers over gRPC keep their key-values undecoded until they are read: the paging
asks for its next page with the last key alone, and a mount reads the fields straight into
its tree. Read, they are the same KeyValues, results and pages as ever."""

from __future__ import annotations

import pytest

from trio_etcd_tree._core.types import (
    KeyValue,
    Page,
    RangeResult,
    ResponseHeader,
    last_key,
    pairs,
    rows,
    size_of,
    undecoded,
)
from trio_etcd_tree._wire.grpc import codec, messages as pb

KVS = [
    KeyValue(b"/a", b"1", 2, 2, 1, 0),
    KeyValue(b"/a/b", b"\xff" * 40, 3, 7, 4, 99),
    KeyValue(b"/c", b"", 5, 5, 1, 0),
]


def _answer(kvs: list[KeyValue]) -> bytes:
    message = pb.RangeResponse(
        header=pb.ResponseHeader(cluster_id=1, member_id=2, revision=9, raft_term=3),
        more=True,
        count=10,
    )
    for kv in kvs:
        message.kvs.add(**kv._asdict())
    data: bytes = message.SerializeToString()
    return data


def test_a_range_answer_is_decoded_when_read() -> None:
    data = _answer(KVS)
    result = codec.range_result(data)
    source = undecoded(result)
    assert not isinstance(source, list)
    assert len(source) == 3 and last_key(source) == b"/c" and size_of(source) == len(data)
    assert list(rows(source)) == [tuple(kv) for kv in KVS]
    assert type(next(iter(rows(source)))) is tuple  # (no KeyValue made)
    assert list(pairs(source)) == [(kv.key, kv.value) for kv in KVS]
    eager = RangeResult(ResponseHeader(1, 2, 9, 3), list(KVS), True, 10)
    assert repr(result) == repr(eager)  # reads (and keeps) the KeyValues
    decoded = undecoded(result)
    assert isinstance(decoded, list) and decoded == KVS and type(decoded[0]) is KeyValue
    assert result.kvs is result.kvs
    assert result == eager and result.revision == 9 and (result.more, result.count) == (True, 10)
    assert codec.range_result(data) == eager  # (compared: decoded)


def test_pages_and_results_are_values() -> None:
    data = _answer(KVS)
    page = Page(9, undecoded(codec.range_result(data)))
    assert page == Page(9, list(KVS)) and page.kvs == KVS and page.revision == 9
    assert repr(page) == f"Page(revision=9, kvs={KVS!r})"
    assert page != Page(10, list(KVS)) and page != (9, KVS)
    with pytest.raises(AttributeError, match="Page is immutable: cannot set 'revision'"):
        page.revision = 3
    with pytest.raises(TypeError, match="unhashable"):
        hash(page)
    empty = RangeResult(ResponseHeader(1, 2, 3, 4))
    assert empty.kvs == [] and not empty.more and empty.count == 0
    assert empty != Page(3, [])


def test_decoded_key_values_answer_the_same() -> None:
    kvs = list(KVS)
    assert rows(kvs) is kvs and last_key(kvs) == b"/c"
    assert list(pairs(kvs)) == [(kv.key, kv.value) for kv in KVS]
    assert size_of(kvs) == sum(len(kv.key) + len(kv.value) for kv in KVS)


def test_a_range_inside_a_transaction_answer() -> None:
    message = pb.TxnResponse(succeeded=True)
    inner = message.responses.add().response_range
    for kv in KVS:
        inner.kvs.add(**kv._asdict())
    (result,) = codec.txn_result(message.SerializeToString()).responses
    assert isinstance(result, RangeResult)
    assert size_of(undecoded(result)) == inner.ByteSize()
    assert result.kvs == KVS
