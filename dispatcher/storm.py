"""Storm control: what a definition asks for, and the rules that decide. No I/O here.

A definition may ask (ConfigMap annotations, or the Operarius'
``spec.stormControl``, which maps onto them):

    openfero.io/concurrency: "3"          at most 3 of its Jobs active at once ...
    openfero.io/concurrency-key: namespace  ... per namespace (the alert labels that name a target)
    openfero.io/cooldown: 10m             after a Job for a target, suppress its alerts for 10 min
    openfero.io/cooldown-key: namespace,pod  the labels that name a target for the cool-down
    openfero.io/breaker-failures: "5"     after 5 failed Jobs in a row, open the breaker
    openfero.io/breaker-cooldown: 15m     an open breaker tries one Job again after 15 min

Everything is off unless asked for. The decisions are functions of what
the caller knows (the Jobs the dispatcher sees, the breaker's state): the
handler asks ``gate`` about each rendered Job, the wait leader asks
``releasable`` which waiting alerts may go, and ``breaker_after`` says what
an ended Job does to a definition's breaker.
"""

from __future__ import annotations

import bisect
import enum
import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from shared.durations import parse_duration

ANNOTATION_CONCURRENCY = "openfero.io/concurrency"
ANNOTATION_CONCURRENCY_KEY = "openfero.io/concurrency-key"
ANNOTATION_COOLDOWN_KEY = "openfero.io/cooldown-key"
ANNOTATION_COOLDOWN = "openfero.io/cooldown"
ANNOTATION_BREAKER_FAILURES = "openfero.io/breaker-failures"
ANNOTATION_BREAKER_COOLDOWN = "openfero.io/breaker-cooldown"
# On each Job of a definition with a key: which target it is for.
ANNOTATION_CONCURRENCY_TARGET = "openfero.io/concurrency-target"
ANNOTATION_COOLDOWN_TARGET = "openfero.io/cooldown-target"

DEFAULT_BREAKER_COOLDOWN_S = 600.0


class InvalidStormRule(ValueError):
    """An annotation of storm control that cannot be read."""


@dataclass(frozen=True)
class StormRules:
    concurrency: int | None = None  # None: no limit
    concurrency_key: tuple[str, ...] = ()  # labels that name a target of the limit; () is the whole definition
    cooldown_s: float | None = None
    cooldown_key: tuple[str, ...] = ()  # labels that name a target of the cool-down; () is the whole definition
    breaker_failures: int | None = None
    breaker_cooldown_s: float = DEFAULT_BREAKER_COOLDOWN_S

    @property
    def any(self) -> bool:
        return self.concurrency is not None or self.cooldown_s is not None or self.breaker_failures is not None

    @classmethod
    def of(cls, annotations: Mapping[str, str]) -> StormRules:
        """The rules a definition's annotations ask for; InvalidStormRule for one that cannot be read."""
        return cls(
            concurrency=_count(annotations, ANNOTATION_CONCURRENCY),
            concurrency_key=_labels(annotations, ANNOTATION_CONCURRENCY_KEY),
            cooldown_s=_seconds(annotations, ANNOTATION_COOLDOWN),
            cooldown_key=_labels(annotations, ANNOTATION_COOLDOWN_KEY),
            breaker_failures=_count(annotations, ANNOTATION_BREAKER_FAILURES),
            breaker_cooldown_s=_seconds(annotations, ANNOTATION_BREAKER_COOLDOWN) or DEFAULT_BREAKER_COOLDOWN_S,
        )

    def concurrency_target(self, labels: Mapping[str, str]) -> str:
        """The target an alert is for, as the limit counts: ``namespace=shop`` ("" without a key)."""
        return target(self.concurrency_key, labels)

    def cooldown_target(self, labels: Mapping[str, str]) -> str:
        """The target an alert is for, as the cool-down counts: ``namespace=shop,pod=web-1``."""
        return target(self.cooldown_key, labels)


def target(key: tuple[str, ...], labels: Mapping[str, str]) -> str:
    """``name=value,...`` of the labels ``key`` names (a missing label is empty); "" without a key."""
    return ",".join(f"{name}={labels.get(name, '')}" for name in key)


def _labels(annotations: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in str(annotations.get(name, "")).split(",") if part.strip())


def _count(annotations: Mapping[str, str], name: str) -> int | None:
    text = annotations.get(name)
    if text is None or str(text).strip() == "":
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise InvalidStormRule(f"annotation {name}: {text!r} is not a whole number") from None
    if value < 1:
        raise InvalidStormRule(f"annotation {name}: {value} must be at least 1")
    return value


