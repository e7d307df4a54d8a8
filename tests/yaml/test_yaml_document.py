"""The YAML layer without etcd: scalars, parsing (lossless, bounded) and a document's keys."""

from __future__ import annotations

import datetime
import time
import tracemalloc

import pytest
import yaml

import trio_etcd_tree as et
from trio_etcd_tree import _yaml as y
from trio_etcd_tree._yaml import document as ydoc, scalars

# --- scalars ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "raw"),
    [
        (None, b""),
        (True, b"true"),
        (False, b"false"),
        (5432, b"5432"),
        (-1, b"-1"),
        (1.5, b"1.5"),
        (1e20, b"1e+20"),
        (float("nan"), b".nan"),
        (float("inf"), b".inf"),
        (float("-inf"), b"-.inf"),
        ("héllo", "héllo".encode()),
        (y.Plain("NO"), b"NO"),
        (b"\xff\x00", b"\xff\x00"),
        (datetime.date(2024, 5, 1), b"2024-05-01"),
        (datetime.datetime(2024, 5, 1, 12, 0), b"2024-05-01T12:00:00"),
    ],
)
def test_encode_value(value: object, raw: bytes) -> None:
    assert y.encode_value(value) == raw


def test_encode_value_refuses() -> None:
    with pytest.raises(y.DocumentError, match="at 'a/b': a set value has no etcd encoding"):
        y.encode_value({1}, "a/b")
    with pytest.raises(y.DocumentError, match="not valid Unicode"):
        y.encode_value("\ud800")


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"5432", 5432),
        (b"007", "007"),
        (b"0x10", "0x10"),
        (b"1.5", 1.5),
        (b"1.50", "1.50"),
        (b"true", True),
        (b"yes", "yes"),
        (b"null", "null"),
        (b"", ""),
        (b"2024-05-01", datetime.date(2024, 5, 1)),
        (b"=", "="),
        (b"hello", "hello"),
        (b"\xff", b"\xff"),
    ],
)
def test_decode_value(raw: bytes, value: object) -> None:
    assert y.decode_value(raw) == value
    assert type(y.decode_value(raw)) is type(value)


def test_decode_value_as_text() -> None:
    assert y.decode_value(b"5432", as_text=True) == "5432"


def test_typed_value_reads_yaml_1_1() -> None:
    doc = {y.Plain("k"): [y.Plain("0755"), y.Plain("NO"), y.Plain("1.10"), y.Plain("~"), "NO"]}
    assert y.typed_value(doc) == {"k": [493, False, 1.1, None, "NO"]}
    assert y.typed_value(b"x") == b"x"


def test_show_bytes() -> None:
    from trio_etcd_tree._core.keys import show_bytes

    assert show_bytes(b"/cfg/db") == "/cfg/db"
    assert show_bytes(b"") == '""'
    assert show_bytes(b"hello world") == '"hello world"'
    assert show_bytes(b'a"\n\t\r\\') == '"a\\"\\n\\t\\r\\\\"'
    assert show_bytes(b"\xff\x00") == '"\\xff\\x00"'
    assert show_bytes("\x85\u2028é\U000e0001".encode()) == '"\\u0085\\u2028é\\U000e0001"'
    assert show_bytes(b"it's") == '"it\'s"'


# --- parsing: lossless -----------------------------------------------------------------------

REALISTIC = """\
# a config as people write them
country: NO
mode: 0755
version: 1.10
enabled: yes
disabled: off
nothing: ~
empty:
null_word: null
octal_quoted: "0755"
single: 'it''s'
when: 2024-05-01T12:00:00Z
date: 2001-12-14
hex: 0x1F
sexagesimal: 1:20
float_exp: 1e3
inf: .inf
long: "%s"
folded: >
  one
  two
literal: |
  line one
  line two
binary: !!binary /wD+
tagged_int: !!int 0755
tagged_str: !!str 0755
tagged_bool: !!bool yes
tagged_null: !!null ~
list: [a, 1, yes]
""" % ("x" * 5000)


