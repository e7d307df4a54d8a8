"""The mirrored tree: ``mount()``, its nodes, and everything that keeps them exact.

Layers, lowest first (each module imports only from those before it):
``paths`` (names and paths), ``changes`` (Change, Update, the mount's state),
``subscribe`` (subscriptions), ``transaction`` (collected writes), ``handle`` (what nodes
need from a mount), ``view`` and ``node`` (the nodes users hold), ``registry`` (codecs and
node classes by path), ``core`` (the pure apply core, the only writer of node state),
``waiters``, ``reflector`` (load, follow, resync, lazy load), ``writer`` (guards, commits,
conflicts, retries), ``mount`` (the thin public entry).
"""
