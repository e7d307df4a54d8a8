"""Helpers the conformance tests share (kv, watch, lease)."""

from __future__ import annotations

from trio_etcd_tree import Client, Event, WatchResponse, WatchStream


async def current_revision(client: Client) -> int:
    """The store's current revision (a count-only range answers with it in its header)."""
    return (await client.range(b"\0", count_only=True)).revision


async def event_responses(stream: WatchStream, n: int) -> list[WatchResponse]:
    """The responses that carry events, until ``n`` events came (progress reports skipped)."""
    out: list[WatchResponse] = []
    count = 0
    async for response in stream:
        if response.events:
            out.append(response)
            count += len(response.events)
            if count >= n:
                break
    assert count == n
    return out


def flat(responses: list[WatchResponse]) -> list[Event]:
    return [event for response in responses for event in response.events]
