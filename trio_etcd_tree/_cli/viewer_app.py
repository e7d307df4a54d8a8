"""The viewer's Textual app, with trio running as a guest on Textual's asyncio loop.

The trio side (:class:`Bridge`) owns the client, the mount and a subscription; updates
are appended to ``Bridge.pending`` and the app takes them once per frame (both run on the
same thread, so a list is all the hand-over needs). The app reads the mounted tree
directly (reading nodes never does I/O) and asks trio to write with :meth:`Bridge.call`.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, TypeVar

import outcome
import trio
from rich.segment import Segment
from rich.style import Style
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.message import Message
from textual.screen import ModalScreen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Input, Label, Static, TextArea

import trio_etcd_tree as et

from .viewer_model import (
    Path,
    TreeModel,
    detail_text,
    parse_path,
    state_label,
    status_text,
)

__all__ = ["Bridge", "ViewerApp"]

T = TypeVar("T")
FRAME = 1 / 30
"""Seconds between frames: updates are applied and the screen redrawn in batches."""
LEASE_REFRESH = 5.0
"""Seconds after which a shown lease's TTL is asked for again."""


class Bridge:
    """The trio side: connect, mount, subscribe, and run the app's requests.

    Args:
        connect: ``async with connect() as client`` opens the client (in trio).
        prefix: what to mount.
        setup: run once with the client before mounting (loads ``--embedded`` data).
        buffer: the subscription's buffer (it is cut off and renewed if it overflows).
    """

    def __init__(
        self,
        connect: Callable[[], AbstractAsyncContextManager[et.Client]],
        prefix: str,
        *,
        setup: Callable[[et.Client], Awaitable[None]] | None = None,
        buffer: int = 100_000,
    ) -> None:
        self._connect = connect
        self.prefix = prefix
        self._setup = setup
        self._buffer = buffer
        self.pending: list[et.Update] = []
        self.overflows = 0
        self.client: et.Client | None = None
        self.root: et.Root | None = None
        self.error: str | None = None
        self.outcome: outcome.Outcome[None] | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        self._finished = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the host side ---------------------------------------------------------------------

    def start(self) -> None:
        """Start trio as a guest of the running asyncio loop."""
        loop = self._loop = asyncio.get_running_loop()
        trio.lowlevel.start_guest_run(
            self._main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=self._done,
            host_uses_signal_set_wakeup_fd=True,
        )

    def take(self) -> list[et.Update]:
        """The updates since the last call."""
        pending, self.pending = self.pending, []
        return pending

    def call(self, fn: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Run ``fn()`` in trio; its result (or exception) arrives in the future. The
        future is cancelled if trio shuts down first."""
        assert self._loop is not None
        future: asyncio.Future[T] = self._loop.create_future()
        if self._token is None or self._nursery is None:
            future.set_exception(RuntimeError("not connected"))
            return future
        self._token.run_sync_soon(self._start_call, fn, future)
        return future

    async def stop(self) -> None:
        """Cancel everything in trio and wait until trio has finished."""
        if self._loop is None:
            return
        self._stopping = True
        if self._token is not None and self._scope is not None:
            try:
                self._token.run_sync_soon(self._scope.cancel)
            except trio.RunFinishedError:
                pass
        await self._finished.wait()

    def _done(self, result: outcome.Outcome[None]) -> None:
        self.outcome = result
        self._finished.set()

    # --- the trio side -----------------------------------------------------------------------

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._scope:
            if self._stopping:
                self._scope.cancel()
            try:
                async with self._connect() as client:
                    self.client = client
                    if self._setup is not None:
                        await self._setup(client)
                    async with et.mount(client, self.prefix) as root:
                        async with trio.open_nursery() as nursery:
                            self._nursery = nursery
                            await self._follow(root)
                            self.root = None
            except Exception as exc:  # shown in the status line; the app stays up
                self.error = f"{type(exc).__name__}: {exc}"
            finally:
                self._nursery = None

    async def _follow(self, root: et.Root) -> None:
        while True:
            try:
                async with root.subscribe(buffer=self._buffer) as updates:
                    self.root = root
                    async for update in updates:
                        self.pending.append(update)
                return
            except et.SubscriptionOverflow:
                self.overflows += 1

    def _start_call(self, fn: Callable[[], Awaitable[T]], future: asyncio.Future[T]) -> None:
        if self._nursery is None:
            _settle(future, RuntimeError("not connected"))
            return
        self._nursery.start_soon(self._run_call, fn, future)

    async def _run_call(self, fn: Callable[[], Awaitable[T]], future: asyncio.Future[T]) -> None:
        assert self._loop is not None
        try:
            result = await fn()
        except trio.Cancelled:
            self._loop.call_soon_threadsafe(future.cancel)
            raise
        except Exception as exc:
            self._loop.call_soon_threadsafe(_settle, future, exc)
        else:
            self._loop.call_soon_threadsafe(_settle, future, None, result)


def _settle(future: asyncio.Future[Any], exc: BaseException | None, result: Any = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


# --- writes, run in trio ----------------------------------------------------------------------


def _conflict(root: et.Root, path: Path, node: et.Node | None) -> et.ConflictError:
    key = root.key_of(path)
    current = None if node is None else node.kv
    what = "gone" if current is None else f"now at revision {current.mod_revision}"
    return et.ConflictError(
        f"changed since you read it: {key!r} ({what})",
        conflicts={key: current},
        revision=root.revision,
    )


def _find(root: et.Root, path: Path) -> et.Node | None:
    try:
        return root.lookup(path)
    except KeyError:
        return None


async def write_value(root: et.Root, path: Path, text: str, expected: int) -> int:
    """Write ``text`` at ``path`` if the key is still at mod revision ``expected`` (0: if it
    still does not exist). A guarded ``node.set``: the tree's check catches changes it has
    already seen, etcd's guard those still on the way."""
    node = _find(root, path)
    current = node.mod_revision if node is not None else 0
    if current != expected:
        raise _conflict(root, path, node)
    return await root.set(path, text)


async def delete_key(
    root: et.Root, path: Path, expected: int, *, recursive: bool, seen: int
) -> int:
    """Delete the key at ``path`` (with ``recursive`` the subtree too) if the key is still
    at ``expected`` and nothing below changed after revision ``seen``."""
    node = _find(root, path)
    if node is None or node.mod_revision != expected:
        raise _conflict(root, path, node)
    if recursive:
        for below in node.walk():
            if below.mod_revision > seen:
                raise _conflict(root, below.path, below)
    if not recursive and node.raw is None:
        raise LookupError("the node has no value; delete the subtree")
    return await node.delete(recursive=recursive)


# --- widgets ------------------------------------------------------------------------------------


class Moved(Message):
    """The cursor moved (or the rows changed under it)."""


class TreeView(ScrollView, can_focus=True):
    """The tree, drawn line by line: only the visible rows cost anything."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "up", show=False),
        Binding("down,j", "move(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "move(-1000000000)", "top", show=False),
        Binding("end", "move(1000000000)", "bottom", show=False),
        Binding("right,l", "expand", "open", show=False),
        Binding("left,h", "collapse", "close", show=False),
        Binding("space,enter", "flip", "open/close"),
    ]

    def __init__(self, model: TreeModel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.heat: dict[Path, float] = {}
        self.render_seconds = 0.0

    def sync(self) -> None:
        """The rows may have changed: fix the scroll size and keep the cursor in view."""
        rows = self.model.rows
        self.virtual_size = Size(self.size.width, len(rows) + 1)  # + the header line
        cursor = self.model.cursor
        top = round(self.scroll_y)
        height = max(1, self.scrollable_content_region.height - 1)
        if cursor < top:
            self.scroll_target_y = self.scroll_y = cursor
        elif cursor >= top + height:
            self.scroll_target_y = self.scroll_y = cursor - height + 1
        self.refresh()

    def _changed(self) -> None:
        self.sync()
        self.post_message(Moved())

    def action_move(self, delta: int) -> None:
        self.model.move(delta)
        self._changed()

    def action_page(self, direction: int) -> None:
        self.model.move(direction * max(1, self.scrollable_content_region.height - 2))
        self._changed()

    def action_expand(self) -> None:
        self.model.expand()
        self._changed()

    def action_collapse(self) -> None:
        self.model.collapse()
        self._changed()

    def action_flip(self) -> None:
        self.model.toggle()
        self._changed()

    def render_line(self, y: int) -> Strip:
        started = time.perf_counter()
        width = self.scrollable_content_region.width
        rows = self.model.rows
        index = round(self.scroll_y) + y - 1  # line 0 is the header, which does not scroll
        key_width, value_width = _columns(width)
        if y == 0:
            strip = self._header(width, key_width, value_width)
        elif index >= len(rows):
            strip = Strip.blank(width)
        else:
            row = rows[index]
            key, value, revision, lease = self.model.cells(row)
            text = (
                f"{key[: key_width - 1]:<{key_width}}{value[: value_width - 1]:<{value_width}}"
                f"{revision:>8} {lease[:8]:>8} "
            )[:width]
            level = self.heat.get(row.path, 0.0)
            style = Style()
            if level > 0:
                style = _heat_style(level)
            if index == self.model.cursor:
                style += Style(reverse=True, bold=self.has_focus)
            strip = Strip([Segment(text.ljust(width), style)], width)
        self.render_seconds += time.perf_counter() - started
        return strip

    @staticmethod
    def _header(width: int, key_width: int, value_width: int) -> Strip:
        """The column names, and the legend of the highlight when there is room."""
        head = Style(bold=True, underline=True)
        legend = " just changed "  # the highlight fades over three seconds
        segments = [Segment("key", head), Segment(" " * (key_width - 3)), Segment("value", head)]
        rest = max(0, value_width - 5)
        if rest >= len(legend) + 2:
            segments += [
                Segment(" " * (rest - len(legend) - 1)),
                Segment(legend, _heat_style(1)),
                Segment(" "),
            ]
        else:
            segments.append(Segment(" " * rest))
        segments += [
            Segment(" "),
            Segment("mod rev", head),
            Segment("    "),
            Segment("lease", head),
        ]
        return Strip(segments).crop(0, width).extend_cell_length(width)


def _columns(width: int) -> tuple[int, int]:
    """The widths of the key and value columns (the mod revision and lease take 18)."""
    key_width = max(10, min(48, (width - 18) // 2))
    return key_width, max(0, width - key_width - 18)


def _heat_style(level: float) -> Style:
    """The highlight of a change, ``level`` from 1 (just now) fading to 0."""
    return Style(bgcolor=f"rgb({int(40 + 140 * level)},{int(30 + 110 * level)},0)")


class EditScreen(ModalScreen[tuple[str, str] | None]):
    """Edit a value (and, when adding, the key's path). ctrl+s saves, escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "save", priority=True),
        Binding("escape", "cancel", "cancel", priority=True),
    ]

    def __init__(self, title: str, value: str, path: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            if self.path is not None:
                yield Input(self.path, placeholder="path below the selected node", id="path")
            yield TextArea(self.value, id="value")
            yield Label("ctrl+s save · escape cancel")

    def on_mount(self) -> None:
        self.query_one("#path" if self.path is not None else "#value").focus()

    def action_save(self) -> None:
        path = self.query_one("#path", Input).value if self.path is not None else ""
        self.dismiss((path, self.query_one("#value", TextArea).text))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceScreen(ModalScreen[str]):
    """A question with keyed answers: ``choices`` maps a key to its answer's label; escape
    answers ``"escape"``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "choose('escape')", "cancel", priority=True)
    ]

    def __init__(self, title: str, body: str, choices: dict[str, str]) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield Static(self.body, id="choice-body", markup=False)
            yield Label("  ·  ".join(f"{k}: {v}" for k, v in self.choices.items()))

    def on_key(self, event: Any) -> None:
        if event.key in self.choices:
            event.stop()
            self.dismiss(event.key)

    def action_choose(self, key: str) -> None:
        self.dismiss(key)


# --- the app ------------------------------------------------------------------------------------


class ViewerApp(App[None]):
    """``etcd-tree``: a live view of a mounted etcd subtree (see docs/viewer.rst)."""

    TITLE = "etcd-tree"
    CSS = """
    #main { height: 1fr; }
    TreeView { width: 3fr; }
    #detail-box { width: 2fr; border-left: solid $primary; padding: 0 1; }
    #status { height: 1; background: $primary-background; }
    #status.bad { background: $error; color: $text; }
    #prompt { dock: bottom; display: none; }
    #prompt.active { display: block; }
    #dialog { width: 80%; height: auto; max-height: 90%; padding: 1 2;
              border: thick $primary; background: $surface; }
    ModalScreen { align: center middle; }
    #value { height: 12; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        Binding("slash", "prompt('filter')", "filter"),
        Binding("g", "prompt('jump')", "jump"),
        Binding("e", "edit", "edit"),
        Binding("a", "add", "add"),
        Binding("d", "delete", "delete"),
        Binding("escape", "clear_filter", "clear filter", show=False),
    ]

    def __init__(self, bridge: Bridge, *, read_only: bool = False) -> None:
        super().__init__()
        self.bridge = bridge
        self.read_only = read_only
        self.model: TreeModel | None = None
        self.frame_seconds: list[float] = []
        self._prompt_mode = ""
        self._label = ""
        self._label_since = time.monotonic()
        self._leases: dict[int, tuple[int, float]] = {}
        self._asked: set[int] = set()
        self._detail = ""
        self._overflows = 0
        self._placeholder = Static("connecting…", id="tree-placeholder")
        self._detail_view = Static("", id="detail", markup=False)
        self._status = Static("", id="status", markup=False)
        self._prompt = Input(id="prompt")
        self.tree_view: TreeView | None = None

    # --- layout and life -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # kept as attributes: while a dialog is up, queries go to the dialog's screen
        with Horizontal(id="main") as self._main:
            yield self._placeholder
            with Vertical(id="detail-box"):
                yield self._detail_view
        yield self._status
        yield self._prompt
        yield Footer()

    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal)
        self.bridge.start()
        self.set_interval(FRAME, self.frame)
        self.frame()

    async def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await self.bridge.stop()

    def _on_signal(self) -> None:
        self.run_worker(self.action_quit())

    async def action_quit(self) -> None:
        await self.bridge.stop()
        self.exit()

    # --- frames ----------------------------------------------------------------------------

    def frame(self) -> None:
        """Take the updates since the last frame, then redraw what changed."""
        started = time.perf_counter()
        now = time.monotonic()
        bridge = self.bridge
        model = self.model
        if model is None and bridge.root is not None:
            model = self._start_tree(bridge.root)
        if model is not None:
            if bridge.overflows != self._overflows:
                self._overflows = bridge.overflows  # updates were lost: redraw all
                model.invalidate()
            changed = model.apply(bridge.take(), now)
            tree = self.tree_view
            assert tree is not None
            heat = model.heat(now)
            if changed or heat or tree.heat:
                tree.heat = heat
                tree.sync()
            if changed:
                self.show_detail()
        self.show_status(now)
        if model is not None and model.current.node.lease:
            self.show_detail()
        self.frame_seconds.append(time.perf_counter() - started)
        del self.frame_seconds[:-1000]

    def _start_tree(self, root: et.Root) -> TreeModel:
        model = self.model = TreeModel(root, root.prefix.decode("utf-8", "replace") or "/")
        tree = self.tree_view = TreeView(model, id="tree")
        self._main.mount(tree, before=self._placeholder)
        self._placeholder.remove()
        tree.focus()
        self.show_detail()
        return model

    def show_status(self, now: float) -> None:
        bridge = self.bridge
        root = bridge.root
        label = state_label(root.state if root is not None else None, bridge.error)
        if label != self._label:
            self._label, self._label_since = label, now
        model = self.model
        text = status_text(
            bridge.client.endpoint if bridge.client is not None else "",
            label,
            root.revision if root is not None else 0,
            model.rate.rate(now) if model is not None else 0.0,
            since=now - self._label_since,
            error=bridge.error,
        )
        status = self._status
        status.update(text)
        status.set_class(label != "synced", "bad")

    def show_detail(self) -> None:
        model = self.model
        assert model is not None
        node = model.current.node
        ttl = None
        if node.lease:
            known = self._leases.get(node.lease)
            if known is not None:
                ttl = known[0] - int(time.monotonic() - known[1]) if known[0] >= 0 else -1
            if known is None or time.monotonic() - known[1] > LEASE_REFRESH:
                self._ask_lease(node.lease)
        key = (model.root.key_of(model.current.path)).decode("utf-8", "replace")
        text = detail_text(node, key, ttl)
        if text != self._detail:
            self._detail = text
            self._detail_view.update(text)

    def _ask_lease(self, lease: int) -> None:
        client = self.bridge.client
        if lease in self._asked or client is None:
            return
        self._asked.add(lease)
        future = self.bridge.call(lambda: client.lease_time_to_live(lease))

        def got(done: asyncio.Future[et.LeaseInfo]) -> None:
            self._asked.discard(lease)
            if not done.cancelled() and done.exception() is None:
                self._leases[lease] = (done.result().ttl, time.monotonic())

        future.add_done_callback(got)

    def on_moved(self, message: Moved) -> None:
        self.show_detail()

    # --- search and jump ---------------------------------------------------------------------

    def action_prompt(self, mode: str) -> None:
        if self.model is None:
            return
        prompt = self._prompt
        self._prompt_mode = mode
        prompt.placeholder = "filter keys containing…" if mode == "filter" else "jump to path…"
        prompt.value = self.model.filter if mode == "filter" else ""
        prompt.add_class("active")
        prompt.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "prompt" and self._prompt_mode == "filter" and self.model:
            self.model.set_filter(event.value)
            self._tree().sync()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "prompt":
            return
        model = self.model
        assert model is not None
        if self._prompt_mode == "jump":
            path = parse_path(event.value, model.root.key_of(()))
            if not model.jump(path):
                self.notify(f"no key {event.value!r}; showing the nearest", severity="warning")
        event.input.remove_class("active")
        tree = self._tree()
        tree.focus()
        tree.sync()
        self.show_detail()

    def _tree(self) -> TreeView:
        assert self.tree_view is not None
        return self.tree_view

    def action_clear_filter(self) -> None:
        prompt = self._prompt
        prompt.remove_class("active")
        if self.model is not None:
            self.model.set_filter("")
            tree = self._tree()
            tree.focus()
            tree.sync()

    # --- editing -----------------------------------------------------------------------------

    def _writable(self) -> et.Root | None:
        if self.read_only:
            self.notify("read-only: started with --read-only", severity="warning")
            return None
        return self.bridge.root if self.model is not None else None

    def action_edit(self) -> None:
        root = self._writable()
        if root is None:
            return
        assert self.model is not None
        row = self.model.current
        node = row.node
        text = "" if node.raw is None else node.raw.decode("utf-8", "replace")
        expected = node.mod_revision
        path = row.path

        def done(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                self._write(root, path, answer[1], expected)

        self.push_screen(EditScreen(f"edit {self._show(path)}", text), done)

    def action_add(self) -> None:
        root = self._writable()
        if root is None:
            return
        assert self.model is not None
        base = self.model.current.path

        def done(answer: tuple[str, str] | None) -> None:
            if answer is None:
                return
            path = base + parse_path(answer[0], b"")
            if path == base:
                self.notify("give the new key a name", severity="error")
                return
            self._write(root, path, answer[1], 0)

        self.push_screen(EditScreen(f"add a key below {self._show(base)}", "", ""), done)

    def action_delete(self) -> None:
        root = self._writable()
        if root is None:
            return
        assert self.model is not None
        row = self.model.current
        node = row.node
        path, expected, seen = row.path, node.mod_revision, root.revision
        choices = {"k": "delete the key"} if node.raw is not None else {}
        if len(node):
            choices["s"] = f"delete the subtree ({sum(1 for _ in node.walk())} nodes)"
        choices["n"] = "keep it"

        def done(answer: str | None) -> None:
            if answer in ("k", "s"):
                self._delete(root, path, expected, recursive=answer == "s", seen=seen)

        body = detail_text(node, self._show(path), None)
        self.push_screen(ChoiceScreen(f"delete {self._show(path)}?", body, choices), done)

    def _show(self, path: Path) -> str:
        assert self.model is not None
        return self.model.root.key_of(path).decode("utf-8", "replace") or "/"

    def _write(self, root: et.Root, path: Path, text: str, expected: int) -> None:
        future = self.bridge.call(lambda: write_value(root, path, text, expected))

        def retry(current: int) -> None:
            self._write(root, path, text, current)

        self._finish(future, path, text, retry, f"wrote {self._show(path)}")

    def _delete(
        self, root: et.Root, path: Path, expected: int, *, recursive: bool, seen: int
    ) -> None:
        future = self.bridge.call(
            lambda: delete_key(root, path, expected, recursive=recursive, seen=seen)
        )

        def retry(current: int) -> None:  # delete what the tree shows now
            node = _find(root, path)
            now = 0 if node is None else node.mod_revision
            self._delete(root, path, now, recursive=recursive, seen=root.revision)

        self._finish(future, path, None, retry, f"deleted {self._show(path)}")

    def _finish(
        self,
        future: asyncio.Future[int],
        path: Path,
        mine: str | None,
        retry: Callable[[int], None],
        success: str,
    ) -> None:
        def done(result: asyncio.Future[int]) -> None:
            if result.cancelled():
                return
            exc = result.exception()
            if exc is None:
                self.notify(f"{success} (revision {result.result()})")
            elif isinstance(exc, et.ConflictError):
                self._conflict(exc, path, mine, retry)
            else:
                self.notify(f"{type(exc).__name__}: {exc}", severity="error")

        future.add_done_callback(done)

    def _conflict(
        self,
        exc: et.ConflictError,
        path: Path,
        mine: str | None,
        retry: Callable[[int], None],
    ) -> None:
        current = exc.current
        theirs = "(deleted)" if current is None else current.value.decode("utf-8", "replace")
        theirs_at = "" if current is None else f" (revision {current.mod_revision})"
        yours = "(delete)" if mine is None else mine
        body = (
            f"{exc.key.decode('utf-8', 'replace')} changed after you read it.\n\n"
            f"theirs{theirs_at}:\n{theirs}\n\nyours:\n{yours}"
        )
        choices = {"m": "write mine" if mine is not None else "delete anyway", "t": "keep theirs"}

        def done(answer: str | None) -> None:
            if answer == "m":
                retry(0 if current is None else current.mod_revision)
            else:
                self.notify("kept theirs: nothing written")

        self.push_screen(ChoiceScreen("conflict", body, choices), done)
