"""Micro-benchmark of dispatcher.gotemplate: microseconds per execute of typical definition strings.

    .venv/bin/python bench/gotemplate_bench.py

Prints, for each template, the best of several timing runs (parse once,
execute many, as openfero does), the same string through today's Jinja path
(dispatcher.templating.render_string) for comparison, and how long hostile
templates take to end. Figures only: it never fails on timing.
"""

from __future__ import annotations

import pathlib
import sys
import time
import timeit

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from dispatcher.gotemplate import GoStruct, TemplateError, parse  # noqa: E402

LABELS = {
    "alertname": "KubeQuotaAlmostFull", "namespace": "shop", "pod": "web-1", "pod-name": "web-1-abc",
    "container": "main", "severity": "info", "zone": "dmz", "cluster": "dev",
}
ANNOTATIONS = {"summary": "Namespace quota is going to be full.", "runbook_url": "https://runbooks.example.com/x"}
DATA = GoStruct("main.Data", {
    "Alert": GoStruct("main.Alert", {
        "Labels": LABELS, "Annotations": ANNOTATIONS, "Status": "firing", "StartsAt": "2021-10-25T12:01:24Z",
        "EndsAt": "0001-01-01T00:00:00Z", "Fingerprint": "3e0d0c6c7e4f2a1b", "GeneratorURL": "http://prometheus/graph",
    }),
    "HookMessage": GoStruct("main.HookMessage", {
        "Status": "firing", "Receiver": "openfero", "GroupKey": "{}:{}", "GroupLabels": {"alertname": "KubeQuotaAlmostFull"},
        "CommonLabels": LABELS, "CommonAnnotations": ANNOTATIONS, "ExternalURL": "http://alertmanager",
    }),
    "Labels": LABELS, "Annotations": ANNOTATIONS, "Status": "firing", "GroupKey": "{}:{}",
    "Fingerprint": "3e0d0c6c7e4f2a1b", "Receiver": "openfero", "ExternalURL": "http://alertmanager",
})

SCRIPT = """#!/bin/sh
set -e
{{- /* a remediation script of about twenty lines */}}
echo "alert {{ .Alert.Labels.alertname }} is {{ .Status }}"
{{ if eq .Status "firing" -}}
ns={{ .Alert.Labels.namespace }}
pod={{ index .Alert.Labels "pod-name" }}
{{- range $k, $v := .Alert.Labels }}
export OPENFERO_{{ $k }}={{ printf "%q" $v }}
{{- end }}
{{ with .Alert.Annotations.runbook_url }}echo "runbook: {{ . }}"{{ end }}
{{ if and .Alert.Labels.container (ne .Alert.Labels.severity "critical") -}}
kubectl -n "$ns" delete pod "$pod" --wait=false
{{- else -}}
echo "not touching critical pods"
{{- end }}
{{- else }}
echo "resolved, nothing to do"
{{- end }}
echo "done: {{ len .Alert.Labels }} labels"
"""

CASES = {
    "env value  {{ .Alert.Labels.pod }}": "{{ .Alert.Labels.pod }}",
    "printf     {{ printf \"%s/%s\" ns pod }}": '{{ printf "%s/%s" .Alert.Labels.namespace .Alert.Labels.pod }}',
    "script     20 lines, range and if": SCRIPT,
}

HOSTILE = {
    "nested ranges": "{{ range .l }}{{ range $.l }}{{ range $.l }}{{ range $.l }}x{{ end }}{{ end }}{{ end }}{{ end }}",
    "recursion through define": '{{ define "r" }}{{ template "r" . }}{{ template "r" . }}{{ end }}{{ template "r" . }}',
    'printf "%099999999d"': '{{ range .l }}{{ printf "%099999999d" . }}{{ end }}',
    "huge output from a range": "{{ range .l }}{{ range $.l }}{{ printf \"%0999d\" 1 }}{{ end }}{{ end }}",
    "doubling a string": '{{ $s := "xxxxxxxx" }}{{ range .l }}{{ $s = printf "%s%s" $s $s }}{{ end }}',
}


def per_call_us(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def jinja_figure(text: str) -> float | None:
    """Today's path for the same Go form (Jinja2 after a regex rewrite), when it can render it."""
    try:
        from dispatcher.templating import render_string
        from shared.envelope import envelopes_from_webhook
        from dispatcher.templating import context
    except ImportError:
        return None
    webhook = {"status": "firing", "receiver": "openfero", "groupKey": "{}:{}", "alerts": [
        {"status": "firing", "labels": LABELS, "annotations": ANNOTATIONS, "startsAt": "2021-10-25T12:01:24Z"}]}
    variables = context(envelopes_from_webhook(webhook)[0])
    try:
        render_string(text, variables)
    except Exception:  # the regex rewrite cannot take every Go form: no figure then
        return None
    return per_call_us(lambda: render_string(text, variables), 5000)


def main() -> None:
    print(f"{'template':44} {'gotemplate µs':>14} {'jinja µs':>10}")
    for label, text in CASES.items():
        template = parse(text, "bench")
        template.execute(DATA)
        number = 20000 if len(text) < 100 else 2000
        ours = per_call_us(lambda: template.execute(DATA), number)  # noqa: B023  # called within the iteration
        jinja = jinja_figure(text)
        print(f"{label:44} {ours:14.2f} {'n/a' if jinja is None else f'{jinja:.2f}':>10}")
    parse_us = per_call_us(lambda: parse(SCRIPT, "bench"), 200)
    print(f"{'parse of the 20-line script':44} {parse_us:14.1f}")
    print()
    print(f"{'hostile template (default limits)':44} {'ms to end':>14}  outcome")
    for label, text in HOSTILE.items():
        template = parse(text, "bench")
        start = time.perf_counter()
        try:
            template.execute({"l": list(range(100))})
            outcome = "output"
        except TemplateError as exc:
            outcome = f"TemplateError ({exc.limit})"
        print(f"{label:44} {(time.perf_counter() - start) * 1e3:14.1f}  {outcome}")


if __name__ == "__main__":
    main()