def _seconds(annotations: Mapping[str, str], name: str) -> float | None:
    text = annotations.get(name)
    if text is None or str(text).strip() == "":
        return None
    try:
        value = parse_duration(str(text))
    except ValueError as exc:
        raise InvalidStormRule(f"annotation {name}: {exc}") from None
    return value if value > 0 else None


# -- the handler's gate ------------------------------------------------------------------------


class Gate(enum.Enum):
    GO = "go"  # create the Job
    SUPPRESS = "suppress"  # a Job for the target ran within the cool-down
    WAIT = "wait"  # over the concurrency or global limit: wait on the broker for the wait leader
    PARK = "park"  # the definition's breaker is open


class Breaker(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"  # new alerts are parked
    TRIAL = "trial"  # the cool-down is over: the next alert runs as the one trial, later ones are parked


@dataclass(frozen=True)
class Verdict:
    gate: Gate
    covering_job: str = ""  # with SUPPRESS: the Job that covers the target
    why: str = ""  # with WAIT: "concurrency" or "global"
    trial: bool = False  # with GO: this Job is the breaker's trial


def gate(
    rules: StormRules,
    job: str,
    admitted: bool,
    last_job: tuple[str, float] | None,
    now: float,
    breaker: Breaker = Breaker.CLOSED,
    global_full: bool = False,
) -> Verdict:
    """What to do with the Job ``job`` rendered for an alert.

    ``admitted``: the wait leader released the alert (its slot is taken for
    it). ``last_job``: the newest Job for the alert's target and when it was
    created (seconds). ``global_full``: the global limit is reached. The
    breaker comes first (a parked alert is kept whole for a replay), then the
    cool-down, then the limits.
    """
    if rules.breaker_failures is not None and breaker is Breaker.OPEN:
        return Verdict(Gate.PARK)
    if rules.cooldown_s is not None and last_job is not None:
        covering, created = last_job
        if covering != job and now - created < rules.cooldown_s:
            return Verdict(Gate.SUPPRESS, covering_job=covering)
    if admitted:
        return Verdict(Gate.GO, trial=breaker is Breaker.TRIAL)
    if rules.concurrency is not None:
        return Verdict(Gate.WAIT, why="concurrency")
    if global_full:
        return Verdict(Gate.WAIT, why="global")
    return Verdict(Gate.GO, trial=rules.breaker_failures is not None and breaker is Breaker.TRIAL)


# -- the wait leader ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """An alert held in the wait queue, as its headers describe it."""

    tag: int  # which held message
    definition: str
    target: str  # "" for a limit on the whole definition
    limit: int | None  # None: it waits for the global limit only
    job: str
    received: str = ""  # when ingest received the alert (RFC 3339 UTC): oldest first
    cooldown_target: str = ""  # its target as the definition's cool-down counts
    cooldown_s: float | None = None  # the definition's cool-down, when it has one


def releasable(
    waiting: Iterable[Waiting],
    active: Mapping[tuple[str, str], int],
    room_global: int | None,
    slotless: Callable[[Waiting], bool] | None = None,
) -> list[int]:
    """Which waiting alerts go now, oldest first (by receipt, then as they came to wait): each while
    its definition (or target) has a slot.

    ``active`` counts the Jobs running or on their way per (definition,
    target) and per (definition, "") for the whole definition;
    ``room_global`` is how many more Jobs the global limit allows now
    (None: no limit). An alert whose slot is full does not hold back a later
    one whose slot is free. ``slotless`` says which alerts will create no Job
    (their target is in its cool-down, their breaker parks them): at the head
    of their slot they go at once, full or not, and take nothing.
    """
    held = WaitList()
    for alert in waiting:
        held.add(alert)
    return held.releasable(active, room_global, slotless)


class WaitList:
    """The alerts the wait leader holds, by slot, each slot oldest first: choosing what goes costs a
    step per slot with room, not one per waiting alert."""

    def __init__(self) -> None:
        self._slots: dict[tuple[str, str], list[tuple[str, int]]] = {}  # slot -> [(received, tag)], sorted
        self._alerts: dict[int, Waiting] = {}

    @staticmethod
    def slot(alert: Waiting) -> tuple[str, str]:
        # Alerts that wait for the global limit alone share one slot without a limit of its own
        return (alert.definition, alert.target) if alert.limit is not None else ("", "")

    def __len__(self) -> int:
        return len(self._alerts)

    def add(self, alert: Waiting) -> None:
        self._alerts[alert.tag] = alert
        bisect.insort(self._slots.setdefault(self.slot(alert), []), (alert.received, alert.tag))

    def remove(self, tag: int) -> None:
        alert = self._alerts.pop(tag)
        slot = self._slots[self.slot(alert)]
        del slot[bisect.bisect_left(slot, (alert.received, tag))]
        if not slot:
            del self._slots[self.slot(alert)]

    def get(self, tag: int) -> Waiting:
        return self._alerts[tag]

    def releasable(self, active: Mapping[tuple[str, str], int], room_global: int | None, slotless: Callable[[Waiting], bool] | None = None) -> list[int]:
        """The tags that go now, oldest first (see ``releasable``)."""
        taken = dict(active)
        heads = [(queue[0][0], queue[0][1], slot, 0) for slot, queue in self._slots.items()]
        heapq.heapify(heads)
        out: list[int] = []
        while heads:
            _, tag, slot, index = heapq.heappop(heads)
            alert = self._alerts[tag]
            if slotless is not None and slotless(alert):
                out.append(tag)  # it will make no Job: it takes no slot and no room
            else:
                if room_global is not None and room_global <= 0:
                    continue
                if alert.limit is not None:
                    if taken.get(slot, 0) >= alert.limit:
                        continue  # this slot is full: nothing more of it goes now
                    taken[slot] = taken.get(slot, 0) + 1
                out.append(tag)
                if room_global is not None:
                    room_global -= 1
            queue = self._slots[slot]
            if index + 1 < len(queue):
                heapq.heappush(heads, (queue[index + 1][0], queue[index + 1][1], slot, index + 1))
        return out


# -- the breaker -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakerState:
    state: Breaker = Breaker.CLOSED
    failures: int = 0  # failed Jobs in a row
    since: float = 0.0  # when it opened (seconds since the epoch)
    cooldown_s: float = DEFAULT_BREAKER_COOLDOWN_S  # how long it stays open, as the definition said when it opened
    trial_job: str = ""  # the trial Job, once one was claimed

    @property
    def parks(self) -> bool:
        """Whether new alerts are parked: open, or trying with its one trial Job claimed."""
        return self.state is Breaker.OPEN or (self.state is Breaker.TRIAL and bool(self.trial_job))

    def to_text(self) -> str:
        return f"{self.state.value} {self.failures} {self.since:.3f} {self.cooldown_s:g} {self.trial_job}".strip()

    @classmethod
    def from_text(cls, text: str) -> BreakerState:
        """A state as ``to_text`` wrote it; anything else reads as closed."""
        parts = str(text).split()
        try:
            return cls(Breaker(parts[0]), int(parts[1]), float(parts[2]), float(parts[3]), parts[4] if len(parts) > 4 else "")
        except (IndexError, ValueError):
            return cls()


def breaker_after(state: BreakerState, job: str, failed: bool, threshold: int, cooldown_s: float, now: float) -> BreakerState:
    """A definition's breaker once its Job ``job`` has ended (``failed`` or not)."""
    if state.state is Breaker.TRIAL and state.trial_job:
        if job != state.trial_job:
            return state  # a Job from before it opened: only the trial decides
        return BreakerState() if not failed else BreakerState(Breaker.OPEN, state.failures + 1, now, cooldown_s)
    if state.state is not Breaker.CLOSED:
        return state
    if not failed:
        return BreakerState() if state.failures else state
    failures = state.failures + 1
    if failures >= threshold:
        return BreakerState(Breaker.OPEN, failures, now, cooldown_s)
    return BreakerState(Breaker.CLOSED, failures)


def breaker_now(state: BreakerState, now: float) -> BreakerState:
    """An open breaker whose cool-down has passed lets one trial Job through."""
    if state.state is Breaker.OPEN and now - state.since >= state.cooldown_s:
        return BreakerState(Breaker.TRIAL, state.failures, state.since, state.cooldown_s)
    return state


def trial_claimed(state: BreakerState, job: str) -> BreakerState | None:
    """The state with ``job`` as its trial; None when it is not waiting for one (another dispatcher's came first)."""
    if state.state is Breaker.TRIAL and not state.trial_job:
        return BreakerState(Breaker.TRIAL, state.failures, state.since, state.cooldown_s, job)
    if state.state is Breaker.TRIAL and state.trial_job == job:
        return state  # a redelivery of the trial's own alert
    return None
