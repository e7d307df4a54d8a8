"""Auth in the fake: users, their key-prefix grants, tokens on the Trio clock, and the check
every request passes before it is served."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import trio

from .cluster import Cluster
from .gateway import Ctx, Fields, Json
from .store import FakeError, as_bytes, prefix_end

ERR_PERMISSION = "etcdserver: permission denied"
ERR_NO_USER = "etcdserver: user name is empty"
ERR_BAD_TOKEN = "etcdserver: invalid auth token"
ERR_AUTH_FAILED = "etcdserver: authentication failed, invalid user ID or password"

Mode: TypeAlias = Literal["read", "write", "readwrite"]
Perm: TypeAlias = tuple[bytes, bytes, Literal["read", "write"]]
"""What a request needs: a key (or range) and read or write access to it."""

_Grant: TypeAlias = tuple[bytes, bytes, bool, bool]  # start, end, may read, may write


@dataclass
class _Config:
    users: dict[str, str]
    perms: dict[str, list[_Grant]]
    token_ttl: float
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)


class Auth:
    """Off until :meth:`enable`; then every request needs a valid token granting its perms."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._config: _Config | None = None

    def enable(
        self,
        users: Mapping[str, str],
        permissions: Mapping[str, Sequence[tuple[bytes | str, Mode]]] | None,
        token_ttl: float,
    ) -> None:
        perms = {
            user: [
                (as_bytes(p), prefix_end(as_bytes(p)), "read" in mode, "write" in mode)
                for p, mode in grants
            ]
            for user, grants in (permissions or {}).items()
        }
        self._config = _Config(dict(users), perms, token_ttl)

    def check(self, ctx: Ctx, perms: Sequence[Perm]) -> None:
        """Raise unless the request's token is valid and grants ``perms`` (using a token
        pushes its expiry out)."""
        auth = self._config
        if auth is None:
            return
        token = ctx.token
        if not token:
            raise FakeError(3, ERR_NO_USER)
        now = trio.current_time()
        entry = auth.tokens.get(token)
        if entry is None or entry[1] <= now:
            auth.tokens.pop(token, None)
            raise FakeError(16, ERR_BAD_TOKEN)
        user = entry[0]
        auth.tokens[token] = (user, now + auth.token_ttl)
        if user == "root":
            return
        grants = auth.perms.get(user, [])
        for key, end, mode in perms:
            if not any(_covers(g, key, end, mode) for g in grants):
                raise FakeError(7, ERR_PERMISSION)

    def authenticate(self, ctx: Ctx, f: Fields) -> Json:
        """``/v3/auth/authenticate``: a new token for a user and password."""
        auth = self._config
        name, password = f.raw("name"), f.raw("password")
        if auth is None:
            raise FakeError(9, "etcdserver: authentication is not enabled")
        if not name or auth.users.get(name) != password:
            raise FakeError(3, ERR_AUTH_FAILED)
        cluster = self._cluster
        cluster.raft_index += 1
        letters = string.ascii_letters
        token = "".join(cluster.rng.choice(letters) for _ in range(16)) + f".{cluster.raft_index}"
        auth.tokens[token] = (name, trio.current_time() + auth.token_ttl)
        return {"header": cluster.header(ctx.member), "token": token}


def _covers(grant: _Grant, key: bytes, end: bytes, mode: str) -> bool:
    start, stop, read, write = grant
    if not (read if mode == "read" else write):
        return False
    if not end:
        return start <= key < stop
    top = b"\xff" * 64 if end == b"\0" else end
    return start <= key and top <= stop
