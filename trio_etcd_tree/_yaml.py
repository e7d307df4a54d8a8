"""etcd subtrees as YAML and back: what ``etcd2yaml`` writes and ``yaml2etcd`` reads.

The form (documented in ``docs/tools.rst``; every etcd subtree has exactly one):

* The keys under the prefix are split at ``/``; each segment is a mapping key, so
  ``<prefix>db/port`` is ``{"db": {"port": ...}}``. Empty segments are kept
  (``<prefix>a//b`` is ``{"a": {"": {"b": ...}}}``); the prefix's own key is the segment
  ``""``.
* A key that has a value *and* keys below it is a mapping whose ``null`` (``~``) entry holds
  its own value: ``{"db": {null: "primary", "port": 5432}}``. A real segment is always a
  string, so ``null`` never collides with one.
* A segment that is not UTF-8 is a ``!!binary`` mapping key.
* A value that is not UTF-8 is ``!!binary``. A UTF-8 value is written as an int, float,
  bool or date exactly when its bytes are the canonical rendering of that scalar (below), so
  reading it back gives the same bytes; otherwise (and always with ``raw``) as a string.

What ``yaml2etcd`` writes for each YAML value (its *encoding*):

=========================  ====================================================
string                     its UTF-8 bytes
``!!binary``               the bytes
int                        decimal (``5432``, ``-1``)
float                      Python's ``repr`` (``1.5``, ``1e+20``); ``.inf``, ``-.inf``, ``.nan``
bool                       ``true`` / ``false``
null                       the empty value
date, timestamp            ISO 8601 (``2024-05-01``, ``2024-05-01T12:00:00``)
mapping                    one key per entry, nested (its ``null`` entry: the key's own value)
list                       one key per item, named ``0``, ``1``, ...
=========================  ====================================================

Mapping keys that are ints, floats, bools or dates become segments by the same encoding.
Refused, with the path where it happened: an empty mapping or list below the top (etcd has
no directories, so it would write nothing and vanish on the next dump), a segment
containing ``/``, two keys giving the same segment, a ``null`` entry at the top level or
holding a mapping or list, and any other type (sets, pairs). :func:`parse_yaml` refuses a
key given twice in one mapping and an alias that contains itself.
"""

from __future__ import annotations

import base64
import datetime
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import trio
import yaml

from ._client import Client
from ._core.errors import ConflictError, TooLargeError
from ._core.keys import KeyLike, key_bytes, prefix_end
from ._core.txn import Compare, Delete, Put
from ._core.types import KeyValue, Page, TxnResult
from ._core.util import gc_paused, open_service_nursery

__all__ = [
    "DocumentError",
    "LoadPlan",
    "LoadResult",
    "decode_value",
    "document_keys",
    "dump_yaml",
    "encode_value",
    "load_yaml",
    "parse_yaml",
    "plan_load",
    "recorded_revision",
]

