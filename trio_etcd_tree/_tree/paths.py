"""Paths below a mount: tuples of names, one per key segment.

A path is given as ``"a/b"`` or as ``("a", "b")``; ``""`` and ``()`` are the node itself.
Names are ``str``; key segments that are not UTF-8 are decoded with ``surrogateescape``, so
every key maps to a path and back without loss (``encode_name``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TypeAlias

__all__ = ["Path", "PathLike", "encode_name", "flatten", "show", "split_path"]

Path: TypeAlias = tuple[str, ...]
PathLike: TypeAlias = str | Sequence[str]
"""A path as users give it: ``"a/b"`` or a sequence of names."""


def split_path(path: PathLike) -> Path:
    """The names of a path: ``"a/b"`` is ``("a", "b")``, ``""`` is ``()``; empty segments
    are names (``"a//b"`` is ``("a", "", "b")``)."""
    if isinstance(path, str):
        return tuple(path.split("/")) if path else ()
    return tuple(path)


def encode_name(name: str) -> bytes:
    """A name's key segment."""
    return name.encode("utf-8", "surrogateescape")


def show(names: Path) -> str:
    """A path in words, for messages."""
    return "/".join(names) or "the root"


def flatten(value: object, path: Path = ()) -> Iterator[tuple[Path, object]]:
    """(relative path, leaf value) pairs of a value: nested mappings become paths."""
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(
                f"an empty mapping at {'/'.join(path) or 'the node'} cannot be written: "
                "etcd has no empty directories"
            )
        for name, child in value.items():
            if not isinstance(name, str):
                raise TypeError(f"names must be str, not {type(name).__name__}: {name!r}")
            yield from flatten(child, (*path, name))
    else:
        yield path, value
