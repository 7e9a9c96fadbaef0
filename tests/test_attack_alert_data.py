"""Alert data is data: attacks the first round of tests did not try, each performed. No I/O but a real shell.

tests/test_alert_data_safety.py holds the attacks openfero was built
against. This file holds the ones tried afterwards, by someone who shapes
alert labels and annotations (any pod or namespace creator, or anyone who
can post to Alertmanager) and by a careless or hostile definition author.

Every test asserts what openfero promises (README, Safety rules and
Templates). The ones marked ``xfail(strict=True)`` fail today: each names
the hole in its reason, and turns into an error once the hole is closed, so
that the mark must be removed with the fix. Where a test's claim rests on
the attack working at all (a script that really runs the label), a passing
test beside it shows that it does.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import stat
import subprocess
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher.catalog import Catalog, load_files
from dispatcher.definitions import Definition
from dispatcher.handling import Handler
from dispatcher.results import Kind
from dispatcher.naming import env_name
from dispatcher.rendering import JobRules, Refused, RenderError, render
from dispatcher.templating import TemplateError, jinja_data, render_string
from openfero.authoring import Report, validate_file
from shared.envelope import Envelope, envelopes_from_webhook
from tests.conftest import ROOT
from tests.kubelet import container_view, expand


def alert(labels: dict[str, str], annotations: dict[str, str] | None = None) -> Envelope:
    webhook = {"alerts": [{"labels": labels, "annotations": annotations or {}, "status": "firing", "startsAt": "2025-01-01T00:00:00Z"}]}
    return envelopes_from_webhook(webhook)[0]


def definition(job: dict[str, Any], engine: str = "") -> Definition:
    if engine:
        job = {**job, "metadata": {**job.get("metadata", {}), "annotations": {"openfero.io/template-engine": engine}}}
    return Definition.parse("ns/openfero-a-firing", "A", yaml.safe_dump(job))


def one_container_job(container: dict[str, Any], **pod: Any) -> dict[str, Any]:
    return {
        "kind": "Job",
        "metadata": {"name": "fix"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", **container}], **pod}}},
    }


def first_container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


class Sink:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    async def create(self, body: dict[str, Any]) -> bool:
        self.created.append(body)
        return True


def shipped_catalog() -> Catalog:
    catalog = Catalog()
    load_files(ROOT / "k8s" / "examples", catalog)
    return catalog


def kubectl_stub(folder: Path) -> Path:
    """A `kubectl` that records its arguments, one JSON list a line, and does nothing else."""
    calls = folder / "calls.jsonl"
    stub = folder / "kubectl"
    stub.write_text(f'#!/bin/sh\nexec python3 -c \'import json,sys; open("{calls}","a").write(json.dumps(sys.argv[1:])+"\\n")\' "$@"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return calls


def kubectl_options(calls: Path) -> list[str]:
    """Every argument kubectl was given before its `--`, over all its calls."""
    found: list[str] = []
    for line in calls.read_text().splitlines() if calls.exists() else []:
        call = json.loads(line)
        found += call[: call.index("--")] if "--" in call else call
    return found


# -- 1. a guard that sees one label while the Job gets another ---------------------------------
#
# The shipped pod-restart Operarius keeps out of kube-system with
# `namespace!~"kube-system|openfero|openfero-jobs"` and deletes in
# "$OPENFERO_NAMESPACE". Twins (`namespace` and `NAMESPACE`) are refused; a
# lone label spelled another way is not: the matcher reads `namespace`,
# missing, hence "", which passes; the env gets OPENFERO_NAMESPACE from it.


@pytest.mark.parametrize("spelling", ["NAMESPACE", "Namespace", "nameſpace"])
async def test_a_label_spelled_another_way_cannot_slip_past_the_guard(spelling: str) -> None:
    # Given the shipped definitions and an alert whose only namespace label is spelled differently
    sink = Sink()
    handler = Handler(shipped_catalog(), sink, JobRules(60))
    hostile = alert({"alertname": "KubePodCrashLooping", spelling: "kube-system", "pod": "coredns-1"})
    # When it is handled
    await handler.handle(hostile.to_json(), {})
    # Then no Job runs with a namespace the guard would have kept out
    namespaces = [env.get("OPENFERO_NAMESPACE") for job in sink.created for env in [container_view(first_container(job))[0]]]
    assert "kube-system" not in namespaces, f"a Job was made for kube-system: {sink.created[0]['metadata']['name']}"


@pytest.mark.parametrize(("one", "other"), [("ß", "SS"), ("ı", "I"), ("ﬁ", "FI"), ("ſ", "s")])
def test_labels_that_meet_only_after_unicode_upper_casing_are_refused(one: str, other: str) -> None:
    # Adds to the ASCII twins of the first tests: upper-casing in other alphabets makes twins too.
    assert env_name(one) == env_name(other)
    job = one_container_job({"command": ["true"]})
    with pytest.raises(Refused, match="would both be"):
        render(definition(job), alert({"alertname": "A", one: "x", other: "y"}), JobRules(60))


# -- 2. the kubelet's $(VAR) expansion, where the escape does not reach --------------------------

SECRET_ENV = [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]


@pytest.mark.parametrize(
    ("engine", "text"),
    [
        ("go", "price: ${{ .Labels.amount }}"),
        ("go", "awk field: $ {{- .Labels.amount }}"),
        ("jinja", "price: ${{ alert.labels.amount }}"),
    ],
)
def test_the_definitions_own_dollar_cannot_make_alert_data_a_reference(engine: str, text: str) -> None:
    job = one_container_job({"env": [*SECRET_ENV, {"name": "NOTE", "value": text}], "args": [text]})
    rendered = render(definition(job, engine), alert({"alertname": "A", "amount": "(DB_PASSWORD)"}), JobRules(60)).body
    env, argv = container_view(first_container(rendered), secrets={"DB_PASSWORD": "s3cret"})
    prefix = text.split("$")[0]
    assert env["NOTE"] == f"{prefix}$(DB_PASSWORD)"
    assert argv == [f"{prefix}$(DB_PASSWORD)"]


def test_a_jinja_filter_block_cannot_split_the_dollar_escape() -> None:
    note = "{{% filter wordwrap(20) %}}{{ alert.annotations.description }}{{% endfilter %}}"
    job = one_container_job({"env": [*SECRET_ENV, {"name": "NOTE", "value": note}]})
    description = "a" * 19 + "$(DB_PASSWORD)"
    # Refused: a block that captures output would transform what was already escaped
    with pytest.raises(RenderError, match="filter blocks"):
        render(definition(job, "jinja"), alert({"alertname": "A"}, {"description": description}), JobRules(60))


def probe_command_as_run(container: dict[str, Any], probe: str) -> list[str]:
    """The argv the kubelet runs for an exec probe: ``$(VAR)`` expanded from the static env values
    only, each as written (Kubernetes' ExpandContainerCommandOnlyStatic; valueFrom reads as "")."""
    static = {var["name"]: var.get("value", "") for var in container.get("env") or []}
    return [expand(part, static) for part in container[probe]["exec"]["command"]]


def test_alert_data_in_a_probe_command_stays_text() -> None:
    job = one_container_job(
        {
            "env": [{"name": "API_TOKEN", "value": "hunter2"}],
            "command": ["/bin/worker"],
            "livenessProbe": {"exec": {"command": ["/bin/check", "--pod={{ .Labels.pod }}"]}},
        }
    )
    rendered = render(definition(job), alert({"alertname": "A", "pod": "$(API_TOKEN)"}), JobRules(60)).body
    assert probe_command_as_run(first_container(rendered), "livenessProbe") == ["/bin/check", "--pod=$(API_TOKEN)"]


# -- 3. `openfero validate` and scripts that hand alert data to a shell or as an option ---------
#
# Each case: a container, the labels that attack it, and what the attack does
# ("ran": the marker file was made; "option": --all reached kubectl before
# `--`). The first test shows each attack works; the second that validate
# says nothing about any of them.

MARK = "MARKER"
SHELL_CASES: dict[str, tuple[dict[str, Any], dict[str, str], str]] = {
    "template inside single quotes": (
        {"command": ["/bin/sh", "-c", "printf '%s\\n' '{{ .Labels.pod }}'"]},
        {"pod": f"'; touch {MARK}; '"},
        "ran",
    ),
    "template in a comment, even shell-quoted": (
        {"command": ["/bin/sh", "-c", "# restarting {{ .Labels.pod | shell_quote }}\ntrue"]},
        {"pod": f"x\ntouch {MARK} #"},
        "ran",
    ),
    "shell started through env": (
        {"command": ["/usr/bin/env", "sh", "-c", "printf '%s\\n' {{ .Labels.pod }}"]},
        {"pod": f"x; touch {MARK}"},
        "ran",
    ),
    "script after -c --": (
        {"command": ["/bin/sh", "-c", "--", "printf '%s\\n' {{ .Labels.pod }}"]},
        {"pod": f"x; touch {MARK}"},
        "ran",
    ),
    "eval of a string holding the variable": (
        {"command": ["/bin/sh", "-c", "eval \"printf '%s\\n' $OPENFERO_POD\""]},
        {"pod": f"x; touch {MARK}"},
        "ran",
    ),
    "sh -c of a string holding the variable": (
        {"command": ["/bin/sh", "-c", "sh -c \"printf '%s\\n' $OPENFERO_POD\""]},
        {"pod": f"$(touch {MARK})"},
        "ran",
    ),
    "here-document fed to sh": (
        {"command": ["/bin/sh", "-c", 'sh <<EOF\nkubectl delete pod -- "$OPENFERO_POD"\nEOF']},
        {"pod": f'"; touch {MARK}; "'},
        "ran",
    ),
    "${VAR:-default} as a positional argument": (
        {"command": ["/bin/sh", "-c", 'kubectl delete pod "${OPENFERO_POD:-none}"']},
        {"pod": "--all"},
        "option",
    ),
    "alert data copied to another variable": (
        {"command": ["/bin/sh", "-c", 'POD="$OPENFERO_POD"\nkubectl delete pod "$POD"']},
        {"pod": "--all"},
        "option",
    ),
    "unquoted variable inside an option": (
        {"command": ["/bin/sh", "-c", 'kubectl delete pod --namespace=$OPENFERO_NAMESPACE -- "$OPENFERO_POD"']},
        {"namespace": "shop --all", "pod": "p"},
        "option",
    ),
    "xargs splits the value into arguments": (
        {"command": ["/bin/sh", "-c", "printf '%s\\n' \"$OPENFERO_POD\" | xargs kubectl delete pod"]},
        {"pod": "--all"},
        "option",
    ),
    "exec form with the kubelet's $(VAR)": (
        {"command": ["kubectl", "delete", "pod", "$(OPENFERO_POD)"]},
        {"pod": "--all"},
        "option",
    ),
}


def run_container(container: dict[str, Any], folder: Path) -> None:
    env, argv = container_view(container)
    env = {**env, "PATH": f"{folder}:{os.environ['PATH']}"}
    subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10, cwd=folder)