MAX_REQUEST_BYTES = 1_572_864
"""etcd's default ``--max-request-bytes`` (1.5 MiB)."""
MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``."""
_REQUEST_MARGIN = 4096  # room for the request's own framing and the compare
_OP_OVERHEAD = 16

_HEADER = "# etcd2yaml: prefix {prefix} revision {revision}\n"
_HEADER_RE = re.compile(r"# etcd2yaml: prefix (?P<prefix>.*) revision (?P<revision>\d+)\r?$")
_TYPED_TAGS = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
}
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_RESOLVER = yaml.resolver.Resolver()
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# What etcd2yaml writes plain: a word that YAML reads back as that string (not a bool or
# null); anything else is double-quoted, with escapes for what a reader would not keep.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_NOT_PLAIN = frozenset(  # YAML 1.1's bool and null words, as PyYAML resolves them
    form
    for word in ("yes", "no", "true", "false", "on", "off", "null")
    for form in (word, word.title(), word.upper())
)
_ESCAPE = re.compile(
    '[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]|["\\\\]'
)
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\\0"}
_LONG_KEY = 128  # longer keys are written as explicit "? key" entries


class DocumentError(ValueError):
    """A YAML document that cannot be written to etcd; the message says where and why."""


# --- values --------------------------------------------------------------------------------


def encode_value(value: object, where: str = "") -> bytes:
    """The bytes ``yaml2etcd`` writes for a YAML scalar (see the module docs).

    Raises:
        DocumentError: the value has no encoding (a set, a pair, ...).
    """
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        if math.isnan(value):
            return b".nan"
        if math.isinf(value):
            return b".inf" if value > 0 else b"-.inf"
        return repr(value).encode()
    if isinstance(value, str):
        try:
            return value.encode()
        except UnicodeEncodeError as exc:
            raise DocumentError(f"{_at(where)}a string that is not valid Unicode: {exc}") from None
    if isinstance(value, bytes):
        return value
    if isinstance(value, datetime.date):  # datetime.datetime included
        return value.isoformat().encode()
    raise DocumentError(f"{_at(where)}a {type(value).__name__} value has no etcd encoding")


def decode_value(raw: bytes, *, as_text: bool = False) -> object:
    """The YAML value ``etcd2yaml`` writes for a key's bytes: ``bytes`` if they are not
    UTF-8; a bool, int, float or date if the bytes are exactly that scalar's encoding (not
    with ``as_text``); else the string."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return raw
    if as_text or not text:
        return text
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    if tag not in _TYPED_TAGS:
        return text
    value = yaml.load(text, Loader=_BaseLoader)
    return value if encode_value(value) == raw else text


def _at(where: str) -> str:
    return f"at {where!r}: " if where else ""


# --- documents -> keys ---------------------------------------------------------------------


def parse_yaml(text: str | bytes, name: str = "<document>") -> object:
    """Parse one YAML document; a syntax error becomes a one-line :class:`DocumentError`
    with the file name, line and column, and so does a key given twice in one mapping
    (PyYAML would keep the last) or an alias that contains itself."""
    try:
        loader = _BaseLoader(text)
        try:
            with gc_paused():
                node = loader.get_single_node()
                return None if node is None else _construct(node, loader, set())
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise DocumentError(f"{_mark(name, exc.problem_mark)}: {_problem(exc)}") from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"{name}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise DocumentError(f"{name}: nested too deeply") from None


def _mark(name: str, mark: Any) -> str:
    return f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name


def _problem(exc: yaml.MarkedYAMLError) -> str:
    if isinstance(exc, _StructureError):
        return str(exc.problem)
    return "invalid YAML: " + " ".join(p for p in (exc.context, exc.problem) if p)


class _StructureError(yaml.MarkedYAMLError):
    """Valid YAML that we refuse: a duplicate key, a recursive alias."""


def _construct(node: yaml.Node, loader: Any, active: set[int]) -> object:
    """The Python value of a composed node: plain strings and mappings directly (PyYAML's
    own constructor is several times slower), anything else through the loader."""
    kind, tag = node.__class__, node.tag
    if kind is yaml.ScalarNode and tag == _STR_TAG:
        return node.value
    if not (kind is yaml.MappingNode and tag == _MAP_TAG) and not (
        kind is yaml.SequenceNode and tag == _SEQ_TAG
    ):
        return loader.construct_object(node, deep=True)
    if id(node) in active:
        raise _StructureError(problem="an alias contains itself", problem_mark=node.start_mark)
    active.add(id(node))
    try:
        if kind is yaml.SequenceNode:
            items = []
            for item in node.value:  # not a comprehension: one frame per level, not two
                items.append(_construct(item, loader, active))  # noqa: PERF401
            return items
        if any(k.tag == _MERGE_TAG for k, _ in node.value):
            return loader.construct_object(node, deep=True)  # "<<" merge keys: PyYAML's rules
        out: dict[object, object] = {}
        for key_node, value_node in node.value:
            key = _construct(key_node, loader, active)
            try:
                seen = key in out
            except TypeError:
                raise _StructureError(
                    problem=f"a {type(key).__name__} cannot be a key",
                    problem_mark=key_node.start_mark,
                ) from None
            if seen:
                raise _StructureError(
                    problem=f"the key {key!r} is given twice", problem_mark=key_node.start_mark
                )
            out[key] = _construct(value_node, loader, active)
        return out
    finally:
        active.discard(id(node))


