"""Storm control's rules, as tables: what a definition asks, the handler's gate, which waiting alerts
go, what an ended Job does to a breaker, and what decide() makes of the new outcomes. No I/O."""

from __future__ import annotations

import pytest

from dispatcher.deciding import Ack, SetAside, decide
from dispatcher.results import Hold, Kind, Result
from dispatcher.retrying import RetryPolicy
from dispatcher.storm import (
    Breaker,
    BreakerState,
    Gate,
    InvalidStormRule,
    StormRules,
    Waiting,
    breaker_after,
    breaker_now,
    gate,
    releasable,
    trial_claimed,
)
from shared import headers as h
from shared.envelope import envelopes_from_webhook

LIMITED = StormRules(concurrency=3)
COOLING = StormRules(cooldown_s=600, cooldown_key=("pod",))
BREAKING = StormRules(breaker_failures=3)


def test_what_a_definition_asks_for() -> None:
    rules = StormRules.of(
        {
            "openfero.io/concurrency": "3",
            "openfero.io/concurrency-key": "namespace",
            "openfero.io/cooldown": "10m",
            "openfero.io/cooldown-key": "namespace, pod",
            "openfero.io/breaker-failures": "5",
            "openfero.io/breaker-cooldown": "15m",
        }
    )
    assert rules == StormRules(3, ("namespace",), 600.0, ("namespace", "pod"), 5, 900.0)
    assert rules.cooldown_target({"namespace": "shop", "pod": "web-1", "x": "y"}) == "namespace=shop,pod=web-1"
    assert rules.cooldown_target({"namespace": "shop"}) == "namespace=shop,pod="
    assert rules.concurrency_target({"namespace": "shop", "pod": "web-1"}) == "namespace=shop"
    assert not StormRules.of({}).any and StormRules.of({}).cooldown_target({"pod": "a"}) == StormRules.of({}).concurrency_target({"pod": "a"}) == ""


@pytest.mark.parametrize(
    "annotations",
    [{"openfero.io/concurrency": "three"}, {"openfero.io/concurrency": "0"}, {"openfero.io/cooldown": "soon"}, {"openfero.io/breaker-failures": "-1"}],
)
def test_an_annotation_that_cannot_be_read_is_an_error(annotations: dict[str, str]) -> None:
    with pytest.raises(InvalidStormRule):
        StormRules.of(annotations)


@pytest.mark.parametrize(
    ("rules", "admitted", "last_job", "breaker", "global_full", "expected"),
    [
        (StormRules(), False, None, Breaker.CLOSED, False, Gate.GO),
        (StormRules(), False, None, Breaker.CLOSED, True, Gate.WAIT),  # the global limit
        (LIMITED, False, None, Breaker.CLOSED, False, Gate.WAIT),  # a limited definition's alerts all go through the wait leader
        (LIMITED, True, None, Breaker.CLOSED, True, Gate.GO),  # released: its slot (and its share of the global limit) is taken
        (COOLING, False, ("job-a", 1000.0), Breaker.CLOSED, False, Gate.SUPPRESS),  # 100 s after the target's Job
        (COOLING, False, ("job-a", 0.0), Breaker.CLOSED, False, Gate.GO),  # the cool-down has passed
        (COOLING, False, ("job-x", 1000.0), Breaker.CLOSED, False, Gate.GO),  # its own Job: a duplicate, not suppressed
        (COOLING, True, ("job-a", 1000.0), Breaker.CLOSED, False, Gate.SUPPRESS),  # released, but its target ran meanwhile
        (BREAKING, False, None, Breaker.OPEN, False, Gate.PARK),
        (BREAKING, True, None, Breaker.OPEN, False, Gate.PARK),
        (BREAKING, False, None, Breaker.TRIAL, False, Gate.GO),
        (StormRules(), False, None, Breaker.OPEN, False, Gate.GO),  # a definition without a breaker is never parked
    ],
)
def test_the_gate(rules: StormRules, admitted: bool, last_job: tuple[str, float] | None, breaker: Breaker, global_full: bool, expected: Gate) -> None:
    verdict = gate(rules, "job-x", admitted, last_job, 1100.0, breaker, global_full)
    assert verdict.gate is expected
    if expected is Gate.SUPPRESS:
        assert verdict.covering_job == "job-a"


def test_a_breaker_trial_is_marked_on_the_job_that_goes() -> None:
    assert gate(BREAKING, "job-x", False, None, 0.0, Breaker.TRIAL).trial
    assert not gate(BREAKING, "job-x", False, None, 0.0, Breaker.CLOSED).trial


