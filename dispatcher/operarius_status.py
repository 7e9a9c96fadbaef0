"""What an Operarius' status says after each step of a run. No I/O here.

The Go original's fields (0.18), written as it writes them:
- ``executionCount`` +1, ``lastExecutionTime``, ``lastExecutedJobName`` and
  ``lastExecutionStatus: Pending`` when a Job is created;
- ``lastExecutionStatus: Skipped: Deduplication`` alone when a duplicate of
  the occurrence is suppressed (the Job exists already);
- ``Running`` once the Job has active pods, then ``Successful`` or
  ``Failed`` when it ends (a Job deleted before it finished is ``Failed``:
  the remediation did not happen).
Beside them openfero's own: ``lastJob`` and ``lastOutcome`` (``Created``,
``Duplicate``, ``Failed`` when no Job could be made, then ``Succeeded``,
``Failed`` or ``Deleted`` when the Job ends).

Writes come from several dispatchers in any order (each is a
resourceVersion-checked replace, tried again on 409), so every function
here takes the status as it is now and returns the new one, or None when
nothing changes. Only the latest Job speaks for the Operarius: the end of
an older one, which a newer run has replaced, changes nothing. A Job is
the latest when it is ``lastExecutedJobName`` or was created no earlier
than ``lastExecutionTime`` (its creation may not be written yet; the
times are whole seconds, so of two Jobs made in one second either may win).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dispatcher.outcomes import DELETED, FAILED, SUCCEEDED, parse_time

PENDING, RUNNING, SUCCESSFUL, GO_FAILED = "Pending", "Running", "Successful", "Failed"
SKIPPED = "Skipped: Deduplication"
ENDED_GO = (SUCCESSFUL, GO_FAILED)
ENDED_OURS = (SUCCEEDED, FAILED, DELETED)
# How recent the leader's entry for a Job must be to count as this run's (see _seen_first).
RECENT_S = 300
GO_WORD = {SUCCEEDED: SUCCESSFUL, FAILED: GO_FAILED, DELETED: GO_FAILED}


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    return after if after != before else None


def after_handling(status: dict[str, Any], job_name: str, handled: str, now: datetime) -> dict[str, Any] | None:
    """After the dispatcher handled an alert of this Operarius: ``Created``, ``Duplicate`` or ``Failed``."""
    new = dict(status)
    ended_first = new.get("lastJob") == job_name and new.get("lastOutcome") in ENDED_OURS and _seen_first(new, job_name, now)
    if handled == "Created":
        new["executionCount"] = int(new.get("executionCount") or 0) + 1
        if not _seen_first(new, job_name, now):
            new.update(lastExecutionTime=stamp(now), lastExecutedJobName=job_name, lastExecutionStatus=PENDING)
    elif handled == "Duplicate":
        new["lastExecutionStatus"] = SKIPPED
    if job_name and not ended_first:
        new["lastJob"] = job_name
    if not ended_first:
        new["lastOutcome"] = handled
    return _changed(status, new)


def _seen_first(status: dict[str, Any], job_name: str, now: datetime) -> bool:
    """Whether the leader wrote this Job's run or end before its creation was written.

    Only a recent entry counts: a Job of the same name from an earlier run
    (the same occurrence again once the first Job was deleted) is not this one.
    """
    last = parse_time(status.get("lastExecutionTime") or "")
    return (
        status.get("lastExecutedJobName") == job_name
        and status.get("lastExecutionStatus") in (RUNNING, *ENDED_GO)
        and last is not None
        and abs((now - last).total_seconds()) <= RECENT_S
    )


def _latest(status: dict[str, Any], job_name: str, job_created: datetime | None) -> bool:
    if status.get("lastExecutedJobName") == job_name:
        return True
    last = parse_time(status.get("lastExecutionTime") or "")
    return last is None or (job_created is not None and job_created.replace(microsecond=0) >= last.replace(microsecond=0))


def after_running(status: dict[str, Any], job_name: str, job_created: datetime | None) -> dict[str, Any] | None:
    """Once the Job has active pods."""
    if not _latest(status, job_name, job_created):
        return None
    if status.get("lastExecutedJobName") == job_name and status.get("lastExecutionStatus") in ENDED_GO:
        return None  # it ended already: never back to Running
    new = dict(status, lastExecutedJobName=job_name, lastExecutionStatus=RUNNING)
    _took_over(status, new, job_name, job_created)
    return _changed(status, new)


def after_outcome(status: dict[str, Any], job_name: str, job_created: datetime | None, outcome: str) -> dict[str, Any] | None:
    """When the Job ended: SUCCEEDED, FAILED or DELETED."""
    if not _latest(status, job_name, job_created):
        return None
    new = dict(status, lastExecutedJobName=job_name, lastExecutionStatus=GO_WORD[outcome], lastJob=job_name, lastOutcome=outcome)
    _took_over(status, new, job_name, job_created)
    return _changed(status, new)


def _took_over(status: dict[str, Any], new: dict[str, Any], job_name: str, job_created: datetime | None) -> None:
    # A Job whose creation is not written yet becomes the last execution now, at its own creation time.
    if status.get("lastExecutedJobName") != job_name and job_created is not None:
        new["lastExecutionTime"] = stamp(job_created)
