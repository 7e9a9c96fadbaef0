"""Where the storm controls will show: a definition's circuit breaker, and the alerts parked behind it.

openfero has no circuit breaker or parked queue yet, so the console shows
none and invents no format for them. When they exist, an implementation of
``StormControls`` that reads them (the breaker's state where the
dispatchers keep it, the parked queue as console.deadletters reads the
dead letters) is handed to ``console.app.create_app``; the definitions page
then shows each breaker, and the dead-letter page lists the parked alerts.
Alerts the storm controls held back ("suppressed", "waiting", "parked")
reach the timeline already, as outcome records (console.outcomes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Breaker:
    state: str  # "open", "closed", "half-open"
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


class NoStormControls:
    """This openfero's: no breakers, nothing parked."""

    available = False

    def breaker(self, definition: str) -> Breaker | None:
        return None

    async def parked(self) -> list[Parked]:
        return []
