"""The mirror's pure core, without trio: keys and paths, loading, applying, resyncing."""

from __future__ import annotations

import itertools

import pytest

import trio_etcd_tree as et
from trio_etcd_tree._core.types import Event, EventType, KeyValue
from trio_etcd_tree._tree.changes import NOT_LOADED
from trio_etcd_tree._tree.core import TreeCore
from trio_etcd_tree._tree.node import PRIVATE, Node, Root, make_node
from trio_etcd_tree._tree.paths import flatten


def core(prefix: bytes = b"/cfg", registry: et.TypeRegistry | None = None) -> TreeCore:
    root = Root(None, PRIVATE)  # type: ignore[arg-type]
    tree = TreeCore(root, prefix, registry or et.TypeRegistry())
    root._mirror = _FakeMirror(tree)  # type: ignore[assignment]
    return tree


class _FakeMirror:
    """The part of a mount's handle that reading nodes uses."""

    def __init__(self, tree: TreeCore) -> None:
        self.key_of = tree.key_of
        self.codec_for = tree.codec_for


def kv(
    key: bytes, value: bytes = b"v", rev: int = 2, create: int = 0, version: int = 1
) -> KeyValue:
    return KeyValue(key, value, create or rev, rev, version, 0)


def put(key: bytes, value: bytes = b"v", rev: int = 2) -> Event:
    return Event(EventType.PUT, kv(key, value, rev))


def delete(key: bytes, rev: int) -> Event:
    return Event(EventType.DELETE, KeyValue(key, b"", 0, rev, 0, 0))


@pytest.mark.parametrize(
    ("key", "names"),
    [
        (b"/cfg", ()),
        (b"/cfg/a", ("a",)),
        (b"/cfg/a/b", ("a", "b")),
        (b"/cfg/a//b", ("a", "", "b")),
        (b"/cfg/a/", ("a", "")),
        (b"/cfg/", ("",)),
        (b"/cfg/\xff\xfe", ("\udcff\udcfe",)),
        (b"/cfg-x", None),
        (b"/cf", None),
        (b"/other/a", None),
    ],
)
def test_names_and_keys(key: bytes, names: tuple[str, ...] | None) -> None:
    tree = core()
    assert tree.names_of(key) == names
    if names is not None:
        assert tree.key_of(names) == key


def test_whole_keyspace_prefix() -> None:
    tree = core(b"")
    assert tree.names_of(b"/a") == ("a",)
    assert tree.names_of(b"a") is None
    assert tree.names_of(b"") is None
    assert tree.key_of(("a", "b")) == b"/a/b"


def test_load_builds_the_tree() -> None:
    tree = core()
    tree.load([kv(b"/cfg", b"r"), kv(b"/cfg/a", b"1"), kv(b"/cfg/a/b", b"2"), kv(b"/cfg-x")], 9)
    root = tree.root
    assert tree.revision == 9
    assert tree.keys == 3
    assert root.value == "r"
    assert root["a"].value == "1"  # a value and children at once
    assert list(root["a"]) == ["b"]
    assert root["a"]["b"].path == ("a", "b")
    assert root["a"]["b"].key == b"/cfg/a/b"
    assert root["a"]["b"].root is root


def _shape(node: Node) -> list[tuple[tuple[str, ...], bytes | None, int, int, int, int]]:
    return [
        (n.path, n._raw, n.create_revision, n.mod_revision, n.version, n.lease) for n in node.walk()
    ]


@pytest.mark.parametrize("prefix", [b"/cfg", b""])
def test_load_takes_keys_in_any_order(prefix: bytes) -> None:
    """``load`` (the general path) takes keys in order, out of order (a key after a key
    below it), repeated, across several calls, with the mount's own key, keys outside the
    mount, non-UTF-8 and empty segments, many children (a dict), and keys that were
    written more than once or carry a lease; with node classes or without."""
    keys = [
        prefix,
        prefix + b"-other",
        prefix + b"/a/x/1",
        prefix + b"/a/0",
        prefix + b"/a/x",  # after a key below it: its node exists already
        prefix + b"/a//\xff",
        prefix + b"/b/",
        *(prefix + b"/many/%02d" % i for i in range(12)),
    ]
    pages = [[kv(k, b"v%d" % i, rev=i + 2) for i, k in enumerate(keys)]]
    pages.append([KeyValue(prefix + b"/c/d", b"w", 3, 7, 4, 99), kv(prefix + b"/a/x/1", b"new", 9)])
    pages.append([kv(prefix + b"/c/e", b"e", 10)])
    plain, typed = core(prefix), core(prefix, _int_registry())
    for page in pages:
        plain.load(page, 11)
        typed.load(page, 11, keys_only=True)
    typed_shape = [(p, r, *rest) for p, r, *rest in _shape(typed.root)]
    assert [(p, *rest) for p, _, *rest in _shape(plain.root)] == [
        (p, *rest) for p, _, *rest in typed_shape
    ]
    by_path = {path: raw for path, raw, *_ in _shape(plain.root)}
    assert by_path[("a", "x", "1")] == b"new"
    assert by_path[("a", "", "\udcff")] == b"v5"
    assert by_path[()] == (b"v0" if prefix else None)  # (the root of "" has no key)
    assert isinstance(plain.root["many"]._children, dict)
    assert plain.root.lookup("c/d").lease == 99 and plain.root.lookup("c/d").version == 4
    assert plain.keys == typed.keys == (21 if prefix else 20)  # (a repeated key counts twice)
    assert plain.revision == 11
    plain.load(pages[0], 12, keys_only=True)  # again: every node exists, values unloaded
    assert not plain.root.lookup("a/0").loaded and plain.root.lookup("a/0").mod_revision == 5