def test_plain_scalars_stay_as_written() -> None:
    doc = y.parse_yaml(REALISTIC, "cfg.yaml")
    keys = y.document_keys(doc, "/cfg")
    assert keys == {
        b"/cfg/country": b"NO",
        b"/cfg/mode": b"0755",
        b"/cfg/version": b"1.10",
        b"/cfg/enabled": b"yes",
        b"/cfg/disabled": b"off",
        b"/cfg/nothing": b"~",
        b"/cfg/empty": b"",
        b"/cfg/null_word": b"null",
        b"/cfg/octal_quoted": b"0755",
        b"/cfg/single": b"it's",
        b"/cfg/when": b"2024-05-01T12:00:00Z",
        b"/cfg/date": b"2001-12-14",
        b"/cfg/hex": b"0x1F",
        b"/cfg/sexagesimal": b"1:20",
        b"/cfg/float_exp": b"1e3",
        b"/cfg/inf": b".inf",
        b"/cfg/long": b"x" * 5000,
        b"/cfg/folded": b"one two\n",
        b"/cfg/literal": b"line one\nline two\n",
        b"/cfg/binary": b"\xff\x00\xfe",
        b"/cfg/tagged_int": b"493",
        b"/cfg/tagged_str": b"0755",
        b"/cfg/tagged_bool": b"true",
        b"/cfg/tagged_null": b"",
        b"/cfg/list/0": b"a",
        b"/cfg/list/1": b"1",
        b"/cfg/list/2": b"yes",
    }
    assert isinstance(doc["country"], y.Plain)  # type: ignore[index]
    assert not isinstance(doc["octal_quoted"], y.Plain)  # type: ignore[index]


def test_keys_are_lossless_too() -> None:
    # a plain ~ or null key is the enclosing key's own value (given twice here: refused)
    with pytest.raises(y.DocumentError, match=r"4:1: the key null \(~\) is given twice"):
        y.parse_yaml("a: 1\n~: own\nb: 2\nnull: x\n")
    doc = y.parse_yaml("yes: 1\n0755: 2\n~: own\n'null': y\n1.10: 3\n")
    assert y.document_keys(doc, "/p") == {
        b"/p/yes": b"1",
        b"/p/0755": b"2",
        b"/p": b"own",
        b"/p/null": b"y",
        b"/p/1.10": b"3",
    }


def test_types_convert_only_where_they_say() -> None:
    types = et.TypeRegistry()
    types.register("**/port", codec=et.INT)
    types.register("flags/*", codec=et.BOOL)
    types.register("opts", codec=et.JSON)
    types.register("raw", codec=et.BYTES)
    doc = y.parse_yaml(
        "db: {port: 0x10}\nflags: {a: yes, b: NO}\nopts: {x: 1, y: [true, ~]}\n"
        "quoted: {port: '0755'}\nraw: 0755\nother: 0755\n"
    )
    assert y.document_keys(doc, "/t", types=types) == {
        b"/t/db/port": b"16",
        b"/t/flags/a": b"true",
        b"/t/flags/b": b"false",
        b"/t/opts": b'{"x":1,"y":[true,null]}',
        b"/t/quoted/port": b"0755",  # quoted: the string, as written
        b"/t/raw": b"0755",
        b"/t/other": b"0755",
    }
    with pytest.raises(y.DocumentError, match=r"at 'db/port': the int codec refuses 'x'"):
        y.document_keys(y.parse_yaml("db: {port: x}\n"), "/t", types=types)


