"""The lease service of the fake: grant, revoke, time-to-live, list, keep-alive, and the loop
that revokes each lease when its deadline passes on the Trio clock."""

from __future__ import annotations

import math

import httpx
import trio

from .auth import Auth
from .cluster import Cluster
from .gateway import Ctx, Fields, Json, b64, parse_stream, result_line
from .store import Lease


class Leases:
    """The handlers of ``/v3/lease/*`` and the expiry loop (:meth:`run`)."""

    def __init__(self, cluster: Cluster, auth: Auth) -> None:
        self._cluster = cluster
        self._lessor = cluster.lessor
        self._auth = auth
        self._changed = trio.Event()

    # ---- expiry ----------------------------------------------------------------------------

    def kick(self) -> None:
        """The leases changed: the expiry loop looks at their deadlines again."""
        self._changed.set()

    def _revoke_lease(self, lease: Lease) -> None:
        self._lessor.end(lease.id)
        with self._cluster.write() as w:
            for key in sorted(lease.keys):
                w.delete_range(key, b"")
        self.kick()

    def expire(self) -> None:
        """Revoke every lease whose deadline has passed (done before each request too)."""
        for lease in self._lessor.expired(trio.current_time()):
            self._revoke_lease(lease)

    async def run(self) -> None:
        """Revoke each lease when its deadline passes, until cancelled."""
        while True:
            self.expire()
            self._changed = trio.Event()
            deadline = self._lessor.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._changed.wait()

    def _next_id(self) -> int:
        while True:
            lease_id = self._cluster.rng.getrandbits(63)
            if lease_id and lease_id not in self._lessor.leases:
                return lease_id

    # ---- the handlers ----------------------------------------------------------------------

    def grant(self, ctx: Ctx, f: Fields) -> Json:
        lease_id = f.get_int("ID") or self._next_id()
        self._cluster.raft_index += 1
        lease = self._lessor.grant(lease_id, f.get_int("TTL"), trio.current_time())
        self.kick()
        header = self._cluster.header(ctx.member)
        return {"header": header, "ID": str(lease.id), "TTL": str(lease.ttl)}

    def revoke(self, ctx: Ctx, f: Fields) -> Json:
        lease = self._lessor.get(f.get_int("ID"))
        if lease.keys:
            self._auth.check(ctx, [(key, b"", "write") for key in sorted(lease.keys)])
        self._revoke_lease(lease)
        return {"header": self._cluster.header(ctx.member)}

    def timetolive(self, ctx: Ctx, f: Fields) -> Json:
        lease_id = f.get_int("ID")
        out: Json = {"header": self._cluster.header(ctx.member), "ID": str(lease_id)}
        lease = self._lessor.leases.get(lease_id)
        if lease is None:
            return {**out, "TTL": "-1"}
        out |= {"TTL": str(lease.remaining(trio.current_time())), "grantedTTL": str(lease.ttl)}
        if f.get_bool("keys") and lease.keys:
            out["keys"] = [b64(key) for key in sorted(lease.keys)]
        return out

    def leases(self, ctx: Ctx, f: Fields) -> Json:
        out: Json = {"header": self._cluster.header(ctx.member)}
        if self._lessor.leases:
            out["leases"] = [{"ID": str(i)} for i in self._lessor.leases]
        return out

    def renew(self, ctx: Ctx, f: Fields) -> Json:
        """One LeaseKeepAliveRequest: the lease's TTL again (TTL left out once it is gone)."""
        lease_id = f.get_int("ID")
        ttl = self._lessor.renew(lease_id, trio.current_time())
        result: Json = {"header": self._cluster.header(ctx.member), "ID": str(lease_id)}
        if ttl:
            result["TTL"] = str(ttl)
        self.kick()
        return result

    def keepalive(self, ctx: Ctx, body: bytes) -> httpx.Response:
        """``/v3/lease/keepalive``: one answer line for each request of the body."""
        lines = [result_line(self.renew(ctx, Fields(obj))) for obj in parse_stream(body)]
        return httpx.Response(
            200, headers={"content-type": "application/json"}, content=b"".join(lines)
        )