def recorded_revision(text: str | bytes) -> int | None:
    """The revision an ``etcd2yaml`` dump records in its header comment, if any."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    match = _HEADER_RE.match(text.split("\n", 1)[0])
    return int(match["revision"]) if match else None


def document_keys(document: object) -> dict[bytes, bytes]:
    """The keys (relative to the prefix) and values a YAML document stands for.

    Raises:
        DocumentError: the document is not a mapping or holds something without an
            encoding; the message names the path.
    """
    if not isinstance(document, dict):
        kind = "empty" if document is None else f"a {type(document).__name__}"
        raise DocumentError(f"the document is {kind}, not a mapping")
    out: dict[bytes, bytes] = {}
    try:
        with gc_paused():
            _collect(document, (), out)
    except RecursionError:
        raise DocumentError("the document is nested too deeply") from None
    return out


def _segment(key: object, where: str) -> bytes:
    if isinstance(key, str | bytes | int | float | datetime.date):
        segment = encode_value(key, where)
    else:
        raise DocumentError(f"{_at(where)}a {type(key).__name__} cannot be a key")
    if b"/" in segment:
        raise DocumentError(f"{_at(where)}the key {key!r} contains '/'; nest mappings instead")
    return segment


def _show_path(path: tuple[bytes, ...]) -> str:
    return "/".join(s.decode("utf-8", "backslashreplace") for s in path)


def _collect(mapping: Mapping[Any, Any], path: tuple[bytes, ...], out: dict[bytes, bytes]) -> None:
    where = _show_path(path)
    if not mapping and path:
        raise DocumentError(
            f"{_at(where)}an empty mapping or list writes no key (etcd has no directories); "
            "remove it or give it a value"
        )
    seen: set[bytes] = set()
    for key, value in mapping.items():
        if key is None:
            if not path:
                raise DocumentError("a null (~) key at the top level: the prefix has no value")
            if isinstance(value, dict | list):
                raise DocumentError(f"{_at(where)}the null (~) entry must be a scalar")
            out[b"/".join(path)] = encode_value(value, where)
            continue
        segment = _segment(key, where)
        child = (*path, segment)
        if segment in seen:
            raise DocumentError(f"{_at(_show_path(child))}two keys give the same segment")
        seen.add(segment)
        if isinstance(value, list):
            value = {str(i): item for i, item in enumerate(value)}
        if isinstance(value, dict):
            _collect(value, child, out)
        else:
            out[b"/".join(child)] = encode_value(value, _show_path(child))


# --- etcd -> YAML --------------------------------------------------------------------------


@dataclass(slots=True)
class _Node:
    value: bytes | None = None
    children: dict[bytes, _Node] = field(default_factory=dict)


def _order(segment: bytes) -> bytes:
    # the end of the segment's key range: entries complete in this order while paging
    return segment + b"0"


def _write(node: _Node, key: str, indent: str, raw: bool, out: list[str]) -> None:
    """Append the YAML lines of ``key: node`` (``key`` already rendered) at ``indent``."""
    explicit = len(key) > _LONG_KEY
    if explicit:
        out.append(f"{indent}? {key}\n")
        key = ""
    if not node.children:
        assert node.value is not None
        out.append(f"{indent}{key}: {_value(node.value, raw)}\n")
        return
    out.append(f"{indent}{key}:\n")
    inner = indent + "  "
    if node.value is not None:
        out.append(f"{inner}null: {_value(node.value, raw)}\n")
    children = node.children
    for segment in sorted(children, key=_order):
        _write(children[segment], _key(segment), inner, raw, out)


def _value(raw_value: bytes, raw: bool) -> str:
    """Bytes as YAML that reads back to them: ``!!binary`` if not UTF-8, a plain word, the
    canonical rendering of a typed scalar (not with ``raw``), or a double-quoted string."""
    try:
        text = raw_value.decode()
    except UnicodeDecodeError:
        return _binary(raw_value)
    if _PLAIN.match(text) and text not in _NOT_PLAIN:
        return text
    if not raw and text and not isinstance(decode_value(raw_value), str):
        return text  # the canonical rendering of an int, float, bool or date: plain
    return _quoted(text)


def _key(segment: bytes) -> str:
    """A key segment: always a string (or ``!!binary``), never a typed scalar."""
    return _value(segment, raw=True)


def _quoted(text: str) -> str:
    return '"' + _ESCAPE.sub(_escape, text) + '"'


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    known = _ESCAPES.get(char)
    if known is not None:
        return known
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _binary(data: bytes) -> str:
    return '!!binary "' + base64.b64encode(data).decode("ascii") + '"'


async def dump_yaml(
    client: Client,
    prefix: KeyLike,
    stream: TextIO,
    *,
    revision: int = 0,
    raw: bool = False,
    page_size: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write every key under ``prefix`` to ``stream`` as YAML; return the revision read.

    The keys are read page by page at one revision (the current one, or ``revision``),
    so the dump is one consistent snapshot; a top-level entry is written as soon as its
    last key has been read. The first line is a comment recording the prefix and the
    revision (see :func:`recorded_revision`). ``progress`` is called with the number of
    keys read after each page.

    Raises:
        CompactedError: ``revision`` has been compacted.

    Cancellation: each page is a checkpoint; whatever was written stays written. The next
    page is read (in a task of its own) while the current one is written.
    """
    p = key_bytes(prefix)
    root: dict[bytes, _Node] = {}
    count = 0
    wrote = False
    read_at = 0

    def flush(last: bytes | None) -> None:
        # the entries whose keys have all been read: their key range ends at or before `last`
        nonlocal wrote
        ready = [s for s in root if last is None or _order(s) <= last]
        for segment in sorted(ready, key=_order):
            out: list[str] = []
            _write(root.pop(segment), _key(segment), "", raw, out)
            stream.write("".join(out))
            wrote = True

    # the next page is read while this one is written
    send, receive = trio.open_memory_channel[Page](1)

    async def read() -> None:
        async with send:
            async for page in client.range_pages(
                p, prefix=True, revision=revision, page_size=page_size
            ):
                await send.send(page)

    async with open_service_nursery() as nursery, receive:
        nursery.start_soon(read)
        async for page in receive:
            with gc_paused():
                if not read_at:
                    read_at = page.revision
                    stream.write(_HEADER.format(prefix=_show_path((p,)), revision=read_at))
                kvs = page.kvs
                for kv in kvs:
                    segments = kv.key[len(p) :].split(b"/")
                    children = root
                    for segment in segments[:-1]:
                        node = children.get(segment)
                        if node is None:
                            node = children[segment] = _Node()
                        children = node.children
                    # keys come in byte order, so a key comes before every key below it
                    children[segments[-1]] = _Node(kv.value)
                count += len(kvs)
                if kvs:
                    flush(kvs[-1].key[len(p) :])
            if progress is not None:
                progress(count)
    flush(None)
    if not wrote:
        stream.write("{}\n")
    return read_at


