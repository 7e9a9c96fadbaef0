"""The breakers' state, kept in the cluster: the ConfigMap ``<prefix>-breakers`` in the dispatchers'
namespace, one data key per definition whose breaker has counted a failure.

Each value is JSON: the definition (``<source>/<key>``, as the Job annotation
``openfero.io/definition`` names it) and its ``BreakerState`` as text. Every
write reads the ConfigMap and replaces it with the resourceVersion read; on
409 it reads and writes again, so the wait leader (which counts failed Jobs
and opens the breaker), the dispatcher that claims a trial and
``openfero definitions resume`` never undo each other's writes. The
ConfigMap has no labels, so the definition selector never picks it up.

``BreakerStore`` writes (blocking: call it from a thread); ``BreakerBoard``
is what every dispatcher reads, fed by a watch of that one ConfigMap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from dispatcher.metrics import BREAKER_OPEN
from dispatcher.requesting import Unreachable, call
from dispatcher.storm import Breaker, BreakerState

log = logging.getLogger("openfero.dispatcher")

_MAX_CONFLICTS = 20


def breaker_key(definition: str) -> str:
    """The ConfigMap data key of a definition: readable, valid ([-._a-zA-Z0-9]), and unique by a hash."""
    readable = re.sub(r"[^-._a-zA-Z0-9]", "_", definition)[:200]
    return f"{readable}.{hashlib.sha256(definition.encode()).hexdigest()[:8]}"


def definition_name(definition: str) -> str:
    """A definition's name for people and metrics: the ConfigMap's or the Operarius' name."""
    parts = definition.split("/")
    if len(parts) >= 3 and parts[1] == "Operarius":
        return parts[2]
    return parts[1] if len(parts) >= 2 else definition


def read_states(configmap: dict[str, Any] | None) -> dict[str, BreakerState]:
    """Definition -> state, from the ConfigMap as read (a value that cannot be read is skipped)."""
    out: dict[str, BreakerState] = {}
    for value in ((configmap or {}).get("data") or {}).values():
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
        return f"/api/v1/namespaces/{self.namespace}/configmaps/{self.name}"

    def states(self) -> dict[str, BreakerState]:
        got = call(self.api_client, "GET", self.path, self.timeout_s)
        if got.status == 404:
            return {}
        if not got.ok:
            raise Unreachable(f"reading ConfigMap {self.namespace}/{self.name}: {got}")
        return read_states(got.body)

    def update(self, definition: str, change: Callable[[BreakerState], BreakerState | None]) -> BreakerState | None:
        """Apply ``change`` to a definition's state (None from it: leave it); the state written, or None.

        Raises Unreachable when the API does not answer or refuses.
        """
        key = breaker_key(definition)
        for attempt in range(_MAX_CONFLICTS):
            got = call(self.api_client, "GET", self.path, self.timeout_s)
            if got.status == 404:
                body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": self.name, "namespace": self.namespace}, "data": {}}
            elif got.ok:
                body = got.body
            else:
                raise Unreachable(f"reading ConfigMap {self.namespace}/{self.name}: {got}")
            data = dict(body.get("data") or {})
            before = read_states({"data": {key: data[key]}}).get(definition, BreakerState()) if key in data else BreakerState()
            after = change(before)
            if after is None:
                return None
            if after == before and key in data:
                return after
            data[key] = json.dumps({"definition": definition, "state": after.to_text()})
            if got.status == 404:
                answer = call(self.api_client, "POST", f"/api/v1/namespaces/{self.namespace}/configmaps", self.timeout_s, {**body, "data": data})
            else:
                answer = call(self.api_client, "PUT", self.path, self.timeout_s, {**body, "data": data})
            if answer.ok:
                return after
            if answer.status != 409:
                raise Unreachable(f"writing ConfigMap {self.namespace}/{self.name}: {answer}")
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))  # another writer: read again
        raise Unreachable(f"ConfigMap {self.namespace}/{self.name}: still conflicting after {_MAX_CONFLICTS} attempts")


class BreakerBoard:
    """The breakers as the watch of the ConfigMap last showed them; any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, BreakerState] = {}
        self._shown: set[str] = set()
        self.synced = threading.Event()

    def replace(self, configmaps: list[dict[str, Any]]) -> None:
        self._set(read_states(configmaps[0]) if configmaps else {})
        self.synced.set()

    def apply(self, event_type: str, configmap: dict[str, Any]) -> None:
        self._set({} if event_type == "DELETED" else read_states(configmap))

    def _set(self, states: dict[str, BreakerState]) -> None:
        with self._lock:
            self._states = states
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
                    self.store.update(definition, lambda s: BreakerState(s.state, s.failures, s.since, s.cooldown_s) if s.trial_job == lost else None)
                    self._missing_since.pop(lost, None)
                    log.warning("breaker trial given up: its Job never came", extra={"event": "breaker.trial_lost", "definition": definition, "job": lost})
            if state.state is Breaker.OPEN and breaker_now(state, now) != state:
                after = self.store.update(definition, lambda s: breaker_now(s, self.clock()))
                if after is not None and after.state is Breaker.TRIAL:
                    log.info("breaker half-open: the next alert runs as its trial", extra={"event": "breaker.trial", "definition": definition})
