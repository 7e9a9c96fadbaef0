"""Templates in definitions: the two engines, the choice between them, text left alone. No I/O."""

from __future__ import annotations

import pytest

from dispatcher import templating
from dispatcher.definitions import Definition
from dispatcher.rendering import JobRules, Refused, RenderError, render
from dispatcher.templating import (
    TemplateError,
    choose_engine,
    escape_for_kubelet,
    go_data,
    go_to_jinja,
    jinja_data,
    referenced_annotations,
    referenced_labels,
    render_string,
    templated_fields,
)
from shared.envelope import envelopes_from_webhook

WEBHOOK = {
    "status": "firing",
    "receiver": "openfero",
    "groupKey": "{}:{alertname=\"PodCrashLooping\"}",
    "externalURL": "http://alertmanager:9093",
    "groupLabels": {"alertname": "PodCrashLooping"},
    "commonLabels": {"alertname": "PodCrashLooping", "severity": "warning"},
    "commonAnnotations": {"summary": "Pod is crash looping."},
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "PodCrashLooping", "pod": "web-1", "namespace": "shop", "container": "main", "service.name": "web"},
            "annotations": {"summary": "Pod is crash looping.", "runbook": "https://runbooks/x"},
            "startsAt": "2025-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
        }
    ],
}
ENVELOPE = envelopes_from_webhook(WEBHOOK)[0]
DATA = {"go": go_data(ENVELOPE), "jinja": jinja_data(ENVELOPE)}


def rendered(text: str, engine: str, escape: bool = False) -> str:
    return render_string(text, engine, DATA[engine], escape)


# -- the Go original's forms, in both engines ------------------------------------------------


GO_ORIGINAL_FORMS = [
    ("{{ .Alert.Labels.pod }}", "web-1"),
    ("{{ .Alert.Annotations.summary }}", "Pod is crash looping."),
    ("{{ .Labels.namespace }}", "shop"),
    ("{{ .Annotations.runbook }}", "https://runbooks/x"),
    ("{{ .Status }}", "firing"),
    ("{{ .GroupKey }}", '{}:{alertname="PodCrashLooping"}'),
    ("{{ .HookMessage.Status }}", "firing"),
    ("{{ .HookMessage.CommonLabels.severity }}", "warning"),
    ("{{ .Alert.Status }}/{{ .Alert.StartsAt }}", "firing/2025-01-01T00:00:00Z"),
    ("{{- .Labels.pod -}}", "web-1"),
    ("pod={{ .Labels.pod }} ns={{ .Labels.namespace }}", "pod=web-1 ns=shop"),
    ("{{ .Labels.pod | shell_quote }}", "web-1"),
]


@pytest.mark.parametrize("engine", ["go", "jinja"])
@pytest.mark.parametrize(("template", "expected"), GO_ORIGINAL_FORMS)
def test_the_go_originals_forms_work_in_both_engines(engine: str, template: str, expected: str) -> None:
    assert rendered(template, engine) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{ index .Alert.Labels "service.name" }}', "web"),
        ('{{ index .Labels "missing" }}', ""),
        ('{{ if eq .Status "firing" }}fix{{ else }}skip{{ end }}', "fix"),
        ("{{ with .Labels.pod }}pod {{ . }}{{ end }}", "pod web-1"),
        ('{{ printf "%s/%s" .Labels.namespace .Labels.pod }}', "shop/web-1"),
        ("{{ range $k, $v := .HookMessage.CommonLabels }}{{ $k }}={{ $v }};{{ end }}", "alertname=PodCrashLooping;severity=warning;"),
        ("{{/* a comment */}}x", "x"),
        ('{{ "My_Pod.x" | name_safe }}', "my-pod-x"),
        ('{{ "a b/c" | label_value }}', "a_b_c"),
        ('{{ "x; touch /tmp/pwned" | shell_quote }}', "'x; touch /tmp/pwned'"),
        ("{{ .Fingerprint }}", ENVELOPE.alert.fingerprint),
    ],
)
def test_go_templates_beyond_the_simplest_forms(template: str, expected: str) -> None:
    assert rendered(template, "go") == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ alert.labels.pod }}", "web-1"),
        ("{{ alert.labels['service.name'] }}", "web"),
        ("{{ group.commonAnnotations.summary }}", "Pod is crash looping."),
        ("{{ alert.labels.missing | default('none') }}", "none"),
        ("{{% if alert.status == 'firing' %}}fix{{% else %}}skip{{% endif %}}", "fix"),
        ("{{ alert.labels.pod | upper }}", "WEB-1"),
        ("{{ 'My_Pod.x' | name_safe }}", "my-pod-x"),
        ("{{ alert.fingerprint }}", ENVELOPE.alert.fingerprint),
        ("{{# a comment #}}x", "x"),
    ],
)
def test_jinja_features_and_helpers(template: str, expected: str) -> None:
    assert rendered(template, "jinja") == expected


