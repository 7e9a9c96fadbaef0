"""Live pages: the timeline's changes pushed to browsers as server-sent events.

Changes are gathered and sent in batches (every ``FLUSH_S``): a storm of
alerts becomes a few events a second, each with at most ``MAX_BATCH`` rows,
not one event per alert. A browser that cannot keep up is told to reload
and let go, so a slow viewer never holds memory in the console.
"""

from __future__ import annotations

import asyncio
import contextlib

FLUSH_S = 0.25
MAX_BATCH = 200
_QUEUED_BATCHES = 20


class Subscription:
    """One live page: batches of changed ids; None once it is let go (``overflowed`` says why)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[list[str] | None] = asyncio.Queue(_QUEUED_BATCHES)
        self.overflowed = False


class Hub:
    def __init__(self) -> None:
        self.subscribers: set[Subscription] = set()
        self._pending: dict[str, None] = {}  # insertion-ordered ids
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def changed(self, ids: list[str]) -> None:
        if not self.subscribers:
            return
        for message_id in ids:
            self._pending.pop(message_id, None)
            self._pending[message_id] = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_S)
        ids, self._pending = list(self._pending), {}
        batch = ids[-MAX_BATCH:]  # the newest changes: an overflow means "reload" anyway
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(batch if len(ids) <= MAX_BATCH else [*batch, "*"])
            except asyncio.QueueFull:
                self._drop(sub, overflow=True)

    def subscribe(self) -> Subscription:
        sub = Subscription()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)

    def _drop(self, sub: Subscription, overflow: bool) -> None:
        self.subscribers.discard(sub)
        sub.overflowed = overflow
        with contextlib.suppress(asyncio.QueueFull):
            while not sub.queue.empty():
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)

    def close(self) -> None:
        """End every stream (shutdown)."""
        self.closed = True
        for sub in list(self.subscribers):
            self._drop(sub, overflow=False)
