"""Following every Job openfero created to its end, and recording each outcome once.

Only the leader (dispatcher.leading) does it. While it leads, it lists and
watches the Jobs labelled ``app.kubernetes.io/managed-by=openfero`` in the
Job namespace and keeps the few fields it needs of those that carry the
finalizer ``openfero.io/outcome`` (every Job openfero creates while
OPENFERO_TRACK_OUTCOMES is on). For each (dispatcher.outcomes says which):

1. **Mark**: an ended Job (succeeded, failed, or deleted before it
   finished: the finalizer keeps it until then) gets the annotation
   ``openfero.io/outcome: Succeeded|Failed|Deleted`` through a merge patch
   that carries the resourceVersion it was read at. Only the write that
   wins counts it: the metrics go up by one here and nowhere else. A 409
   means the Job changed (the Job controller, or another leader for a
   moment): read it again and decide again; a Job already marked is never
   counted again.
2. **Finish**: end the Job's Alertmanager silence unless it is kept
   (dispatcher.silencing), publish the outcome record to
   ``<prefix>.outcomes`` (confirmed; it says what became of the silence),
   write the Operarius status, create the Event, then remove the
   finalizer (resourceVersion-checked). A leader that dies
   anywhere in here leaves the mark and the finalizer: its successor
   finishes the Job without counting it again, and what it writes again
   is written so that twice is once (dispatcher.reporting). Status and
   Event are for people: when they keep failing they are logged and the
   Job is finished anyway; the record is not, so a Job whose record the
   broker did not confirm keeps its finalizer and is tried again.

Why the mark lives on the Job: the outcome belongs to the Job; the mark
survives leader changes and restarts without any store of ours; one
write both decides the outcome and says it was counted; and anyone can
see it with ``kubectl get job -o yaml``. A checkpoint in the Lease or on
the broker would have to be kept in step with the Jobs, which is the
problem itself.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from kubernetes import client

from dispatcher.catalog import Catalog
from dispatcher.jobs import OperariusStatusWriter
from dispatcher.leading import LeaderElector
from dispatcher.metrics import JOBS_FAILED, JOBS_SUCCEEDED, REMEDIATION_SECONDS, REMEDIATIONS, TIME_TO_REMEDIATE_SECONDS
from dispatcher import operarius_status as run_status
from dispatcher.outcomes import (
    DELETED,
    FAILED,
    SUCCEEDED,
    UNKNOWN_DEFINITION,
    Ending,
    Finish,
    JobView,
    Mark,
    Running,
    durations,
    mark_patch,
    next_step,
    record,
    release_patch,
)
from dispatcher.rendering import MANAGED_BY
from dispatcher.reporting import EventWriter, RecordPublisher
from dispatcher.requesting import MERGE_PATCH, Answer, Unreachable, call
from dispatcher.silencing import SilenceEnder, SilenceFailure
from dispatcher.watching import ResourceWatcher
from shared.confirming import NotConfirmed
from shared.loop import first_done

log = logging.getLogger("openfero.dispatcher")

SELECTOR = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"
_RETRY_FIRST_S = 0.5
_RETRY_LONGEST_S = 30.0
_RELEASE_ATTEMPTS = 10
_DRAIN_S = 5.0


class StepFailed(Exception):
    """A step could not be done now; it is tried again later."""


def _newer(a: JobView, b: JobView) -> bool:
    """Whether ``a`` is a later version than ``b`` (resourceVersions are etcd revisions in practice)."""
    if a.resource_version.isdigit() and b.resource_version.isdigit():
        return int(a.resource_version) >= int(b.resource_version)
    return True


class OutcomeTracker:
    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        catalog: Catalog,
        records: RecordPublisher,
        identity: str,
        status: OperariusStatusWriter | None = None,
        events: EventWriter | None = None,
        timeout_s: float = 10.0,
        watch_timeout_s: int = 300,
        concurrency: int = 8,
        silences: SilenceEnder | None = None,
    ):
        self.api_client = api_client
        self.silences = silences
        self.namespace = namespace
        self.catalog = catalog
        self.records = records
        self.identity = identity
        self.status = status
        self.events = events
        self.timeout_s = timeout_s
        self.watch_timeout_s = watch_timeout_s
        self.concurrency = concurrency
        self.counted: Counter[str] = Counter()  # outcomes this process counted (logs, tests)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="outcomes")
        self._term: int | None = None
        self._views: dict[str, JobView] = {}  # by uid: tracked Jobs not finished with yet
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self._running_written: set[str] = set()
        self._failures: Counter[str] = Counter()

    # -- leading --------------------------------------------------------------------------

    async def run(self, elector: LeaderElector, stop: asyncio.Event) -> None:
        """Follow the Jobs while ``elector`` leads, until ``stop``."""
        try:
            while not stop.is_set():
                await first_done(elector.leading.wait(), stop.wait())
                if stop.is_set():
                    break
                await self._lead(elector, stop)
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _lead(self, elector: LeaderElector, stop: asyncio.Event) -> None:
        term = self._term = elector.terms
        loop = asyncio.get_running_loop()
        batch = client.BatchV1Api(self.api_client)
        watcher = ResourceWatcher(
            "Job",
            functools.partial(batch.list_namespaced_job, self.namespace, label_selector=SELECTOR),
            lambda items: loop.call_soon_threadsafe(self._on_list, term, items),
            lambda kind, obj: loop.call_soon_threadsafe(self._on_event, term, kind, obj),
            self.watch_timeout_s,
            log_changes=False,
        )
        watcher.start()
        workers = [asyncio.create_task(self._work(term), name=f"outcomes-{i}") for i in range(self.concurrency)]
        try:
            await first_done(elector.following.wait(), stop.wait())
        finally:
            # No new step from here on; the steps under way end at their next check.
            self._term = None
            watcher.stop()
            for _ in workers:
                self._queue.put_nowait("")
            _, late = await asyncio.wait(workers, timeout=_DRAIN_S)
            for task in late:
                task.cancel()
            self._forget()

    def _forget(self) -> None:
        self._views.clear()
        self._queued.clear()
        self._again.clear()
        self._running_written.clear()
        self._failures.clear()
        self._queue = asyncio.Queue()

    def _leading(self, term: int) -> bool:
        return self._term == term

    # -- what the watch says ------------------------------------------------------------------

    def _on_list(self, term: int, items: list[dict[str, Any]]) -> None:
        if not self._leading(term):
            return
        views = (JobView.of(item) for item in items)
        self._views = {v.uid: v for v in views if v.tracked}
        log.info("Jobs listed", extra={"event": "outcomes.listed", "tracked": len(self._views), "jobs": len(items)})
        for uid in list(self._views):
            self._enqueue(uid)

    def _on_event(self, term: int, kind: str, obj: dict[str, Any]) -> None:
        if not self._leading(term):
            return
        self._see(JobView.of(obj), deleted=kind == "DELETED")

    def _see(self, view: JobView, deleted: bool = False) -> None:
        if deleted or not view.tracked:
            self._views.pop(view.uid, None)
            self._running_written.discard(view.uid)
            return
        known = self._views.get(view.uid)
        if known is None or _newer(view, known):
            self._views[view.uid] = view
            self._enqueue(view.uid)

    def _enqueue(self, uid: str) -> None:
        if uid in self._busy:
            self._again.add(uid)
        elif uid not in self._queued:
            self._queued.add(uid)
            self._queue.put_nowait(uid)

    # -- the work ------------------------------------------------------------------------------

    async def _work(self, term: int) -> None:
        while self._leading(term):
            uid = await self._queue.get()
            if not uid or not self._leading(term):
                return
            self._queued.discard(uid)
            self._busy.add(uid)
            try:
                await self._advance(term, uid)
                self._failures.pop(uid, None)
            except (StepFailed, Unreachable, NotConfirmed) as exc:
                self._retry_later(term, uid, exc)
            except Exception as exc:  # a bug: log it, keep the Job, try again later
                log.exception("outcome step failed", extra={"event": "outcome.crashed", "uid": uid})
                self._retry_later(term, uid, exc)
            finally:
                self._busy.discard(uid)
                if uid in self._again:
                    self._again.discard(uid)
                    self._enqueue(uid)

    def _retry_later(self, term: int, uid: str, exc: BaseException) -> None:
        self._failures[uid] += 1
        delay = min(_RETRY_FIRST_S * 2 ** (self._failures[uid] - 1), _RETRY_LONGEST_S) * random.uniform(0.8, 1.2)
        view = self._views.get(uid)
        log.warning(
            "outcome step failed, again in %.1f s: %s",
            delay,
            exc,
            extra={"event": "outcome.retry", "job": view.name if view else "", "delay_s": round(delay, 2)},
        )
        asyncio.get_running_loop().call_later(delay, lambda: self._enqueue(uid) if self._leading(term) else None)

    async def _advance(self, term: int, uid: str) -> None:
        view = self._views.get(uid)
        if view is None:
            return
        step = next_step(view)
        if isinstance(step, Running):
            if view.uid not in self._running_written:
                await self._write_running(view)
                self._running_written.add(view.uid)
            return
        if isinstance(step, Mark):
            marked = await self._mark(term, view, step.ending)
            if marked is None:
                return
            view, counted = marked, True
            ended = step.ending
        elif isinstance(step, Finish):
            counted, ended = False, step.ending
        else:
            return
        await self._finish(view, ended, counted)

    async def _mark(self, term: int, view: JobView, ended: Ending) -> JobView | None:
        """The write that counts the outcome; the Job as marked, or None when another version must be looked at."""
        answer = await self._api("PATCH", self._path(view.name), mark_patch(view, ended))
        if answer.status == 409:
            await self._reread(view)  # changed since: decide again on the fresh version
            return None
        if answer.status == 404:
            self._see(view, deleted=True)
            return None
        if not answer.ok:
            raise StepFailed(f"could not mark Job {view.name}: {answer}")
        self._count(view, ended)
        marked = JobView.of(answer.body)
        self._views[marked.uid] = marked
        return marked

    def _count(self, view: JobView, ended: Ending) -> None:
        ref = view.definition
        label = ref.label(self.catalog.knows(ref.kind, ref.namespace, ref.name)) if ref else UNKNOWN_DEFINITION
        REMEDIATIONS.labels(label, ended.outcome.lower()).inc()
        if ended.outcome == SUCCEEDED:
            JOBS_SUCCEEDED.inc()
        elif ended.outcome == FAILED:
            JOBS_FAILED.inc()
        if ended.outcome != DELETED:
            remediation_s, to_remediate_s = durations(view, ended)
            if remediation_s is not None:
                REMEDIATION_SECONDS.labels(ended.outcome.lower()).observe(remediation_s)
            if to_remediate_s is not None:
                TIME_TO_REMEDIATE_SECONDS.labels(ended.outcome.lower()).observe(to_remediate_s)
        self.counted[ended.outcome] += 1
        log.debug("outcome counted", extra={"event": "outcome.counted", "job": view.name, "outcome": ended.outcome, "fingerprint": view.fingerprint})

    async def _finish(self, view: JobView, ended: Ending, counted: bool) -> None:
        silence = None
        if self.silences is not None:
            try:
                silence = await self.silences.on_outcome(view, ended)
            except SilenceFailure as exc:  # this Job is tried again later; the others go on
                raise StepFailed(str(exc)) from None
        recorded = record(view, ended, datetime.now(timezone.utc), self.identity)
        if silence is not None:
            recorded["silence"] = silence
        await self.records.publish(recorded)
        involved = None
        if self.status is not None and view.operarius is not None:
            change = functools.partial(run_status.after_outcome, job_name=view.name, job_created=view.created, outcome=ended.outcome)
            involved = await self._blocking(self.status.update, view.operarius, lambda status: change(status))
        if self.events is not None:
            await self._blocking(self.events.write, view, ended, involved)
        await self._release(view)  # also when leadership ended meanwhile: the write is version-checked
        remediation_s, to_remediate_s = durations(view, ended)
        log.info(
            "Job %s: %s",
            ended.outcome.lower(),
            ended.reason,
            extra={
                "event": "job.outcome",
                "job": view.name,
                "outcome": ended.outcome,
                "reason": ended.reason,
                "fingerprint": view.fingerprint,
                "message_id": view.message_id,
                "alertname": view.alertname,
                "definition": (view.definition.name if view.definition else ""),
                "remediation_s": remediation_s,
                "time_to_remediate_s": to_remediate_s,
                "counted_here": counted,
                "silence": silence,
            },
        )

    async def _release(self, view: JobView) -> None:
        """Remove the finalizer; on 409 read the Job again and retry (its mark stays: no count again)."""
        for _ in range(_RELEASE_ATTEMPTS):
            answer = await self._api("PATCH", self._path(view.name), release_patch(view))
            if answer.ok or answer.status == 404:
                self._views.pop(view.uid, None)
                self._running_written.discard(view.uid)
                return
            if answer.status != 409:
                raise StepFailed(f"could not remove the finalizer of Job {view.name}: {answer}")
            fresh = await self._api("GET", self._path(view.name))
            if fresh.status == 404:
                self._views.pop(view.uid, None)
                return
            if not fresh.ok:
                raise StepFailed(f"could not read Job {view.name}: {fresh}")
            view = JobView.of(fresh.body)
            if not view.tracked:
                self._views.pop(view.uid, None)
                return
        raise StepFailed(f"the finalizer of Job {view.name} is still there after {_RELEASE_ATTEMPTS} conflicts")

    async def _write_running(self, view: JobView) -> None:
        if self.status is None or view.operarius is None:
            return
        await self._blocking(self.status.update, view.operarius, lambda status: run_status.after_running(status, view.name, view.created))

    async def _reread(self, view: JobView) -> None:
        fresh = await self._api("GET", self._path(view.name))
        if fresh.status == 404:
            self._see(view, deleted=True)
        elif fresh.ok:
            self._see(JobView.of(fresh.body))  # looked at again as soon as this step is over
        else:
            raise StepFailed(f"could not read Job {view.name}: {fresh}")

    # -- the API --------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{name}"

    async def _api(self, method: str, path: str, body: Any = None) -> Answer:
        content_type = MERGE_PATCH if method == "PATCH" else "application/json"
        answer: Answer = await self._blocking(call, self.api_client, method, path, self.timeout_s, body, content_type)
        return answer

    async def _blocking(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)