@pytest.mark.parametrize(
    ("engine", "template", "message"),
    [
        ("go", "{{ .Alert.Labels.nothere }}", "nothere"),
        ("go", "{{ .Labels.pod ", "syntax error"),
        ("go", "{{ nothing }}", "syntax error"),
        ("jinja", "{{ alert.labels.nothere }}", "undefined value"),
        ("jinja", "{{ nothing }}", "undefined value"),
        ("jinja", "{{% if %}}", "syntax error"),
        ("jinja", "{{ alert.__class__.__mro__ }}", "undefined value|template error"),
        ("jinja", "{{ ''.__class__.__subclasses__() }}", "template error|undefined value"),
    ],
)
def test_missing_values_syntax_errors_and_sandbox_escapes_fail(engine: str, template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        rendered(template, engine)


# -- untemplated text stays text -------------------------------------------------------------


SHELL_TEXT = [
    'echo "${#ARR[@]} ${#VAR}"',
    "awk '{ if (x) { print $1 } }'",
    "jq '.items[] | {name: .metadata.name}'",
    "{% raw %} {# not a comment #} %} #}",
]


@pytest.mark.parametrize("text", SHELL_TEXT)
@pytest.mark.parametrize("engine", ["go", "jinja"])
def test_text_without_double_braces_is_never_a_template(engine: str, text: str) -> None:
    assert rendered(text, engine) == text


@pytest.mark.parametrize("text", SHELL_TEXT)
@pytest.mark.parametrize("engine", ["go", "jinja"])
def test_shell_braces_survive_beside_template_actions(engine: str, text: str) -> None:
    assert rendered(f"{text} {{{{ .Labels.pod }}}}", engine) == f"{text} web-1"


# -- which engine a definition gets ----------------------------------------------------------


def test_go_syntax_chooses_go() -> None:
    choice = choose_engine((("a", "{{ .Labels.pod }}"), ("b", '{{ index .Labels "a-b" }}')))
    assert (choice.engine, choice.declared) == ("go", False)


def test_definitions_written_for_jinja_keep_working() -> None:
    choice = choose_engine((("a", "{{ .Labels.pod }}"), ("b", "{{ alert.labels.pod | default('x') }}")))
    assert (choice.engine, choice.declared) == ("jinja", False)
    assert "syntax error" in choice.go_error


def test_the_annotation_decides_and_an_unknown_engine_is_an_error() -> None:
    assert choose_engine((("a", "{{ .Labels.pod }}"),), "jinja") == templating.EngineChoice("jinja", declared=True)
    with pytest.raises(TemplateError, match="openfero.io/template-engine"):
        choose_engine((("a", "{{ .Labels.pod }}"),), "mustache")
    with pytest.raises(TemplateError, match="^b: template syntax error"):
        choose_engine((("a", "{{ .Labels.pod }}"), ("b", "{{ alert.labels.pod | default('x') }}")), "go")


def test_templates_that_neither_engine_reads_report_the_go_error() -> None:
    with pytest.raises(TemplateError, match=r"^a: template syntax error: line 1: unclosed action"):
        choose_engine((("a", "{{ .Labels.pod "),))


def definition(text: str, annotations: dict[str, str] | None = None) -> Definition:
    return Definition.parse("ns/openfero-podcrashlooping-firing", "PodCrashLooping", text, annotations)


TEMPLATED = """
apiVersion: batch/v1
kind: Job
metadata:
  name: restart-{{ .Labels.pod }}
  labels: {pod: "{{ .Labels.pod }}", why: "{{ .Annotations.summary }}"}
spec:
  template:
    metadata:
      labels: {ns: "{{ .Labels.namespace }}/x"}
    spec:
      restartPolicy: Never
      containers:
      - name: fix
        image: bitnami/kubectl
        env:
        - {name: POD_NAME, value: "{{ .Alert.Labels.pod }}"}
        command: [/bin/sh, -c, "kubectl delete pod -n {{ .Labels.namespace | shell_quote }} -- {{ .Labels.pod | shell_quote }}"]
"""


@pytest.mark.parametrize("annotations", [None, {"openfero.io/template-engine": "jinja"}])
def test_a_whole_job_is_rendered_field_by_field(annotations: dict[str, str] | None) -> None:
    job = render(definition(TEMPLATED, annotations), ENVELOPE, JobRules(60)).body
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "POD_NAME", "value": "web-1"} in container["env"]
    assert container["command"][2] == "kubectl delete pod -n shop -- web-1"
    assert job["metadata"]["name"].startswith("restart-web-1-")
    assert job["metadata"]["labels"]["why"] == "Pod_is_crash_looping"  # made a valid label value
    assert job["spec"]["template"]["metadata"]["labels"]["ns"] == "shop_x"


