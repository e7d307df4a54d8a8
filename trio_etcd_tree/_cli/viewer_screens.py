"""The viewer's dialogs: editing a value (or adding a key), and a question with keyed
answers (delete? which side of a conflict?)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static, TextArea

__all__ = ["ChoiceScreen", "EditScreen"]


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