@pytest.mark.parametrize("case", SHELL_CASES)
def test_each_unsafe_script_really_hands_the_label_over(case: str, tmp_path: Path) -> None:
    # The premise of the validate test below: each script, rendered and run as the kubelet would, is attacked.
    container, labels, effect = SHELL_CASES[case]
    job = render(definition(one_container_job(container)), alert({"alertname": "A", **labels}), JobRules(60)).body
    calls = kubectl_stub(tmp_path)
    run_container(first_container(job), tmp_path)
    if effect == "ran":
        assert (tmp_path / MARK).exists(), "the label did not run"
    else:
        assert "--all" in kubectl_options(calls), "the label did not become an option"


@pytest.mark.parametrize("case", SHELL_CASES)
def test_validate_warns_about_each_unsafe_script(case: str, tmp_path: Path) -> None:
    container, _, _ = SHELL_CASES[case]
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "openfero-a-firing", "labels": {"app": "openfero"}},
        "data": {"A": yaml.safe_dump(one_container_job(container))},
    }
    path = tmp_path / "definition.yaml"
    path.write_text(yaml.safe_dump(configmap))
    report = Report()
    validate_file(path, None, report)
    assert not report.errors
    assert any("containers[0]" in w for w in report.warnings), report.warnings


# -- 4. fields where alert data becomes code or authority ----------------------------------------

