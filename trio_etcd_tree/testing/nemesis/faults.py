"""The nemesis: it applies a :mod:`schedule <.schedule>` of faults to a cluster and heals
each one, recording what it did in the :class:`~.history.History`.

Two kinds of cluster take the faults (the :class:`Target` protocol):

* :class:`RealTarget`: an :class:`~trio_etcd_tree.testing.EtcdCluster` of real etcd
  processes. ``kill`` is SIGKILL and a restart, ``freeze`` SIGSTOP and SIGCONT,
  ``partition`` cuts the member's client proxy (see :mod:`._proxy`; clients reach each
  member only through its proxy), ``restore`` saves a snapshot (etcdctl) and later restores
  every member from it (etcdutl, with a new cluster id: the revision goes back and the
  cluster changes), or where there is no etcdutl (etcd 3.4) stops the cluster, copies the
  members' data directories, starts it again, and later puts that copy back (a cold
  backup: the revision goes back), ``defrag`` runs ``etcdctl defrag``.
* :class:`FakeTarget`: the in-memory :class:`~trio_etcd_tree.testing.FakeEtcd`, under the
  mock clock. A member fault takes the member down (the fake has one store for all
  members, so kill, freeze and partition look alike to clients), ``restore`` is
  ``FakeEtcd.restore`` with a new cluster id, and ``defrag`` has nothing to do.

``compact`` and ``lease`` go through a client of the library on either.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Protocol

import trio

from ... import Client, EtcdError
from .._fake import FakeEtcd
from .._launcher import EtcdCluster, find_etcd_binaries
from ._proxy import Proxy
from .history import FaultRecord, History
from .schedule import Fault

__all__ = ["FakeTarget", "ForeignWriteError", "RealTarget", "Target", "etcdctl", "run_nemesis"]

_STATUS_TIMEOUT = 3.0  # seconds to wait for one member's status when looking for the leader


class ForeignWriteError(Exception):
    """etcdctl failed: the write may or may not have been applied."""


class Target(Protocol):
    """A cluster the nemesis can hurt and heal (member faults by member index)."""

    size: int
    endpoints: list[str]  #: each member's URL as the workloads reach it
    direct: list[str]  #: each member's URL for the nemesis (never cut off)
    transport: object  #: ``open_client(transport=...)``: a wire's name, or the in-memory etcd

    async def leader(self, client: Client) -> int: ...
    async def kill(self, member: int) -> None: ...
    async def revive(self, member: int) -> None: ...
    async def freeze(self, member: int) -> None: ...
    async def thaw(self, member: int) -> None: ...
    async def cut(self, member: int) -> None: ...
    async def uncut(self, member: int) -> None: ...
    async def backup(self) -> str: ...
    async def restore(self) -> str: ...
    async def defrag(self, member: int) -> str: ...
    async def foreign_put(self, key: str, value: str) -> int: ...
    async def heal_all(self) -> None: ...


def etcdctl() -> Path | None:
    """An ``etcdctl`` beside any etcd binary found (v3 API, so any version serves 3.4 and
    3.5 servers alike), the newest first; None if there is none."""
    for binary in reversed(find_etcd_binaries()):
        if binary.etcdctl is not None:
            return binary.etcdctl
    return None


async def _leader_by_status(client: Client, urls: list[str], up: list[bool]) -> int:
    for index, url in enumerate(urls):
        if not up[index]:
            continue
        with trio.move_on_after(_STATUS_TIMEOUT):
            try:
                status = await client.status(url)
            except EtcdError:
                continue
            if status.leader == status.header.member_id:
                return index
    return 0  # no leader right now (an election under way): take the first member


class RealTarget:
    """Faults on real etcd processes; run :meth:`serve` (the proxies) in a nursery first."""

    def __init__(self, cluster: EtcdCluster, etcdctl_path: Path | None, wire: str) -> None:
        self.cluster = cluster
        self.size = len(cluster.members)
        self.direct = cluster.endpoints
        self.proxies = [Proxy(int(url.rsplit(":", 1)[1])) for url in self.direct]
        self.endpoints: list[str] = []
        self.transport: object = wire
        self.etcdctl = etcdctl_path
        self._backup = cluster.directory / "nemesis-backup"
        # etcd 3.5 and later: a snapshot of the running cluster (etcdctl), restored with
        # etcdutl under a new cluster id; etcd 3.4 (no etcdutl): a cold copy of the data
        # dirs, taken and put back with the cluster stopped (the cluster id stays).
        self.snapshots = cluster.binary.etcdutl is not None and cluster.binary.etcdctl is not None
        self._frozen: set[int] = set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the members' client proxies until cancelled."""
        async with trio.open_nursery() as nursery:
            for proxy in self.proxies:
                await nursery.start(proxy.run)
            self.endpoints = [proxy.url for proxy in self.proxies]
            task_status.started()

    async def leader(self, client: Client) -> int:
        up = [m.running and i not in self._frozen for i, m in enumerate(self.cluster.members)]
        return await _leader_by_status(client, self.direct, up)

    async def kill(self, member: int) -> None:
        await trio.to_thread.run_sync(self.cluster.members[member].kill)

    async def revive(self, member: int) -> None:
        await trio.to_thread.run_sync(self.cluster.start_all)

    async def freeze(self, member: int) -> None:
        self._frozen.add(member)
        self.cluster.members[member].freeze()

    async def thaw(self, member: int) -> None:
        self._frozen.discard(member)
        self.cluster.members[member].thaw()

    async def cut(self, member: int) -> None:
        self.proxies[member].cut()

    async def uncut(self, member: int) -> None:
        self.proxies[member].heal()

    async def backup(self) -> str:
        if self.snapshots:
            snapshot = self._backup.with_suffix(".db")
            await trio.to_thread.run_sync(self.cluster.snapshot_save, snapshot)
            return "snapshot saved"
        await trio.to_thread.run_sync(self._copy, True)
        return f"cold backup of {self.size} data dirs"

    async def restore(self) -> str:
        if self.snapshots:
            snapshot = self._backup.with_suffix(".db")
            await trio.to_thread.run_sync(self.cluster.snapshot_restore, snapshot)
            return "restored every member from the snapshot, with a new cluster id"
        await trio.to_thread.run_sync(self._copy, False)
        return "restored every member from the backup"

    def _copy(self, save: bool) -> None:
        for member in self.cluster.members:
            member.stop()
        for member in self.cluster.members:
            saved = self._backup / member.name
            source, destination = (member.data_dir, saved) if save else (saved, member.data_dir)
            shutil.rmtree(destination, ignore_errors=True)
            shutil.copytree(source, destination)
        self.cluster.start_all()

    async def defrag(self, member: int) -> str:
        if self.etcdctl is None:
            return "skipped: no etcdctl found"
        args = [str(self.etcdctl), f"--endpoints={self.direct[member]}", "defrag"]
        result = await trio.run_process(args, capture_stdout=True, capture_stderr=True, check=False)
        return (result.stdout + result.stderr).decode(errors="replace").strip()

    async def foreign_put(self, key: str, value: str) -> int:
        assert self.etcdctl is not None, "the foreign writer runs only with etcdctl"
        args = [str(self.etcdctl), f"--endpoints={','.join(self.direct)}"]
        args += ["--command-timeout=5s", "-w", "json", "put", key, value]
        result = await trio.run_process(args, capture_stdout=True, capture_stderr=True, check=False)
        if result.returncode:
            raise ForeignWriteError(result.stderr.decode(errors="replace").strip())
        revision: int = json.loads(result.stdout)["header"]["revision"]
        return revision

    async def heal_all(self) -> None:
        for index in range(self.size):
            await self.thaw(index)
            await self.uncut(index)
        await trio.to_thread.run_sync(self.cluster.start_all)