def test_lists_and_merge_keys() -> None:
    text = """
base: &b {host: db, port: 5432}
svc:
  <<: *b
  port: 6543
both:
  <<: [{a: 1, b: 1}, {a: 2, c: 2}]
  c: 3
copies: [*b, *b]
"""
    doc = y.parse_yaml(text)
    assert doc == {
        "base": {"host": "db", "port": "5432"},
        "svc": {"host": "db", "port": "6543"},
        "both": {"a": "1", "b": "1", "c": "3"},
        "copies": [{"host": "db", "port": "5432"}] * 2,
    }
    assert y.document_keys({"l": [1, [2, 3]]}, "/x") == {
        b"/x/l/0": b"1",
        b"/x/l/1/0": b"2",
        b"/x/l/1/1": b"3",
    }
    with pytest.raises(y.DocumentError, match=r"^f.yaml:2:3: a merge \(<<\) takes a mapping"):
        y.parse_yaml("a:\n  <<: x\n", "f.yaml")
    assert y.parse_yaml("a:\n  !!merge <<: {b: 1}\n") == {"a": {"b": "1"}}
    # anchored scalars, as values and as keys
    assert y.parse_yaml("a: &x 1\nb: *x\nk: &k key\n? *k\n: 2\n") == {
        "a": "1",
        "b": "1",
        "k": "key",
        "key": "2",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nb: 2\na: 3\n", "f.yaml:3:1: the key 'a' is given twice"),
        ("a: 1\n'1': 2\n1: 3\n", "f.yaml:3:1: the key '1' is given twice"),
        ("a: &x\n  b: *x\n", "f.yaml:2:6: an alias contains itself"),
        ("a: &x [1, *x]\n", "f.yaml:1:11: an alias contains itself"),
        ("a: *nope\n", "f.yaml:1:4: the alias \\*nope has no anchor"),
        ("? [1]\n: 2\n", "f.yaml:1:3: a list cannot be a key"),
        ("? {a: 1}\n: 2\n", "f.yaml:1:3: a mapping cannot be a key"),
        ("x: &l [1]\n? *l\n: 2\n", "f.yaml:2:3: a list cannot be a key"),
        ("x: &m {a: 1}\n? *m\n: 2\n", "f.yaml:2:3: a mapping cannot be a key"),
        ("!!map [1]\n", "f.yaml:1:1: the tag tag:yaml.org,2002:map does not fit a list"),
        ("a: !!set {x, y}\n", "f.yaml:1:4: the tag tag:yaml.org,2002:set does not fit a mapping"),
        ("a: !x 1\n", "f.yaml:1:4: a value tagged !x has no etcd form"),
        ("a: !!int x\n", "f.yaml:1:4: not a int: "),
        ("a: !!binary a\n", "f.yaml:1:4: not a binary: "),
        ("a: 1\n---\nb: 2\n", "f.yaml:2:1: a second document"),
        ("a: [\n", "f.yaml:2:1: invalid YAML: while parsing"),
    ],
)
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(y.DocumentError, match=f"^{message}") as failed:
        y.parse_yaml(text, "f.yaml")
    assert failed.value.source == "f.yaml" and failed.value.line is not None
    assert isinstance(failed.value, et.EtcdError)


