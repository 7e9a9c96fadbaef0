"""The breakers' state, kept in the cluster: the annotations of the Lease ``<prefix>-breakers`` in
the dispatchers' namespace, one per definition whose breaker has counted a failure.

A Lease, not a ConfigMap: the dispatchers may create Leases already, and
may read and write only the ones their Role names, while a right to create
ConfigMaps in their namespace would let them write definitions. Nobody
holds this Lease; it is a record. Each annotation
``breaker.openfero.io/<hash of the definition>`` holds JSON: the definition
(``<source>/<key>``, as the Job annotation ``openfero.io/definition`` names
it) and its ``BreakerState`` as text. Every write reads the Lease and
replaces it with the resourceVersion read; on 409 it reads and writes
again, so the wait leader (which counts failed Jobs and opens the breaker),
the dispatcher that claims a trial and ``openfero definitions resume`` never
undo each other's writes.

``BreakerStore`` writes (blocking: call it from a thread); ``BreakerBoard``
is what every dispatcher reads, fed by a GET of that Lease every second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from dispatcher.metrics import BREAKER_OPEN
from dispatcher.requesting import Unreachable, call
from dispatcher.storm import Breaker, BreakerState

log = logging.getLogger("openfero.dispatcher")

_MAX_CONFLICTS = 20


ANNOTATION_PREFIX = "breaker.openfero.io/"


def breaker_key(definition: str) -> str:
    """The annotation that holds a definition's breaker (the definition itself is in its value)."""
    return ANNOTATION_PREFIX + hashlib.sha256(definition.encode()).hexdigest()[:32]


def definition_name(definition: str) -> str:
    """A definition's name for people and metrics: the ConfigMap's or the Operarius' name."""
    parts = definition.split("/")
    if len(parts) >= 3 and parts[1] == "Operarius":
        return parts[2]
    return parts[1] if len(parts) >= 2 else definition