AUTHORITY_FIELDS: dict[str, dict[str, Any]] = {
    "image (the code that runs)": one_container_job({"image": "registry.example/{{ .Labels.tool }}", "command": ["/run"]}),
    "command[0] (the program)": one_container_job({"command": ["{{ .Labels.tool }}", "--check"]}),
    "nodeName (where it runs)": one_container_job({"command": ["/run"]}, nodeName="{{ .Labels.node }}"),
    "hostPath.path (which node directory)": one_container_job(
        {"command": ["/run"], "volumeMounts": [{"name": "logs", "mountPath": "/logs"}]},
        volumes=[{"name": "logs", "hostPath": {"path": "/var/log/pods/{{ .Labels.dir }}"}}],
    ),
    "secretKeyRef.name (which secret)": one_container_job(
        {"command": ["/run"], "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "{{ .Labels.secret }}", "key": "token"}}}]}
    ),
    "persistentVolumeClaim.claimName (which volume)": one_container_job(
        {"command": ["/run"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "{{ .Labels.claim }}"}}],
    ),
    "serviceAccountToken.audience (a token for whom)": one_container_job(
        {"command": ["/run"], "volumeMounts": [{"name": "t", "mountPath": "/t"}]},
        volumes=[{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "audience": "{{ .Labels.aud }}"}}]}}],
    ),
}


