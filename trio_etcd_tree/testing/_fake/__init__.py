"""An in-memory etcd that speaks the etcd v3 HTTP/JSON gateway protocol as an httpx transport,
and etcd's gRPC API over trio's in-memory streams.

One concern a module, lowest first (each imports only the ones above it):

* :mod:`.store`: the pure MVCC model (keys, revisions, history, compaction) and the lessor.
* :mod:`.gateway`: the gateway's dialect: requests parsed, answers and errors written.
* :mod:`.cluster`: the members and the state every service shares; status, member list.
* :mod:`.auth`: users, grants and tokens; the check each request passes.
* :mod:`.kv_requests`: the KV requests parsed and checked, and the permissions they need.
* :mod:`.kv`, :mod:`.leases`, :mod:`.watch`: the services.
* :mod:`.faults`: fault injection (errors, delays, lost answers, members down or frozen,
  watch streams broken or stalled).
* :mod:`.grpc_dialect`, :mod:`.grpc_connection`, :mod:`.grpc_front`: the services over
  gRPC (``fake.grpc``, loaded on first use): the methods and their messages as the services'
  JSON, one HTTP/2 server connection, and the front that serves the calls and injects
  gRPC's own faults.
* :mod:`.server`: :class:`FakeEtcd`, the transport that composes them, and
  :func:`open_fake_etcd`.
"""

from __future__ import annotations

from .server import FakeCall as FakeCall, FakeEtcd as FakeEtcd, open_fake_etcd as open_fake_etcd
from .store import FakeError as FakeError

__all__ = ["FakeCall", "FakeError", "FakeEtcd", "open_fake_etcd"]