def w(tag: int, target: str = "", limit: int | None = 1, received: str = "", definition: str = "d") -> Waiting:
    return Waiting(tag, definition, target, limit, f"job-{tag}", received)


@pytest.mark.parametrize(
    ("waiting", "active", "room", "expected"),
    [
        ([w(1), w(2), w(3)], {}, None, [1]),  # limit 1, nothing running
        ([w(1, limit=3), w(2, limit=3), w(3, limit=3)], {("d", ""): 1}, None, [1, 2]),
        ([w(1, limit=3)], {("d", ""): 3}, None, []),
        # a full target does not hold back a later alert for another
        ([w(1, "pod=a"), w(2, "pod=a"), w(3, "pod=b")], {("d", "pod=a"): 1}, None, [3]),
        # oldest by receipt, then as they came
        ([w(1, received="2026-01-01T00:00:02Z"), w(2, received="2026-01-01T00:00:01Z")], {}, None, [2]),
        # the global limit: only the room there is, whatever the slots
        ([w(1, limit=None), w(2, limit=None), w(3, limit=None)], {}, 2, [1, 2]),
        ([w(1, limit=None)], {}, 0, []),
        # other definitions count on their own
        ([w(1, definition="e"), w(2)], {("d", ""): 1}, None, [1]),
    ],
)
def test_which_waiting_alerts_go(waiting: list[Waiting], active: dict, room: int | None, expected: list[int]) -> None:
    assert releasable(waiting, active, room) == expected


def test_alerts_that_will_make_no_job_go_at_once_and_take_no_slot() -> None:
    # A full slot whose oldest alerts are in their target's cool-down: those go (to be suppressed), then the slot stops
    waiting = [w(1, received="1"), w(2, received="2"), w(3, received="3"), w(4, received="4", definition="e", limit=None)]
    assert releasable(waiting, {("d", ""): 1}, 0, slotless=lambda a: a.tag in (1, 2)) == [1, 2]
    # with room, the next one takes the slot the suppressed ones did not
    assert releasable(waiting, {}, None, slotless=lambda a: a.tag in (1, 2)) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("before", "job", "failed", "after"),
    [
        (BreakerState(), "j", True, BreakerState(Breaker.CLOSED, 1)),
        (BreakerState(Breaker.CLOSED, 2), "j", True, BreakerState(Breaker.OPEN, 3, 50.0, 60.0)),  # the third in a row opens it
        (BreakerState(Breaker.CLOSED, 2), "j", False, BreakerState()),  # a success resets the count
        (BreakerState(Breaker.OPEN, 3, 10.0), "j", False, BreakerState(Breaker.OPEN, 3, 10.0)),  # an old Job ends: still open
        (BreakerState(Breaker.TRIAL, 3, 10.0, 60.0, "t"), "t", False, BreakerState()),  # the trial succeeded: closed
        (BreakerState(Breaker.TRIAL, 3, 10.0, 60.0, "t"), "t", True, BreakerState(Breaker.OPEN, 4, 50.0, 60.0)),  # failed: open again, cool-down anew
        (BreakerState(Breaker.TRIAL, 3, 10.0, 60.0, "t"), "other", False, BreakerState(Breaker.TRIAL, 3, 10.0, 60.0, "t")),
    ],
)
def test_what_an_ended_job_does_to_the_breaker(before: BreakerState, job: str, failed: bool, after: BreakerState) -> None:
    assert breaker_after(before, job, failed, 3, 60.0, 50.0) == after


def test_an_open_breaker_tries_one_job_after_its_cool_down_and_its_state_reads_back() -> None:
    opened = BreakerState(Breaker.OPEN, 3, 100.0, 60.0)
    assert breaker_now(opened, 159.0) == opened and opened.parks
    trying = breaker_now(opened, 160.0)
    assert trying.state is Breaker.TRIAL and not trying.parks
    # One dispatcher claims the trial; every other alert is parked until it ends
    claimed = trial_claimed(trying, "job-1")
    assert claimed is not None and claimed.trial_job == "job-1" and claimed.parks
    assert trial_claimed(claimed, "job-2") is None and trial_claimed(claimed, "job-1") == claimed
    assert trial_claimed(opened, "job-1") is None
    for state in (opened, BreakerState(), BreakerState(Breaker.TRIAL, 4, 1.5, 30.0, "job-1")):
        assert BreakerState.from_text(state.to_text()) == state
    assert BreakerState.from_text("nonsense") == BreakerState()