class FakeTarget:
    """Faults on the in-memory etcd (see the module docs)."""

    def __init__(self, fake: FakeEtcd, wire: str) -> None:
        self.fake = fake
        self.size = len(fake.endpoints)
        self.endpoints = self.direct = list(fake.endpoints)
        self.transport: object = fake.grpc if wire == "grpc" else fake
        self._snapshot = 0

    async def leader(self, client: Client) -> int:
        await trio.lowlevel.checkpoint()
        return 0  # every fake member serves the one store; call the first the leader

    async def kill(self, member: int) -> None:
        await trio.lowlevel.checkpoint()
        self.fake.member_down(member)

    async def revive(self, member: int) -> None:
        await trio.lowlevel.checkpoint()
        self.fake.member_up(member)

    freeze = cut = kill
    thaw = uncut = revive

    async def backup(self) -> str:
        await trio.lowlevel.checkpoint()
        self._snapshot = self.fake.revision
        return f"snapshot at revision {self._snapshot}"

    async def restore(self) -> str:
        await trio.lowlevel.checkpoint()
        self.fake.restore(self._snapshot)  # (its leases come back and expire on their own)
        self.fake.new_cluster_id()
        return f"restored revision {self._snapshot} with a new cluster id"

    async def defrag(self, member: int) -> str:
        await trio.lowlevel.checkpoint()
        return "nothing to defragment in memory"

    async def foreign_put(self, key: str, value: str) -> int:
        await trio.lowlevel.checkpoint()
        return self.fake.put(key, value)

    async def heal_all(self) -> None:
        for index in range(self.size):
            await self.revive(index)


