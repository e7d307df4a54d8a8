"""A TCP proxy in front of an etcd member's client port that can cut the member off.

Clients connect to the proxy (on 127.0.0.1); the member and its peers are untouched, so a
cut is a partition between the clients and one member while the cluster still sees it.
Cut, the proxy stops forwarding in both directions and holds new connections (as a network
that drops packets does: requests hang, nothing is refused); healed, what was held goes
through, as TCP retransmission delivers it after a short partition.
"""

from __future__ import annotations

import trio

__all__ = ["Proxy"]

_CHUNK = 65536


class Proxy:
    """Forward ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>``; see the module docs.

    Run it with ``await nursery.start(proxy.run)``; then :attr:`url` is set.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.url = ""
        self._healed = trio.Event()
        self._healed.set()

    @property
    def cut_off(self) -> bool:
        return not self._healed.is_set()

    def cut(self) -> None:
        """Stop forwarding (idempotent)."""
        if self._healed.is_set():
            self._healed = trio.Event()

    def heal(self) -> None:
        """Forward again, what was held first."""
        self._healed.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled.

        Cancellation: closes the listener and every connection.
        """
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._connection, listeners)
            task_status.started()

    async def _connection(self, client: trio.SocketStream) -> None:
        async with client:
            await self._healed.wait()
            try:
                server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
            except OSError:  # the member is down: the client sees a closed connection
                return
            async with server, trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
                nursery.start_soon(self._pump, server, client, nursery.cancel_scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope
    ) -> None:
        try:
            while data := await source.receive_some(_CHUNK):
                while not self._healed.is_set():
                    await self._healed.wait()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()  # one side ended: end the connection