@pytest.mark.parametrize("field", AUTHORITY_FIELDS)
def test_alert_data_choosing_code_or_authority_is_refused_or_warned_about(field: str, tmp_path: Path) -> None:
    job = AUTHORITY_FIELDS[field]
    labels = {"alertname": "A", "tool": "x", "node": "n", "dir": "d", "secret": "s", "claim": "c", "aud": "a"}
    try:
        render(definition(job), alert(labels), JobRules(60))
    except RenderError:
        return  # refused: fine
    configmap = {"kind": "ConfigMap", "metadata": {"name": "openfero-a-firing", "labels": {"app": "openfero"}}, "data": {"A": yaml.safe_dump(job)}}
    path = tmp_path / "definition.yaml"
    path.write_text(yaml.safe_dump(configmap))
    report = Report()
    validate_file(path, None, report)
    key = field.split(" ")[0].split(".")[-1].split("[")[0]
    assert any(key in line and "{{" in line for line in report.warnings + report.errors), report.warnings


@pytest.mark.parametrize(
    ("pod", "refused"),
    [
        ({"serviceAccountName": "openfero-dispatcher", "serviceAccount": "harmless"}, True),
        ({"serviceAccountName": "harmless", "serviceAccount": "openfero-dispatcher"}, False),
        ({"serviceAccountName": "", "serviceAccount": "openfero-dispatcher"}, True),
    ],
)
def test_the_account_checked_is_the_one_kubernetes_runs_as(pod: dict[str, str], refused: bool) -> None:
    # Kubernetes: when both are set, serviceAccountName wins; the deprecated alias counts only when it is empty.
    rules = JobRules(60, "openfero-jobs", frozenset({("openfero-jobs", "openfero-dispatcher")}))
    job = one_container_job({"command": ["true"]}, **pod)
    if refused:
        with pytest.raises(RenderError, match="openfero-dispatcher"):
            render(definition(job), alert({"alertname": "A"}), rules)
    else:
        render(definition(job), alert({"alertname": "A"}), rules)