def test_the_engine_annotation_may_sit_on_the_job_manifest() -> None:
    text = TEMPLATED.replace("metadata:\n  name:", "metadata:\n  annotations: {openfero.io/template-engine: jinja}\n  name:", 1)
    text = text.replace("{{ .Annotations.summary }}", "{{ alert.annotations.summary | default('') }}")
    assert definition(text).engine == "jinja"
    assert render(definition(text), ENVELOPE, JobRules(60)).body["metadata"]["labels"]["why"] == "Pod_is_crash_looping"


def test_the_engine_annotation_may_sit_on_the_operarius() -> None:
    from dispatcher.operarii import Operarius

    resource = {
        "metadata": {"name": "o", "namespace": "n", "annotations": {"openfero.io/template-engine": "jinja"}},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "args": ["{{ alert.labels.pod }}"]}]}}}}},
    }
    definition = Operarius.from_resource(resource).definition
    assert definition.engine == "jinja"
    assert render(definition, ENVELOPE, JobRules(60)).body["spec"]["template"]["spec"]["containers"][0]["args"] == ["web-1"]
    resource["metadata"]["annotations"]["openfero.io/template-engine"] = "go"  # and the annotation is obeyed
    with pytest.raises(RenderError, match="template syntax error"):
        render(Operarius.from_resource(resource).definition, ENVELOPE, JobRules(60))


def test_a_definition_without_templates_renders_as_written() -> None:
    plain = "kind: Job\nmetadata: {name: p}\nspec: {template: {spec: {containers: [{name: c, image: i, command: [sh, -c, 'echo ${#A} {% x %}']}]}}}\n"
    written = definition(plain)
    job = render(written, ENVELOPE, JobRules(60)).body
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["sh", "-c", "echo ${#A} {% x %}"]
    assert written.manifest == definition(plain).manifest  # rendered from a copy: the next alert gets it as written


def test_a_template_error_names_the_definition_and_the_field() -> None:
    broken = TEMPLATED.replace("{{ .Alert.Labels.pod }}", "{{ .Alert.Nope }}")
    with pytest.raises(RenderError) as raised:
        render(definition(broken), ENVELOPE, JobRules(60))
    text = str(raised.value)
    assert "ns/openfero-podcrashlooping-firing" in text
    assert "spec.template.spec.containers[0].env[0].value" in text and "Nope" in text


@pytest.mark.parametrize("annotations", [None, {"openfero.io/template-engine": "jinja"}])
def test_an_alert_without_a_label_the_definition_reads_is_refused_not_dead_lettered(annotations: dict[str, str] | None) -> None:
    # Anyone can send an alert without `pod`: that is the alert's shape, not a broken definition.
    reads = TEMPLATED.replace("{{ .Alert.Labels.pod }}", "{{ .Alert.Labels.nope }}")
    if annotations:
        reads = reads.replace("{{ .Alert.Labels.nope }}", "{{ alert.labels.nope }}")
    with pytest.raises(Refused, match="the alert lacks what the definition reads") as raised:
        render(definition(reads, annotations), ENVELOPE, JobRules(60))
    assert raised.value.reason == "missing_value" and "nope" in str(raised.value)


def test_an_unquoted_template_gets_a_hint() -> None:
    d = definition("kind: Job\nspec:\n  x: {{ .Labels.pod }}\n")
    assert "must be quoted" in d.parse_error


# -- what templates read, for validate ------------------------------------------------------


def test_referenced_labels_and_annotations_are_found_in_both_syntaxes() -> None:
    text = "{{ .Alert.Labels.pod }} {{ .Labels.namespace }} {{ alert.labels['service.name'] }} {{ .Annotations.summary }}"
    assert referenced_labels(text) == {"pod", "namespace", "service.name"}
    assert referenced_annotations(text) == {"summary"}
    assert referenced_labels('{{ index .Labels "pod-name" }} {{ with .Alert.Labels }}{{ .x }}{{ end }}') >= {"pod-name"}


