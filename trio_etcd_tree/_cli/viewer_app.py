"""The viewer's Textual app: layout, frames, key bindings, prompts and the editing flow.

Trio runs as a guest on Textual's asyncio loop (:class:`~.viewer_bridge.Bridge`); the app
takes the bridge's updates once per frame, feeds them to the model and redraws the tree
view, the detail pane and the status line. Writes go to trio through the bridge.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input, Static

import trio_etcd_tree as et

from .viewer_bridge import Bridge
from .viewer_model import (
    Path,
    TreeModel,
    detail_text,
    parse_path,
    state_label,
    status_text,
)
from .viewer_screens import ChoiceScreen, EditScreen
from .viewer_treeview import Moved, TreeView
from .viewer_writes import delete_key, find_node, write_value

__all__ = ["ViewerApp"]

FRAME = 1 / 30
"""Seconds between frames: updates are applied and the screen redrawn in batches."""
LEASE_REFRESH = 5.0
"""Seconds after which a shown lease's TTL is asked for again."""


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
            node = find_node(root, path)
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
