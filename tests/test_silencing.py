"""The silence before the Job, against the real Alertmanager (Debian's 0.25) and the Kubernetes API double.

The handler (or, where the broker's retries matter, the whole dispatcher:
tests.inprocess) runs in process; Alertmanager is the real one, started per
test on loopback (tests.alertmanager), so every silence it keeps is one
this test made.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from kubernetes import client

from dispatcher.alertmanager import Alertmanagers
from dispatcher.jobs import JobCreator
from dispatcher.metrics import SILENCE_CREATE_FAILURES, SILENCES_CREATED, SILENCES_EXPIRED_EARLY
from dispatcher.results import Failure, Kind, Result
from dispatcher.silencing import SilenceKeeper
from shared.envelope import envelopes_from_webhook
from shared.settings import AlertmanagerSettings, KubeSettings
from tests.alertmanager import Alertmanager, routes
from tests.conftest import async_wait_for, free_port
from tests.harness import webhook
from tests.helpers import SilencingHandler, counter, quota_alert, silenced_configmap
from tests.inprocess import running_dispatcher
from tests.kube_double import KubeDouble

# A bcrypt hash of "silence-please" (cost 4), for Alertmanager's --web.config.file.
PASSWORD, PASSWORD_HASH = "silence-please", "$2b$04$U3BDXkHuUJ6m6SJ8gWHLT.bhfXMhphl4dw5zAb1tK7UWGnnk9RLza"


def retried(result: Result) -> Failure:
    """The failure of a result the consuming loop retries (a transient one)."""
    assert result.kind is Kind.FAILED and result.failure is not None and result.failure.transient, result
    return result.failure


def dead(result: Result) -> Failure:
    """The failure of a result the consuming loop dead-letters."""
    assert result.kind is Kind.FAILED and result.failure is not None and not result.failure.transient, result
    return result.failure


def ours(am: Alertmanager, job: str) -> list[dict[str, Any]]:
    return [s for s in am.silences() if s["comment"].endswith(f"[openfero.io/job=default/{job}]")]


@pytest.fixture
async def dispatcher(kube_double: KubeDouble, api: client.ApiClient, am: Alertmanager) -> Any:
    made = SilencingHandler(kube_double, api, am.url, silenced_configmap())
    yield made
    await made.close()


async def test_the_silence_is_made_before_the_job_matches_exactly_the_alert_and_is_written_on_it(dispatcher: SilencingHandler, am: Alertmanager, kube_double: KubeDouble) -> None:
    created_before = counter(SILENCES_CREATED)
    seen_at_create: list[int] = []
    create = dispatcher.creator.create

    async def watching_create(body: dict[str, Any]) -> bool:
        seen_at_create.append(len(am.silences()))
        return await create(body)

    dispatcher.handler.sink = dispatcher.creator  # the keeper is handed sink.create: watch it
    dispatcher.creator.create = watching_create  # type: ignore[method-assign]
    started = datetime.now(timezone.utc)
    outcome = await dispatcher.handle(quota_alert(namespace="shop", NAMESPACE_x="y"))
    assert outcome.kind is Kind.CREATED
    assert seen_at_create == [1]  # the silence existed when the Job was created
    [job] = kube_double.jobs()
    annotations = job["metadata"]["annotations"]
    [silence] = am.silences()
    assert annotations["openfero.io/silence-id"] == silence["id"]
    assert annotations["openfero.io/silence-alertmanager"] == am.url
    assert annotations["openfero.io/silence-after-success"] == "keep"
    assert silence["status"]["state"] == "active" and silence["createdBy"] == "openfero"
    assert sorted((m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in silence["matchers"]) == [
        ("NAMESPACE_x", "y", False, True), ("alertname", "KubeQuotaAlmostFull", False, True), ("namespace", "shop", False, True)
    ]
    assert silence["comment"].endswith(f"[openfero.io/job=default/{job['metadata']['name']}]")
    # it ends at the Job's deadline (600 s) plus the margin (60 s), by itself
    ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert timedelta(seconds=659) <= ends - started <= timedelta(seconds=662)
    assert counter(SILENCES_CREATED) - created_before == 1


async def test_a_retried_message_finds_its_silence_and_makes_no_second(dispatcher: SilencingHandler, am: Alertmanager, kube_double: KubeDouble) -> None:
    # Given the Job create failing once, after the silence was made (the API away for a moment)
    kube_double.add_fault("POST", r"/jobs$", status=503, times=1)
    envelope = quota_alert(namespace="shop")
    first = await dispatcher.handle(envelope)
    assert retried(first) and kube_double.jobs() == []
    [silence] = am.silences()
    assert silence["status"]["state"] == "active"  # kept for the retry
    # When the message is retried
    second = await dispatcher.handle(envelope)
    # Then the Job is made with the same silence, and there is still one
    assert second.kind is Kind.CREATED
    [job] = kube_double.jobs()
    assert job["metadata"]["annotations"]["openfero.io/silence-id"] == silence["id"]
    assert [s["id"] for s in am.silences()] == [silence["id"]]
    # and a third delivery (the Job exists) makes none either
    assert (await dispatcher.handle(envelope)).done
    assert len(am.silences()) == 1


async def test_a_repeat_notification_of_a_failed_remediation_does_not_silence_the_alert_again(dispatcher: SilencingHandler, am: Alertmanager, kube_double: KubeDouble) -> None:
    envelope = quota_alert(namespace="shop")
    assert (await dispatcher.handle(envelope)).done
    [silence] = am.silences()
    # Given the remediation failed and its silence was expired (the outcome leader's part)
    assert am.request("DELETE", f"/api/v2/silence/{silence['id']}")[0] == 200
    # When Alertmanager repeats the notification (same occurrence: the Job exists)
    outcome = await dispatcher.handle(envelope)
    # Then it is a duplicate, and nothing silences the alert
    assert outcome.kind is Kind.DUPLICATE
    assert [s["status"]["state"] for s in am.silences()] == ["expired"]


async def test_alertmanager_unreachable_is_a_retry_and_no_job_is_made_without_its_silence(kube_double: KubeDouble, api: client.ApiClient, tmp_path: Path) -> None:
    port = free_port()
    dispatcher = SilencingHandler(kube_double, api, f"http://127.0.0.1:{port}", silenced_configmap())
    failures = counter(SILENCE_CREATE_FAILURES.labels("unavailable"))
    try:
        envelope = quota_alert(namespace="shop")
        # Given no Alertmanager answering
        outcome = await dispatcher.handle(envelope)
        # Then the message is retried and no Job exists
        assert retried(outcome).error_class == "AlertmanagerUnavailable" and not retried(outcome).needs_operator
        assert kube_double.jobs() == []
        assert counter(SILENCE_CREATE_FAILURES.labels("unavailable")) - failures == 1
        # When it is back, the retry makes both
        am = Alertmanager(tmp_path / "late", routes("http://127.0.0.1:9/a", "http://127.0.0.1:9/p"), port=port).start()
        try:
            assert (await dispatcher.handle(envelope)).done
            [job] = kube_double.jobs()
            assert job["metadata"]["annotations"]["openfero.io/silence-id"] == am.silences()[0]["id"]
        finally:
            am.close()
    finally:
        await dispatcher.close()


async def test_a_silence_alertmanager_refuses_is_a_dead_letter_and_no_job(dispatcher: SilencingHandler, am: Alertmanager, kube_double: KubeDouble) -> None:
    # Alertmanager 0.25 allows only classic label names in a silence's matchers
    outcome = await dispatcher.handle(quota_alert(**{"service.name": "api"}))
    assert dead(outcome).error_class == "AlertmanagerRejected" and dead(outcome).status == 400
    assert "invalid label name" in dead(outcome).reason
    assert kube_double.jobs() == [] and am.silences() == []


async def test_a_job_the_api_refuses_for_good_gets_its_silence_expired(dispatcher: SilencingHandler, am: Alertmanager, kube_double: KubeDouble) -> None:
    before = counter(SILENCES_EXPIRED_EARLY.labels("not_created"))
    kube_double.add_fault("POST", r"/jobs$", status=422, times=1)
    outcome = await dispatcher.handle(quota_alert(namespace="shop"))
    assert dead(outcome)
    assert [s["status"]["state"] for s in am.silences()] == ["expired"]  # nothing will fix it: let it page
    assert counter(SILENCES_EXPIRED_EARLY.labels("not_created")) - before == 1


async def test_a_silence_made_while_another_delivery_made_the_job_is_expired(dispatcher: SilencingHandler, am: Alertmanager, kube_double: KubeDouble) -> None:
    envelope = quota_alert(namespace="shop")
    assert (await dispatcher.handle(envelope)).done
    [theirs] = am.silences()
    # Given a copy of the message that did not see the Job (it was made between its check and its create)
    # and did not find the first silence (created on another Alertmanager, not gossiped yet)
    am.request("DELETE", f"/api/v2/silence/{theirs['id']}")
    real = dispatcher.keeper.read_job
    calls = []

    async def racing_read(name: str) -> Any:
        calls.append(name)
        return None if len(calls) == 1 else await real(name)

    dispatcher.keeper.read_job = racing_read  # type: ignore[method-assign]
    outcome = await dispatcher.handle(envelope)
    # Then its own silence is expired: the Job holds the other one
    assert outcome.kind is Kind.DUPLICATE
    assert sorted(s["status"]["state"] for s in am.silences()) == ["expired", "expired"]


async def test_a_definition_that_does_not_ask_gets_no_silence(kube_double: KubeDouble, api: client.ApiClient, am: Alertmanager) -> None:
    dispatcher = SilencingHandler(kube_double, api, am.url, silenced_configmap(silence="false"))
    try:
        assert (await dispatcher.handle(quota_alert(namespace="shop"))).done
        assert am.silences() == []
        assert "openfero.io/silence-id" not in kube_double.jobs()[0]["metadata"]["annotations"]
    finally:
        await dispatcher.close()


async def test_a_resolved_alert_gets_no_silence(dispatcher: SilencingHandler, am: Alertmanager, kube_double: KubeDouble) -> None:
    # (a silence over it would hide the alert firing again)
    configmap = silenced_configmap()
    configmap["metadata"]["name"] = "openfero-kubequotaalmostfull-resolved"
    dispatcher.handler.catalog.replace_configmaps([kube_double.apply("configmaps", "default", configmap)])
    [resolved] = envelopes_from_webhook({"alerts": [{"status": "resolved", "labels": {"alertname": "KubeQuotaAlmostFull", "namespace": "shop"}, "startsAt": "2026-01-01T00:00:00Z"}]})
    assert (await dispatcher.handle(resolved)).done
    assert am.silences() == [] and len(kube_double.jobs()) == 1


async def test_no_alertmanager_configured_waits_for_an_operator(kube_double: KubeDouble, api: client.ApiClient) -> None:
    dispatcher = SilencingHandler(kube_double, api, "", silenced_configmap())
    try:
        outcome = await dispatcher.handle(quota_alert(namespace="shop"))
        assert retried(outcome).needs_operator and retried(outcome).error_class == "AlertmanagerNotConfigured"
        assert kube_double.jobs() == []
    finally:
        await dispatcher.close()


# -- auth and TLS --------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    import subprocess

    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _signed(folder: Path, name: str, ca: Path, ca_key: Path, extension: str) -> tuple[Path, Path]:
    key, csr, cert, ext = (folder / f"{name}{suffix}" for suffix in (".key", ".csr", ".pem", ".ext"))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    ext.write_text(extension + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(ext))
    return cert, key


def _certificates(folder: Path) -> tuple[Path, tuple[Path, Path], tuple[Path, Path]]:
    """A CA; a server certificate for 127.0.0.1 and a client certificate, both signed by it (openssl)."""
    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "1", "-subj", "/CN=openfero test CA")
    server = _signed(folder, "server", ca, ca_key, "subjectAltName=IP:127.0.0.1")
    client_ = _signed(folder, "openfero", ca, ca_key, "extendedKeyUsage=clientAuth")
    return ca, server, client_


async def test_basic_auth_and_tls_with_a_ca_of_its_own(kube_double: KubeDouble, api: client.ApiClient, tmp_path: Path) -> None:
    ca, (cert, key), (client_cert, client_key) = _certificates(tmp_path)
    web = {"basic_auth_users": {"openfero": PASSWORD_HASH}, "tls_server_config": {"cert_file": str(cert), "key_file": str(key)}}
    am = Alertmanager(tmp_path / "am", routes("http://127.0.0.1:9/a", "http://127.0.0.1:9/p"), web_config=web).start()
    (tmp_path / "password").write_text(PASSWORD + "\n")
    good = SilencingHandler(kube_double, api, am.url, silenced_configmap(), auth_mode="basic", auth_username="openfero", auth_password_file=str(tmp_path / "password"), ca_file=str(ca))
    wrong = SilencingHandler(kube_double, api, am.url, silenced_configmap(), auth_mode="basic", auth_username="openfero", auth_password="guess", ca_file=str(ca))
    untrusted = SilencingHandler(kube_double, api, am.url, silenced_configmap(), auth_mode="basic", auth_username="openfero", auth_password=PASSWORD)
    try:
        # the wrong password: an operator must fix it, and nothing runs meanwhile
        outcome = await wrong.handle(quota_alert(namespace="a"))
        assert retried(outcome).needs_operator and retried(outcome).status == 401
        # a certificate the system's CAs do not know: no answer worth the name, retried
        outcome = await untrusted.handle(quota_alert(namespace="a"))
        assert retried(outcome).error_class == "AlertmanagerUnavailable" and "certificate" in retried(outcome).reason.lower()
        assert kube_double.jobs() == []
        assert (await good.handle(quota_alert(namespace="a"))).done
        assert len(am.request("GET", "/api/v2/silences", headers={"Authorization": _basic("openfero", PASSWORD)})[1]) == 1
    finally:
        for d in (good, wrong, untrusted):
            await d.close()
        am.close()


async def test_a_client_certificate_for_an_alertmanager_that_asks_for_one(kube_double: KubeDouble, api: client.ApiClient, tmp_path: Path) -> None:
    ca, (cert, key), (client_cert, client_key) = _certificates(tmp_path)
    tls = {"cert_file": str(cert), "key_file": str(key), "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": str(ca)}
    am = Alertmanager(tmp_path / "am", routes("http://127.0.0.1:9/a", "http://127.0.0.1:9/p"), web_config={"tls_server_config": tls})
    am._ready = lambda: am.proc is not None and _listening(am.port)  # type: ignore[method-assign]  # /-/ready wants a certificate too
    am.start()
    with_cert = SilencingHandler(kube_double, api, am.url, silenced_configmap(), ca_file=str(ca), cert_file=str(client_cert), key_file=str(client_key))
    without = SilencingHandler(kube_double, api, am.url, silenced_configmap(), ca_file=str(ca))
    try:
        refused = await without.handle(quota_alert(namespace="a"))
        assert "bad certificate" in retried(refused).reason  # like a TLS failure to the Kubernetes API: retried
        assert kube_double.jobs() == []
        assert (await with_cert.handle(quota_alert(namespace="a"))).done
        [job] = kube_double.jobs()
        assert job["metadata"]["annotations"]["openfero.io/silence-id"]
    finally:
        await with_cert.close()
        await without.close()
        am.close()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_bearer_auth_sends_the_token() -> None:
    # Alertmanager itself takes only basic auth: a proxy in front of it checks bearer tokens; here, a recorder.
    seen: list[str | None] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"[]")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    Thread(target=server.serve_forever, daemon=True).start()
    managers = Alertmanagers(AlertmanagerSettings(urls=f"http://127.0.0.1:{server.server_address[1]}", auth_mode="bearer", auth_token="t0ken"))
    try:
        assert await managers.silences(managers.urls[0]) == []
        assert seen == ["Bearer t0ken"]
    finally:
        await managers.close()
        server.shutdown()
        server.server_close()


# -- what the matchers match ------------------------------------------------------------------


async def test_the_silence_never_matches_a_neighbour(am: Alertmanager) -> None:
    from dispatcher import silences as rules

    hostile = {"alertname": "Hostile", "namespace": "shop", "pod": 'web-1.*|"x"', "note": 'a\nb =~ "} ,{ .+', "zone": "ä€"}
    plain = {"alertname": "Plain", "namespace": "shop"}
    neighbours = {
        "NAMESPACE instead of namespace": {**{k: v for k, v in hostile.items() if k != "namespace"}, "NAMESPACE": "shop"},
        "the value its regex would match": {**hostile, "pod": "web-1"},
        "a value differing in case": {**hostile, "namespace": "Shop"},
        "one label fewer": {k: v for k, v in hostile.items() if k != "note"},
        "plain, NAMESPACE": {"alertname": "Plain", "NAMESPACE": "shop"},
        "plain, alertname in lower case": {"alertname": "plain", "namespace": "shop"},
    }
    superset = {**hostile, "extra": "1"}
    managers = Alertmanagers(AlertmanagerSettings(urls=am.url))
    try:
        now = datetime.now(timezone.utc)
        ids = {}
        for name, labels in (("hostile", hostile), ("plain", plain)):
            ids[name] = await managers.create(am.url, rules.body(labels, "jobs", f"fix-{name}", "d", now, 600))
    finally:
        await managers.close()
    am.push(hostile, plain, superset, *neighbours.values())
    silenced_by = {tuple(sorted(a["labels"].items())): a["status"]["silencedBy"] for a in am.alerts()}

    def by(labels: dict[str, str]) -> list[str]:
        return silenced_by[tuple(sorted(labels.items()))]

    assert by(hostile) == [ids["hostile"]] and by(plain) == [ids["plain"]]
    assert {name: by(labels) for name, labels in neighbours.items()} == {name: [] for name in neighbours}
    # The edge of equality on every label: the same labels plus more match too (documented)
    assert by(superset) == [ids["hostile"]]


async def test_alertmanager_down_when_the_job_should_start_is_retried_on_the_broker(kube_double: KubeDouble, api: client.ApiClient, amqp_url: str, prefix: str, tmp_path: Path) -> None:
    # Given no Alertmanager answering where the dispatcher looks for one
    port = free_port()
    creator = JobCreator(api, KubeSettings(job_namespace="default", request_timeout_s=2), concurrency=2)
    alertmanagers = Alertmanagers(AlertmanagerSettings(urls=f"http://127.0.0.1:{port}", timeout_s=1))
    keeper = SilenceKeeper(alertmanagers, creator.annotations, "default", 900, 60)
    am = None
    try:
        async with running_dispatcher(amqp_url, prefix, [silenced_configmap()], creator, max_attempts=30, silences=keeper) as running:
            # When an alert arrives, it is retried on the broker, and never a Job without its silence
            await running.post(webhook([{"labels": {"alertname": "KubeQuotaAlmostFull", "namespace": "shop"}, "startsAt": "2026-01-01T00:00:00Z"}]))
            retries = await async_wait_for(lambda: len(running.events("message.retry")) >= 2 and running.events("message.retry"), what="retries")
            assert {r["error_class"] for r in retries} == {"AlertmanagerUnavailable"}
            assert kube_double.jobs() == []
            # Then once Alertmanager starts, the next retry makes the silence, then the Job
            am = await asyncio.to_thread(lambda: Alertmanager(tmp_path / "am", routes("http://127.0.0.1:9/alerts", "http://127.0.0.1:9/page"), port=port).start())
            await running.settled(1)
        [job] = kube_double.jobs()
        assert [s["id"] for s in am.silences()] == [job["metadata"]["annotations"]["openfero.io/silence-id"]]
    finally:
        await alertmanagers.close()
        creator.close()
        if am is not None:
            am.close()
