"""The KV service of the fake: range, put, delete, txn and compaction, applied to the store.

Each handler parses its request, makes etcd's gRPC-level checks, checks auth, checks that the
request can apply (before any write, so a failed txn writes nothing) and then writes.
"""

from __future__ import annotations

from .auth import Auth
from .cluster import Cluster
from .gateway import Ctx, Fields, Json, kv_json
from .kv_requests import (
    COMPARE_TARGETS,
    ERR_KEY_NOT_FOUND,
    DeleteReq,
    PutReq,
    RangeReq,
    TxnReq,
    delete_perms,
    put_perms,
    txn_perms,
)
from .store import FakeError, KeyValue, WriteTxn


class Kv:
    """The handlers of ``/v3/kv/*`` (leases aside)."""

    def __init__(self, cluster: Cluster, auth: Auth, max_txn_ops: int) -> None:
        self._cluster = cluster
        self._store = cluster.store
        self._auth = auth
        self._max_txn_ops = max_txn_ops

    # ---- the handlers ----------------------------------------------------------------------

    def range(self, ctx: Ctx, f: Fields) -> Json:
        r = RangeReq.parse(f)
        r.check()
        self._auth.check(ctx, [(r.key, r.range_end, "read")])
        out = self._do_range(r, self._store.revision)
        return {**out, "header": self._cluster.header(ctx.member)}

    def put(self, ctx: Ctx, f: Fields) -> Json:
        p = PutReq.parse(f)
        p.check()
        self._auth.check(ctx, put_perms(p))
        self._check_put_apply(p)
        with self._cluster.write() as w:
            out = self._do_put(w, p)
        return {**out, "header": self._cluster.header(ctx.member)}

    def deleterange(self, ctx: Ctx, f: Fields) -> Json:
        d = DeleteReq.parse(f)
        d.check()
        self._auth.check(ctx, delete_perms(d))
        with self._cluster.write() as w:
            out = self._do_delete(w, d)
        return {**out, "header": self._cluster.header(ctx.member)}

    def txn(self, ctx: Ctx, f: Fields) -> Json:
        t = TxnReq.parse(f)
        t.check(self._max_txn_ops)
        self._auth.check(ctx, txn_perms(t))
        choices: dict[int, bool] = {}
        self._check_txn_apply(t, choices)
        with self._cluster.write() as w:
            out = self._apply_txn(w, t, choices)
        return {"header": self._cluster.header(ctx.member), **out}

    def compaction(self, ctx: Ctx, f: Fields) -> Json:
        revision = f.get_int("revision")
        self._cluster.raft_index += 1
        self._store.compact(revision)
        return {"header": self._cluster.header(ctx.member)}

    # ---- applying --------------------------------------------------------------------------

    def _do_range(self, r: RangeReq, header_rev: int) -> Json:
        kvs = self._store.range(r.key, r.range_end, r.revision)
        count = len(kvs)
        if r.max_mod:
            kvs = [kv for kv in kvs if kv.mod_revision <= r.max_mod]
        if r.min_mod:
            kvs = [kv for kv in kvs if kv.mod_revision >= r.min_mod]
        if r.max_create:
            kvs = [kv for kv in kvs if kv.create_revision <= r.max_create]
        if r.min_create:
            kvs = [kv for kv in kvs if kv.create_revision >= r.min_create]
        order = r.sort_order or (1 if r.sort_target else 0)
        if order:
            attr = ("key", "version", "create_revision", "mod_revision", "value")[r.sort_target]
            kvs.sort(key=lambda kv: getattr(kv, attr), reverse=order == 2)
        out: Json = {"header": {"revision": str(header_rev)}}
        more = r.limit > 0 and len(kvs) > r.limit
        if more:
            kvs = kvs[: r.limit]
        if kvs and not r.count_only:
            out["kvs"] = [kv_json(kv, keys_only=r.keys_only) for kv in kvs]
        if more and not r.count_only:
            out["more"] = True
        if count:
            out["count"] = str(count)
        return out

    def _do_put(self, w: WriteTxn, p: PutReq) -> Json:
        prev = w.put(
            p.key, p.value, p.lease, ignore_value=p.ignore_value, ignore_lease=p.ignore_lease
        )
        out: Json = {"header": {"revision": str(w.revision)}}
        if p.prev_kv and prev is not None:
            out["prev_kv"] = kv_json(prev)
        return out

    def _do_delete(self, w: WriteTxn, d: DeleteReq) -> Json:
        deleted = w.delete_range(d.key, d.range_end)
        out: Json = {"header": {"revision": str(w.revision)}}
        if deleted:
            out["deleted"] = str(len(deleted))
        if d.prev_kv and deleted:
            out["prev_kvs"] = [kv_json(kv) for kv in deleted]
        return out

    def _check_put_apply(self, p: PutReq) -> None:
        if (p.ignore_value or p.ignore_lease) and self._store.latest(p.key) is None:
            raise FakeError(3, ERR_KEY_NOT_FOUND)
        if p.lease:
            self._cluster.lessor.get(p.lease)

    def _compares(self, t: TxnReq) -> bool:
        """Go's ``applyCompare`` for every compare (a missing key compares as a zero kv)."""
        for c in t.compare:
            kvs = self._store.range(c.key, c.range_end)
            if not kvs and c.target == COMPARE_TARGETS.index("VALUE"):
                return False
            if not all(c.holds_for(kv) for kv in kvs or [KeyValue(c.key)]):
                return False
        return True

    def _check_txn_apply(self, t: TxnReq, choices: dict[int, bool]) -> None:
        """Choose every branch (before any write) and check the chosen ops can apply."""
        ok = choices[id(t)] = self._compares(t)
        for op in t.success if ok else t.failure:
            if isinstance(op, RangeReq):
                self._store.check_revision(op.revision)
            elif isinstance(op, PutReq):
                self._check_put_apply(op)
            elif isinstance(op, TxnReq):
                self._check_txn_apply(op, choices)

    def _apply_txn(self, w: WriteTxn, t: TxnReq, choices: dict[int, bool]) -> Json:
        ok = choices[id(t)]
        out: Json = {"succeeded": True} if ok else {}
        responses: list[Json] = []
        for op in t.success if ok else t.failure:
            if isinstance(op, RangeReq):
                responses.append({"response_range": self._do_range(op, w.revision)})
            elif isinstance(op, PutReq):
                responses.append({"response_put": self._do_put(w, op)})
            elif isinstance(op, DeleteReq):
                responses.append({"response_delete_range": self._do_delete(w, op)})
            else:
                assert isinstance(op, TxnReq)  # an empty op fails the checks
                inner = {"header": {}, **self._apply_txn(w, op, choices)}
                responses.append({"response_txn": inner})
        if responses:
            out["responses"] = responses
        return out
