"""The event loop both services run on.

uvloop by default: ingest accepts more alerts per second on it (the
benchmark measures both loops side by side; figures in the README's
Performance section). OPENFERO_EVENT_LOOP=asyncio keeps the standard
library's loop, for debugging or a platform without uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Awaitable, Callable
from typing import Any

from shared.settings import SettingsError



def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the chosen loop (``uvloop`` or ``asyncio``, as the settings parsed it); SettingsError without uvloop."""
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        raise SettingsError("OPENFERO_EVENT_LOOP=uvloop, but uvloop is not installed: install it, or set asyncio") from None
    return uvloop.new_event_loop


def running_loop_name() -> str:
    """Which loop this coroutine runs on, for the start-up log line."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def freeze_startup_heap() -> None:
    """Exempt what start-up built from the collector's full passes, which would otherwise stall the loop.

    The Kubernetes client, pydantic and aio-pika leave about 100,000 tracked
    objects behind; a full collection walked them all in about 90 ms (measured:
    a dispatcher's event loop stalled that long whenever one ran). Those
    objects live as long as the process, so they need no collecting.
    """
    gc.collect()
    gc.freeze()


async def first_done(*waits: Awaitable[Any]) -> None:
    """Return when the first of ``waits`` is done; the others are cancelled and awaited."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