async def _apply(
    target: Target, client: Client, fault: Fault, record: FaultRecord, rng: random.Random
) -> None:
    """Start the fault, let it last, heal it; ``record`` says what happened."""
    member = record.member
    match fault.kind:
        case "compact":
            revision = (await client.status()).header.revision
            await client.compact(revision)
            record.detail = f"compacted at revision {revision}"
        case "lease":
            leases = sorted(await client.leases())
            if leases:
                victim = rng.choice(leases)
                await client.lease_revoke(victim)
                record.detail = f"revoked lease {victim:x} of {len(leases)}"
            else:
                record.detail = "no lease to revoke"
        case "defrag":
            assert member is not None
            record.detail = await target.defrag(member)
        case "restore":
            record.detail = await target.backup()
            await trio.sleep(fault.duration)
            record.detail += "; " + await target.restore()
        case _:
            assert member is not None
            hurt, heal = {
                "kill": (target.kill, target.revive),
                "freeze": (target.freeze, target.thaw),
                "partition": (target.cut, target.uncut),
            }[fault.kind]
            await hurt(member)
            try:
                await trio.sleep(fault.duration)
            finally:
                with trio.CancelScope(shield=True):
                    await heal(member)


async def run_nemesis(
    target: Target,
    client: Client,
    schedule: list[Fault],
    history: History,
    *,
    start: float,
    end: float,
    client_of_first: Client,
    seed: int,
) -> None:
    """Apply ``schedule`` (fault times are seconds after ``start``), one fault at a time.

    A fault that fails to start (the nemesis's own request fails) is recorded with the
    error and the run goes on; every fault is healed before the next. Faults that take
    longer than scheduled (a restore of a whole cluster, say) delay the later ones; those
    that would then last past ``end`` are left out (a note in the history says how many).

    Cancellation: heals the fault in progress (shielded) and returns.
    """
    rng = random.Random(seed)
    for done, fault in enumerate(schedule):
        await trio.sleep_until(start + fault.at)
        if trio.current_time() + fault.duration > end:
            history.notes.append(
                f"{len(schedule) - done} faults left out: earlier ones took longer than "
                "scheduled and the run's end came first"
            )
            return
        member: int | None = None
        if fault.role == "leader":
            member = await target.leader(client)
        elif fault.role == "follower":
            leader = await target.leader(client)
            member = (leader + 1 + rng.randrange(max(target.size - 1, 1))) % target.size
        elif fault.role == "client":
            member = target.endpoints.index(client_of_first.endpoint)
        endpoint = target.endpoints[member] if member is not None else ""
        record = FaultRecord(fault, member, endpoint, trio.current_time())
        history.faults.append(record)
        try:
            await _apply(target, client, fault, record, rng)
        except EtcdError as error:
            record.detail += f" failed: {type(error).__name__}: {error}"
        record.healed = trio.current_time()
