"""The console's pure parts: Job states, the timeline's joins and filters, CSRF tokens, auth settings, escaping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from console import charts, csrf
from console.outcomes import read_outcome
from console.security import Gate
from console.timeline import (
    DEAD_LETTERED,
    DELETED,
    FAILED,
    NO_DEFINITION,
    NO_JOB,
    PENDING,
    RUNNING,
    SUCCEEDED,
    AlertEntry,
    JobView,
    Timeline,
    TimelineFilter,
    definition_stats,
    job_state,
)
from shared.settings import ConsoleSettings, SettingsError, load

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def job(name: str, message_id: str, status: dict | None = None, annotations: dict | None = None, created: datetime = NOW) -> dict:
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "labels": {"app.kubernetes.io/managed-by": "openfero"},
            "annotations": {"openfero.io/message-id": message_id, "openfero.io/definition": "default/openfero-a-firing/A", **(annotations or {})},
        },
        "status": status or {},
    }


def entry(message_id: str, received: datetime = NOW, definition: str = "default/openfero-a-firing/A", **labels: str) -> AlertEntry:
    return AlertEntry(message_id, received, "A", "firing", {"alertname": "A", **labels}, "f" + message_id, "", definition)


DONE = {"type": "Complete", "status": "True"}


@pytest.mark.parametrize(
    ("status", "annotations", "expected"),
    [
        ({}, {}, (PENDING, "")),
        ({"active": 1}, {}, (RUNNING, "")),
        ({"conditions": [DONE], "completionTime": "2026-11-26T12:00:05Z"}, {}, (SUCCEEDED, "")),
        ({"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, DONE]}, {}, (SUCCEEDED, "")),
        ({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}, {}, (FAILED, "BackoffLimitExceeded")),
        ({"conditions": [{"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"}]}, {}, (FAILED, "DeadlineExceeded")),
        ({"conditions": [{"type": "Failed", "status": "False"}], "active": 1}, {}, (RUNNING, "")),
        # The dispatchers' outcome annotation wins over the conditions it was read from
        ({"active": 1}, {"openfero.io/outcome": "Succeeded"}, (SUCCEEDED, "")),
        ({"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}, {"openfero.io/outcome": "Failed"}, (FAILED, "DeadlineExceeded")),
        ({}, {"openfero.io/outcome": "Deleted"}, (DELETED, "")),
        ({}, {"openfero.io/outcome": "Perhaps"}, (PENDING, "")),
    ],
)
def test_a_jobs_state_is_read_from_the_job_itself(status: dict, annotations: dict, expected: tuple[str, str]) -> None:
    state, reason, _ = job_state(job("j", "m", status, annotations))
    assert (state, reason) == expected


def test_a_job_that_arrives_before_its_alert_joins_it_and_every_change_is_announced() -> None:
    changed: list[str] = []
    timeline = Timeline(timedelta(hours=1), 100, changed.extend)
    timeline.apply_job("ADDED", job("fix-1", "m1"))
    assert changed == []  # no alert yet to change
    timeline.add_alert(entry("m1"))
    assert [r.outcome for r in timeline.rows()] == [PENDING]
    timeline.apply_job("MODIFIED", job("fix-1", "m1", {"conditions": [DONE]}))
    [row] = timeline.rows()
    assert (row.outcome, row.job.name, row.definition) == (SUCCEEDED, "fix-1", "default/openfero-a-firing/A")
    assert changed == ["m1", "m1"]


def test_a_job_deleted_before_it_ended_is_deleted_and_one_that_ended_keeps_its_end() -> None:
    timeline = Timeline(timedelta(hours=1), 100)
    timeline.add_alert(entry("m1"))
    timeline.add_alert(entry("m2"))
    timeline.apply_job("ADDED", job("j1", "m1", {"active": 1}))
    timeline.apply_job("ADDED", job("j2", "m2", {"conditions": [DONE]}))
    timeline.apply_job("DELETED", job("j1", "m1", {"active": 1}))
    timeline.apply_job("DELETED", job("j2", "m2", {"conditions": [DONE]}))  # its TTL
    assert {r.alert.id: r.outcome for r in timeline.rows()} == {"m1": DELETED, "m2": SUCCEEDED}
    # A relist that no longer holds a running Job: deleted while the console was not watching
    timeline.add_alert(entry("m3"))
    timeline.apply_job("ADDED", job("j3", "m3", {"active": 1}))
    timeline.replace_jobs([])
    assert timeline.row(timeline.alerts["m3"]).outcome == DELETED


def test_alerts_without_a_job_say_why() -> None:
    timeline = Timeline(timedelta(hours=1), 100)
    timeline.add_alert(entry("m1"))
    timeline.add_alert(entry("m2", definition=""))
    timeline.add_alert(entry("m3"))
    timeline.set_dead_letters({"m3": "ApiRejected: 422"})
    outcomes = {r.alert.id: (r.outcome, r.detail) for r in timeline.rows()}
    assert outcomes == {"m1": (NO_JOB, ""), "m2": (NO_DEFINITION, ""), "m3": (DEAD_LETTERED, "ApiRejected: 422")}


def test_an_outcome_record_stands_in_for_an_expired_job() -> None:
    timeline = Timeline(timedelta(hours=1), 100)
    timeline.add_alert(entry("m1"))
    record = read_outcome(b'{"messageId": "m1", "job": "fix-1", "outcome": "Failed", "reason": "BackoffLimitExceeded"}')
    assert record is not None
    timeline.apply_outcome(record)
    [row] = timeline.rows()
    assert (row.outcome, row.detail) == (FAILED, "BackoffLimitExceeded")


@pytest.mark.parametrize(
    ("body", "message_id", "expected"),
    [
        (b'{"message_id": "m", "job_name": "j", "outcome": "Succeeded"}', None, ("m", "j", "succeeded")),
        (b'{"job": "j", "outcome": "suppressed"}', "m", ("m", "j", "suppressed")),
        (b'{"job": "j"}', "m", None),  # no outcome
        (b"not json", "m", None),
        (b"[1, 2]", "m", None),
        (b'{"outcome": "Failed"}', None, None),  # nothing to join it to
    ],
)
def test_outcome_records_are_read_leniently(body: bytes, message_id: str | None, expected: tuple | None) -> None:
    record = read_outcome(body, message_id)
    assert (None if record is None else (record.message_id, record.job, record.outcome)) == expected


def test_filters_and_search_over_labels() -> None:
    timeline = Timeline(timedelta(hours=1), 100)
    timeline.add_alert(entry("m1", NOW - timedelta(minutes=50), namespace="prod", pod="api-7"))
    timeline.add_alert(entry("m2", NOW - timedelta(minutes=5), namespace="prod-eu", pod="db-1"))
    timeline.add_alert(entry("m3", NOW, namespace="dev", pod="api-9"))
    timeline.apply_job("ADDED", job("fix-api-9", "m3"))

    def ids(**kwargs: object) -> list[str]:
        return [r.alert.id for r in timeline.rows(TimelineFilter(**kwargs))]  # type: ignore[arg-type]

    assert ids() == ["m3", "m2", "m1"]  # newest first
    assert ids(search="namespace=prod") == ["m1"]  # name=value is exact
    assert ids(search="prod") == ["m2", "m1"]  # a word is a part of name=value
    assert ids(search="pod=api-9 dev") == ["m3"]  # every word must match
    assert ids(search="fix-api") == ["m3"]  # the Job's name
    assert ids(since=NOW - timedelta(minutes=10)) == ["m3", "m2"]
    assert ids(outcome=PENDING) == ["m3"]
    assert ids(outcome=NO_JOB) == ["m2", "m1"]
    assert ids(status="resolved") == []


def test_the_timeline_keeps_at_most_max_alerts_and_only_the_window() -> None:
    timeline = Timeline(timedelta(hours=1), 3)
    for i in range(5):
        timeline.add_alert(entry(f"m{i}", NOW - timedelta(minutes=90 - i * 20)))
    assert list(timeline.alerts) == ["m2", "m3", "m4"] and timeline.dropped == 2
    assert not timeline.add_alert(entry("m4"))  # read again after a reconnect: known
    timeline.prune(NOW + timedelta(minutes=15))
    assert list(timeline.alerts) == ["m3", "m4"]  # m2 was received 50 + 15 minutes before


def test_definition_stats_count_active_jobs_and_the_days_outcomes() -> None:
    views = [
        JobView.of(job("a", "1", {"conditions": [DONE]})),
        JobView.of(job("b", "2", {"conditions": [{"type": "Failed", "status": "True"}]})),
        JobView.of(job("c", "3", {"active": 1})),
        JobView.of(job("d", "4", {"conditions": [DONE]}, created=NOW - timedelta(days=2))),
    ]
    stats = definition_stats(views, NOW - timedelta(days=1))["default/openfero-a-firing/A"]
    assert (stats.active, stats.succeeded, stats.failed, stats.success_rate) == (1, 1, 1, 0.5)


def test_charts_count_every_point_once_in_its_bucket() -> None:
    points = [(NOW - timedelta(minutes=m), "firing") for m in (1, 1, 30, 59)] + [(NOW - timedelta(minutes=2), "resolved")]
    chart = charts.over_time("x", (("firing", "firing"), ("resolved", "resolved")), points, NOW - timedelta(hours=1), NOW, count=12)
    assert chart.total == 5 and chart.peak == 3 and len(chart.bars) == 12
    assert all(0 <= s.y and s.y + s.height <= chart.plot_bottom + 0.1 for b in chart.bars for s in b.segments)
    histogram = charts.durations("d", [(5, "succeeded"), (45, "failed"), (7200, "succeeded")], (("succeeded", "s"), ("failed", "f")))
    assert [sum(s.count for s in b.segments) for b in histogram.bars] == [1, 0, 1, 0, 0, 0, 1]


def test_csrf_tokens_are_bound_to_the_user_the_key_and_a_time() -> None:
    key = csrf.load_key("")
    token = csrf.issue(key, "alice", now=1000.0)
    assert csrf.valid(key, "alice", token, now=1000.0 + 3600)
    assert not csrf.valid(key, "bob", token, now=1001.0)
    assert not csrf.valid(csrf.load_key(""), "alice", token, now=1001.0)  # another process' key
    assert not csrf.valid(key, "alice", token, now=1000.0 + csrf.MAX_AGE_S + 120)
    assert not csrf.valid(key, "alice", "", now=1001.0)
    assert not csrf.valid(key, "alice", "1000." + "0" * 40, now=1001.0)


def test_the_csrf_key_file_is_shared_by_replicas(tmp_path) -> None:
    path = tmp_path / "key"
    path.write_text("a key of more than sixteen bytes\n")
    one, other = csrf.load_key(str(path)), csrf.load_key(str(path))
    assert csrf.valid(other, "alice", csrf.issue(one, "alice"))
    path.write_text("short")
    with pytest.raises(SettingsError, match="16 bytes"):
        csrf.load_key(str(path))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OPENFERO_CONSOLE_ADDR": "0.0.0.0:8081", "OPENFERO_CONSOLE_AUTH": "none"}, "needs authentication"),
        ({"OPENFERO_CONSOLE_AUTH": "basic", "OPENFERO_CONSOLE_AUTH_USERNAME": "ops"}, "needs OPENFERO_CONSOLE_AUTH_USERNAME and a password"),
        ({"OPENFERO_CONSOLE_AUTH": "bearer"}, "OPENFERO_CONSOLE_AUTH_TOKEN"),
        ({"OPENFERO_CONSOLE_AUTH": "proxy"}, "OPENFERO_CONSOLE_PROXY_ADDRESSES"),
        ({"OPENFERO_CONSOLE_AUTH": "proxy", "OPENFERO_CONSOLE_PROXY_ADDRESSES": "not-an-address"}, "OPENFERO_CONSOLE_PROXY_ADDRESSES"),
        ({"OPENFERO_CONSOLE_AUTH": "oauth"}, "expected one of basic, bearer, proxy, none"),
    ],
)
def test_the_console_refuses_to_start_open_or_half_configured(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Gate.from_settings(load(ConsoleSettings, env))


def test_no_authentication_is_allowed_on_loopback_only() -> None:
    assert Gate.from_settings(load(ConsoleSettings, {"OPENFERO_CONSOLE_ADDR": "127.0.0.1:8081", "OPENFERO_CONSOLE_AUTH": "none"})).mode == "none"
    assert Gate.from_settings(load(ConsoleSettings, {"OPENFERO_CONSOLE_ADDR": "[::1]:8081", "OPENFERO_CONSOLE_AUTH": "none"})).mode == "none"
    proxy = Gate.from_settings(load(ConsoleSettings, {"OPENFERO_CONSOLE_AUTH": "proxy", "OPENFERO_CONSOLE_PROXY_ADDRESSES": "10.1.0.0/16, 127.0.0.1"}))
    assert proxy._from_proxy("10.1.2.3") and proxy._from_proxy("127.0.0.1")
    assert not proxy._from_proxy("10.2.0.1") and not proxy._from_proxy(None) and not proxy._from_proxy("garbage")


HOSTILE = {
    "script": "<script>window.__pwned = 1</script>",
    "attribute": '"><img src=x onerror="window.__pwned = 2">',
    "quotes": "it's \"quoted\" & 'single'",
    "rtl": "\u202eexe.txt\u202c end",
    "long": "y" * 16000,
}


def test_a_hostile_row_is_escaped_isolated_and_clipped() -> None:
    from console.views import fragment

    timeline = Timeline(timedelta(hours=1), 10)
    timeline.add_alert(AlertEntry('m"<1>', NOW, "<b>A</b>", "fir<i>ng", {"alertname": "<b>A</b>", **HOSTILE}, "f", "", "d<e>f"))
    [row] = timeline.rows()
    html = fragment("row.html", r=row)
    for raw in ("<script", "<img", "<b>", "<i>", "<e>", 'onerror="'):
        assert raw not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=&#34;" in html
    assert "it&#39;s &#34;quoted&#34; &amp; &#39;single&#39;" in html
    assert "<bdi>\u202eexe.txt\u202c end</bdi>" in html or "\u202eexe.txt\u202c end</bdi>" in html
    assert "y" * 2001 not in html  # long values are cut, also in their title
    assert 'class="status s-other"' in html  # a status that is no status word styles nothing


def test_the_console_command_lists_its_settings() -> None:
    import subprocess
    import sys

    from click.testing import CliRunner

    from openfero.cli import main
    from tests.conftest import ROOT

    result = subprocess.run([sys.executable, "-m", "console", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "OPENFERO_CONSOLE_AUTH" in result.stdout and "OPENFERO_AMQP_URL" in result.stdout
    result = CliRunner().invoke(main, ["console", "--help"])
    assert result.exit_code == 0 and "OPENFERO_CONSOLE_READ_ONLY" in result.output


def test_the_console_refuses_to_start_without_credentials_off_loopback() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {"PATH": "/usr/bin:/bin", "OPENFERO_CONSOLE_ADDR": "0.0.0.0:0", "OPENFERO_CONSOLE_AUTH": "none", "KUBECONFIG": "/nonexistent"}
    result = subprocess.run([sys.executable, "-m", "console"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "needs authentication" in result.stderr


def test_dead_letters_are_selected_by_message_id() -> None:
    from openfero.records import Filter, Record

    records = [Record.of(b"{}", {}, message_id, dead=True) for message_id in ("a", "b", "c")]
    assert [r.id for r in records if Filter(ids=frozenset({"a", "c"})).matches(r)] == ["a", "c"]
    assert not any(Filter(ids=frozenset()).matches(r) for r in records)
    assert all(Filter().matches(r) for r in records)
