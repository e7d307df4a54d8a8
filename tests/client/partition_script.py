"""A network partition of a real etcd member, run inside a private network namespace.

``tests/client/test_partition_real.py`` runs this as root under ``unshare --net --pid --fork
--kill-child``: it brings the namespace's ``lo`` up, starts etcd on 127.0.0.1, opens a
client with a mount and a watch (on gRPC with one member also a bare transport with a watch
of its own), then holds packets on ``lo`` in a 1 byte/s htb class (see :func:`cut`):
neither side gets an ACK, a RST or a FIN (unlike SIGSTOP, where the kernel still ACKs),
and the senders believe the packets went out. It measures how soon each request in flight,
the watch and the mount notice, heals the partition, checks that the client comes back by
itself and that the mount and the watch end equal to the server with every revision once,
and prints what it saw as one JSON object (``failure`` holds the traceback if the scenario
itself broke).

Usage: ``partition_script.py VERSION TRANSPORT DIRECTORY MEMBERS MODE`` (``3.5 grpc /tmp/x 1
requests``; the members' data and logs go in a new directory under DIRECTORY). With one
member every packet on ``lo`` is held; with three, those of one follower's client and peer
ports: the client must move to the others, which keep their quorum. MODE ``quiet`` sends no
request into the partition (one member): only the watch and the mount can notice. Times
are seconds since the member stopped answering (with requests, a SIGSTOP just before the
cut, so that a write is certainly in the member's receive queue when the network goes: a
single member applies it, and the answer is lost).
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

import trio_etcd_tree as et
from trio_etcd_tree._wire.base import CallState, RangeRequest, WatchCreateRequest
from trio_etcd_tree._wire.grpc.streams import MuxWatch
from trio_etcd_tree._wire.grpc.transport import GrpcTransport
from trio_etcd_tree.testing import EtcdCluster, EtcdMember
from trio_etcd_tree.testing._launcher import find_etcd

SETTINGS: dict[str, dict[str, float]] = {
    # gRPC: attempt_timeout far above the PING bound, so that the PINGs are what notices
    "grpc": {"attempt_timeout": 30.0, "request_deadline": 60.0},
    # the gateway has no PINGs: attempt_timeout is its bound
    "gateway": {"attempt_timeout": 2.0, "request_deadline": 4.0},
}
NOTICE_LIMIT = 20.0
"""Seconds after the freeze the script waits for everything to notice before it heals."""
RECOVER_LIMIT = 30.0
"""Seconds after the heal the client has to come back and catch up."""
SENT_VALUE = b"s" * 30000
"""The value of the write whose answer is lost: large enough to recognise in the member's
receive queue."""


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def cut(ports: Sequence[int] = ()) -> bool:
    """Hold every packet on ``lo`` from now on, or only those from or to ``ports``; True if
    the class's first burst went to a datagram of ours (then nothing of anyone else's can
    pass).

    An htb class of 1 byte/s holds the packets in its queue: the sender is told they went
    out, as when they are lost on the way (a qdisc that drops them, ``pfifo limit 0``, tells
    TCP, which then gives up with ETIMEDOUT within seconds). Its bucket starts full: one
    large datagram takes it far below zero for hours. With ``ports``, u32 filters pick the
    packets held; the rest go straight through (htb's default class 0).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        probe.setblocking(False)
        default = "0" if ports else "1"
        run("tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", default)
        run(
            "tc",
            "class",
            "add",
            "dev",
            "lo",
            "parent",
            "1:",
            "classid",
            "1:1",
            "htb",
            "rate",
            "8bit",
        )
        run("tc", "qdisc", "add", "dev", "lo", "parent", "1:1", "pfifo", "limit", "100000")
        if ports:
            held = [*ports, probe.getsockname()[1]]
            for port, direction in itertools.product(held, ("sport", "dport")):
                match = ("u32", "match", "ip", direction, str(port), "0xffff", "flowid", "1:1")
                run("tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", *match)
        probe.sendto(b"x" * 8000, probe.getsockname())
        try:
            return len(probe.recv(10000)) == 8000
        except BlockingIOError:
            return False


def heal() -> None:
    """Let the packets go again (those held are dropped; TCP sends them again)."""
    run("tc", "qdisc", "del", "dev", "lo", "root")


def receive_queue(port: int) -> int:
    """Bytes unread in the receive queues of the sockets on local ``port`` (this namespace's
    ``/proc/net/tcp``)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            total += int(fields[4].split(":")[1], 16)
    return total


async def poll(condition: Callable[[], bool], limit: float) -> bool:
    """Wait until ``condition()`` holds (looked at every 20 ms); False after ``limit`` s.
    Polled: a mount's state and the kernel's receive queues have no event to wait on."""
    with trio.move_on_after(limit):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.02)
        return True
    return False


async def drain(watch: MuxWatch) -> None:
    """Receive until the watch fails."""
    while True:
        await watch.receive()


def events_of(response: et.WatchResponse) -> list[list[Any]]:
    return [[e.kv.mod_revision, e.type.value, e.kv.key.decode()] for e in response.events]


class Partition:
    """One run: the member, the client under test, and what was seen (``report``)."""

    def __init__(
        self, version: str, transport: str, directory: str, members: str, mode: str = "requests"
    ) -> None:
        self.directory = Path(directory)
        self.version = version
        self.transport = transport
        self.members = int(members)
        self.quiet = mode == "quiet"  # no request in flight: only the watch and the mount
        self.report: dict[str, Any] = {
            "version": version,
            "transport": transport,
            "members": self.members,
            "quiet": self.quiet,
        }
        self.t0 = 0.0
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.done: dict[str, trio.Event] = {}
        self.watch_revision = 0

    def clock(self) -> float:
        return round(trio.current_time() - self.t0, 3)

    async def outcome(self, name: str, fn: Callable[[], Awaitable[object]]) -> None:
        """Run ``fn`` and note its result or error, and when, as ``outcomes[name]``."""
        done = self.done[name] = trio.Event()
        report = self.outcomes[name] = {}
        try:
            result = await fn()
        except et.EtcdError as exc:
            report["error"] = {
                "type": type(exc).__name__,
                "kind": getattr(exc, "kind", None),
                "outcome_unknown": exc.outcome_unknown,
                "message": str(exc),
            }
        else:
            report["result"] = repr(result)[:100]
        report["at"] = self.clock()
        done.set()

    def finished(self, *names: str) -> bool:
        return all(name in self.done and self.done[name].is_set() for name in names)

    async def main(self) -> None:
        run("ip", "link", "set", "lo", "up")
        binary = find_etcd(self.version)
        with EtcdCluster.start(
            binary, size=self.members, progress_notify_interval=1, base_dir=self.directory
        ) as cluster:
            self.report["etcd"] = cluster.binary.version_string
            settings = self.report["settings"] = SETTINGS[self.transport]
            victim = await self.victim(cluster)
            endpoints = [m.client_url for m in cluster.members if m is not victim]
            endpoints.insert(0, victim.client_url)
            async with (
                et.open_client(
                    endpoints,
                    transport=self.transport,
                    attempt_timeout=settings["attempt_timeout"],
                    request_deadline=settings["request_deadline"],
                ) as client,
                self.bare(victim.client_url) as bare,
            ):
                await client.put("/p/a", "1")
                start = (await client.put("/p/b", "2")).revision
                assert client.endpoint == victim.client_url
                async with (
                    et.mount(client, "/p") as root,
                    client.watch("/p/", prefix=True) as watch,
                    trio.open_nursery() as nursery,
                ):
                    nursery.start_soon(self.collect_watch, watch)
                    nursery.start_soon(self.collect_updates, root)
                    if self.quiet:
                        self.t0 = trio.current_time()
                        self.report["cut_complete"] = cut()
                    else:
                        await self.cut(nursery, victim, client, bare)
                    if self.members == 1:
                        await self.noticed(root, watch)
                    else:
                        await self.moved(client, root, watch, victim.client_url)
                    heal()
                    await self.recovered(root, watch)
                    await self.compare(endpoints, root, start)
                    nursery.cancel_scope.cancel()

    async def victim(self, cluster: EtcdCluster) -> EtcdMember:
        """The member to cut off: the only one, or a follower (the others keep a quorum)."""
        if self.members == 1:
            return cluster.members[0]
        async with et.open_client(cluster.endpoints, transport=self.transport) as probe:
            for member in cluster.members:
                status = await probe.status(member.client_url)
                if status.header.member_id != status.leader:
                    return member
        raise AssertionError("no follower")

    @asynccontextmanager
    async def bare(self, endpoint: str) -> AsyncIterator[MuxWatch | None]:
        """On gRPC, a transport of its own with one watch: the PING bound, bare."""
        if self.transport != "grpc" or self.members > 1 or self.quiet:
            yield None
            return
        async with (
            GrpcTransport() as grpc,
            grpc.watch(endpoint, WatchCreateRequest(b"/p/", b"/p0"), token=None) as watch,
        ):
            assert (await watch.receive()).created
            self.bare_transport = grpc
            yield watch

    async def collect_watch(self, watch: et.WatchStream) -> None:
        events: list[list[Any]] = self.report.setdefault("watch_events", [])
        async for response in watch:
            events.extend(events_of(response))
            self.watch_revision = response.revision

    async def collect_updates(self, root: et.Root) -> None:
        updates: list[list[Any]] = self.report.setdefault("updates", [])
        async with root.subscribe() as subscription:
            async for update in subscription:  # (one by one: the collector is cancelled)
                updates.append([update.revision, update.resync, len(update.changes)])  # noqa: PERF401

    async def cut(
        self, nursery: trio.Nursery, member: EtcdMember, client: et.Client, bare: MuxWatch | None
    ) -> None:
        """Freeze the member, send a write into its socket, cut the network (all of it, or
        the member's client and peer ports), thaw the member (a single member applies the
        write, whose answer is lost), and send more requests into the void."""
        endpoint = member.client_url
        port = int(endpoint.rsplit(":", 1)[1])
        peer_port = int(member.peer_url.rsplit(":", 1)[1])
        member.freeze()
        self.t0 = trio.current_time()
        baseline = receive_queue(port)
        nursery.start_soon(self.outcome, "sent", lambda: client.put("/p/sent", SENT_VALUE))
        in_queue = await poll(lambda: receive_queue(port) >= baseline + len(SENT_VALUE), 10)
        self.report["sent_in_member_queue"] = in_queue
        self.report["cut_complete"] = cut([port, peer_port] if self.members > 1 else [])
        self.report["cut_at"] = self.clock()
        member.thaw()
        nursery.start_soon(self.outcome, "during", lambda: client.put("/p/during", "x"))
        nursery.start_soon(self.outcome, "read", lambda: client.get("/p/a"))
        if bare is not None:
            grpc = self.bare_transport
            nursery.start_soon(
                self.outcome,
                "bare_read",
                lambda: grpc.call(endpoint, RangeRequest(b"/p/a"), token=None, state=CallState()),
            )
            nursery.start_soon(self.outcome, "bare_watch", lambda: drain(bare))
        self.report["outcomes"] = self.outcomes

    async def noticed(self, root: et.Root, watch: et.WatchStream) -> None:
        """Wait until the writes, the watch and the mount (and on gRPC the bare calls) all
        noticed; then the partition is healed (by the caller)."""
        left: dict[str, float] = self.report.setdefault("left", {})
        waited: tuple[str, ...] = ("sent", "during", "bare_read", "bare_watch")
        if self.transport != "grpc":
            waited = ("sent", "during", "read")
        if self.quiet:
            waited = ()

        def all_noticed() -> bool:
            if "watch" not in left and watch.state is not et.ConnectionState.CONNECTED:
                left["watch"] = self.clock()
            if "mount" not in left and root.state is not et.MountState.SYNCED:
                left["mount"] = self.clock()
            return len(left) == 2 and self.finished(*waited)

        self.report["all_noticed"] = await poll(all_noticed, NOTICE_LIMIT)
        self.report["healed_at"] = self.clock()

    async def moved(
        self, client: et.Client, root: et.Root, watch: et.WatchStream, victim: str
    ) -> None:
        """Wait until the writes failed, the read was answered elsewhere, and the watch and
        the mount run on another member; then a write of the same client (to a member
        that has a quorum) must reach both while the partition lasts."""
        moved: dict[str, float] = self.report.setdefault("moved", {})

        def all_moved() -> bool:
            stats = watch.statistics()
            connected = stats.state is et.ConnectionState.CONNECTED
            if "watch" not in moved and connected and stats.endpoint != victim:
                moved["watch"] = self.clock()
            mount = root.statistics()
            if "mount" not in moved and mount.reconnects and mount.state is et.MountState.SYNCED:
                moved["mount"] = self.clock()
            return len(moved) == 2 and self.finished("sent", "during", "read")

        self.report["all_noticed"] = await poll(all_moved, NOTICE_LIMIT)
        mid = (await client.put("/p/mid", "m")).revision
        self.report["mid_endpoint_is_victim"] = client.endpoint == victim
        self.report["mid_seen"] = await poll(
            lambda: root.revision >= mid and self.watch_revision >= mid, NOTICE_LIMIT
        )
        self.report["mid_seen_at"] = self.clock()
        self.report["healed_at"] = self.clock()

    async def recovered(self, root: et.Root, watch: et.WatchStream) -> None:
        """The client comes back by itself: the watch, the mount and the read in flight."""
        back: dict[str, float] = self.report.setdefault("back", {})

        def all_back() -> bool:
            if "watch" not in back and watch.state is et.ConnectionState.CONNECTED:
                back["watch"] = self.clock()
            if "mount" not in back and root.state is et.MountState.SYNCED:
                back["mount"] = self.clock()
            return len(back) == 2 and (self.quiet or self.finished("read"))

        self.report["recovered"] = await poll(all_back, RECOVER_LIMIT)
        self.report["watch_statistics"] = repr(watch.statistics())

    async def compare(self, endpoints: list[str], root: et.Root, start: int) -> None:
        """Writes of a fresh client reach the mount and the watch; the tree equals the
        server at its revision, and the watch and the mount saw each revision once; the
        member that was cut off catches up."""
        async with et.open_client(endpoints[::-1], transport=self.transport) as fresh:
            await fresh.put("/p/x", "after")
            await fresh.txn(success=[et.Put("/p/y", "1"), et.Put("/p/z", "2")])
            end = (await fresh.delete("/p/a")).revision
            self.report["end"] = end
            self.report["caught_up"] = await poll(
                lambda: root.revision >= end and self.watch_revision >= end, RECOVER_LIMIT
            )
            self.report["sent_applied"] = await fresh.get("/p/sent") is not None
            self.report["during_applied"] = await fresh.get("/p/during") is not None
            at = root.revision
            mirrored = {n.key.decode(): n.raw for n in root.walk() if n.raw is not None}
            server = await fresh.range("/p", "/p0", revision=at)
            self.report["tree_revision"] = at
            self.report["tree_equal"] = mirrored == {kv.key.decode(): kv.value for kv in server.kvs}
            self.report["tree_keys"] = sorted(mirrored)
            self.report["resyncs"] = root.statistics().resyncs
            history: list[list[Any]] = []
            async with fresh.watch("/p/", prefix=True, start_revision=start + 1) as replay:
                async for response in replay:
                    history.extend(events_of(response))
                    if response.revision >= end:
                        break
            if self.members > 1:
                self.report["victim_caught_up"] = await self.caught_up(fresh, endpoints[0], end)
        self.report["history"] = [h for h in history if h[0] <= end]
        self.report["watch_events"] = [e for e in self.report["watch_events"] if e[0] <= end]
        self.report["updates"] = [u for u in self.report["updates"] if u[0] <= end]

    async def caught_up(self, client: et.Client, victim: str, end: int) -> bool:
        """Whether the member that was cut off reaches revision ``end`` by itself."""
        with trio.move_on_after(RECOVER_LIMIT):
            while (await client.status(victim)).header.revision < end:  # noqa: ASYNC110
                await trio.sleep(0.05)
            return True
        return False


def main() -> None:
    partition = Partition(*sys.argv[1:6])
    try:
        trio.run(partition.main)
    except BaseException:
        partition.report["failure"] = traceback.format_exc()
    json.dump(partition.report, sys.stdout)
    print()


if __name__ == "__main__":
    main()
