"""How a Job's state becomes an outcome, what the Operarius status says at each step, and the history join. No I/O."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dispatcher import operarius_status as run
from dispatcher.outcomes import (
    DELETED,
    FAILED,
    SUCCEEDED,
    DefinitionRef,
    Finish,
    JobView,
    Mark,
    Running,
    Wait,
    durations,
    ending,
    event,
    mark_patch,
    next_step,
    record,
    release_patch,
)
from dispatcher.rendering import FINALIZER_OUTCOME, JobRules, render
from openfero.records import Record
from openfero.timeline import HistoryFilter, join, table
from shared.envelope import envelopes_from_webhook
from tests.helpers import reference_definition, reference_envelope

T0 = datetime(2026, 1, 2, 3, 0, 0, tzinfo=timezone.utc)


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def tracked_job(**status: Any) -> dict[str, Any]:
    """The reference Job as the dispatcher creates it with tracking on, as the API server stores it."""
    job = render(reference_definition(), reference_envelope(), JobRules(60, track_outcomes=True)).body
    job["metadata"].update(namespace="openfero-jobs", uid="6b1c2d3e-0000-4000-8000-000000000001", resourceVersion="42", creationTimestamp=iso(T0))
    job["status"] = status
    return job


def condition(kind: str, reason: str, at: datetime, status: str = "True") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": f"{kind} because {reason}", "lastTransitionTime": iso(at)}


# -- how a Job ends ---------------------------------------------------------------------------


def test_rendering_with_tracking_adds_the_finalizer_and_keeps_the_definitions_own() -> None:
    assert tracked_job()["metadata"]["finalizers"] == [FINALIZER_OUTCOME]
    assert "finalizers" not in render(reference_definition(), reference_envelope(), JobRules(60)).body["metadata"]


@pytest.mark.parametrize(
    ("status", "deleted", "expected"),
    [
        ({}, False, None),
        ({"active": 1}, False, None),
        # the interim conditions announce an end while pods still terminate: not yet
        ({"conditions": [condition("SuccessCriteriaMet", "CompletionsReached", T0)]}, False, None),
        ({"conditions": [condition("FailureTarget", "BackoffLimitExceeded", T0)]}, False, None),
        ({"conditions": [condition("Complete", "CompletionsReached", T0, status="False")]}, False, None),
        ({"succeeded": 1, "completionTime": iso(T0 + timedelta(seconds=9)), "conditions": [condition("SuccessCriteriaMet", "CompletionsReached", T0), condition("Complete", "CompletionsReached", T0)]}, False, (SUCCEEDED, "CompletionsReached", 9.0)),
        ({"failed": 7, "conditions": [condition("FailureTarget", "BackoffLimitExceeded", T0), condition("Failed", "BackoffLimitExceeded", T0 + timedelta(seconds=30))]}, False, (FAILED, "BackoffLimitExceeded", 30.0)),
        ({"conditions": [condition("Failed", "DeadlineExceeded", T0 + timedelta(seconds=600))]}, False, (FAILED, "DeadlineExceeded", 600.0)),
        ({"active": 1}, True, (DELETED, "DeletedBeforeFinishing", None)),
        # deleted after it finished (its TTL): it keeps the outcome it finished with
        ({"conditions": [condition("Complete", "CompletionsReached", T0 + timedelta(seconds=2))]}, True, (SUCCEEDED, "CompletionsReached", 2.0)),
    ],
)
def test_a_job_ends_by_its_final_conditions_or_by_deletion(status: dict, deleted: bool, expected: tuple | None) -> None:
    job = tracked_job(**status)
    if deleted:
        job["metadata"]["deletionTimestamp"] = iso(T0 + timedelta(hours=1))
    view = JobView.of(job)
    ended = ending(view)
    if expected is None:
        assert ended is None
        return
    assert ended is not None
    remediation_s, _ = durations(view, ended)
    assert (ended.outcome, ended.reason, remediation_s) == expected


def test_the_leader_marks_an_ended_job_then_finishes_it_and_leaves_others() -> None:
    running = JobView.of(tracked_job(active=1))
    assert next_step(running) == Running()
    assert next_step(JobView.of(tracked_job())) == Wait()
    done = tracked_job(conditions=[condition("Failed", "DeadlineExceeded", T0)])
    step = next_step(JobView.of(done))
    assert isinstance(step, Mark) and step.ending.outcome == FAILED
    # The mark names the version read: of two writers of that version only one wins
    patch = mark_patch(JobView.of(done), step.ending)
    assert patch == {"metadata": {"resourceVersion": "42", "annotations": {"openfero.io/outcome": "Failed"}}}
    # Marked already (by this leader or one before): finish, never mark again
    done["metadata"]["annotations"]["openfero.io/outcome"] = "Failed"
    step = next_step(JobView.of(done))
    assert isinstance(step, Finish) and step.ending.reason == "DeadlineExceeded"
    # A mark that says Deleted stays Deleted, whatever the Job did since
    done["metadata"]["annotations"]["openfero.io/outcome"] = "Deleted"
    step = next_step(JobView.of(done))
    assert isinstance(step, Finish) and step.ending.outcome == DELETED
    # The finalizer comes off with the version read, others' finalizers stay
    done["metadata"]["finalizers"] = ["example.com/keep", FINALIZER_OUTCOME]
    assert release_patch(JobView.of(done)) == {"metadata": {"resourceVersion": "42", "finalizers": ["example.com/keep"]}}
    # Without openfero's finalizer a Job is not followed (tracking was off, or it is done)
    done["metadata"]["finalizers"] = ["example.com/keep"]
    assert next_step(JobView.of(done)) == Wait()


def test_the_record_says_which_alert_which_job_how_and_how_long() -> None:
    job = tracked_job(completionTime=iso(T0 + timedelta(seconds=12)), conditions=[condition("Complete", "CompletionsReached", T0)])
    view = JobView.of(job)
    ended = ending(view)
    assert ended is not None
    out = record(view, ended, T0 + timedelta(seconds=13), "host/1")
    assert out["outcome"] == "Succeeded" and out["job"] == view.name and out["uid"] == view.uid
    assert out["alertname"] == "KubeQuotaAlmostFull" and out["alertStatus"] == "firing"
    assert out["messageId"] == job["metadata"]["annotations"]["openfero.io/message-id"] and out["startsAt"] == "2021-10-25T12:01:24.29524738Z"
    assert out["remediationSeconds"] == 12.0
    # startsAt (2021) to the end: the time to remediate
    assert out["timeToRemediateSeconds"] == pytest.approx((T0 + timedelta(seconds=12) - datetime(2021, 10, 25, 12, 1, 24, 295247, tzinfo=timezone.utc)).total_seconds())
    assert out["definitionKind"] == "ConfigMap" and out["definitionName"] == "openfero-kubequotaalmostfull-firing"


def test_an_alert_without_starts_at_has_no_time_to_remediate() -> None:
    job = tracked_job(conditions=[condition("Complete", "CompletionsReached", T0)])
    job["metadata"]["annotations"]["openfero.io/starts-at"] = "0001-01-01T00:00:00Z"
    view = JobView.of(job)
    assert durations(view, ending(view))[1] is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("openfero/Operarius/pod-crashloop-restart/jobTemplate", DefinitionRef("Operarius", "openfero", "pod-crashloop-restart")),
        ("openfero/openfero-kubequotaalmostfull-firing/KubeQuotaAlmostFull", DefinitionRef("ConfigMap", "openfero", "openfero-kubequotaalmostfull-firing")),
        ("", None),
        ("hand/written", None),
    ],
)
def test_the_definition_is_read_from_the_jobs_annotation(annotation: str, expected: DefinitionRef | None) -> None:
    assert DefinitionRef.parse(annotation) == expected


def test_the_definition_label_is_bounded_by_the_definitions_that_exist() -> None:
    ref = DefinitionRef("ConfigMap", "ns", "x" * 200)
    assert ref.label(known=True) == "x" * 63
    assert ref.label(known=False) == "unknown"


def test_the_event_is_named_by_the_job_so_that_writing_it_twice_is_once() -> None:
    job = tracked_job(conditions=[condition("Failed", "BackoffLimitExceeded", T0)])
    view = JobView.of(job)
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "openfero-kubequotaalmostfull-firing", "namespace": "openfero", "uid": "u-1"}}
    first = event(view, ending(view), configmap, "host/1", T0)  # type: ignore[arg-type]
    again = event(view, ending(view), configmap, "host/2", T0 + timedelta(minutes=1))  # type: ignore[arg-type]
    assert first["metadata"]["name"] == again["metadata"]["name"]
    assert (first["reason"], first["type"]) == ("RemediationFailed", "Warning")
    assert first["involvedObject"] == {"apiVersion": "v1", "kind": "ConfigMap", "name": "openfero-kubequotaalmostfull-firing", "namespace": "openfero", "uid": "u-1", "resourceVersion": None}
    assert view.name in first["message"] and "KubeQuotaAlmostFull" in first["message"] and "BackoffLimitExceeded" in first["message"]
    assert first["related"]["kind"] == "Job" and first["related"]["uid"] == view.uid


# -- the Operarius status, as the Go original writes it --------------------------------------


def test_each_step_of_a_run_as_the_go_original_writes_it() -> None:
    now = T0
    status = run.after_handling({}, "fix-1", "Created", now)
    assert status == {"executionCount": 1, "lastExecutionTime": iso(now), "lastExecutedJobName": "fix-1", "lastExecutionStatus": "Pending", "lastJob": "fix-1", "lastOutcome": "Created"}
    status = run.after_running(status, "fix-1", now)
    assert status is not None and status["lastExecutionStatus"] == "Running"
    assert run.after_running(status, "fix-1", now) is None  # nothing to write twice
    status = run.after_outcome(status, "fix-1", now, SUCCEEDED)
    assert status is not None and (status["lastExecutionStatus"], status["lastOutcome"], status["executionCount"]) == ("Successful", "Succeeded", 1)
    assert run.after_running(status, "fix-1", now) is None  # never back to Running
    # A duplicate suppressed: only the Go field says so (and openfero's last outcome)
    skipped = run.after_handling(status, "fix-1", "Duplicate", now + timedelta(hours=4))
    assert skipped is not None and skipped["lastExecutionStatus"] == "Skipped: Deduplication" and skipped["executionCount"] == 1
    assert skipped["lastExecutionTime"] == iso(now) and skipped["lastOutcome"] == "Duplicate"
    # A Job that could not be made: openfero's fields only
    failed = run.after_handling(skipped, "fix-2", "Failed", now + timedelta(hours=5))
    assert failed is not None and failed["lastOutcome"] == "Failed" and failed["lastExecutionStatus"] == "Skipped: Deduplication"


def test_a_deleted_job_is_a_failed_execution_for_the_go_field() -> None:
    status = run.after_handling({}, "fix-1", "Created", T0)
    status = run.after_outcome(status, "fix-1", T0, DELETED)  # type: ignore[arg-type]
    assert status is not None and (status["lastExecutionStatus"], status["lastOutcome"]) == ("Failed", "Deleted")


def test_the_end_of_an_older_job_does_not_overwrite_a_newer_run() -> None:
    status = run.after_handling({}, "fix-2", "Created", T0 + timedelta(minutes=5))
    assert run.after_outcome(status, "fix-1", T0, FAILED) is None  # type: ignore[arg-type]
    assert run.after_running(status, "fix-1", T0) is None  # type: ignore[arg-type]


def test_an_end_written_before_the_creation_is_kept_and_the_run_counted_once() -> None:
    # Given a leader that saw the Job end before the creating dispatcher's write landed
    status = run.after_handling({}, "fix-1", "Created", T0)
    status = run.after_outcome(status, "fix-2", T0 + timedelta(seconds=3), SUCCEEDED)  # type: ignore[arg-type]
    assert status is not None and status["lastExecutedJobName"] == "fix-2" and status["lastExecutionTime"] == iso(T0 + timedelta(seconds=3))
    # When the creation is written
    status = run.after_handling(status, "fix-2", "Created", T0 + timedelta(seconds=4))
    # Then it counts the run and keeps the end
    assert status is not None
    assert (status["executionCount"], status["lastExecutionStatus"], status["lastOutcome"]) == (2, "Successful", "Succeeded")


def test_a_new_job_of_an_old_name_starts_pending_again() -> None:
    # The same occurrence again a day later, once its first Job was deleted: same name, new run
    status = run.after_handling({}, "fix-1", "Created", T0)
    status = run.after_outcome(status, "fix-1", T0, SUCCEEDED)  # type: ignore[arg-type]
    later = run.after_handling(status, "fix-1", "Created", T0 + timedelta(days=1))  # type: ignore[arg-type]
    assert later is not None and (later["executionCount"], later["lastExecutionStatus"], later["lastOutcome"]) == (2, "Pending", "Created")


# -- the history: alerts joined with their outcomes ----------------------------------------------


def archived(labels: dict[str, str], received: datetime, status: str = "firing", starts: str = "2026-01-02T02:59:00Z") -> Record:
    [envelope] = envelopes_from_webhook({"alerts": [{"labels": labels, "status": status, "startsAt": starts}]}, now=received)
    return Record.of(envelope.to_json(), {}, envelope.id, dead=False)


def outcome_of(alert: Record, job: str, outcome: str, uid: str, **more: Any) -> dict[str, Any]:
    assert alert.envelope is not None
    return {
        "uid": uid,
        "job": job,
        "outcome": outcome,
        "reason": "BackoffLimitExceeded" if outcome == "Failed" else "CompletionsReached",
        "messageId": alert.id,
        "fingerprint": alert.fingerprint,
        "alertStatus": alert.status,
        "startsAt": alert.envelope.alert.starts_at,
        "remediationSeconds": 4.0,
        **more,
    }


def test_history_joins_each_occurrence_with_its_jobs_once() -> None:
    a1 = archived({"alertname": "DiskFull", "node": "a"}, T0)
    a1_again = archived({"alertname": "DiskFull", "node": "a"}, T0 + timedelta(hours=4))  # repeat_interval
    b = archived({"alertname": "DiskFull", "node": "b"}, T0 + timedelta(minutes=1))
    c = archived({"alertname": "PodCrash", "pod": "p"}, T0 + timedelta(minutes=2))
    old = archived({"alertname": "DiskFull", "node": "z"}, T0 - timedelta(days=2))
    records = [
        outcome_of(a1, "fix-a", "Succeeded", "u1"),
        outcome_of(a1, "fix-a", "Succeeded", "u1"),  # published twice by a leader that died: kept once
        outcome_of(b, "fix-b", "Failed", "u2"),
        # a forced replay made a second Job from a later notification of the same occurrence
        outcome_of(a1_again, "fix-a-rerun", "Succeeded", "u3", messageId="not-in-the-window"),
        outcome_of(old, "fix-z", "Succeeded", "u4"),
    ]
    found = join([a1, b, c, a1_again, old], records, HistoryFilter(since=T0 - timedelta(hours=1)))
    assert [(o.alertname, o.notifications, [j["job"] for j in o.outcomes]) for o in found] == [
        ("DiskFull", 2, ["fix-a", "fix-a-rerun"]),
        ("DiskFull", 1, ["fix-b"]),
        ("PodCrash", 1, []),
    ]
    assert found[0].received == T0
    assert [o.alertname for o in join([a1, b, c], records, HistoryFilter(outcome="failed"))] == ["DiskFull"]
    assert [o.alertname for o in join([a1, b, c], records, HistoryFilter(outcome="none"))] == ["PodCrash"]
    assert [o.fingerprint for o in join([a1, b, c], records, HistoryFilter(alertname="PodCrash"))] == [c.fingerprint]
    text = table(found)
    assert "fix-b" in text and "BackoffLimitExceeded" in text and "4s" in text
    assert text.splitlines()[0].split() == ["RECEIVED", "ALERTNAME", "STATUS", "FINGERPRINT", "SEEN", "JOB", "OUTCOME", "TOOK", "SILENCE", "REASON"]


def test_the_console_reads_the_record_the_leader_writes() -> None:
    # The outcome stream has one writer (the leader) and two readers (openfero history, the console).
    import orjson

    from console.outcomes import read_outcome

    job = tracked_job(completionTime=iso(T0 + timedelta(seconds=12)), conditions=[condition("Failed", "BackoffLimitExceeded", T0)])
    view = JobView.of(job)
    ended = ending(view)
    assert ended is not None
    seen = read_outcome(orjson.dumps(record(view, ended, T0 + timedelta(seconds=13), "host/1")))
    assert seen is not None
    assert (seen.message_id, seen.job, seen.outcome, seen.reason) == (view.message_id, view.name, "failed", "BackoffLimitExceeded")
    assert seen.definition == job["metadata"]["annotations"]["openfero.io/definition"]
