"""dump_yaml, plan_load and load_yaml on the in-memory etcd: the form, the path model,
guards, split loads and what they say, progress statistics."""

from __future__ import annotations

import io
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

import trio_etcd_tree as et
from trio_etcd_tree import _yaml as y
from trio_etcd_tree._yaml import emit
from trio_etcd_tree._yaml.scalars import render_key
from trio_etcd_tree.testing import FakeEtcd, open_fake_etcd


def run_fake(fn: object, **options: object) -> None:
    async def main() -> None:
        async with open_fake_etcd(**options) as fake:  # type: ignore[arg-type]
            async with et.open_client(fake.endpoints, transport=fake) as client:
                await fn(fake, client)  # type: ignore[operator]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


_WORDS = b"1 007 -1 1.5 1.50 1e3 .inf 0x1F true yes Off null NULL ~ << = - # 2024-05-01 y n"
yaml_words = st.sampled_from([*_WORDS.split(), b"- a", b"a: b", b"a #b", b" ", b"a ", b"0", b"1"])
segment_bytes = st.one_of(
    st.binary(max_size=12),
    st.text(max_size=12).map(lambda t: t.encode("utf-8", "replace")),
    yaml_words,
).filter(lambda b: b"/" not in b)
value_bytes = st.one_of(
    st.binary(max_size=12),
    st.text(max_size=12).map(lambda t: t.encode("utf-8", "replace")),
    yaml_words,
)


@settings(max_examples=400, deadline=None)
@given(
    segment=st.one_of(segment_bytes, st.binary(min_size=100, max_size=200)).filter(
        lambda b: b"/" not in b
    ),
    value=st.one_of(st.none(), value_bytes),
    below=st.lists(st.tuples(segment_bytes, value_bytes), max_size=3),
    raw=st.booleans(),
)
def test_written_yaml_reads_back_to_the_same_bytes(
    segment: bytes, value: bytes | None, below: list[tuple[bytes, bytes]], raw: bool
) -> None:
    """The writer's quoting, escapes, !!binary, long explicit keys, lists and null entries."""
    if value is None and not below:
        value = b""
    node = emit.Node(value)
    expected = {} if value is None else {b"/" + segment: value}
    for name, item in below:
        node.children[name] = emit.Node(item)
        expected[b"/" + segment + b"/" + name] = item
    out: list[str] = []
    emit.write(node, render_key(segment), "", raw, out)
    assert y.document_keys(y.parse_yaml("".join(out))) == expected


def test_written_yaml_looks_like_this() -> None:
    node = emit.Node(b"primary", {b"port": emit.Node(b"5432"), b"ratio": emit.Node(b"1.50")})
    node.children[b"\xff"] = emit.Node(b"\xfe")
    node.children[b"nul"] = emit.Node(b"\x00")
    node.children[b"note"] = emit.Node('tab\there "q" \u2028 \U0001f600 \x7f'.encode())
    node.children[b"yes"] = emit.Node(b"on")
    node.children[b"no"] = emit.Node(b"NO")
    node.children[b"mode"] = emit.Node(b"0755")
    hosts = node.children[b"hosts"] = emit.Node()
    hosts.children = {b"1": emit.Node(b"b"), b"0": emit.Node(b"a")}
    nested = node.children[b"svc"] = emit.Node()
    nested.children = {
        b"0": emit.Node(None, {b"name": emit.Node(b"x"), b"port": emit.Node(b"1")}),
        b"1": emit.Node(None, {b"0": emit.Node(b"y")}),
    }
    out: list[str] = []
    emit.write(node, render_key(b"db"), "", False, out)
    emit.write(emit.Node(b"x"), render_key(b"k" * 130), "", True, out)
    text = "".join(out)
    assert text == (
        "db:\n"
        "  null: primary\n"
        "  hosts:\n"
        "    - a\n"
        "    - b\n"
        '  mode: "0755"\n'
        '  "no": "NO"\n'
        '  note: "tab\\there \\"q\\" \\u2028 \U0001f600 \\x7f"\n'
        '  nul: "\\0"\n'
        "  port: 5432\n"
        '  ratio: "1.50"\n'
        "  svc:\n"
        "    - name: x\n"
        "      port: 1\n"
        '    - - "y"\n'
        '  "yes": "on"\n'
        '  !!binary "/w==": !!binary "/g=="\n'
        f"? {'k' * 130}\n"
        ": x\n"
    )
    assert y.document_keys(y.parse_yaml(text), "/p")[b"/p/db/svc/1/0"] == b"y"