# --- YAML -> etcd --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What loading a document under a prefix would change, against the state at
    ``revision``. Keys are full etcd keys."""

    prefix: bytes
    revision: int
    added: list[tuple[bytes, bytes]]  #: (key, value)
    changed: list[tuple[bytes, bytes, bytes]]  #: (key, old value, new value)
    deleted: list[tuple[bytes, bytes]]  #: (key, old value); only with ``prune``
    unchanged: int
    current: dict[bytes, KeyValue] = field(repr=False)

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.deleted)

    def operations(self) -> list[Put | Delete]:
        """The puts (added and changed keys) and deletes, in key order."""
        ops: list[Put | Delete] = [Put(k, v) for k, v in self.added]
        ops.extend(Put(k, new) for k, _, new in self.changed)
        ops.extend(Delete(k) for k, _ in self.deleted)
        ops.sort(key=lambda op: op.key)
        return ops

    def diff(self) -> list[str]:
        """The changes as lines, in key order: ``+ key = value``, ``~ key = new (was
        old)``, ``- key (was old)``, keys relative to the prefix (see :func:`show`)."""
        lines: list[tuple[bytes, str]] = []
        n = len(self.prefix)
        for key, value in self.added:
            lines.append((key, f"+ {show(key[n:])} = {show(value)}"))
        for key, old, new in self.changed:
            lines.append((key, f"~ {show(key[n:])} = {show(new)} (was {show(old)})"))
        for key, old in self.deleted:
            lines.append((key, f"- {show(key[n:])} (was {show(old)})"))
        return [line for _, line in sorted(lines)]

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.deleted)} deleted, {self.unchanged} unchanged"
        )


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What :func:`load_yaml` did: the plan, the revision of the last transaction (the
    plan's revision if nothing was written), and how many transactions it took."""

    plan: LoadPlan
    revision: int
    transactions: int


