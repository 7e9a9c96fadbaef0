"""The Jobs openfero made, as a list and watch of the Job namespace shows them: the source of truth
for storm control (active Jobs per definition and target, the newest Job per cool-down target, creations
in the last minute, how Jobs ended).

Each dispatcher keeps one (``JobBook``), fed by a ``ResourceWatcher`` on
the Jobs labelled ``app.kubernetes.io/managed-by=openfero``; nothing of it
is stored anywhere else, so it is the same after a restart and for every
dispatcher. A dispatcher also notes the Jobs it creates itself the moment
it decides to (``claim``), so that its own decisions never race each other
while the watch catches up.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from dispatcher.rendering import ANNOTATION_DEFINITION
from dispatcher.storm import ANNOTATION_CONCURRENCY_TARGET, ANNOTATION_COOLDOWN_TARGET, InvalidStormRule, StormRules

CLAIM_TTL_S = 30.0  # a claim the watch never confirms (the create failed) is forgotten after this


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Entry:
    name: str
    definition: str
    target: str  # as the concurrency limit counts (openfero.io/concurrency-target)
    created: float  # seconds since the epoch
    ended: str = ""  # "", "Succeeded", "Failed", "Deleted" (before it finished)
    ended_at: float | None = None
    breaker: tuple[int, float] | None = None  # the definition's breaker when the Job was made: failures, cool-down (s)
    cooldown_target: str = ""  # as the cool-down counts (openfero.io/cooldown-target)

    @classmethod
    def of(cls, job: dict[str, Any]) -> Entry | None:
        meta = job.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        definition = annotations.get(ANNOTATION_DEFINITION)
        if not isinstance(definition, str):
            return None
        # creationTimestamp has whole seconds: the end of its second, so that a window never counts a Job as older
        stamp = _epoch(meta.get("creationTimestamp"))
        created = stamp + 1.0 if stamp is not None else time.time()
        ended, ended_at = "", None
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
                ended = "Succeeded" if condition["type"] == "Complete" else "Failed"
                ended_at = _epoch(condition.get("lastTransitionTime")) or time.time()
        if not ended and meta.get("deletionTimestamp"):
            ended, ended_at = "Deleted", _epoch(meta.get("deletionTimestamp")) or time.time()
        try:
            rules = StormRules.of(annotations)
        except InvalidStormRule:
            rules = StormRules()
        breaker = (rules.breaker_failures, rules.breaker_cooldown_s) if rules.breaker_failures is not None else None
        target, cooldown_target = str(annotations.get(ANNOTATION_CONCURRENCY_TARGET, "")), str(annotations.get(ANNOTATION_COOLDOWN_TARGET, ""))
        return cls(meta.get("name", ""), definition, target, created, ended, ended_at, breaker, cooldown_target)


class JobBook:
    """Kept up to date as the watch reports, so that what the guard asks for each alert costs no scan."""

    def __init__(self, on_change: Callable[[], None] | None = None):
        self._lock = threading.Lock()
        self._jobs: dict[str, Entry] = {}
        self._claims: dict[str, tuple[Entry, float]] = {}  # name -> (entry, monotonic claimed at)
        self._times: list[float] = []  # creation times of the Jobs and claims, sorted
        self._active: Counter[tuple[str, str]] = Counter()  # not ended, per (definition, target) and (definition, "")
        self._newest: dict[tuple[str, str], tuple[float, str]] = {}  # per (definition, cool-down target): (created, name)
        self.synced = threading.Event()
        self.on_change = on_change  # called (from the watch's thread) after each change
        self.on_ended: Callable[[Entry], None] | None = None  # called once per Job that ends while watched

    # -- the indexes, under the lock -----------------------------------------------------------

    def _index(self, entry: Entry) -> None:
        bisect.insort(self._times, entry.created)
        if not entry.ended:
            self._active[(entry.definition, "")] += 1
            if entry.target:
                self._active[(entry.definition, entry.target)] += 1
        key = (entry.definition, entry.cooldown_target)
        if key not in self._newest or self._newest[key] <= (entry.created, entry.name):
            self._newest[key] = (entry.created, entry.name)

    def _unindex(self, entry: Entry) -> None:
        i = bisect.bisect_left(self._times, entry.created)
        if i < len(self._times) and self._times[i] == entry.created:
            del self._times[i]
        if not entry.ended:
            for key in ((entry.definition, ""), (entry.definition, entry.target)) if entry.target else ((entry.definition, ""),):
                self._active[key] -= 1
                if self._active[key] <= 0:
                    del self._active[key]
        key = (entry.definition, entry.cooldown_target)
        if self._newest.get(key, (0.0, ""))[1] == entry.name:
            # The newest went (deleted, or a claim that never came): the next newest, by a scan of this rare case
            rest = [(e.created, e.name) for e in self._all() if (e.definition, e.cooldown_target) == key and e.name != entry.name]
            if rest:
                self._newest[key] = max(rest)
            else:
                del self._newest[key]

    def _all(self) -> list[Entry]:
        return [*self._jobs.values(), *(entry for entry, _ in self._claims.values())]

    def _take(self, name: str) -> Entry | None:
        """Remove what the book holds under ``name`` (a Job or a claim), and say what it was."""
        entry = self._jobs.pop(name, None)
        claimed = self._claims.pop(name, None)
        gone = entry or (claimed[0] if claimed else None)
        if gone is not None:
            self._unindex(gone)
        return gone

    def _expire_claims(self) -> None:
        now = time.monotonic()
        for name in [n for n, (_, at) in self._claims.items() if now - at > CLAIM_TTL_S]:
            self._take(name)

    # -- fed by the watch --------------------------------------------------------------------

    def replace(self, jobs: list[dict[str, Any]]) -> None:
        entries = {e.name: e for e in map(Entry.of, jobs) if e is not None}
        with self._lock:
            known = {e.name: e for e in self._all()}
            claims = {n: c for n, c in self._claims.items() if n not in entries}
            self._jobs, self._claims, self._times, self._active, self._newest = {}, {}, [], Counter(), {}
            for name, entry in entries.items():
                if name in known and known[name].created < entry.created:  # the first sight is the closer figure
                    entry = replace(entry, created=known[name].created)
                self._jobs[name] = entry
                self._index(entry)
            for name, (entry, at) in claims.items():
                self._claims[name] = (entry, at)
                self._index(entry)
        self.synced.set()
        self._changed()

    def apply(self, event_type: str, job: dict[str, Any]) -> None:
        entry = Entry.of(job)
        if entry is None:
            return
        with self._lock:
            before = self._jobs.get(entry.name)
            old = self._take(entry.name)
            if event_type == "DELETED":
                ended_now = before is not None and not before.ended
                entry = replace(entry, created=old.created if old else entry.created, ended=before.ended if before and before.ended else "Deleted", ended_at=time.time())
            else:
                if old is not None and old.created < entry.created:
                    entry = replace(entry, created=old.created)
                self._jobs[entry.name] = entry
                self._index(entry)
                ended_now = bool(entry.ended) and (before is None or not before.ended)
        if ended_now and self.on_ended is not None:
            self.on_ended(entry)
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- a dispatcher's own decisions --------------------------------------------------------

    def claim(self, name: str, definition: str, target: str, cooldown_target: str = "") -> None:
        """Count a Job this dispatcher is about to create before the watch shows it."""
        with self._lock:
            if name not in self._jobs and name not in self._claims:
                entry = Entry(name, definition, target, time.time(), cooldown_target=cooldown_target)
                self._claims[name] = (entry, time.monotonic())
                self._index(entry)

    def unclaim(self, name: str) -> None:
        with self._lock:
            if name in self._claims and name not in self._jobs:
                self._take(name)

    # -- what storm control asks -------------------------------------------------------------

    def knows(self, name: str) -> bool:
        with self._lock:
            return name in self._jobs or name in self._claims

    def last_job(self, definition: str, target: str) -> tuple[str, float] | None:
        """The newest Job for a definition's cool-down target, and when it was created."""
        with self._lock:
            self._expire_claims()
            newest = self._newest.get((definition, target))
        return (newest[1], newest[0]) if newest else None

    def active(self) -> dict[tuple[str, str], int]:
        """Jobs not ended, per (definition, target) and per (definition, "")."""
        with self._lock:
            self._expire_claims()
            return dict(self._active)

    def created_since(self, since: float) -> int:
        """Jobs created at or after ``since`` (seconds since the epoch)."""
        with self._lock:
            self._expire_claims()
            return len(self._times) - bisect.bisect_left(self._times, since)