def test_go_dots_are_dropped_for_jinja_only_where_a_name_starts() -> None:
    assert go_to_jinja("{{ .Labels.pod }} and .Labels outside") == "{{ Labels.pod }} and .Labels outside"
    assert go_to_jinja("{{ alert.labels['a.b'] }}") == "{{ alert.labels['a.b'] }}"
    assert go_to_jinja("{{ 1.5 }}") == "{{ 1.5 }}"


# -- every variable a template can read ------------------------------------------------------

# Each value different, so that a variable bound to the wrong field shows.
EVERY_FIELD = envelopes_from_webhook(
    {
        "version": "4",
        "status": "firing",
        "receiver": "on-call",
        "groupKey": "group-key",
        "truncatedAlerts": 7,
        "externalURL": "http://am:9093",
        "groupLabels": {"g": "group-label"},
        "commonLabels": {"c": "common-label"},
        "commonAnnotations": {"ca": "common-annotation"},
        "alerts": [
            {
                "status": "resolved",
                "labels": {"l": "alert-label"},
                "annotations": {"a": "alert-annotation"},
                "startsAt": "2025-01-01T00:00:00Z",
                "endsAt": "2025-01-01T01:00:00Z",
                "generatorURL": "http://prom/graph",
                "fingerprint": "00000000000000ab",
            }
        ],
    }
)[0]
GO_ALERT = {
    "Labels": {"l": "alert-label"},
    "Annotations": {"a": "alert-annotation"},
    "StartsAt": "2025-01-01T00:00:00Z",
    "EndsAt": "2025-01-01T01:00:00Z",
    "Status": "resolved",
    "Fingerprint": "00000000000000ab",
    "GeneratorURL": "http://prom/graph",
}
GO_HOOK_MESSAGE = {
    "Version": "4",
    "GroupKey": "group-key",
    "TruncatedAlerts": 7,
    "Status": "firing",
    "Receiver": "on-call",
    "GroupLabels": {"g": "group-label"},
    "CommonLabels": {"c": "common-label"},
    "CommonAnnotations": {"ca": "common-annotation"},
    "ExternalURL": "http://am:9093",
}
GO_TOP = {
    "Labels": {"l": "alert-label"},
    "Annotations": {"a": "alert-annotation"},
    "Status": "resolved",  # the alert's, not the webhook's
    "Fingerprint": "00000000000000ab",
    "GroupKey": "group-key",
    "Receiver": "on-call",
    "ExternalURL": "http://am:9093",
}


def _leaves(tree: dict, prefix: str = "") -> list[tuple[str, str]]:
    found = []
    for key, value in tree.items():
        found += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", str(value))]
    return found


@pytest.mark.parametrize(("name", "value"), _leaves({"Alert": GO_ALERT, "HookMessage": GO_HOOK_MESSAGE, **GO_TOP}))
def test_every_variable_of_the_go_originals_data_model(name: str, value: str) -> None:
    assert render_string("{{ ." + name + " }}", "go", go_data(EVERY_FIELD)) == value
    assert render_string("{{ ." + name + " }}", "jinja", jinja_data(EVERY_FIELD)) == value


def test_jinja_sees_the_lower_case_names_and_the_go_originals_and_nothing_else() -> None:
    assert jinja_data(EVERY_FIELD) == {
        "alert": {
            "labels": {"l": "alert-label"},
            "annotations": {"a": "alert-annotation"},
            "status": "resolved",
            "startsAt": "2025-01-01T00:00:00Z",
            "endsAt": "2025-01-01T01:00:00Z",
            "fingerprint": "00000000000000ab",
            "generatorURL": "http://prom/graph",
        },
        "group": {
            "groupKey": "group-key",
            "receiver": "on-call",
            "status": "firing",
            "groupLabels": {"g": "group-label"},
            "commonLabels": {"c": "common-label"},
            "commonAnnotations": {"ca": "common-annotation"},
            "externalURL": "http://am:9093",
        },
        "Alert": GO_ALERT,
        "HookMessage": GO_HOOK_MESSAGE,
        **GO_TOP,
    }


def test_templated_fields_are_every_template_string_by_its_path_in_order() -> None:
    tree = {
        "metadata": {"name": "fix", "labels": {"pod": "{{ .Labels.pod }}"}},
        "spec": {"containers": [{"args": ["plain", "{{ .Status }}", 3, None]}, {"image": "{{ .Labels.image }}"}]},
        "top": "{{ .GroupKey }}",
    }
    assert templated_fields(tree) == [
        ("metadata.labels.pod", "{{ .Labels.pod }}"),
        ("spec.containers[0].args[1]", "{{ .Status }}"),
        ("spec.containers[1].image", "{{ .Labels.image }}"),
        ("top", "{{ .GroupKey }}"),
    ]
    assert templated_fields("{{ x }}") == [("", "{{ x }}")] and templated_fields(["a", 1]) == []