def show(data: bytes) -> str:
    """Bytes for a one-line display: the text if it is printable UTF-8, else a quoted,
    escaped form (``"a\\nb"``, ``b'\\xff'``)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return repr(data)
    if text and text.isprintable() and text.strip() == text:
        return text
    return '"' + text.encode("unicode_escape").decode().replace('"', '\\"') + '"'


async def plan_load(
    client: Client,
    prefix: KeyLike,
    document: object,
    *,
    prune: bool = False,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> LoadPlan:
    """Compare a YAML document with what is under ``prefix`` now (one consistent read).

    Raises:
        DocumentError: the document cannot be written (see :func:`document_keys`), or a
            key and value are larger than ``max_request_bytes`` (etcd would refuse them).
    """
    p = key_bytes(prefix)
    with gc_paused():
        wanted = {p + rel: value for rel, value in document_keys(document).items()}
    limit = max_request_bytes - _REQUEST_MARGIN
    for key, value in wanted.items():
        if len(key) + len(value) > limit:
            raise DocumentError(
                f"at {_show_path((key[len(p) :],))!r}: the value is {len(value)} bytes, more "
                f"than etcd accepts in one request (--max-request-bytes {max_request_bytes})"
            )
    current: dict[bytes, KeyValue] = {}
    revision = 0
    async for page in client.range_pages(p, prefix=True):
        revision = page.revision
        current.update((kv.key, kv) for kv in page.kvs)
    added: list[tuple[bytes, bytes]] = []
    changed: list[tuple[bytes, bytes, bytes]] = []
    unchanged = 0
    with gc_paused():
        for key in sorted(wanted):
            value = wanted[key]
            kv = current.get(key)
            if kv is None:
                added.append((key, value))
            elif kv.value != value:
                changed.append((key, kv.value, value))
            else:
                unchanged += 1
        deleted = [(k, kv.value) for k, kv in current.items() if k not in wanted] if prune else []
    return LoadPlan(p, revision, added, changed, deleted, unchanged, current)


async def load_yaml(
    client: Client,
    prefix: KeyLike,
    document: object,
    *,
    prune: bool = False,
    if_revision: int = 0,
    atomic: bool = False,
    dry_run: bool = False,
    max_txn_ops: int = MAX_TXN_OPS,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    concurrency: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> LoadResult:
    """Write a YAML document's keys under ``prefix``: added and changed keys, and with
    ``prune`` the deletion of keys the document does not have.

    The changes go in one transaction guarded by "no key under the prefix was created or
    changed since the read" (or since ``if_revision``), when they fit ``max_txn_ops`` and
    ``max_request_bytes``. Otherwise they go, in key order, in several transactions that
    split the prefix into consecutive key ranges, each guarded by "no key in my range was
    created or changed since the read"; ``concurrency`` of them are in flight at a time.
    Each guard reads only its own range, so a large load costs etcd time in proportion to
    its size. If someone else writes in a range not yet loaded, the load stops: no further
    transaction starts, those in flight finish, and :class:`ConflictError` says how many
    were applied; they stay applied (a partial load). ``atomic`` refuses to split
    (:class:`TooLargeError`). ``progress(done, total)`` is called as transactions apply.

    ``if_revision``: apply only if nothing under the prefix changed since that revision
    (checked against the history at that revision: keys changed, created or deleted).
    ``dry_run``: compute and return the plan, write nothing.

    Not detected: a key the load does not touch, deleted by another client between the
    read and the commit.

    Raises:
        DocumentError: the document cannot be written; nothing was written.
        ConflictError: a guard failed; nothing (or, chunked, some chunks) written.
        TooLargeError: ``atomic`` and the load does not fit one transaction.
        CompactedError: ``if_revision`` is compacted, so it cannot be checked.
        EtcdError: a transaction failed otherwise (the server unavailable, ...); as with a
            conflict the others in flight finish first, and a note on the error says how
            many transactions were applied.

    Cancellation: a checkpoint; cancelled while committing, the transactions in flight
    may have been applied (chunked: the ones reported through ``progress`` are).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    plan = await plan_load(
        client, prefix, document, prune=prune, max_request_bytes=max_request_bytes
    )
    base = plan.revision
    if if_revision:
        await _check_unchanged(client, plan, if_revision)
        base = if_revision
    if dry_run or plan.empty:
        return LoadResult(plan, plan.revision, 0)
    with gc_paused():
        chunks = _chunks(plan.operations(), max_txn_ops, max_request_bytes - _REQUEST_MARGIN)
    if atomic and len(chunks) > 1:
        n = sum(len(c) for c in chunks)
        raise TooLargeError(
            f"{n} operations do not fit one transaction (at most {max_txn_ops} operations "
            f"and {max_request_bytes} bytes); refusing to split them (atomic): nothing written"
        )
    # chunk i guards [its first key, the next chunk's first key); the ends reach the prefix's
    bounds = [plan.prefix, *(ops[0].key for ops in chunks[1:]), prefix_end(plan.prefix)]
    slots = trio.Semaphore(concurrency)
    applied: list[int] = []  # the revisions of the transactions applied
    failed: list[Exception | TxnResult] = []  # the first error or failed guard

    async def commit(i: int) -> None:
        try:
            guard = Compare.mod_revision(bounds[i], range_end=bounds[i + 1]) < base + 1
            result = await client.txn([guard], chunks[i])
        except Exception as exc:
            failed.append(exc)
            return
        finally:
            slots.release()
        if not result.succeeded:
            failed.append(result)
            return
        applied.append(result.revision)
        if progress is not None:
            progress(len(applied), len(chunks))

    async with trio.open_nursery() as nursery:
        for i in range(len(chunks)):
            await slots.acquire()  # in key order
            if failed:
                break
            nursery.start_soon(commit, i)
    if failed:
        done = f"{len(applied)} of {len(chunks)} transactions were applied"
        first = failed[0]
        if isinstance(first, Exception):
            first.add_note(f"loading under {show(plan.prefix)}: {done}")
            raise first
        raise ConflictError(
            f"a key under the prefix changed since revision {base}: "
            + (done if applied else "nothing written"),
            conflicts={},
            revision=first.revision,
            request="load",
        )
    return LoadResult(plan, max(applied), len(chunks))


