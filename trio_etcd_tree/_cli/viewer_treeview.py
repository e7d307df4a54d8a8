"""The viewer's tree widget: the rows of a :class:`TreeModel`, drawn line by line.

Only the visible rows are rendered; a changed key is highlighted with a colour that fades
(the model says how much, the widget draws it).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .viewer_model import Path, TreeModel

__all__ = ["Moved", "TreeView"]


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
