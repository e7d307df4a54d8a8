"""The viewer's model: what the tree view, the status line and the detail pane show.

Pure: it reads a mounted tree (reading nodes never does I/O), takes the time as an argument
and imports neither Textual nor trio, so it is tested without a terminal. The Textual layer
draws ``rows`` (``viewer_treeview``) and calls ``apply`` once per frame (``viewer_app``) with
the updates that arrived since the last one.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from trio_etcd_tree import ChangeKind, MountState, Node, Root, Update
from trio_etcd_tree._core.keys import show_bytes

__all__ = [
    "HIGHLIGHT_SECONDS",
    "RateMeter",
    "Row",
    "TreeModel",
    "detail_text",
    "parse_path",
    "pretty_value",
    "state_label",
    "status_text",
]

HIGHLIGHT_SECONDS = 3.0
"""How long the highlight on a changed key takes to fade."""

Path = tuple[str, ...]

_STATE_LABELS = {
    MountState.SYNCED: "synced",
    MountState.DISCONNECTED: "reconnecting",
    MountState.RESYNCING: "resyncing",
    MountState.CLOSED: "closed",
}


@dataclass(frozen=True, slots=True)
class Row:
    """One visible line of the tree: a node, its depth, its path from the mount."""

    node: Node
    depth: int
    path: Path


class RateMeter:
    """Changes per second over a sliding window."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._events: deque[tuple[float, int]] = deque()
        self._total = 0

    def add(self, now: float, count: int) -> None:
        self._events.append((now, count))
        self._total += count

    def rate(self, now: float) -> float:
        events = self._events
        while events and events[0][0] <= now - self.window:
            self._total -= events.popleft()[1]
        return self._total / self.window


class TreeModel:
    """The visible rows of a mounted tree, the cursor, expansion, filter and highlights.

    The root is the first row and is always open; every other node starts collapsed. With
    a filter only the nodes whose path contains it (and their ancestors) show, all open.
    """

    def __init__(self, root: Root, label: str = "/") -> None:
        self.root = root
        self.label = label
        self.expanded: set[Path] = set()
        self.filter = ""
        self.highlights: dict[Path, float] = {}
        self.cursor_path: Path = ()
        self.rate = RateMeter()
        self.changes_seen = 0
        self._rows: list[Row] | None = None
        self._index: dict[Path, int] = {}

    # --- rows ------------------------------------------------------------------------------

    @property
    def rows(self) -> list[Row]:
        if self._rows is None:
            self._rows = self._build()
            self._index = {row.path: i for i, row in enumerate(self._rows)}
            self.cursor_path = self._rows[self._nearest(self.cursor_path)].path
        return self._rows

    @property
    def cursor(self) -> int:
        self.rows  # noqa: B018 -- builds the index
        return self._index[self.cursor_path]

    @property
    def current(self) -> Row:
        return self.rows[self.cursor]

    def invalidate(self) -> None:
        """The tree's shape changed: rebuild the rows when next asked."""
        self._rows = None

    def _nearest(self, path: Path) -> int:
        """The index of ``path``'s row, or of its nearest visible ancestor."""
        for k in range(len(path), -1, -1):
            index = self._index.get(path[:k])
            if index is not None:
                return index
        return 0  # pragma: no cover -- the root's row is always there

    def _build(self) -> list[Row]:
        rows = [Row(self.root, 0, ())]
        shown = self._matching() if self.filter else None
        expanded = self.expanded

        def visit(node: Node, path: Path, depth: int) -> None:
            for name, child in node.items():
                sub = (*path, name)
                if shown is not None and sub not in shown:
                    continue
                rows.append(Row(child, depth, sub))
                if len(child) and (shown is not None or sub in expanded):
                    visit(child, sub, depth + 1)

        visit(self.root, (), 1)
        return rows

    def _matching(self) -> set[Path]:
        """Paths containing the filter (case-insensitively), and their ancestors."""
        needle = self.filter.lower()
        shown: set[Path] = set()
        for node in self.root.walk():
            path = node.path
            if needle in "/".join(path).lower():
                for k in range(len(path), 0, -1):
                    if path[:k] in shown:
                        break
                    shown.add(path[:k])
        return shown

    # --- moving and opening --------------------------------------------------------------------

    def move(self, delta: int) -> None:
        rows = self.rows
        index = max(0, min(len(rows) - 1, self.cursor + delta))
        self.cursor_path = rows[index].path

    def is_open(self, row: Row) -> bool:
        return not row.path or bool(self.filter) or row.path in self.expanded

    def expand(self) -> None:
        """Open the current node; if it is open, go to its first child."""
        row = self.current
        if not len(row.node):
            return
        if self.is_open(row):
            self.move(1)
        else:
            self.expanded.add(row.path)
            self.invalidate()

    def collapse(self) -> None:
        """Close the current node; if it is closed (or a leaf), go to its parent."""
        row = self.current
        if row.path in self.expanded and not self.filter:
            self.expanded.discard(row.path)
            self.invalidate()
        elif row.path:
            self.cursor_path = row.path[:-1]

    def toggle(self) -> None:
        row = self.current
        if row.path in self.expanded:
            self.collapse()
        else:
            self.expand()

    def set_filter(self, text: str) -> None:
        self.filter = text
        self.invalidate()

    def jump(self, path: Path) -> bool:
        """Open the way to ``path`` and put the cursor on it (or on the nearest existing
        ancestor); whether it exists."""
        node: Node = self.root
        found: list[str] = []
        for name in path:
            child = node.get(name)
            if child is None:
                break
            found.append(name)
            node = child
        target = tuple(found)
        for k in range(1, len(target)):
            self.expanded.add(target[:k])
        if self.filter and target not in self._matching():
            self.filter = ""
        self.invalidate()
        self.cursor_path = target
        return len(found) == len(path)

    # --- changes ---------------------------------------------------------------------------

    def apply(self, updates: Iterable[Update], now: float) -> int:
        """Take a frame's updates: highlight what changed; return how many changes."""
        count = 0
        structural = False
        highlights = self.highlights
        for update in updates:
            for change in update.changes:
                highlights[change.path] = now
                count += 1
                if change.kind is not ChangeKind.MODIFIED:
                    structural = True
        if structural:
            self.invalidate()
        if count:
            self.rate.add(now, count)
            self.changes_seen += count
        return count

    def heat(self, now: float) -> dict[Path, float]:
        """How strongly each visible row glows (1 just changed, fading to 0): a change
        below a closed node, or of a deleted key, lights its nearest visible ancestor."""
        self.rows  # noqa: B018 -- builds the index
        index = self._index
        result: dict[Path, float] = {}
        expired = []
        for path, when in self.highlights.items():
            level = 1.0 - (now - when) / HIGHLIGHT_SECONDS
            if level <= 0:
                expired.append(path)
                continue
            k = len(path)
            while path[:k] not in index:  # ends at the root's row, always there
                k -= 1
            shown = path[:k]
            result[shown] = max(result.get(shown, 0.0), level)
        for path in expired:
            del self.highlights[path]
        return result

    # --- drawing -----------------------------------------------------------------------------

    def cells(self, row: Row) -> tuple[str, str, str, str]:
        """A row's columns: key (indented, with its marker and child count), value,
        mod revision, lease."""
        node = row.node
        children = len(node)
        marker = ("▾ " if self.is_open(row) else "▸ ") if children else "  "
        name = self.label if not row.path else (row.path[-1] or '""')
        key = "  " * row.depth + marker + name + (f" ({children})" if children else "")
        raw = node.raw
        value = "" if raw is None else _preview(raw)
        revision = str(node.mod_revision) if raw is not None else ""
        lease = f"{node.lease:x}" if node.lease else ""
        return key, value, revision, lease


