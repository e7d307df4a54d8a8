"""The client: ``open_client``, endpoints and their health, failover, auth, the outcome of a
failed write, watch streams that resume, and leases held by ``async with``. It speaks only
Python types to a transport (:mod:`trio_etcd_tree._wire`)."""

from __future__ import annotations

from .client import Client as Client
from .connection import Credentials as Credentials
from .lease import Lease as Lease
from .open import endpoint_urls as endpoint_urls, open_client as open_client
from .watch import (
    ConnectionState as ConnectionState,
    WatchStatistics as WatchStatistics,
    WatchStream as WatchStream,
)