_SORTED_KEYS = sorted(
    [b"/cfg/app/%d/f%d" % (i, j) for i in range(6) for j in range(3)]
    + [b"/cfg/app/2", b"/cfg/app/2-x", b"/cfg/big/%02d" % 0]
    + [b"/cfg/big/%02d" % i for i in range(1, 12)]
    + [b"/cfg/big/05/x/y", b"/cfg/z\xff/\xfe", b"/cfg/e//", b"/cfg/e//f", b"/cfg/e/"]
    + [b"/cfg", b"/cfg-x", b"/cfg.x/y", b"/cfg/"]
)


@pytest.mark.parametrize("cuts", [(), (1,), (5, 6), (3, 9, 10, 30), tuple(range(1, 47))])
@pytest.mark.parametrize("keys_only", [False, True])
def test_add_sorted_in_pages_equals_load(cuts: tuple[int, ...], keys_only: bool) -> None:
    """A snapshot's sorted pages (as etcd sends them), cut anywhere, give the tree that
    ``load`` makes: the mount's own key, keys beside the mount (/cfg-x, /cfg.x), a key with
    keys below it and one sorting between them (app/2, app/2-x, app/2/...), empty and
    non-UTF-8 segments, a parent of more than eight children (a dict), revisions and
    leases. Nothing is made before it is looked at."""
    kvs = [
        KeyValue(k, b"v%d" % i, i + 2, i + 2 + i % 2, 1 + i % 3, 7 * (i % 4 == 1))
        for i, k in enumerate(_SORTED_KEYS)
    ]
    bounds = [0, *cuts, len(kvs)]
    lazy, eager = core(), core()
    for start, end in itertools.pairwise(bounds):
        lazy.add_sorted(kvs[start:end], 50, keys_only=keys_only)
        assert not isinstance(lazy.root._children, (tuple, dict))  # (nothing made yet)
    lazy.end_sorted()
    eager.load(kvs, 50, keys_only=keys_only)
    assert lazy.keys == eager.keys == len(kvs) - 2  # (/cfg-x, /cfg.x/y: not the mount's)
    assert lazy.revision == 50
    assert lazy.root._raw == (NOT_LOADED if keys_only else b"v0")
    app = lazy.root["app"]
    assert not isinstance(app["2"]._children, (tuple, dict))  # (made where looked at)
    assert _shape(lazy.root) == _shape(eager.root)
    assert isinstance(lazy.root["big"]._children, dict) and len(lazy.root["big"]) == 12
    assert list(app) == ["0", "1", "2", "2-x", "3", "4", "5"]


def _lazy(*keys: bytes) -> TreeCore:
    tree = core()
    tree.add_sorted([kv(k, k[-1:], rev=3) for k in keys], 3)
    tree.end_sorted()
    return tree


@pytest.mark.parametrize(
    "look",
    [
        lambda root: root["a"]["b"],
        lambda root: root.get("a").get("b"),
        lambda root: root.lookup("a/b"),
        lambda root: root.find("a/b"),
        lambda root: "b" in root["a"] and root["a"]["b"],
        lambda root: len(root["a"]) == 2 and root["a"]["b"],
        lambda root: dict(root["a"].items())["b"],
        lambda root: root["a"].values()[0],
        lambda root: next(n for n in root.walk() if n.path == ("a", "b")),
    ],
)
def test_every_way_of_looking_makes_the_nodes(look: object) -> None:
    tree = _lazy(b"/cfg/a/b", b"/cfg/a/c/d")
    node = look(tree.root)  # type: ignore[operator]
    assert node.path == ("a", "b") and node.raw == b"b" and node.mod_revision == 3
    assert node.parent is tree.root["a"]
    assert list(tree.root["a"]) == ["b", "c"]