@pytest.mark.parametrize("attempt", ["alert.labels.update({'namespace': 'kube-system'})", "alert.labels.setdefault('namespace', 'kube-system')"])
def test_a_jinja_template_cannot_rewrite_the_labels_that_become_env(attempt: str) -> None:
    # The labels a template sees are the ones injected as env afterwards: the sandbox must keep them read-only.
    job = one_container_job({"command": ["true"], "env": [{"name": "X", "value": "{{ " + attempt + " }}"}]})
    envelope = alert({"alertname": "A", "namespace": "shop"})
    with pytest.raises(RenderError, match="unsafe"):
        render(definition(job, "jinja"), envelope, JobRules(60))
    assert envelope.alert.labels == {"alertname": "A", "namespace": "shop"}


# -- 5. alert data alone sends alerts to the dead-letter queue ------------------------------------
#
# Refusing twins is not a dead letter "since anyone who can shape labels could
# fill that queue" (README). These alerts, shaped the same way, are.


@pytest.mark.parametrize(
    "labels",
    [
        # within ingest's default limits (100 labels of 16 KiB), doubled by the $ escape: the Job passes 1 MiB
        pytest.param({"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "p", **{f"l{i:02d}": "$" * 16000 for i in range(40)}}, id="labels-past-1MiB"),
        # the shipped Operarius reads .Labels.pod for a pod label; an alert without one is a template error
        pytest.param({"alertname": "KubePodCrashLooping", "namespace": "shop"}, id="missing-label"),
        # the shipped ConfigMap is found by the lower-cased name, then its key by the name as sent
        pytest.param({"alertname": "KUBEQUOTAALMOSTFULL"}, id="alertname-case"),
    ],
)
async def test_alert_data_alone_does_not_make_a_dead_letter(labels: dict[str, str]) -> None:
    handler = Handler(shipped_catalog(), Sink(), JobRules(60))
    outcome = await handler.handle(alert(labels).to_json(), {})
    assert outcome.kind in (Kind.CREATED, Kind.DUPLICATE, Kind.NO_DEFINITION, Kind.REFUSED), outcome


# -- 6. bounds: memory and time a definition may take ---------------------------------------------

JINJA_DATA = jinja_data(alert({"alertname": "A"}))


def test_jinja_concatenation_cannot_double_a_string_without_bound() -> None:
    # 22 doublings make 8 M characters; 30 make 2 G and the dispatcher is killed for its memory.
    bomb = "{{% set ns = namespace(s='ab') %}}{{% for i in range(22) %}}{{% set ns.s = ns.s ~ ns.s %}}{{% endfor %}}{{ ns.s | length }}"
    with pytest.raises(TemplateError):
        render_string(bomb, "jinja", JINJA_DATA)


@pytest.mark.parametrize(
    "bomb",
    [
        "{{ ('a' * 60000).replace('a', 'b' * 1000) }}",
        "{{ ('\\t' * 60000).expandtabs(1000) }}",
        "{{ range(1000) | join('x' * 60000) }}",
    ],
)
def test_jinja_values_are_bounded_before_they_are_built(bomb: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError):
            render_string(bomb, "jinja", JINJA_DATA)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"rendering took {peak / 1e6:.0f} MB"


POWER_BOMBS = [
    # `**` checks the exponent only: each step is allowed, the base grows to 870,000 digits
    "{{ (((10 ** 64) ** 64) ** 64) ** 8 > 1 }}",
    # the same through a namespace in a loop: 5 rounds take 5 s and 500 MB, 6 never end
    "{{% set ns = namespace(x=2) %}}{{% for i in range(4) %}}{{% set ns.x = ns.x ** 64 %}}{{% endfor %}}{{ ns.x > 1 }}",
]


@pytest.mark.parametrize("bomb", POWER_BOMBS)
def test_jinja_powers_of_huge_numbers_are_refused(bomb: str) -> None:
    with pytest.raises(TemplateError):
        render_string(bomb, "jinja", JINJA_DATA)


def configmap_catalog(definitions: dict[str, str]) -> Catalog:
    catalog = Catalog()
    catalog.replace_configmaps(
        [{"metadata": {"name": f"openfero-{name.lower()}-firing", "namespace": "n"}, "data": {name: text}} for name, text in definitions.items()]
    )
    catalog.replace_operarii([])
    return catalog


async def longest_stall(work: Any) -> tuple[Any, float]:
    """Run ``work`` while the loop ticks every millisecond; its result and the longest gap between ticks."""
    gaps: list[float] = []
    last = [time.perf_counter()]

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last[0])
            last[0] = now

    gc.disable()  # the collector's full passes stall any loop; the services freeze their start-up heap against them
    try:
        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.01)
        result = await work
        gaps.append(time.perf_counter() - last[0])
        ticker.cancel()
    finally:
        gc.enable()
    return result, max(gaps)