def test_parse_errors_without_a_place(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(y.DocumentError, match=r"^f.yaml: invalid YAML: unacceptable character"):
        y.parse_yaml("a: \x00", "f.yaml")

    def unmarked(*args: object, **kwargs: object) -> object:
        raise yaml.MarkedYAMLError(problem="odd")

    monkeypatch.setattr(ydoc._Parser, "get_event", unmarked)
    with pytest.raises(y.DocumentError, match=r"^f.yaml: invalid YAML: odd$"):
        y.parse_yaml("a: 1", "f.yaml")


def test_parse_bytes_and_empty_documents() -> None:
    assert y.parse_yaml(b"\xef\xbb\xbfa: b\n") == {"a": "b"}
    assert y.parse_yaml("") is None and y.parse_yaml("# nothing\n") is None
    assert y.parse_yaml("just text") == "just text"
    with pytest.raises(y.DocumentError, match=r"^f.yaml:2:4: not UTF-8 text \(byte 0xff\)$"):
        y.parse_yaml(b"a: 1\nb: \xff\n", "f.yaml")


def test_recorded_revision() -> None:
    assert y.recorded_revision("# etcd2yaml: prefix /a revision 17\na: 1\n") == 17
    assert y.recorded_revision(b"# etcd2yaml: prefix /a b/ revision 3\r\n") == 3
    assert y.recorded_revision("a: 1\n# etcd2yaml: prefix /a/ revision 17\n") is None


# --- parsing: bounded ------------------------------------------------------------------------

LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


def bounded(text: str | bytes, **limits: int) -> y.DocumentLimitError:
    """Parse, and check that it failed at once, within a little memory."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(y.DocumentLimitError) as failed:
            y.parse_yaml(text, "f.yaml", limits=y.Limits(**limits))
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    size = len(text.encode() if isinstance(text, str) else text)
    assert peak < 10 * size + 1_000_000  # in proportion to the file, nothing more
    assert "\n" not in str(failed.value)
    return failed.value


def test_billion_laughs() -> None:
    assert len(LAUGHS) < 400
    error = bounded(LAUGHS)
    assert str(error) == (
        "f.yaml:5:8: aliases expand to more than 10000 values (limit: --max-alias-expansion 10000)"
    )
    assert (error.limit, error.maximum, error.line, error.column) == (
        "max_alias_expansion",
        10000,
        5,
        8,
    )
    # with the expansion allowed, the key count stops it
    error = bounded(LAUGHS, max_alias_expansion=10**12)
    assert str(error).startswith("f.yaml:7:") and "--max-keys 1000000" in str(error)


def test_a_10_mb_scalar() -> None:
    error = bounded("a: " + "x" * 10_000_000 + "\n")
    assert (
        str(error) == "f.yaml:1:4: a value of 10000000 bytes (limit: --max-request-bytes 1572864)"
    )
    error = bounded("a: '" + "é" * 1_000_000 + "'\n")
    assert "a value of 2000000 bytes" in str(error)


def test_ten_thousand_levels() -> None:
    block = "a:\n" + "- " * 10_000 + "x\n"
    error = bounded(block)
    assert str(error) == "f.yaml:2:199: nested too deeply (limit: --max-depth 100)"
    flow = "a: " + "[" * 10_000 + "]" * 10_000
    assert "nested too deeply (limit: --max-depth 100)" in str(bounded(flow))
    mappings = "".join(" " * i + "a:\n" for i in range(300))
    assert str(bounded(mappings)).startswith("f.yaml:101:101: nested too deeply")
    assert y.parse_yaml("a: " + "[" * 99 + "]" * 99) is not None


def test_document_and_key_limits() -> None:
    error = bounded("a: 1\n" * 10, max_document_bytes=20)
    assert str(error) == "f.yaml: the document is 50 bytes (limit: --max-document-bytes 20)"
    error = bounded("a: 1\nb: 2\nc: 3\n", max_keys=2)
    assert str(error) == "f.yaml:3:4: more than 2 values (limit: --max-keys 2)"
    with pytest.raises(y.DocumentLimitError, match=r"^the document: more than 1 keys"):
        y.document_keys({"a": 1, "b": 2}, max_keys=1)


# --- a document's keys -----------------------------------------------------------------------


def test_document_keys() -> None:
    doc = y.parse_yaml(
        """
db:
  ~: primary
  port: 5432
  hosts: [a, b]
? !!binary /w==
: !!binary AA==
"": root-child
"""
    )
    assert y.document_keys(doc, "/cfg/") == {
        b"/cfg/db": b"primary",
        b"/cfg/db/port": b"5432",
        b"/cfg/db/hosts/0": b"a",
        b"/cfg/db/hosts/1": b"b",
        b"/cfg/\xff": b"\x00",
        b"/cfg/": b"root-child",
    }
    assert y.document_keys({"a": 1, 2: True}) == {b"/a": b"1", b"/2": b"true"}
    assert y.document_keys({}) == {}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (None, "the document is empty, not a mapping"),
        ([1], "the document is a list, not a mapping"),
        ("x", "the document is a str, not a mapping"),
        ({"a": {}}, "at 'a': an empty mapping or list writes no key"),
        ({"a": []}, "at 'a': an empty mapping or list writes no key"),
        ({None: 1}, "a null .~. key at the top level: the root path / has no value"),
        ({"a": {None: [1]}}, "at 'a': the null .~. entry must be a scalar"),
        ({"a/b": 1}, "the key 'a/b' contains '/'"),
        ({1: "x", "1": "y"}, "at '1': two keys give the same segment"),
        ({(1, 2): 1}, "a tuple cannot be a key"),
        ({"a": {"b": {1, 2}}}, "at 'a/b': a set value"),
    ],
)
def test_document_errors(doc: object, message: str) -> None:
    with pytest.raises(y.DocumentError, match=message):
        y.document_keys(doc)


def test_deeply_nested_python_documents() -> None:
    deeper: dict[str, object] = {"x": 1}
    for _ in range(5000):
        deeper = {"a": deeper}
    with pytest.raises(y.DocumentError, match=r"^the document is nested too deeply$"):
        y.document_keys(deeper)


def test_scalars_module_helpers() -> None:
    assert scalars.at("") == ""
    assert scalars.render_key(b"5432") == '"5432"'
    assert scalars.render_value(b"5432", raw=False) == "5432"
