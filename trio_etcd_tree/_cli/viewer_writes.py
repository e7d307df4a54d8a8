"""The viewer's guarded writes, run in trio through :meth:`Bridge.call`.

Each write checks that the key is still what the user saw (its mod revision, and for a
subtree nothing below changed since) and raises :class:`~trio_etcd_tree.ConflictError`
otherwise, so the app can show both sides and ask.
"""

from __future__ import annotations

import trio_etcd_tree as et

from .viewer_model import Path

__all__ = ["delete_key", "find_node", "write_value"]


def _conflict(root: et.Root, path: Path, node: et.Node | None) -> et.ConflictError:
    key = root.key_of(path)
    current = None if node is None else node.kv
    what = "gone" if current is None else f"now at revision {current.mod_revision}"
    return et.ConflictError(
        f"changed since you read it: {key!r} ({what})",
        conflicts={key: current},
        revision=root.revision,
    )


def find_node(root: et.Root, path: Path) -> et.Node | None:
    """The node at ``path``, or None where the tree has none."""
    try:
        return root.lookup(path)
    except KeyError:
        return None


async def write_value(root: et.Root, path: Path, text: str, expected: int) -> int:
    """Write ``text`` at ``path`` if the key is still at mod revision ``expected`` (0: if it
    still does not exist). A guarded ``node.set``: the tree's check catches changes it has
    already seen, etcd's guard those still on the way."""
    node = find_node(root, path)
    current = node.mod_revision if node is not None else 0
    if current != expected:
        raise _conflict(root, path, node)
    return await root.set(path, text)


async def delete_key(
    root: et.Root, path: Path, expected: int, *, recursive: bool, seen: int
) -> int:
    """Delete the key at ``path`` (with ``recursive`` the subtree too) if the key is still
    at ``expected`` and nothing below changed after revision ``seen``."""
    node = find_node(root, path)
    if node is None or node.mod_revision != expected:
        raise _conflict(root, path, node)
    if recursive:
        for below in node.walk():
            if below.mod_revision > seen:
                raise _conflict(root, below.path, below)
    if not recursive and node.raw is None:
        raise LookupError("the node has no value; delete the subtree")
    return await node.delete(recursive=recursive)
