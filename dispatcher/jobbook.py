"""The Jobs openfero made, as a list and watch of the Job namespace shows them: the source of truth
for storm control (active Jobs per definition and target, the newest Job per target, creations
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatcher.rendering import ANNOTATION_DEFINITION
from dispatcher.storm import ANNOTATION_TARGET, InvalidStormRule, StormRules

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
    target: str
    created: float  # seconds since the epoch
    ended: str = ""  # "", "Succeeded", "Failed", "Deleted" (before it finished)
    ended_at: float | None = None
    breaker: tuple[int, float] | None = None  # the definition's breaker when the Job was made: failures, cool-down (s)

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
        return cls(meta.get("name", ""), definition, str(annotations.get(ANNOTATION_TARGET, "")), created, ended, ended_at, breaker)


class JobBook:
    def __init__(self, on_change: Callable[[], None] | None = None):
        self._lock = threading.Lock()
        self._jobs: dict[str, Entry] = {}
        self._claims: dict[str, tuple[Entry, float]] = {}  # name -> (entry, monotonic claimed at)
        self._sorted: list[float] | None = None  # creation times, sorted (see _times)
        self.synced = threading.Event()
        self.on_change = on_change  # called (from the watch's thread) after each change
        self.on_ended: Callable[[Entry], None] | None = None  # called once per Job that ends while watched

    # -- fed by the watch --------------------------------------------------------------------

    def replace(self, jobs: list[dict[str, Any]]) -> None:
        entries = {e.name: e for e in map(Entry.of, jobs) if e is not None}
        with self._lock:
            for name, entry in entries.items():
                known = self._jobs.get(name) or (self._claims.get(name) or (None, 0.0))[0]
                if known is not None and known.created < entry.created:
                    entries[name] = Entry(name, entry.definition, entry.target, known.created, entry.ended, entry.ended_at, entry.breaker)
            self._jobs = entries
            self._sorted = None
            for name in entries:
                self._claims.pop(name, None)
        self.synced.set()
        self._changed()

    def apply(self, event_type: str, job: dict[str, Any]) -> None:
        entry = Entry.of(job)
        if entry is None:
            return
        ended_now = False
        with self._lock:
            before = self._jobs.get(entry.name)
            if event_type == "DELETED":
                self._jobs.pop(entry.name, None)
                ended_now = before is not None and not before.ended
                entry = Entry(entry.name, entry.definition, entry.target, entry.created, before.ended if before and before.ended else "Deleted", time.time(), entry.breaker)
            else:
                known = before or (self._claims.get(entry.name) or (None, 0.0))[0]
                if known is not None and known.created < entry.created:  # the first sight is the closer figure
                    entry = Entry(entry.name, entry.definition, entry.target, known.created, entry.ended, entry.ended_at, entry.breaker)
                self._jobs[entry.name] = entry
                ended_now = bool(entry.ended) and (before is None or not before.ended)
            claimed = self._claims.pop(entry.name, None)
            if event_type == "DELETED":
                for gone in (before, claimed[0] if claimed else None):
                    if gone is not None:
                        self._drop_time(gone.created)
            elif before is None and claimed is None:
                self._add_time(entry.created)
            elif before is None and claimed is not None and claimed[0].created != entry.created:
                self._drop_time(claimed[0].created)
                self._add_time(entry.created)
        if ended_now and self.on_ended is not None:
            self.on_ended(entry)
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- a dispatcher's own decisions --------------------------------------------------------

    def claim(self, name: str, definition: str, target: str) -> None:
        """Count a Job this dispatcher is about to create before the watch shows it."""
        with self._lock:
            if name not in self._jobs:
                if name in self._claims:
                    return
                self._claims[name] = (Entry(name, definition, target, time.time()), time.monotonic())
                self._add_time(self._claims[name][0].created)

    def unclaim(self, name: str) -> None:
        with self._lock:
            claimed = self._claims.pop(name, None)
            if claimed is not None:
                self._drop_time(claimed[0].created)

    def _expire_claims(self) -> None:
        now = time.monotonic()
        for name in [n for n, (_, at) in self._claims.items() if now - at > CLAIM_TTL_S]:
            self._drop_time(self._claims.pop(name)[0].created)

    def _add_time(self, created: float) -> None:
        if self._sorted is not None:
            bisect.insort(self._sorted, created)

    def _drop_time(self, created: float) -> None:
        if self._sorted is not None:
            i = bisect.bisect_left(self._sorted, created)
            if i < len(self._sorted) and self._sorted[i] == created:
                del self._sorted[i]
            else:
                self._sorted = None  # not where it should be: rebuild

    def _entries(self) -> list[Entry]:
        self._expire_claims()
        return [*self._jobs.values(), *(entry for entry, _ in self._claims.values())]

    # -- what storm control asks -------------------------------------------------------------

    def knows(self, name: str) -> bool:
        with self._lock:
            return name in self._jobs or name in self._claims

    def last_job(self, definition: str, target: str) -> tuple[str, float] | None:
        """The newest Job for a definition's target, and when it was created."""
        with self._lock:
            mine = [e for e in self._entries() if e.definition == definition and e.target == target]
        if not mine:
            return None
        newest = max(mine, key=lambda e: e.created)
        return newest.name, newest.created

    def active(self) -> dict[tuple[str, str], int]:
        """Jobs not ended, per (definition, target) and per (definition, "")."""
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            entries = self._entries()
        for e in entries:
            if e.ended:
                continue
            counts[(e.definition, "")] = counts.get((e.definition, ""), 0) + 1
            if e.target:
                counts[(e.definition, e.target)] = counts.get((e.definition, e.target), 0) + 1
        return counts

    def active_names(self) -> set[str]:
        with self._lock:
            return {e.name for e in self._entries() if not e.ended}

    def created_since(self, since: float) -> int:
        """Jobs created at or after ``since`` (seconds since the epoch); asked for every alert, so not a scan."""
        with self._lock:
            self._expire_claims()
            times = self._times()
            return len(times) - bisect.bisect_left(times, since)

    def _times(self) -> list[float]:
        """The creation times of the Jobs and claims, sorted; rebuilt only after a change."""
        if self._sorted is None:
            self._sorted = sorted([*(e.created for e in self._jobs.values()), *(e.created for e, _ in self._claims.values())])
        return self._sorted

    def recent(self, definition: str, count: int = 10) -> list[Entry]:
        """A definition's newest ended Jobs, newest first."""
        with self._lock:
            ended = [e for e in self._jobs.values() if e.definition == definition and e.ended]
        return sorted(ended, key=lambda e: e.ended_at or 0.0, reverse=True)[:count]

    def by_definition(self) -> dict[str, list[Entry]]:
        with self._lock:
            out: dict[str, list[Entry]] = {}
            for e in self._jobs.values():
                out.setdefault(e.definition, []).append(e)
            return out
