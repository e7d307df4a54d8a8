"""``.. exception-tree:: MODULE ...``: every exception class the modules export, as a tree.

Read from the code at build time, so the page cannot drift from the hierarchy: a nested
list (each class linked, with the first line of its docstring and the standard or trio
exceptions it also is), followed by the ``autoexception`` entry of each class.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def exported_exceptions(module_names: list[str]) -> dict[type[BaseException], str]:
    """Each exception class in the modules' ``__all__`` -> its public dotted name."""
    found: dict[type[BaseException], str] = {}
    for module_name in module_names:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                found.setdefault(obj, f"{module_name}.{name}")
    return found


def tree_lines(classes: dict[type[BaseException], str]) -> list[str]:
    """The reST nested list of the classes, parents before children, in name order."""

    def parents(cls: type[BaseException]) -> list[type[BaseException]]:
        return [b for b in cls.__bases__ if b in classes]

    def line(cls: type[BaseException], depth: int) -> list[str]:
        others = [b for b in cls.__bases__ if b not in classes and b is not Exception]
        also = ", ".join(
            f"``{b.__module__}.{b.__qualname__}``".replace("builtins.", "") for b in others
        )
        summary = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        text = f":exc:`~{classes[cls]}`"
        if also:
            text += f" (also {also})"
        if summary:
            text += f": {summary}"
        indent = "  " * depth
        out = [f"{indent}* {text}", ""]
        for child in sorted((c for c in classes if cls in parents(c)), key=lambda c: c.__name__):
            if parents(child)[0] is cls:  # listed under its first parent only
                out += line(child, depth + 1)
        return out

    lines: list[str] = []
    for root in sorted((c for c in classes if not parents(c)), key=lambda c: c.__name__):
        lines += line(root, 0)
    return lines


class ExceptionTree(SphinxDirective):
    required_arguments = 1
    optional_arguments = 10

    def run(self) -> list[nodes.Node]:
        classes = exported_exceptions(list(self.arguments))
        lines = tree_lines(classes)
        for name in sorted(classes.values()):
            lines += [f".. autoexception:: {name}", "   :members:", ""]
        container = nodes.container()
        self.state.nested_parse(
            StringList(lines, source=self.get_source_info()[0]), self.content_offset, container
        )
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("exception-tree", ExceptionTree)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
