"""The storm controls on the console: each definition's circuit breaker, and the alerts parked behind them.

``ClusterStormControls`` reads both where the dispatchers keep them: the
breakers from the Lease ``<prefix>-breakers`` (dispatcher.breaking), read
every few seconds while the console runs; the parked alerts from
``<prefix>.parked`` as ``openfero parked list`` reads them (each taken
unacknowledged, copied, handed back), one reading serving every viewer for
a few seconds. The console writes neither; `openfero definitions resume`
and `openfero parked replay` do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

log = logging.getLogger("openfero.console")


@dataclass(frozen=True)
class Breaker:
    state: str  # "open", "closed", "half-open" (one trial Job may run)
    detail: str = ""


@dataclass(frozen=True)
class Parked:
    id: str
    alertname: str
    definition: str
    since: str


class StormControls(Protocol):
    available: bool

    def breaker(self, definition: str) -> Breaker | None:
        """The breaker of a definition (its openfero.io/definition name); None where it has none."""

    async def parked(self) -> list[Parked]:
        """The alerts parked behind open breakers."""

    async def run(self, stop: asyncio.Event) -> None:
        """Keep what ``breaker`` answers from up to date until ``stop`` is set."""


class NoStormControls:
    """Without a cluster: no breakers, nothing parked."""

    available = False

    def breaker(self, definition: str) -> Breaker | None:
        return None

    async def parked(self) -> list[Parked]:
        return []

    async def run(self, stop: asyncio.Event) -> None:
        return None


class ClusterStormControls:
    """The breakers from the cluster's Lease, the parked alerts from the broker."""

    available = True

    def __init__(self, api_client: Any, namespace: str, prefix: str, connection: Callable[[], Any], every_s: float = 5.0, cache_s: float = 5.0):
        from dispatcher.breaking import BreakerBoard, BreakerStore
        from dispatcher.naming import dns_label
        from shared.topology import Names

        self.board = BreakerBoard(gauge=False)
        self.store = BreakerStore(api_client, namespace, dns_label(f"{prefix}-breakers")) if api_client is not None else None
        self.names = Names(prefix)
        self.connection = connection
        self.every_s = every_s
        self.cache_s = cache_s
        self._parked: tuple[float, list[Parked]] = (float("-inf"), [])
        self._lock = asyncio.Lock()

    def breaker(self, definition: str) -> Breaker | None:
        from dispatcher.storm import Breaker as State

        state = self.board.state(definition)
        if state.state is State.CLOSED:
            return Breaker("closed", f"{state.failures} failed in a row" if state.failures else "")
        since = datetime.fromtimestamp(state.since, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        if state.state is State.OPEN:
            return Breaker("open", f"{state.failures} failed Jobs in a row; open since {since}, a trial after {state.cooldown_s:g} s")
        return Breaker("half-open", f"trial Job {state.trial_job}" if state.trial_job else "the next alert runs as the trial")

    async def run(self, stop: asyncio.Event) -> None:
        """Read the breakers every ``every_s`` until ``stop``."""
        if self.store is None:
            return
        from dispatcher.requesting import Unreachable

        while not stop.is_set():
            try:
                self.board.replace(await asyncio.to_thread(self.store.lease))
            except Unreachable as exc:
                log.warning("could not read the breakers: %s", exc, extra={"event": "console.breakers_failed"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.every_s)

    async def parked(self) -> list[Parked]:
        from openfero.records import Filter
        from openfero.replaying import DeadLetters
        from shared import headers as h

        async with self._lock:
            read_at, cached = self._parked
            if time.monotonic() - read_at < self.cache_s:
                return cached
            connection = self.connection()
            if connection is None or connection.is_closed:
                return cached
            result = await DeadLetters(connection, self.names, parked=True).select(Filter())
            parked = []
            for r in result.matched:
                definition = r.headers.get(h.DEFINITION)
                since = r.when.strftime("%Y-%m-%d %H:%M:%SZ") if r.when else "?"
                parked.append(Parked(r.id, r.alertname, definition if isinstance(definition, str) else "", since))
            self._parked = (time.monotonic(), parked)
            return parked