def test_changes_to_nodes_not_made_yet() -> None:
    """The watch's events, a resync, and pruning reach nodes that were not made yet."""
    tree = _lazy(b"/cfg/a/1", b"/cfg/a/2", b"/cfg/b/x/1", b"/cfg/c/1")
    changes = tree.apply([put(b"/cfg/a/3", b"new", 4), delete(b"/cfg/b/x/1", 4)], 4)
    assert [(c.path, c.kind) for c in changes] == [
        (("a", "3"), et.ChangeKind.CREATED),
        (("b", "x", "1"), et.ChangeKind.DELETED),
    ]
    assert list(tree.root) == ["a", "c"] and list(tree.root["a"]) == ["1", "2", "3"]
    assert tree.keys == 4
    changes = tree.replace([kv(b"/cfg/a/1", b"1", 3), kv(b"/cfg/d", b"d", 5)], 5)
    assert [(c.path, c.kind) for c in changes] == [
        (("a", "2"), et.ChangeKind.DELETED),
        (("a", "3"), et.ChangeKind.DELETED),
        (("c", "1"), et.ChangeKind.DELETED),
        (("d",), et.ChangeKind.CREATED),
    ]
    tree = _lazy(b"/cfg/a/1")
    tree.clear()
    assert len(tree.root) == 0 and tree.keys == 0
    tree.add_sorted([kv(b"/cfg/z")], 6)  # (a new snapshot after clear)
    assert list(tree.root) == ["z"]


def test_add_sorted_refuses_keys_out_of_order() -> None:
    tree = core()
    with pytest.raises(et.ProtocolError, match="not in ascending order"):
        tree.add_sorted([kv(b"/cfg/b"), kv(b"/cfg/a")], 2)
    tree = core()
    tree.add_sorted([kv(b"/cfg/b")], 2)
    with pytest.raises(et.ProtocolError, match="not in ascending order"):
        tree.add_sorted([kv(b"/cfg/a")], 2)
    tree.add_sorted([], 3)  # (an empty page: the revision only)
    assert tree.revision == 3 and list(tree.root) == ["b"]


def test_apply_puts_and_deletes_prune_empty_nodes() -> None:
    tree = core()
    tree.load([kv(b"/cfg/a/b/c", b"1")], 2)
    changes = tree.apply([put(b"/cfg/a/b/d", b"2", 3)], 3)
    assert [(c.path, c.kind) for c in changes] == [(("a", "b", "d"), et.ChangeKind.CREATED)]
    c_node = tree.root.lookup("a/b/c")
    changes = tree.apply([delete(b"/cfg/a/b/c", 4), delete(b"/cfg/a/b/d", 4)], 4)
    assert [c.kind for c in changes] == [et.ChangeKind.DELETED] * 2
    assert changes[0].old == kv(b"/cfg/a/b/c", b"1")
    assert "a" not in tree.root  # nothing left below: pruned up to the root
    assert c_node.parent is None
    assert c_node.path == ("a", "b", "c") and c_node.key == b"/cfg/a/b/c"  # as it was
    assert c_node.root is tree.root
    assert tree.keys == 0
    assert tree.apply([delete(b"/cfg/zzz", 5), put(b"/elsewhere", b"x", 5)], 5) == []
    assert tree.revision == 5


def test_delete_keeps_a_node_with_children() -> None:
    tree = core()
    tree.load([kv(b"/cfg/a"), kv(b"/cfg/a/b")], 2)
    tree.apply([delete(b"/cfg/a", 3)], 3)
    node = tree.root["a"]
    assert not node.has_value
    assert node.raw is None
    assert node.kv is None
    assert list(node) == ["b"]
    with pytest.raises(LookupError, match="has no value"):
        node.value  # noqa: B018
    assert node.decode_error is None


def test_many_children_are_kept_by_name() -> None:
    """Up to eight children in a tuple, more in a dict: both read and prune alike."""
    tree = core()
    names = [f"c{i:02}" for i in range(12)]
    tree.load([kv(f"/cfg/p/{n}".encode()) for n in names], 2)
    parent = tree.root["p"]
    assert list(parent) == names and len(parent) == 12
    assert parent["c11"].name == "c11" and "c03" in parent and parent.get("zz") is None
    for revision, name in enumerate(names, 3):
        tree.apply([delete(f"/cfg/p/{name}".encode(), revision)], revision)
        assert name not in parent
    assert "p" not in tree.root and len(tree.root) == 0
    tree.apply([put(b"/cfg/q/a", rev=20), put(b"/cfg/q/b", rev=20)], 20)
    tree.apply([delete(b"/cfg/q/a", 21)], 21)
    assert tree.root["q"].keys() == ["b"]