@pytest.mark.parametrize(
    ("written", "value", "escaped"),
    [
        ([], "", ""),
        (["x="], "a$b", "a$$b"),
        (["echo $"], "(PW)", "$(PW)"),  # the lone $ written before is paired ("echo $$(PW)"), not joined to the value
        (["echo $$"], "x", "x"),
        (["$", "$", "$"], "x", "$x"),  # $$ then a lone $
        (["$x "], "y", "y"),
        (["$(FOO) "], "y", "y"),
        (["$() "], "y", "y"),
        (["$(FOO)$"], "y", "$y"),
        ([], "$", "$$"),
    ],
)
def test_what_an_action_prints_reaches_the_container_as_it_is(written: list[str], value: str, escaped: str) -> None:
    assert escape_for_kubelet(value, written) == escaped


@pytest.mark.parametrize("written", [["$(FOO"], ["a $(", "B"], ["$$ $(X) $(Y"]])
def test_a_value_inside_an_open_reference_is_refused(written: list[str]) -> None:
    with pytest.raises(TemplateError, match="inside"):
        escape_for_kubelet("x", written)


DOLLARS = envelopes_from_webhook({"alerts": [{"labels": {"alertname": "A"}, "annotations": {"price": "$5"}}]})[0]


@pytest.mark.parametrize("engine", ["go", "jinja"])
def test_printed_values_are_escaped_for_the_kubelet_only_when_asked(engine: str) -> None:
    data = go_data(DOLLARS) if engine == "go" else jinja_data(DOLLARS)
    assert render_string("{{ .Annotations.price }}", engine, data) == "$5"
    assert render_string("{{ .Annotations.price }}", engine, data, escape=True) == "$$5"


def test_an_error_of_python_itself_in_a_jinja_template_is_named_with_its_message() -> None:
    with pytest.raises(TemplateError, match="ZeroDivisionError: integer division or modulo by zero"):
        render_string("{{ 1 // 0 }}", "jinja", DATA["jinja"])


def test_the_templates_of_one_definition_share_200000_steps_as_the_readme_says() -> None:
    assert templating.DEFINITION_STEPS == 200_000


@pytest.mark.parametrize(("steps", "refused"), [(3, True), (4, False)])
def test_a_template_after_the_shared_steps_are_spent_is_refused(monkeypatch: pytest.MonkeyPatch, steps: int, refused: bool) -> None:
    # {{ .Status }} takes 3 steps; a comment takes none, so it runs while any step is left
    monkeypatch.setattr(templating, "DEFINITION_STEPS", steps)
    tree = {"a": "{{ .Status }}", "b": "{{/* nothing */}}"}
    if refused:
        with pytest.raises(TemplateError, match=f"b: the definition's templates took over {steps} steps in all"):
            templating.render_tree(tree, ENVELOPE, "go", escape_at=lambda path: False)
    else:
        assert templating.render_tree(tree, ENVELOPE, "go", escape_at=lambda path: False) == {"a": "firing", "b": ""}


class _Clock:
    """perf_counter for templating: 0 when the deadline is set, then the times given."""

    def __init__(self, *times: float):
        self.times = [0.0, *times]

    def perf_counter(self) -> float:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


@pytest.mark.parametrize(
    ("engine", "elapsed", "refused"),
    [("jinja", 0.25, False), ("jinja", 0.26, True), ("go", 0.26, False)],
)
def test_jinja_templates_of_one_definition_get_a_quarter_second_in_all(monkeypatch: pytest.MonkeyPatch, engine: str, elapsed: float, refused: bool) -> None:
    monkeypatch.setattr(templating, "time", _Clock(elapsed))
    tree = {"a": "{{ .Status }}", "b": "{{ .Status }}"}
    if refused:
        with pytest.raises(TemplateError, match="a: rendering the definition's templates took over 0.25 s"):
            templating.render_tree(tree, ENVELOPE, engine, escape_at=lambda path: False)
    else:
        assert templating.render_tree(tree, ENVELOPE, engine, escape_at=lambda path: False) == {"a": "firing", "b": "firing"}


def test_a_jinja_template_nested_too_deep_to_parse_is_a_syntax_error_that_says_so() -> None:
    with pytest.raises(TemplateError, match="^template syntax error: maximum recursion depth exceeded"):
        render_string("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}", "jinja", DATA["jinja"])