async def test_a_jinja_power_bomb_does_not_stall_the_event_loop() -> None:
    job = one_container_job({"command": ["/bin/sh", "-c", POWER_BOMBS[0]]})
    catalog = configmap_catalog({"A": yaml.safe_dump({**job, "metadata": {"name": "fix", "annotations": {"openfero.io/template-engine": "jinja"}}})})
    handler = Handler(catalog, Sink(), JobRules(60))
    _, stall = await longest_stall(handler.handle(alert({"alertname": "A"}).to_json(), {}))
    assert stall < 0.1, f"the event loop stalled {stall * 1000:.0f} ms"


def alias_bomb(levels: int) -> str:
    """A Job definition whose YAML aliases expand to 4**levels strings (a few hundred bytes of text)."""
    anchors = ["x-0: &l0 [a, a, a, a]"] + [f"x-{i}: &l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}]" for i in range(1, levels)]
    job = one_container_job({"command": ["{{ .Labels.alertname }}"]})
    return "\n".join(anchors) + "\n" + yaml.safe_dump(job).rstrip("\n") + f"\nx-top: *l{levels - 1}\n"


def test_a_yaml_alias_bomb_in_a_definition_fails_fast() -> None:
    text = alias_bomb(10)
    assert len(text) < 1024
    started = time.perf_counter()
    try:
        render(Definition.parse("ns/openfero-a-firing", "A", text), alert({"alertname": "A"}), JobRules(60))
    except RenderError:
        pass  # refusing such a definition is fine; taking seconds over it is not
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"rendering took {elapsed:.1f} s"


# 65,536 range iterations: within the bound of 100,000 steps that each template has.
NEAR_STEP_BOUND = (
    "{{ range $a := .Alert.Labels }}{{ range $b := $.Alert.Labels }}{{ range $c := $.Alert.Labels }}"
    "{{ range $d := $.Alert.Labels }}{{ end }}{{ end }}{{ end }}{{ end }}"
)
SIXTEEN_LABELS = {"alertname": "A", **{f"l{i}": str(i) for i in range(15)}}


def heavy_definition(templates: int) -> str:
    return yaml.safe_dump(one_container_job({"command": ["true"], "env": [{"name": f"V{i}", "value": NEAR_STEP_BOUND} for i in range(templates)]}))


def test_a_definition_of_many_templates_is_bounded_as_a_whole() -> None:
    text = heavy_definition(100)
    started = time.perf_counter()
    try:
        render(Definition.parse("ns/openfero-a-firing", "A", text), alert(SIXTEEN_LABELS), JobRules(60))
    except RenderError as exc:
        assert "limit" in str(exc)
    assert time.perf_counter() - started < 0.5