def test_decide_acknowledges_a_suppressed_alert_and_sets_waiting_and_parked_ones_aside() -> None:
    policy = RetryPolicy((1.0,), max_attempts=2, operator_min_delay_s=0)
    assert decide(Result(Kind.SUPPRESSED, covering_job="j"), 1, policy, {}, "now", "w") == Ack()
    # with the alert and its message id, a record for the outcome stream that names the covering Job (and no Job of its own)
    [envelope] = envelopes_from_webhook({"alerts": [{"labels": {"alertname": "A", "pod": "p"}, "startsAt": "2026-01-01T00:00:00Z"}]})
    suppressed = decide(Result(Kind.SUPPRESSED, covering_job="j", alert=envelope.alert, definition="ns/cm/A"), 1, policy, {}, "now", "w", "m1")
    assert isinstance(suppressed, Ack) and suppressed.record is not None
    assert {k: suppressed.record[k] for k in ("uid", "outcome", "coveringJob", "messageId", "definition", "alertname")} == {
        "uid": "suppressed-m1", "outcome": "suppressed", "coveringJob": "j", "messageId": "m1", "definition": "ns/cm/A", "alertname": "A"
    }
    assert "job" not in suppressed.record
    hold = Hold("ns/cm/Key", "pod=a", 3, "job-1", "concurrency", "2026-01-01T00:00:00Z")
    previous = {h.ADMITTED: "job-1", "x-delivery-count": 2, "alertname": "A"}
    waiting = decide(Result(Kind.WAITING, hold=hold), 1, policy, previous, "now", "w")
    assert isinstance(waiting, SetAside) and waiting.routing_key == "wait"
    assert waiting.headers == {
        "alertname": "A",
        h.DEFINITION: "ns/cm/Key",
        h.TARGET: "pod=a",
        h.LIMIT: 3,
        h.JOB: "job-1",
        h.RECEIVED: "2026-01-01T00:00:00Z",
        h.WAITING_SINCE: "now",
    }
    parked = decide(Result(Kind.PARKED, hold=Hold("ns/cm/Key", why="breaker")), 1, policy, {h.WAITING_SINCE: "before"}, "now", "w")
    assert isinstance(parked, SetAside) and parked.routing_key == "parked"
    assert parked.headers[h.PARKED_AT] == "now" and parked.headers[h.WAITING_SINCE] == "before" and h.LIMIT not in parked.headers


def test_an_operariuss_storm_control_maps_onto_the_configmap_forms_annotations() -> None:
    from dispatcher.operarii import Operarius

    operarius = Operarius.from_resource(
        {
            "metadata": {"name": "restart", "namespace": "openfero", "annotations": {"openfero.io/concurrency": "9"}},
            "spec": {
                "alertSelector": {"alertname": "KubePodCrashLooping"},
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}},
                "stormControl": {"concurrency": 2, "concurrencyKey": ["namespace"], "cooldown": "5m", "cooldownKey": ["namespace", "pod"], "breaker": {"failures": 4, "cooldown": 300}},
            },
        }
    )
    assert StormRules.of(operarius.definition.annotations) == StormRules(2, ("namespace",), 300.0, ("namespace", "pod"), 4, 300.0)


def test_the_readmes_worked_example_asks_what_the_readme_says() -> None:
    import yaml

    from dispatcher.definitions import Definition
    from dispatcher.rendering import JobRules, render
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### A worked example") :]
    configmap = yaml.safe_load(section[section.index("```yaml") + 7 : section.index("```", section.index("```yaml") + 7)])
    rules = StormRules.of(configmap["metadata"]["annotations"])
    # 5 at once in the whole cluster, one pod not twice within 10 minutes, 3 failures open it for 15 minutes
    assert rules == StormRules(concurrency=5, cooldown_s=600.0, cooldown_key=("namespace", "pod"), breaker_failures=3, breaker_cooldown_s=900.0)
    [envelope] = envelopes_from_webhook({"alerts": [{"labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "web-1"}}]})
    definition = Definition.parse("openfero/openfero-kubepodcrashlooping-firing", "KubePodCrashLooping", configmap["data"]["KubePodCrashLooping"], configmap["metadata"]["annotations"])
    job = render(definition, envelope, JobRules(60))
    assert job.cooldown_target == "namespace=shop,pod=web-1" and job.concurrency_target == ""
    assert job.body["metadata"]["annotations"]["openfero.io/cooldown-target"] == "namespace=shop,pod=web-1"
    assert job.body["metadata"]["annotations"]["openfero.io/breaker-failures"] == "3"