def test_dump_streams_pages_in_a_stable_order() -> None:
    async def check(fake: FakeEtcd, client: et.Client) -> None:
        for key, value in [
            (b"/p", b"own"),
            (b"/p/a", b"primary"),
            (b"/p/a-b", b"1"),
            (b"/p/a/x", b"2"),
            (b"/p/a.c/d", b"\xff"),
            (b"/p/m/n", b"3"),  # a key with a sibling between it and the keys below it:
            (b"/p/m/n!x", b"4"),  # the previous key's parent is not this one's
            (b"/p/m/n/o", b"5"),
            (b"/p/m//e", b"6"),
            (b"/p/m/q", b"7"),
            (b"/p/z", b"true"),
            (b"/p/\xfe", b"k"),
            (b"/p-other", b"outside"),
            (b"/pother", b"outside"),
        ]:
            await client.put(key, value)
        texts = []
        for page_size in (1, 2, 1000):
            out = io.StringIO()
            stats = y.Progress()
            rev = await y.dump_yaml(client, "/p", out, page_size=page_size, progress=stats)
            texts.append(out.getvalue())
            assert (stats.phase, stats.done, stats.total) == ("done", 12, 12)
        assert texts[0] == texts[1] == texts[2]
        assert texts[0].startswith(f"# etcd2yaml: prefix /p revision {rev}\nnull: own\n")
        assert y.parse_yaml(texts[0]) == {
            None: "own",
            "a-b": "1",
            "a.c": {"d": b"\xff"},
            "a": {None: "primary", "x": "2"},
            "m": {"": {"e": "6"}, "n!x": "4", "n": {None: "3", "o": "5"}, "q": "7"},
            b"\xfe": "k",
            "z": "true",
        }
        out = io.StringIO()
        await y.dump_yaml(client, "/p/", out, raw=True, revision=rev)
        assert 'z: "true"' in out.getvalue() and "/p-other" not in out.getvalue()
        out = io.StringIO()
        await y.dump_yaml(client, "/nothing", out)
        assert out.getvalue().endswith("\n{}\n")
        out = io.StringIO()
        stats = y.Progress()
        await y.dump_yaml(client, "/", out, progress=stats)
        assert stats.total == 14 and "p-other: outside\n" in out.getvalue()
        with pytest.raises(ValueError, match=r"a revision is 0 .* or more, not -5"):
            await y.dump_yaml(client, "/p", out, revision=-5)

    run_fake(check)


