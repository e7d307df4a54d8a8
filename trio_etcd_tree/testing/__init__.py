"""Testing with etcd: real servers and an in-memory one.

Not imported by ``import trio_etcd_tree``. Two backends:

* :class:`EtcdCluster` starts real etcd processes (one member or three) on 127.0.0.1 with
  free ports and temporary data dirs; members can be stopped, killed and restarted; auth
  and TLS can be switched on.
* :func:`open_fake_etcd` gives a :class:`FakeEtcd`, an in-memory etcd that speaks the same
  HTTP/JSON gateway protocol as an httpx transport, runs on the trio clock (deterministic
  under ``MockClock(autojump_threshold=0)``) and injects faults.

pytest fixtures for both are in :mod:`trio_etcd_tree.testing.pytest_plugin`.
"""

from __future__ import annotations

from ._fake import FakeCall as FakeCall, FakeEtcd as FakeEtcd, open_fake_etcd as open_fake_etcd
from ._launcher import (
    EtcdBinary as EtcdBinary,
    EtcdCluster as EtcdCluster,
    EtcdMember as EtcdMember,
    EtcdNotFoundError as EtcdNotFoundError,
    EtcdStartError as EtcdStartError,
    find_etcd as find_etcd,
    find_etcd_binaries as find_etcd_binaries,
)

__all__ = [
    "EtcdBinary",
    "EtcdCluster",
    "EtcdMember",
    "EtcdNotFoundError",
    "EtcdStartError",
    "FakeCall",
    "FakeEtcd",
    "find_etcd",
    "find_etcd_binaries",
    "open_fake_etcd",
]