def _preview(raw: bytes, limit: int = 200) -> str:
    """A value on one line: text as it is (line breaks as ⏎), binary as escaped bytes."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return show_bytes(raw[: limit * 4])[:limit]
    return text[: limit * 4].replace("\r", "").replace("\n", "⏎")[:limit]


def parse_path(text: str, prefix: bytes) -> Path:
    """A path typed by the user: relative (``db/port``), or the full key (``/cfg/db/port``
    for a mount of ``/cfg``)."""
    full = prefix.decode("utf-8", "surrogateescape")
    if full and (text == full or text.startswith(full + "/")):
        text = text[len(full) + 1 :]
    text = text.strip("/")
    return tuple(text.split("/")) if text else ()


def pretty_value(raw: bytes) -> str:
    """The whole value for the detail pane, indented when it is JSON or YAML structure."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return show_bytes(raw)
    try:
        data = json.loads(text)
    except ValueError:
        pass
    else:
        if isinstance(data, dict | list):
            return json.dumps(data, indent=2, ensure_ascii=False)
        return text
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(data, dict | list) and data:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
    return text


def detail_text(node: Node, key: str, ttl: int | None) -> str:
    """The detail pane: the key, its full value and its metadata. ``ttl`` is the lease's
    remaining time (``None``: not known yet, negative: expired)."""
    lines = [f"key: {key}"]
    if node.raw is None:
        lines.append("(no value)")
    else:
        lines += [
            f"create revision: {node.create_revision}",
            f"mod revision: {node.mod_revision}",
            f"version: {node.version}",
        ]
        if node.lease:
            if ttl is None:
                remaining = "…"
            elif ttl < 0:
                remaining = "expired"
            else:
                remaining = f"{ttl}s left"
            lines.append(f"lease: {node.lease:x} ({remaining})")
        else:
            lines.append("lease: none")
    if len(node):
        lines.append(f"children: {len(node)}")
    if node.raw is not None:
        lines += ["", pretty_value(node.raw)]
    return "\n".join(lines)


def state_label(state: MountState | None, error: str | None) -> str:
    """The connection state as the status line says it."""
    if error is not None:
        return "failed"
    if state is None:
        return "connecting"
    return _STATE_LABELS[state]


def status_text(
    endpoint: str, label: str, revision: int, rate: float, *, since: float, error: str | None
) -> str:
    """The status line: endpoint, state (with how long when not synced), revision, rate."""
    parts = [endpoint or "-", label if label == "synced" else f"{label.upper()} {since:.0f}s"]
    parts.append(f"rev {revision}" if revision else "rev -")
    parts.append(f"{rate:.1f} changes/s" if rate < 10 else f"{rate:.0f} changes/s")
    if error is not None:
        parts.append(error)
    return "  │  ".join(parts)