def test_load_plans_guards_and_chunks() -> None:
    async def check(fake: FakeEtcd, client: et.Client) -> None:
        await client.put("/l/keep", "1")
        await client.put("/l/change", "old")
        await client.put("/l/stray", "x")
        await client.put("/lother", "not under /l")
        doc = {"keep": 1, "change": "new", "add": [True, None]}
        plan = await y.plan_load(client, "/l", doc, prune=True)
        assert plan.diff() == [
            "+ /l/add/0 = true",
            '+ /l/add/1 = ""',
            "~ /l/change = new (was old)",
            "- /l/stray (was x)",
        ]
        assert plan.summary() == "2 added, 1 changed, 1 deleted, 1 unchanged"
        assert (plan.transactions(), plan.transactions(max_txn_ops=3)) == (1, 2)
        dry = await y.load_yaml(client, "/l", doc, prune=True, dry_run=True)
        assert dry.transactions == 0
        assert fake.revision == plan.revision
        with pytest.raises(et.TooLargeError, match=r"4 changes take 2 transactions"):
            await y.load_yaml(client, "/l", doc, prune=True, atomic=True, max_txn_ops=3)
        stats = y.Progress()
        done = await y.load_yaml(client, "/l", doc, prune=True, max_txn_ops=3, progress=stats)
        assert done.transactions == 2
        assert (stats.phase, stats.done, stats.total) == ("done", 4, 4)
        assert (await client.get("/l/add/1")).value == b""  # type: ignore[union-attr]
        assert await client.get("/l/stray") is None
        assert await client.get("/lother") is not None
        again = await y.load_yaml(client, "/l", doc, prune=True)
        assert again.plan.empty and again.transactions == 0 and again.plan.transactions() == 0
        # the path's own key: the top-level null entry; one transaction guards it too
        own = await y.load_yaml(client, "/l", {None: "own", "keep": 1}, prune=True)
        assert own.transactions == 1 and (await client.get("/l")).value == b"own"  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="concurrency must be at least 1, not 0"):
            await y.load_yaml(client, "/k", {"a": 1}, concurrency=0)

    run_fake(check)


def test_split_loads_guard_their_own_ranges() -> None:
    async def check(fake: FakeEtcd, client: et.Client) -> None:
        doc2 = {None: "own", "a": 1, "b": 2, "c": 3}
        one: dict[str, Any] = {"max_txn_ops": 1, "concurrency": 1}

        async def load_watching(prefix: str, key: str, when: int, **options: Any) -> None:
            """The load, with another client writing ``key`` once ``when`` keys landed (each
            transaction takes a second, so the write comes before the next one applies)."""
            stats = y.Progress()
            fake.delay_next("/v3/kv/txn", 1.0, count=len(doc2))
            async with trio.open_nursery() as nursery:

                async def interfere() -> None:
                    while stats.done < when:
                        await stats.wait_changed()
                    fake.put(key, "!")

                nursery.start_soon(interfere)
                error = None
                try:
                    await y.load_yaml(client, prefix, doc2, progress=stats, **options)
                except et.ConflictError as exc:
                    error = exc
                nursery.cancel_scope.cancel()
            if error is not None:
                raise error

        # a write behind the load (in a range already loaded) does not stop it
        await load_watching("/k", "/k/a0", 2, **one)
        assert (await client.get("/k/c")) is not None
        # a write ahead of it does; the chunks before stay, and the error says so
        with pytest.raises(et.ConflictError) as failed:
            await load_watching("/m", "/m/b0", 2, **one)
        assert str(failed.value) == (
            f"load: a key under /m changed since revision {failed.value.revision - 3}: 2 of 4 "
            "keys were written (2 of 4 transactions); running the same load again completes it"
        )
        assert (await client.get("/m/a")) is not None and (await client.get("/m/b")) is None
        # a write to /mother or /m-x is not under /m: no conflict
        await load_watching("/n", "/nother", 1, **one)
        await load_watching("/o", "/o-x", 1, **one)
        assert (await client.get("/o/c")) is not None

        async def load_while_another_writes(
            key: str, prefix: str, doc: object, match: str, **options: Any
        ) -> None:
            """The load's first transaction is held back while another client writes."""
            fake.delay_next("/v3/kv/txn", 1.0)
            async with trio.open_nursery() as nursery:

                async def write() -> None:
                    await trio.sleep(0.5)  # (the mock clock)
                    fake.put(key, "!")

                nursery.start_soon(write)
                with pytest.raises(et.ConflictError, match=match):
                    await y.load_yaml(client, prefix, doc, **options)

        # concurrent chunks: a conflict in the first one lets the others in flight finish
        await load_while_another_writes(
            "/p/a0", "/p", {"a": 1, "b": 2, "c": 3}, "2 of 3 keys were written", max_txn_ops=1
        )
        # the path's own key is guarded by the first chunk
        await load_while_another_writes("/q", "/q", {"a": 1}, r"since revision .*: nothing written")
        # ... and another error (in the second), with a note saying what landed
        fake.delay_next("/v3/kv/txn", 1.0)
        fake.fail_next("/v3/kv/txn", code=14, message="etcdserver: request timed out")
        with pytest.raises(et.EtcdError, match="timed out") as error:
            await y.load_yaml(client, "/r", {"a": 1, "b": 2, "c": 3}, max_txn_ops=1)
        written = sum([await client.get(f"/r/{k}") is not None for k in "abc"])
        assert 1 <= written < 3
        assert error.value.__notes__ == [
            f"loading under /r: at least {written} of 3 keys were written ({written} of 3 "
            "transactions); running the same load again completes it"
        ]
        with pytest.raises(y.DocumentError, match=r"at /s/big: the value is 2000 bytes"):
            await y.load_yaml(client, "/s", {"big": "x" * 2000}, max_request_bytes=5000)

    run_fake(check)