def read_states(lease: dict[str, Any] | None) -> dict[str, BreakerState]:
    """Definition -> state, from the Lease as read (a value that cannot be read is skipped)."""
    out: dict[str, BreakerState] = {}
    annotations = ((lease or {}).get("metadata") or {}).get("annotations") or {}
    for key, value in annotations.items():
        if not str(key).startswith(ANNOTATION_PREFIX):
            continue
        try:
            entry = json.loads(value)
            out[str(entry["definition"])] = BreakerState.from_text(str(entry["state"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


class BreakerStore:
    def __init__(self, api_client: Any, namespace: str, name: str, timeout_s: float = 10.0):
        self.api_client = api_client
        self.namespace = namespace
        self.name = name
        self.timeout_s = timeout_s

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    def states(self) -> dict[str, BreakerState]:
        got = call(self.api_client, "GET", self.path, self.timeout_s)
        if got.status == 404:
            return {}
        if not got.ok:
            raise Unreachable(f"reading Lease {self.namespace}/{self.name}: {got}")
        return read_states(got.body)

    def lease(self) -> dict[str, Any] | None:
        """The Lease as it is now; None when there is none yet."""
        got = call(self.api_client, "GET", self.path, self.timeout_s)
        if got.status == 404:
            return None
        if not got.ok:
            raise Unreachable(f"reading Lease {self.namespace}/{self.name}: {got}")
        return got.body

    def update(self, definition: str, change: Callable[[BreakerState], BreakerState | None]) -> BreakerState | None:
        """Apply ``change`` to a definition's state (None from it: leave it); the state written, or None.

        Raises Unreachable when the API does not answer or refuses.
        """
        key = breaker_key(definition)
        for attempt in range(_MAX_CONFLICTS):
            got = call(self.api_client, "GET", self.path, self.timeout_s)
            if got.status == 404:
                body: dict[str, Any] = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": self.name, "namespace": self.namespace}, "spec": {}}
            elif got.ok:
                body = got.body
            else:
                raise Unreachable(f"reading Lease {self.namespace}/{self.name}: {got}")
            metadata = dict(body.get("metadata") or {})
            annotations = dict(metadata.get("annotations") or {})
            before = read_states({"metadata": {"annotations": {key: annotations[key]}}}).get(definition, BreakerState()) if key in annotations else BreakerState()
            after = change(before)
            if after is None:
                return None
            if after == before and key in annotations:
                return after
            annotations[key] = json.dumps({"definition": definition, "state": after.to_text()})
            written = {**body, "metadata": {**metadata, "annotations": annotations}}
            if got.status == 404:
                answer = call(self.api_client, "POST", self.path.rpartition("/")[0], self.timeout_s, written)
            else:
                answer = call(self.api_client, "PUT", self.path, self.timeout_s, written)
            if answer.ok:
                return after
            if answer.status != 409:
                raise Unreachable(f"writing Lease {self.namespace}/{self.name}: {answer}")
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))  # another writer: read again
        raise Unreachable(f"Lease {self.namespace}/{self.name}: still conflicting after {_MAX_CONFLICTS} attempts")


class BreakerBoard:
    """The breakers as the Lease last showed them; any thread."""

    def __init__(self, gauge: bool = True) -> None:
        self.gauge = gauge  # the dispatchers export openfero_breaker_open; the console does not
        self._lock = threading.Lock()
        self._states: dict[str, BreakerState] = {}
        self._shown: set[str] = set()
        self.synced = threading.Event()

    def replace(self, lease: dict[str, Any] | None) -> None:
        self._set(read_states(lease))
        self.synced.set()

    def _set(self, states: dict[str, BreakerState]) -> None:
        with self._lock:
            self._states = states
            if not self.gauge:
                return
            # The gauge says 1 for each open (or trying) breaker, 0 for one that closed
            for definition, state in states.items():
                BREAKER_OPEN.labels(definition_name(definition)[:63]).set(1 if state.state is not Breaker.CLOSED else 0)
            for gone in self._shown - set(states):
                BREAKER_OPEN.labels(definition_name(gone)[:63]).set(0)
            self._shown = set(states)

    def state(self, definition: str) -> BreakerState:
        with self._lock:
            return self._states.get(definition, BreakerState())

    def breaker(self, definition: str) -> Breaker:
        """What the gate needs: OPEN while alerts are parked, TRIAL while one may run."""
        state = self.state(definition)
        if state.parks:
            return Breaker.OPEN
        return state.state

    def states(self) -> dict[str, BreakerState]:
        with self._lock:
            return dict(self._states)


class BreakerLeader:
    """The wait leader's part for breakers: counts each ended Job of a definition with a breaker, in
    the order the watch shows them, and moves open breakers whose cool-down passed to their trial."""

    def __init__(
        self,
        store: BreakerStore,
        board: BreakerBoard,
        knows: Callable[[str], bool],
        tick_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        trial_lost_s: float = 60.0,
    ):
        import asyncio

        self.knows = knows  # whether a Job exists (the book)
        self.trial_lost_s = trial_lost_s  # a claimed trial whose Job does not show up by then is given up
        self._missing_since: dict[str, float] = {}
        self.store = store
        self.board = board
        self.tick_s = tick_s
        self.clock = clock
        self._ended: asyncio.Queue[Any] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._leading = False

    def ended(self, entry: Any) -> None:
        """A Job ended (from the watch's thread): counted while this dispatcher leads."""
        loop = self._loop
        if self._leading and entry.breaker is not None and entry.ended in ("Succeeded", "Failed") and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._ended.put_nowait, entry)

    async def poll(self, stop: Any, every_s: float = 1.0) -> None:
        """Read the breakers into the board every ``every_s`` until ``stop`` (every dispatcher does)."""
        import asyncio
        import contextlib

        warned = False
        while not stop.is_set():
            try:
                self.board.replace(await asyncio.to_thread(self.store.lease))
                warned = False
            except Unreachable as exc:
                if not warned:  # the last state read holds meanwhile
                    log.warning("could not read the breakers: %s", exc, extra={"event": "breaker.error"})
                    warned = True
                # Alerts are not held up for it: until it is read, no breaker counts as open
                self.board.synced.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)

    async def run(self, leading: Any, following: Any, stop: Any) -> None:
        import asyncio
        import contextlib

        self._loop = asyncio.get_running_loop()
        while not stop.is_set():
            if not leading.is_set():
                self._leading = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(leading.wait(), timeout=self.tick_s)
                continue
            self._leading = True
            try:
                entry = await asyncio.wait_for(self._ended.get(), timeout=self.tick_s)
            except TimeoutError:
                entry = None
            try:
                if entry is not None:
                    await asyncio.to_thread(self._count, entry)
                await asyncio.to_thread(self._trials)
            except Unreachable as exc:
                log.warning("could not write a breaker: %s", exc, extra={"event": "breaker.error"})
                if entry is not None:
                    self._ended.put_nowait(entry)  # counted when the API answers again
                await asyncio.sleep(self.tick_s)
        self._leading = False

    def _count(self, entry: Any) -> None:
        failures, cooldown_s = entry.breaker
        from dispatcher.storm import breaker_after

        failed = entry.ended == "Failed"
        before = self.board.state(entry.definition)
        after = self.store.update(entry.definition, lambda state: breaker_after(state, entry.name, failed, failures, cooldown_s, self.clock()))
        if after is not None and after.state is Breaker.OPEN and (before.state is not Breaker.OPEN or after.since != before.since):
            log.warning(
                "breaker opened: %d failed Jobs in a row; new alerts are parked",
                after.failures,
                extra={"event": "breaker.opened", "definition": entry.definition, "job": entry.name, "failures": after.failures, "cooldown_s": after.cooldown_s},
            )
        elif after is not None and after.state is Breaker.CLOSED and before.state is Breaker.TRIAL:
            log.info("breaker closed: the trial Job succeeded", extra={"event": "breaker.closed", "definition": entry.definition, "job": entry.name})

    def _trials(self) -> None:
        from dispatcher.storm import breaker_now

        now = self.clock()
        for definition, state in self.board.states().items():
            if state.state is Breaker.TRIAL and state.trial_job and not self.knows(state.trial_job):
                # Its alert was dead-lettered, say: let another alert be the trial
                first = self._missing_since.setdefault(state.trial_job, time.monotonic())
                if time.monotonic() - first >= self.trial_lost_s:
                    lost = state.trial_job

                    def without_trial(s: BreakerState, lost: str = lost) -> BreakerState | None:
                        return BreakerState(s.state, s.failures, s.since, s.cooldown_s) if s.trial_job == lost else None

                    self.store.update(definition, without_trial)
                    self._missing_since.pop(lost, None)
                    log.warning("breaker trial given up: its Job never came", extra={"event": "breaker.trial_lost", "definition": definition, "job": lost})
            if state.state is Breaker.OPEN and breaker_now(state, now) != state:
                after = self.store.update(definition, lambda s: breaker_now(s, self.clock()))
                if after is not None and after.state is Breaker.TRIAL:
                    log.info("breaker half-open: the next alert runs as its trial", extra={"event": "breaker.trial", "definition": definition})