def test_modified_change_carries_old_and_new() -> None:
    tree = core(registry=_int_registry())
    tree.load([kv(b"/cfg/n", b"1")], 2)
    (change,) = tree.apply([put(b"/cfg/n", b"2", 3)], 3)
    assert change.kind is et.ChangeKind.MODIFIED
    assert (change.old_value, change.new_value) == (1, 2)
    (gone,) = tree.apply([delete(b"/cfg/n", 4)], 4)
    assert (gone.old_value, gone.new_value) == (2, None)
    (born,) = tree.apply([put(b"/cfg/n", b"5", 5)], 5)
    assert (born.old_value, born.kind) == (None, et.ChangeKind.CREATED)


def _int_registry() -> et.TypeRegistry:
    registry = et.TypeRegistry()
    registry.register("n", codec=et.INT)
    return registry


def test_replace_reports_the_differences() -> None:
    tree = core()
    tree.load([kv(b"/cfg/same"), kv(b"/cfg/changed", b"old"), kv(b"/cfg/gone/deep")], 2)
    changes = tree.replace(
        [kv(b"/cfg/same"), kv(b"/cfg/changed", b"new", 5), kv(b"/cfg/new", b"n", 6), kv(b"/x")], 7
    )
    assert [(c.path, c.kind) for c in changes] == [
        (("changed",), et.ChangeKind.MODIFIED),
        (("gone", "deep"), et.ChangeKind.DELETED),
        (("new",), et.ChangeKind.CREATED),
    ]
    assert tree.revision == 7
    assert sorted(tree.root) == ["changed", "new", "same"]


def test_node_reads() -> None:
    tree = core()
    tree.load([kv(b"/cfg/b", b"2", 3), kv(b"/cfg/a", b"1", 2), kv(b"/cfg/c/d", b"x" * 50)], 3)
    root = tree.root
    assert list(root) == ["a", "b", "c"]
    assert root.keys() == ["a", "b", "c"]
    assert [n.name for n in root.values()] == ["a", "b", "c"]
    assert [name for name, _ in root.items()] == ["a", "b", "c"]
    assert len(root) == 3
    assert "a" in root
    assert 3 not in root
    assert root.get("zz") is None
    assert root["a"].get("x") is None
    assert len(root["a"]) == 0
    assert list(root["a"]) == []
    assert bool(root["a"])
    assert [n.path for n in root.walk()] == [(), ("a",), ("b",), ("c",), ("c", "d")]
    with pytest.raises(KeyError, match="has no child 'zz'"):
        root["zz"]
    with pytest.raises(KeyError):
        root.lookup(("c", "nope"))
    a = root["a"]
    assert (a.create_revision, a.mod_revision, a.version, a.lease) == (2, 2, 1, 0)
    assert a.kv == kv(b"/cfg/a", b"1", 2)
    assert a.codec is et.STR
    assert repr(a) == "<Node '/cfg/a' mod_revision=2 raw=b'1'>"
    assert repr(root["c"]) == "<Node '/cfg/c' children=1>"
    assert "..." in repr(root["c"]["d"])


def test_decode_errors_keep_the_bytes() -> None:
    tree = core(registry=_int_registry())
    tree.load([kv(b"/cfg/n", b"not a number")], 2)
    node = tree.root["n"]
    with pytest.raises(et.DecodeError, match="does not decode as int") as info:
        node.value  # noqa: B018
    assert info.value.raw == b"not a number"
    assert node.raw == b"not a number"
    assert isinstance(node.decode_error, et.DecodeError)
    tree.apply([put(b"/cfg/n", b"12", 3)], 3)
    assert node.value == 12
    assert node.decode_error is None


def test_node_classes_from_the_registry() -> None:
    registry = et.TypeRegistry()

    @registry.node_class("services/*")
    class Service(Node):
        @property
        def port(self) -> int:
            return int(self["port"].value)

    tree = core(registry=registry)
    tree.load([kv(b"/cfg/services/web/port", b"80"), kv(b"/cfg/other/port", b"1")], 2)
    web = tree.root["services"]["web"]
    assert isinstance(web, Service)
    assert web.port == 80
    assert type(tree.root["other"]) is Node


def test_nodes_have_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="made by the tree"):
        Node("x", None)
    assert make_node(Node, "x", core().root).name == "x"


def test_flatten() -> None:
    assert list(flatten({"a": 1, "b": {"c": 2}})) == [(("a",), 1), (("b", "c"), 2)]
    assert list(flatten(5, ("x",))) == [(("x",), 5)]
    with pytest.raises(ValueError, match="empty mapping"):
        list(flatten({"a": {}}))
    with pytest.raises(TypeError, match="names must be str"):
        list(flatten({1: 2}))