async def test_a_heavy_definition_delays_only_its_own_alert() -> None:
    light = yaml.safe_dump(one_container_job({"command": ["echo", "{{ .Labels.alertname }}"]}))
    handler = Handler(configmap_catalog({"Heavy": heavy_definition(100), "Light": light}), Sink(), JobRules(60))
    heavy = asyncio.create_task(handler.handle(alert({**SIXTEEN_LABELS, "alertname": "Heavy"}).to_json(), {}))
    await asyncio.sleep(0.02)
    started = time.perf_counter()
    outcome = await handler.handle(alert({"alertname": "Light"}).to_json(), {})
    waited = time.perf_counter() - started
    await heavy
    assert outcome.done, outcome
    assert waited < 0.3, f"the light alert waited {waited * 1000:.0f} ms behind the heavy one"


# -- 7. matchers: linear, but on the event loop ---------------------------------------------------


async def test_a_large_regex_on_a_long_label_does_not_stall_the_event_loop() -> None:
    pattern = "|".join(f"(?:.*{c}.{{999}}z)" for c in "ab" * 5)
    catalog = Catalog()
    catalog.replace_configmaps([])
    catalog.replace_operarii(
        [
            {
                "metadata": {"name": "guarded", "namespace": "n"},
                "spec": {
                    "alertSelector": {"alertname": "A", "matchers": [f'pod!~"{pattern}"']},
                    "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "command": ["true"]}]}}}},
                },
            }
        ]
    )
    handler = Handler(catalog, Sink(), JobRules(60))
    # 16 KiB: ingest's default limit for one label
    _, stall = await longest_stall(handler.handle(alert({"alertname": "A", "pod": "ab" * 8000}).to_json(), {}))
    assert stall < 0.1, f"the event loop stalled {stall * 1000:.0f} ms"


def resident_bytes() -> int:
    """This process' resident memory now (not its peak), from /proc."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def test_the_matchers_of_one_operarius_have_bounded_memory() -> None:
    from dispatcher.operarii import InvalidOperarius, Operarius

    pattern = "|".join(f"(?:.*{c}.{{999}}z)" for c in "ab" * 20)  # 599 characters
    resource = {
        "metadata": {"name": "many", "namespace": "n"},
        "spec": {
            "alertSelector": {"matchers": [f'l{i}!~"{pattern}|{i}"' for i in range(16)]},
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}},
        },
    }
    before = resident_bytes()
    try:
        kept = Operarius.from_resource(resource)
    except InvalidOperarius:
        return  # refused: fine
    grown = resident_bytes() - before
    assert kept.matchers and grown < 16 * 1024 * 1024, f"reading one Operarius took {grown / 1e6:.0f} MB"


# -- 8. a careless definition, and what validate checks against Pod Security ----------------------


@pytest.mark.parametrize("env", [{"A": "b"}, "A=b"])
def test_a_malformed_env_is_a_render_error(env: Any) -> None:
    job = one_container_job({"command": ["true"], "env": env})
    with pytest.raises(RenderError):
        render(definition(job), alert({"alertname": "A"}), JobRules(60))


@pytest.mark.parametrize(
    "where",
    ["pod securityContext", "container securityContext", "pod template annotation"],
)
def test_validate_knows_pod_securitys_apparmor_rule(where: str, tmp_path: Path) -> None:
    unconfined = {"appArmorProfile": {"type": "Unconfined"}}
    if where == "pod securityContext":
        job = one_container_job({"command": ["true"]}, securityContext=unconfined)
    elif where == "container securityContext":
        job = one_container_job({"command": ["true"], "securityContext": unconfined})
    else:
        job = one_container_job({"command": ["true"]})
        job["spec"]["template"]["metadata"] = {"annotations": {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}}
    configmap = {"kind": "ConfigMap", "metadata": {"name": "openfero-a-firing", "labels": {"app": "openfero"}}, "data": {"A": yaml.safe_dump(job)}}
    path = tmp_path / "definition.yaml"
    path.write_text(yaml.safe_dump(configmap))
    report = Report()
    validate_file(path, None, report, "baseline")
    assert any("Pod Security" in w and "pparmor" in w for w in report.warnings), report.warnings