def test_load_if_revision() -> None:
    async def check(fake: FakeEtcd, client: et.Client) -> None:
        r1 = (await client.put("/r/a", "1")).revision
        await client.put("/r/b", "1")
        r2 = (await client.put("/other", "1")).revision
        await y.load_yaml(client, "/r", {"a": 2}, if_revision=r2)  # nothing under /r since r2
        with pytest.raises(et.ConflictError, match=r"^load: /r/a \(and 1 more\) changed since"):
            await y.load_yaml(client, "/r", {"a": 3}, if_revision=r1 - 1)
        with pytest.raises(et.ConflictError, match=r"^load: /r/a \(and 1 more\) changed since"):
            await y.load_yaml(client, "/r", {"a": 3}, if_revision=r1 - 1, dry_run=True)
        r3 = (await client.put("/r/c", "1")).revision
        await client.delete("/r/c")
        with pytest.raises(et.ConflictError, match=r"^load: /r/c changed since revision"):
            await y.load_yaml(client, "/r", {"a": 3}, if_revision=r3)
        r4 = (await client.put("/r", "own")).revision
        await y.load_yaml(client, "/r", {None: "own", "a": 2}, if_revision=r4)  # unchanged
        # the root path: every key starting with /
        everything = await y.plan_load(client, "/", {"r": {"a": 2}})
        assert everything.unchanged == 1 and everything.revision == r4
        await client.delete("/r")
        with pytest.raises(et.ConflictError, match=r"^load: /r changed since revision"):
            await y.load_yaml(client, "/r", {"a": 3}, if_revision=r4)
        assert (await client.get("/r/a")).value == b"2"  # type: ignore[union-attr]

    run_fake(check)


def test_progress_statistics() -> None:
    async def check(fake: FakeEtcd, client: et.Client) -> None:
        stats = y.Progress()
        assert stats.rate() is None and stats.time_left() is None
        stats.start("writing", 100)
        assert stats.rate() is None  # no time has passed
        await trio.sleep(2)
        stats.done = 50
        assert stats.rate() == 25.0 and stats.time_left() == 2.0
        stats.total = None
        assert stats.time_left() is None

    run_fake(check)


def test_key_texts_are_remembered_up_to_a_bound() -> None:
    emit._KEY_TEXTS.clear()
    for i in range(5000):
        assert emit.key_text(b"k%d" % i) == render_key(b"k%d" % i)
    assert len(emit._KEY_TEXTS) == 5000 - 4096
    assert emit.key_text(b"0755") == '"0755"' and emit.key_text(b"\xff") == render_key(b"\xff")


def test_leaves_as_bytes_in_mappings_and_lists() -> None:
    """The dump keeps a key with nothing below it as its bytes (no Node): written alike."""
    node = emit.Node(None, {b"a": b"1", b"l": emit.Node(None, {b"0": b"p", b"1": b"q"})})
    out: list[str] = []
    emit.write(node, "top", "", False, out)
    emit.write(b"v", "leaf", "", False, out)
    assert "".join(out) == "top:\n  a: 1\n  l:\n    - p\n    - q\nleaf: v\n"
