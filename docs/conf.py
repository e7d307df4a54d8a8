"""Sphinx configuration of the trio-etcd-tree docs.

Built by ci/test.sh with warnings as errors and every cross-reference checked::

    python -m sphinx -W -n --keep-going -b html docs docs/_build/html

The API reference is autodoc of the public names as ``trio_etcd_tree.X`` (the package
rewrites each re-exported object's ``__module__``), so moving a private module changes
nothing here. There is no intersphinx (the build runs offline): references to the standard
library, trio and httpx are written as plain literals or listed in ``nitpick_ignore_regex``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import trio_etcd_tree  # noqa: E402

project = "trio-etcd-tree"
author = "The trio-etcd-tree developers"
copyright = "2026, The trio-etcd-tree developers"  # noqa: A001
release = trio_etcd_tree.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxcontrib_trio",
    "exception_tree",
]

root_doc = "index"
exclude_patterns = ["_build", "README.rst"]
nitpicky = True
default_role = "obj"
# External names a signature or docstring mentions; the build has no network for
# intersphinx, so they stay unlinked (the standard library, trio, httpx, pytest, Textual).
nitpick_ignore_regex = [
    # Private helper types that appear in public signatures (``KeyLike`` is ``bytes | str``,
    # ``Op`` one of Get/Put/Delete/Txn, ``N`` a Node subclass, ``KeyValues`` the undecoded
    # key-values a transport hands over): not part of the API.
    ("py:class", r"trio_etcd_tree(\.testing)?\._.*"),
    ("py:class", r"KeyLike|Op|OpResult|N|Connection|PathLike|Plain|KeyValues|KeyValueSource"),
    # Private helpers that public docstrings name (the YAML layer's recorded_revision,
    # document_keys and LoadPlan.diff's show): not part of the API.
    ("py:func", r"recorded_revision|document_keys|show|show_bytes|apply_plan"),
    ("py:.*", r"(trio|httpx|pytest|_pytest|textual|ssl|os|enum|typing|collections\.abc)\..*"),
    ("py:.*", r"(contextlib\.)?(AbstractAsyncContextManager|AbstractContextManager)"),
    ("py:class", r"(Any|Callable|Awaitable|Iterator|AsyncIterator|Iterable|Mapping|Sequence)"),
    ("py:class", r"(Path|pathlib\.Path|datetime\..*|IO|TextIO|BinaryIO|Enum|NamedTuple)"),
    ("py:class", r"(int|str|bytes|float|bool|object|list|dict|tuple|set|type|None)"),
    ("py:class", r"(Exception|BaseException|LookupError|ValueError|RuntimeError|OSError)"),
    ("py:class", r"(TimeoutError|KeyError|TypeError)"),
    ("py:class", r"(T|TypeVar|Generic|Self|types\..*)"),
    ("py:class", r"pytest\..*|MonkeyPatch|FixtureRequest|Config|Parser|Item|Session"),
]

toc_object_entries = False  # the sidebar lists sections, not every class
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields: autodoc documents the attributes once

html_theme = "alabaster"
html_title = f"trio-etcd-tree {release}"
html_static_path = ["_static"]  # custom.css, which alabaster loads
html_theme_options = {
    "description": "etcd v3 for Trio: a client, a live mirrored tree, coordination, tools",
    "fixed_sidebar": True,
    "page_width": "1240px",
    "body_max_width": "none",
    "sidebar_width": "230px",
}


# Our attribute and property docstrings name no types (the annotations do): their first
# line "The node's name: its last path segment" is a sentence, not napoleon's
# "type: description". Parse them as ordinary docstrings.
from sphinx.ext.napoleon.docstring import GoogleDocstring  # noqa: E402


def _attribute_docstring(self: GoogleDocstring) -> list[str]:
    return GoogleDocstring(self._consume_to_end(), self._config).lines()


GoogleDocstring._parse_attribute_docstring = _attribute_docstring  # type: ignore[method-assign]
