"""Against real etcd processes of our own: killed servers, a 3-member cluster, auth, TLS.

These tests start their own servers (not the session's shared ones) because they kill,
restart or reconfigure them. Waiting here is real time; the tests still synchronise on
revisions, never on sleeps, except where time itself is the subject (token expiry).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest
import trio

import trio_etcd_tree as et
from trio_etcd_tree.testing import EtcdCluster, EtcdMember, find_etcd
from trio_etcd_tree.testing.pytest_plugin import _binary

VERSIONS = ["3.4", "3.5"]


@pytest.fixture(params=VERSIONS)
def cluster(request: pytest.FixtureRequest) -> Iterator[EtcdCluster]:
    with EtcdCluster.start(_binary(request.param), progress_notify_interval=1) as cluster:
        yield cluster


class Writer:
    """Puts distinct keys one after the other, riding out failures, until told to stop."""

    def __init__(self, client: et.Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.written = 0
        self.failures = 0
        self.progress = trio.Event()
        self.failed = trio.Event()

    async def run(self, count: int) -> None:
        for i in itertools.count():
            if self.written >= count:
                return
            # The test's own deadline replaces the client's request_deadline, so each put
            # gets one here: with the member down, a put would otherwise retry until then.
            with trio.move_on_after(5) as scope:
                try:
                    await self.client.put(f"{self.prefix}{i:05d}", str(i))
                except et.EtcdError:
                    scope.cancel()
            if scope.cancel_called:
                self.failures += 1  # unknown outcome: the final range tells what landed
                self.failed.set()
                await trio.sleep(0.05)
                continue
            self.written += 1
            if self.written % 50 == 0:
                self.progress.set()
                self.progress = trio.Event()


async def collect(stream: et.WatchStream, until: int) -> list[int]:
    """Event revisions from the stream until it has delivered revision `until`."""
    revisions: list[int] = []
    seen = 0
    while seen < until:
        response = await stream.receive()
        revisions.extend(e.kv.mod_revision for e in response.events)
        seen = response.revision
    return revisions


async def check_every_revision_once(
    client: et.Client, stream: et.WatchStream, prefix: str, since: int = 0
) -> None:
    """The stream delivers each revision written under `prefix` after `since`, once, in order."""
    final = await client.range(prefix, prefix=True)
    expected = [kv.mod_revision for kv in final.kvs if kv.mod_revision > since]
    got = await collect(stream, final.revision)
    assert got == sorted(set(got)), "revisions repeated or out of order"
    assert got == sorted(expected), "revisions missing"


async def _in_thread(fn: object) -> None:
    await trio.to_thread.run_sync(fn)  # type: ignore[arg-type]


async def test_watch_survives_kill_and_restart(cluster: EtcdCluster) -> None:
    member = cluster.members[0]
    async with et.open_client(cluster.endpoints) as client:
        async with client.watch("/kill/", prefix=True) as stream:
            writer = Writer(client, "/kill/k")
            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(writer.run, 300)
                    await writer.progress.wait()
                    await _in_thread(member.kill)
                    await writer.failed.wait()  # a write while the member is down
                    await _in_thread(member.start)
                    await writer.progress.wait()
                    await _in_thread(member.kill)
                    await _in_thread(member.start)
                await check_every_revision_once(client, stream, "/kill/")
            assert stream.statistics().reconnects >= 2
            assert writer.failures > 0


async def test_three_members_lose_the_one_we_talk_to() -> None:
    binary = find_etcd("3.5")
    with EtcdCluster.start(binary, size=3, progress_notify_interval=1) as cluster:
        async with et.open_client(cluster.endpoints) as client:
            since = (await client.put("/c3/start", "0")).revision
            async with client.watch("/c3/", prefix=True) as stream:
                victim = _member_of(cluster, client.endpoint)
                writer = Writer(client, "/c3/k")
                with trio.fail_after(120):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(writer.run, 200)
                        await writer.progress.wait()
                        await _in_thread(victim.kill)
                        await writer.progress.wait()  # writes go on through another member
                    assert client.endpoint != victim.client_url
                    assert await client.get("/c3/start") is not None  # and reads
                    await check_every_revision_once(client, stream, "/c3/", since)
                assert stream.statistics().endpoint != victim.client_url


def _member_of(cluster: EtcdCluster, endpoint: str) -> EtcdMember:
    return next(m for m in cluster.members if m.client_url == endpoint)


@pytest.mark.parametrize("version", VERSIONS)
async def test_auth_errors_and_token_renewal(version: str) -> None:
    with EtcdCluster.start(_binary(version), auth_token_ttl=2) as cluster:
        cluster.enable_auth("rootpw")
        cluster.add_user("app", "apppw", readwrite=["/app/"])
        authentications = 0

        class Counting(httpx.AsyncHTTPTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                nonlocal authentications
                authentications += request.url.path == "/v3/auth/authenticate"
                return await super().handle_async_request(request)

        async with et.open_client(cluster.endpoints, username="app", password="nope") as client:
            with pytest.raises(et.AuthenticationError, match="authentication failed"):
                await client.get("/app/a")
        async with et.open_client(
            cluster.endpoints, username="app", password="apppw", transport=Counting()
        ) as client:
            await client.put("/app/a", "1")
            with pytest.raises(et.PermissionDeniedError, match="permission denied"):
                await client.put("/elsewhere", "1")
            assert authentications == 1
            await trio.sleep(3.5)  # the server forgets tokens unused for 2 s
            kv = await client.get("/app/a")
            assert kv is not None
            assert authentications == 2
            async with client.watch("/app/", prefix=True) as stream:
                rev = (await client.put("/app/b", "2")).revision
                while not (response := await stream.receive()).events:
                    pass
                assert response.revision == rev


@pytest.mark.parametrize("version", VERSIONS)
async def test_tls_with_client_certificates(version: str) -> None:
    with EtcdCluster.start(_binary(version), tls=True, client_cert_auth=True) as cluster:
        assert cluster.ca_path
        assert cluster.client_cert_path
        assert cluster.client_key_path
        async with et.open_client(
            cluster.endpoints,
            ca_cert=cluster.ca_path,
            client_cert=cluster.client_cert_path,
            client_key=cluster.client_key_path,
        ) as client:
            assert cluster.endpoints[0].startswith("https://")
            async with client.watch("/tls/", prefix=True) as stream:
                rev = (await client.put("/tls/a", "1")).revision
                while not (response := await stream.receive()).events:
                    pass
                assert response.revision == rev
        async with et.open_client(cluster.endpoints, ca_cert=cluster.ca_path) as client:
            with pytest.raises(et.UnavailableError):  # no client certificate: refused
                await client.get("/tls/a")