async def _check_unchanged(client: Client, plan: LoadPlan, since: int) -> None:
    changed = sorted(k for k, kv in plan.current.items() if kv.mod_revision > since)
    if not changed:
        async for page in client.range_pages(
            plan.prefix, prefix=True, revision=since, keys_only=True
        ):
            changed.extend(kv.key for kv in page.kvs if kv.key not in plan.current)
    if changed:
        key = show(changed[0][len(plan.prefix) :])
        raise ConflictError(
            f"{key} (and {len(changed) - 1} more) changed since revision {since}: nothing written"
            if len(changed) > 1
            else f"{key} changed since revision {since}: nothing written",
            conflicts={k: plan.current.get(k) for k in changed},
            revision=plan.revision,
            request="load",
        )


def _chunks(ops: Iterable[Put | Delete], max_ops: int, max_bytes: int) -> list[list[Put | Delete]]:
    chunks: list[list[Put | Delete]] = [[]]
    size = 0
    for op in ops:
        n = len(op.key) + _OP_OVERHEAD + (len(op.value) if isinstance(op, Put) else 0)
        if chunks[-1] and (len(chunks[-1]) >= max_ops or size + n > max_bytes):
            chunks.append([])
            size = 0
        chunks[-1].append(op)
        size += n
    return chunks
