"""The cluster every service of the fake shares: its members, the store, the lessor and the
raft index, with the headers and the maintenance and membership answers made from them."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .gateway import Ctx, Fields, Json
from .store import Lessor, MvccStore, WriteTxn

RAFT_TERM = 2
VERSION = "3.5.0-fake"


@dataclass(frozen=True)
class FakeCall:
    """One request the fake received (by the gateway's path, on either front)."""

    endpoint: str
    path: str
    body: bytes


class Cluster:
    """A healthy cluster of ``members`` members serving one store.

    ``rng`` (seeded with the first cluster id) makes member ids, lease ids and auth tokens, so
    runs repeat.
    """

    def __init__(self, members: int, cluster_id: int) -> None:
        self.store = MvccStore()
        self.lessor = Lessor()
        self.rng = random.Random(cluster_id)
        self.endpoints = [f"http://fake-{i}.etcd:2379" for i in range(members)]
        self.member_ids = [self.rng.getrandbits(63) | 1 for _ in range(members)]
        self.cluster_id = cluster_id
        self.raft_index = 4

    def header(self, member: int, revision: int | None = None) -> Json:
        """The response header ``member`` sends (at the current revision unless given)."""
        return {
            "cluster_id": str(self.cluster_id),
            "member_id": str(self.member_ids[member]),
            "revision": str(self.store.revision if revision is None else revision),
            "raft_term": str(RAFT_TERM),
        }

    def write(self) -> WriteTxn:
        """A write transaction on the store, keeping the lessor's key sets (one raft entry)."""
        self.raft_index += 1
        return WriteTxn(self.store, lessor=self.lessor)

    # ---- /v3/maintenance/status and /v3/cluster/member/list --------------------------------

    def status(self, ctx: Ctx, f: Fields) -> Json:
        size = 20480 + 4096 * len(self.store._keys)
        return {
            "header": self.header(ctx.member),
            "version": VERSION,
            "dbSize": str(size),
            "leader": str(self.member_ids[0]),
            "raftIndex": str(self.raft_index),
            "raftTerm": str(RAFT_TERM),
            "raftAppliedIndex": str(self.raft_index),
            "dbSizeInUse": str(size),
        }

    def member_list(self, ctx: Ctx, f: Fields) -> Json:
        members = [
            {
                "ID": str(self.member_ids[i]),
                "name": f"fake-{i}",
                "peerURLs": [endpoint.replace(":2379", ":2380")],
                "clientURLs": [endpoint],
            }
            for i, endpoint in enumerate(self.endpoints)
        ]
        header = self.header(ctx.member)
        del header["revision"]
        return {"header": header, "members": members}
