"""The cases Go's text/template is asked about (see regenerate.py); the answers are in ../cases.json.

Written for openfero; the areas follow Go's own tests of the package
(src/text/template/exec_test.go, src/text/template/parse/parse_test.go and
src/fmt/fmt_test.go in Go 1.19), whose behaviours they cover in openfero's
terms. A case names its data:
  struct(...)  openfero's model as Go structs (Data, Alert, HookMessage in main.go);
  generic(...) plain JSON values (maps, slices, numbers, strings, bools, null);
  NIL          no data at all.
``differs`` marks a case whose error message the Python engine words
differently, with the reason; the stage (parse or exec) must still match.
"""

from __future__ import annotations

import copy

CASES: list[dict] = []


def struct_from_webhook(webhook: dict, index: int = 0) -> dict:
    """The Go original's view of one alert of a webhook, as the fields of Data."""
    alert = webhook["alerts"][index]
    return {
        "Alert": {
            "Labels": alert.get("labels", {}),
            "Annotations": alert.get("annotations", {}),
            "Status": alert.get("status", webhook.get("status", "")),
            "StartsAt": alert.get("startsAt", ""),
            "EndsAt": alert.get("endsAt", ""),
            "Fingerprint": alert.get("fingerprint", ""),
            "GeneratorURL": alert.get("generatorURL", ""),
        },
        "HookMessage": {
            "Status": webhook.get("status", ""),
            "Receiver": webhook.get("receiver", ""),
            "GroupKey": webhook.get("groupKey", ""),
            "GroupLabels": webhook.get("groupLabels", {}),
            "CommonLabels": webhook.get("commonLabels", {}),
            "CommonAnnotations": webhook.get("commonAnnotations", {}),
            "ExternalURL": webhook.get("externalURL", ""),
        },
        "Labels": alert.get("labels", {}),
        "Annotations": alert.get("annotations", {}),
        "Status": alert.get("status", webhook.get("status", "")),
        "GroupKey": webhook.get("groupKey", ""),
        "Fingerprint": alert.get("fingerprint", ""),
        "Receiver": webhook.get("receiver", ""),
        "ExternalURL": webhook.get("externalURL", ""),
    }


WEBHOOK = {
    "status": "firing",
    "receiver": "openfero",
    "groupKey": '{}:{alertname="KubeQuotaAlmostFull"}',
    "externalURL": "http://alertmanager.example.com",
    "groupLabels": {"alertname": "KubeQuotaAlmostFull"},
    "commonLabels": {"alertname": "KubeQuotaAlmostFull", "severity": "info"},
    "commonAnnotations": {"summary": "Namespace quota is going to be full."},
    "alerts": [{
        "status": "firing",
        "labels": {
            "alertname": "KubeQuotaAlmostFull", "namespace": "shop", "pod": "web-1", "pod-name": "web-1-abc",
            "container": "main", "service.name": "web", "severity": "info", "zone": "dmz",
        },
        "annotations": {
            "summary": "Namespace quota is going to be full.",
            "description": "Namespace shop uses 92.85% of its requests.cpu quota; cost $(HOME) & <b>\"x\"</b>",
            "runbook_url": "https://runbooks.example.com/kubequotaalmostfull?a=1&b=2",
        },
        "startsAt": "2021-10-25T12:01:24.29524738Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "3e0d0c6c7e4f2a1b",
        "generatorURL": "http://prometheus/graph?g0.expr=up",
    }],
}
OPENFERO = {"kind": "struct", "value": struct_from_webhook(WEBHOOK)}
NIL = {"kind": "nil"}


def struct(value: dict) -> dict:
    return {"kind": "struct", "value": value}


def generic(value) -> dict:
    return {"kind": "json", "value": value}


GENERIC = generic({
    "s": "hello", "e": "", "i": 42, "z": 0, "neg": -7, "f": 1.5, "f2": 2.0, "big": 1e21, "tiny": 1e-7,
    "t": True, "no": False, "n": None,
    "l": [1, 2, 3, 4], "ls": ["a", "b", "c"], "le": [], "lf": [0.5, 1.25],
    "mixed": [1, "two", None, True, 2.5],
    "m": {"b": 2, "a": 1, "c": 3}, "ms": {"x": "1", "y": "2"}, "me": {},
    "mm": {"inner": {"deep": "v", "n": None}, "list": [1, 2]},
    "keys": {"b": 1, "a": 2, "10": 3, "9": 4, "B": 5},
    "lm": [{"name": "a", "v": 1}, {"name": "b", "v": 2}],
    "u": "héllo wörld", "html": "<a href=\"x\">Tom & 'Jerry'</a>",
})


def case(id_: str, template: str, data: dict = OPENFERO, *, missingkey: str = "error", name: str = "t",
         differs: str | None = None) -> None:
    entry = {"id": id_, "name": name, "template": template, "data": copy.deepcopy(data), "missingkey": missingkey}
    if differs:
        entry["differs"] = differs
    CASES.append(entry)


# --- openfero's own forms, over its model -----------------------------------------------------------
case("openfero/alert-label", "{{ .Alert.Labels.pod }}")
case("openfero/label", "{{ .Labels.namespace }}")
case("openfero/index-dashed-label", '{{ index .Alert.Labels "pod-name" }}')
case("openfero/index-dotted-label", '{{ index .Labels "service.name" }}')
case("openfero/index-missing-label", '[{{ index .Alert.Labels "absent" }}]')
case("openfero/missing-label-error", "{{ .Alert.Labels.absent }}")
case("openfero/missing-label-default", "{{ .Alert.Labels.absent }}", missingkey="default")
case("openfero/missing-label-zero", "[{{ .Alert.Labels.absent }}]", missingkey="zero")
case("openfero/missing-label-named-field", "{{ .Labels.absent }}", name="spec.template.spec.containers[0].args[2]")
case("openfero/if-eq-firing", '{{ if eq .Status "firing" }}restart{{ else }}skip{{ end }}')
case("openfero/if-eq-resolved", '{{ if eq .Status "resolved" }}restart{{ else }}skip{{ end }}')
case("openfero/hook-message", "{{ .HookMessage.Status }} {{ .HookMessage.Receiver }} {{ .HookMessage.GroupKey }}")
case("openfero/hook-common-labels", "{{ .HookMessage.CommonLabels.severity }}/{{ .HookMessage.GroupLabels.alertname }}")
case("openfero/top-level", "{{ .Status }}|{{ .GroupKey }}|{{ .Fingerprint }}|{{ .Receiver }}|{{ .ExternalURL }}")
case("openfero/times", "{{ .Alert.StartsAt }} -> {{ .Alert.EndsAt }}")
case("openfero/unknown-top-field", "{{ .Nope }}")
case("openfero/unknown-alert-field", "{{ .Alert.Nope }}")
case("openfero/unknown-field-default-mode", "{{ .Alert.Nope }}", missingkey="default")
case("openfero/field-of-string", "{{ .Status.Foo }}")
case("openfero/field-of-label-value", "{{ .Alert.Labels.pod.x }}")
case("openfero/lowercase-field", "{{ .alert }}")
case("openfero/range-labels", "{{ range $k, $v := .Alert.Labels }}{{ $k }}={{ $v }};{{ end }}")
case("openfero/range-label-values", "{{ range .Alert.Labels }}{{ . }},{{ end }}")
case("openfero/printf-map", '{{ printf "%v" .Alert.Labels }}')
case("openfero/printf-struct", '{{ printf "%v" .HookMessage }}')
case("openfero/printf-struct-plus", '{{ printf "%+v" .HookMessage }}')
case("openfero/printf-struct-sharp", '{{ printf "%#v" .HookMessage }}')
case("openfero/printf-type", '{{ printf "%T %T %T %T" . .Alert .Labels .Status }}')
case("openfero/print-whole-data", "{{ . }}")
case("openfero/with-label", "{{ with .Alert.Labels.pod }}pod={{ . }}{{ end }}")
case("openfero/with-index-else", '{{ with index .Labels "absent" }}x{{ else }}none{{ end }}')
case("openfero/with-struct", "{{ with .Alert }}{{ .Labels.zone }} {{ .Status }}{{ end }}")
case("openfero/len-labels", "{{ len .Alert.Labels }} {{ len .Status }}")
case("openfero/pipe-printf-q", '{{ .Alert.Labels.pod | printf "%q" }}')
case("openfero/dollar", "{{ with .Alert }}{{ $.Status }}/{{ .Status }}{{ end }}")
case("openfero/variable-chain", "{{ $a := .Alert }}{{ $a.Labels.pod }}")
case("openfero/define-template", '{{ define "pod" }}{{ .Labels.namespace }}/{{ .Labels.pod }}{{ end }}{{ template "pod" .Alert }}')
case("openfero/escapers", "{{ html .Alert.Annotations.description }}\n{{ js .Alert.Annotations.description }}\n{{ urlquery .Alert.Annotations.runbook_url }}")
case("openfero/field-with-args", '{{ .Alert.Labels "x" }}')
case("openfero/map-key-with-args", '{{ .Alert.Labels.pod "x" }}')
case("openfero/piped-into-field", '{{ "x" | .Alert.Status }}')
case("openfero/eq-maps", "{{ eq .Alert.Labels .Labels }}")
case("openfero/eq-structs", "{{ eq .Alert .Alert }}")
case("openfero/struct-truth", "{{ if .Alert }}yes{{ end }}")
case("openfero/env-value", "OPENFERO_POD={{ .Alert.Labels.pod }} OPENFERO_NS={{ .Alert.Labels.namespace }}")
case("openfero/shell-line", 'kubectl delete pod {{ .Labels.pod }} -n {{ .Labels.namespace }} # $(HOME) ${X}')
case("openfero/annotation-with-dollar", "{{ .Alert.Annotations.description }}")
case("openfero/empty-labels", '{{ len .Labels }}[{{ index .Labels "x" }}]{{ range .Labels }}x{{ else }}none{{ end }}',
     struct({"Status": "firing"}))
case("openfero/empty-struct-printf", '{{ printf "%v" .Alert }}', struct({}))
case("openfero/multiline", "line1 {{ .Status }}\nline2 {{ .Alert.Labels.zone }}\nline3 {{ .Alert.Labels.nope }}\n")
case("openfero/status-and-severity", '{{ if and (eq .Status "firing") (eq .Labels.severity "info") }}act{{ end }}')
case("openfero/or-default", '{{ or (index .Labels "team") "platform" }}')
case("openfero/printf-name", '{{ printf "%s-%s" .Labels.alertname .Labels.pod }}')

# --- text, comments, trim markers ---------------------------------------------------------------------
case("text/empty", "", NIL)
case("text/plain", "no actions here\n", NIL)
case("text/braces-alone", "a { b } c }} d {", NIL)
case("text/comment", "a{{/* a comment */}}b", NIL)
case("text/comment-multiline", "a{{/*\nx\ny\n*/}}b", NIL)
case("text/comment-trimmed", "a  {{- /* c */ -}}  b", NIL)
case("text/comment-needs-close", "a{{/* c */ x}}b", NIL)
case("text/comment-unclosed", "a{{/* c", NIL)
case("text/comment-after-space", "{{ /* c */ }}", NIL)
case("text/trim-left", "x \r\n\t{{- 3 }}", NIL)
case("text/trim-right", "{{ 3 -}}\n\n\ty", NIL)
case("text/trim-both", "a \n {{- 3 -}} \n b", NIL)
case("text/trim-extra-spaces", "x\n{{-  3   -}}\ny", NIL)
case("text/negative-number-not-trim", "x {{-3}} y", NIL)
case("text/minus-without-space", "{{ 3-}}", NIL)
case("text/trim-in-range", "{{ range .ls -}}\n  [{{ . }}]\n{{- end }}", GENERIC)
case("text/unicode", "héllo {{ .u }} wörld", GENERIC)

# --- lexing and parsing errors -------------------------------------------------------------------------
case("parse/empty-action", "{{}}", NIL)
case("parse/empty-action-newline", "{{\n}}", NIL)
case("parse/unclosed-action", "hello {{ .Status", NIL)
case("parse/unclosed-action-multiline", "a\n{{ if\n.Status\n", NIL)
case("parse/unclosed-paren", "{{ (print 1 }}", NIL)
case("parse/unexpected-right-paren", "{{ print 1) }}", NIL)
case("parse/unexpected-eof-if", "{{ if .Status }}x", NIL)
case("parse/unexpected-end", "{{ end }}", NIL)
case("parse/unexpected-else", "{{ else }}", NIL)
case("parse/else-after-end", "{{ if 1 }}a{{ end }}{{ else }}", NIL)
case("parse/multiple-else", "{{ if 1 }}a{{ else }}b{{ else }}c{{ end }}", NIL)
case("parse/else-with-unsupported", "{{ with 1 }}a{{ else with 2 }}b{{ end }}", NIL)
case("parse/undefined-function", "hello {{ nope 1 }}", NIL)
case("parse/undefined-variable", "{{ $x }}", NIL)
case("parse/variable-after-end", "{{ with $x := 4 }}{{ end }}{{ $x }}", NIL)
case("parse/variable-in-define", '{{ $x := 1 }}{{ define "t2" }}{{ $x }}{{ end }}', NIL)
case("parse/declare-field", "{{ with $x.Y := 4 }}{{ end }}", NIL)
case("parse/template-name-field", "{{ template .X }}", NIL)
case("parse/bad-punctuation", "{{ printf 3, 4 }}", NIL)
case("parse/with-two-decls", "{{ with $v, $u := 3 }}{{ end }}", NIL)
case("parse/range-three-decls", "{{ range $u, $v, $w := 3 }}{{ end }}", NIL)
case("parse/range-bad-decl", "{{ range $u, 3 }}{{ end }}", NIL)
case("parse/dot-after-paren", "{{ printf (printf .). }}", NIL)
case("parse/adjacent-args", "{{ printf 3`x` }}", NIL)
case("parse/extra-end", "{{ if 1 }}a{{ else if 2 }}b{{ end }}{{ end }}", NIL)
case("parse/break-outside-range", "{{ range .l }}{{ end }}{{ break }}", NIL)
case("parse/continue-outside-range", "{{ continue }}", NIL)
case("parse/break-in-range-else", "{{ range .l }}{{ else }}{{ break }}{{ end }}", NIL)
case("parse/break-in-define-in-range", '{{ range .l }}{{ block "b" . }}{{ break }}{{ end }}{{ end }}', NIL)
case("parse/plus-assign", "{{ $x := 0 }}{{ $x += 1 }}", NIL)
case("parse/bang", "{{ $x := 0 }}{{ $x ! 2 }}", NIL)
case("parse/no-space-plus", "{{ $x := 1 }}{{ $x+2 }}", NIL)
case("parse/dot-after-number", "{{ 1.E }}", NIL)
case("parse/dot-after-string", '{{ "hello".guys }}', NIL)
case("parse/dot-after-bool", "{{ true.E }}", NIL)
case("parse/dot-after-nil", "{{ nil.E }}", NIL)
case("parse/dot-dot", "{{ ..E }}", NIL)
case("parse/pipe-into-number", "{{ .X | 12 | printf }}", NIL)
case("parse/pipe-into-string", '{{ . | printf | "x" }}', NIL)
case("parse/pipe-into-dot", "{{ 12 | . }}", NIL)
case("parse/empty-parens", '{{ printf "%d" ( ) }}', NIL)
case("parse/missing-if-value", "{{ if }}x{{ end }}", NIL)
case("parse/block-without-pipeline", '{{ block "foo" }}hello{{ end }}', NIL)
case("parse/define-without-name", "{{ define }}x{{ end }}", NIL)
case("parse/define-twice", '{{ define "a" }}x{{ end }}{{ define "a" }}y{{ end }}', NIL)
case("parse/define-and-block-same-name", '{{ define "b" }}over{{ end }}{{ block "b" . }}default{{ end }}', NIL)
case("parse/bad-character", "{{ .X# }}", NIL)
case("parse/unrecognized-character", "{{ \x01 }}", NIL)
case("parse/colon-not-declare", "{{ $x : 1 }}", NIL)
case("parse/unterminated-string", '{{ "abc }}', NIL)
case("parse/unterminated-raw-string", "{{ `abc }}", NIL)
case("parse/unterminated-char", "{{ 'a }}", NIL)
case("parse/bad-escape", '{{ "a\\qb" }}', NIL)
case("parse/malformed-char", "{{ 'ab' }}", NIL)
case("parse/bad-number", "{{ 1x }}", NIL)
case("parse/bad-hex", "{{ 0x }}", NIL)
case("parse/octal-eight", "{{ 08 }}", NIL)
case("parse/integer-overflow", "{{ 99999999999999999999 }}", NIL)
case("parse/error-line-3", "a\nb\n{{ if }}\n", NIL)
case("parse/error-in-action-started-earlier", '{{ print\n"x\n}}', NIL)
case("parse/undefined-after-define", '{{ define "x" }}{{ $y }}{{ end }}', NIL)

# --- constants ------------------------------------------------------------------------------------------
case("const/ints", "{{ 0x1F }} {{ 0X1f }} {{ 0o17 }} {{ 017 }} {{ 0b101 }} {{ 1_000 }} {{ -7 }} {{ +7 }} {{ 0 }}", NIL)
case("const/floats", "{{ 1.5 }} {{ .5 }} {{ 1e3 }} {{ 1.0 }} {{ -2.25 }} {{ 1e21 }} {{ 1e-7 }} {{ 0x1p4 }} {{ 1_0.5 }}", NIL)
case("const/chars", "{{ 'a' }} {{ '\\n' }} {{ '\\x41' }} {{ '\\u00e9' }} {{ 'é' }}", NIL)
case("const/complex", "{{ 1i }} {{ 2+3i }}", NIL)
case("const/uint-overflows-int", "{{ 18446744073709551615 }}", NIL)
case("const/strings", '{{ "a\\tb\\u00e9\\x41\\101\\\\" }}|{{ `raw\\n "q"` }}', NIL)
case("const/bools-and-nil-arg", "{{ true }} {{ false }} {{ print nil }}", NIL)
case("const/nil-command", "{{ nil }}", NIL)
case("const/number-with-args", "{{ 3 4 }}", NIL)
case("const/string-piped-into-number", '{{ "x" | printf "%s" | len }}', NIL)
case("const/negative-zero", '{{ printf "%v %v" -0.0 0.0 }}', NIL)
case("const/dollar-nil-data", "[{{ $ }}][{{ . }}]", NIL)

# --- data: nil, generic maps and slices ------------------------------------------------------------
case("data/nil-field-error", "{{ .x }}", NIL)
case("data/nil-field-default", "{{ .x }}", NIL, missingkey="default")
case("data/nil-field-chain-default", "{{ .x.y.z }}", NIL, missingkey="default")
case("data/generic-values", "{{ .s }} {{ .i }} {{ .neg }} {{ .f }} {{ .f2 }} {{ .big }} {{ .tiny }} {{ .t }} {{ .no }}", GENERIC)
case("data/generic-nil-value", "{{ .n }}", GENERIC)
case("data/generic-containers", "{{ .l }} {{ .ls }} {{ .le }} {{ .lf }} {{ .mixed }} {{ .m }} {{ .ms }} {{ .me }}", GENERIC)
case("data/nested-map", "{{ .mm.inner.deep }}", GENERIC)
case("data/field-of-nil-interface", "{{ .mm.inner.n.x }}", GENERIC)
case("data/field-of-nil-interface-default", "{{ .mm.inner.n.x }}", GENERIC, missingkey="default")
case("data/field-of-int", "{{ .i.x }}", GENERIC)
case("data/field-of-list", "{{ .l.x }}", GENERIC)
case("data/missing-zero-int-map", "[{{ .m.zz }}]", GENERIC, missingkey="zero")
case("data/missing-zero-any-map", "[{{ .mm.zz }}]", GENERIC, missingkey="zero")
case("data/missing-default-any-map", "[{{ .mm.zz }}]", GENERIC, missingkey="default")
case("data/types", '{{ printf "%T|%T|%T|%T|%T|%T|%T|%T" .l .ls .mixed .m .ms .mm .f .n }}', GENERIC)
case("data/top-level-list", "{{ range . }}{{ . }};{{ end }}", generic([1, "a", 2.5]))
case("data/top-level-string", "{{ . }} {{ len . }}", generic("héllo"))
case("data/range-nil-element-field", "{{ range .mixed }}{{ .x }}{{ end }}", GENERIC)
case("data/range-nil-element-print", "{{ range .mixed }}[{{ . }}]{{ end }}", GENERIC)
case("data/range-nil-element-len", "{{ range $i, $e := .mixed }}{{ if eq $i 2 }}{{ len $e }}{{ end }}{{ end }}", GENERIC)
case("data/index-of-nil-element", '{{ index .mm "inner" "n" "x" }}', GENERIC)

# --- truth -----------------------------------------------------------------------------------------------
case("truth/values",
     "{{ if .s }}s{{ end }}{{ if .e }}e{{ end }}{{ if .i }}i{{ end }}{{ if .z }}z{{ end }}{{ if .f }}f{{ end }}"
     "{{ if .t }}t{{ end }}{{ if .no }}no{{ end }}{{ if .n }}n{{ end }}{{ if .l }}l{{ end }}{{ if .le }}le{{ end }}"
     "{{ if .m }}m{{ end }}{{ if .me }}me{{ end }}", GENERIC)
case("truth/constants", "{{ if 0 }}a{{ end }}{{ if 0.0 }}b{{ end }}{{ if \"\" }}c{{ end }}{{ if 1 }}d{{ end }}{{ if \"x\" }}e{{ end }}", NIL)
case("truth/missing-default", "{{ if .absent }}yes{{ else }}no{{ end }}", GENERIC, missingkey="default")
case("truth/not", "{{ not .s }} {{ not .e }} {{ not 0 }} {{ not .l }} {{ not .me }}", GENERIC)

# --- control structures ------------------------------------------------------------------------------
case("if/else-if-chain", '{{ if eq .i 1 }}one{{ else if eq .i 42 }}answer{{ else }}other{{ end }}', GENERIC)
case("if/else-if-last", '{{ if eq .i 1 }}one{{ else if eq .i 2 }}two{{ else }}other{{ end }}', GENERIC)
case("if/declaration-in-condition", "{{ if $x := .s }}{{ $x }}{{ end }}", GENERIC)
case("with/else", "{{ with .e }}x{{ else }}empty{{ end }}|{{ with .s }}{{ . }}{{ end }}", GENERIC)
case("with/declaration", "{{ with $x := .m }}{{ $x.a }}{{ .b }}{{ end }}", GENERIC)
case("range/list-index", "{{ range $i, $v := .ls }}{{ $i }}:{{ $v }} {{ end }}", GENERIC)
case("range/one-variable", "{{ range $v := .ls }}{{ $v }}{{ end }}", GENERIC)
case("range/map-sorted-keys", "{{ range $k, $v := .keys }}{{ $k }}={{ $v }} {{ end }}", GENERIC)
case("range/map-one-variable", "{{ range $v := .m }}{{ $v }}{{ end }}", GENERIC)
case("range/else-empty-list", "{{ range .le }}x{{ else }}empty{{ end }}", GENERIC)
case("range/else-empty-map", "{{ range .me }}x{{ else }}empty{{ end }}", GENERIC)
case("range/else-missing", "{{ range .absent }}x{{ else }}none{{ end }}", GENERIC, missingkey="default")
case("range/over-int", "{{ range .i }}x{{ end }}", GENERIC)
case("range/over-string", "{{ range .s }}x{{ end }}", GENERIC)
case("range/over-constant", "{{ range 5 }}x{{ end }}", NIL)
case("range/break-continue",
     "{{ range .l }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}", GENERIC)
case("range/nested", "{{ range .lm }}{{ .name }}:{{ range $.ls }}{{ . }}{{ end }} {{ end }}", GENERIC)
case("range/dollar-inside", "{{ range .ls }}{{ $.s }}{{ end }}", GENERIC)
case("range/variable-scope-ends", "{{ range $i, $v := .ls }}{{ end }}{{ $i }}", GENERIC)
case("range/assign-outer", "{{ $n := 0 }}{{ range .l }}{{ $n = . }}{{ end }}{{ $n }}", GENERIC)
case("range/declared-per-iteration", "{{ range .l }}{{ $x := . }}{{ $x }}{{ end }}", GENERIC)
case("range/pipeline", '{{ range .lm | len | printf "%d" | len }}x{{ end }}', GENERIC)
case("range/list-of-maps", "{{ range .lm }}{{ .name }}={{ .v }};{{ end }}", GENERIC)

# --- variables -----------------------------------------------------------------------------------------
case("vars/assign-in-if", "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", NIL)
case("vars/shadow-in-if", "{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", NIL)
case("vars/assign-undeclared", "{{ $y = 1 }}", NIL)
case("vars/declare-in-parens", "{{ print ($x := 1) $x }}", NIL)
case("vars/newline-in-declaration", "{{ $x \n := \n 7 \n }}{{ $x }}", NIL)
case("vars/dollar-fields", "{{ $.s }} {{ $.m.a }}", GENERIC)
case("vars/variable-with-args", "{{ $x := 1 }}{{ $x 2 }}", NIL)
case("vars/piped-into-variable", "{{ $x := 1 }}{{ 2 | $x }}", NIL)

# --- define, template, block ---------------------------------------------------------------------
case("tmpl/define-and-call", '{{ define "x" }}[{{ . }}]{{ end }}a{{ template "x" 1 }}b{{ template "x" "s" }}', NIL)
case("tmpl/call-without-arg", '{{ define "x" }}[{{ . }}]{{ end }}{{ template "x" }}', GENERIC)
case("tmpl/dollar-in-template", '{{ define "x" }}{{ $ }}{{ end }}{{ template "x" 5 }}', NIL)
case("tmpl/not-defined", '{{ template "nope" }}', NIL)
case("tmpl/block-default", '{{ block "b" .s }}<{{ . }}>{{ end }}', GENERIC)
case("tmpl/block-then-call", '{{ block "b" 1 }}<{{ . }}>{{ end }}{{ template "b" 2 }}', NIL)
case("tmpl/defined-after-use", '{{ template "later" . }}{{ define "later" }}later:{{ .s }}{{ end }}', GENERIC)
case("tmpl/recursion", '{{ define "r" }}{{ if . }}{{ len . }}{{ template "r" (slice . 1) }}{{ end }}{{ end }}{{ template "r" .l }}', GENERIC)
case("tmpl/main-only-define", '{{ define "t" }}body of t{{ end }}', NIL)
case("tmpl/main-and-define-same-name", '{{ define "t" }}x{{ end }}main', NIL)
case("tmpl/raw-name", "{{ define `x` }}raw{{ end }}{{ template `x` }}", NIL)
case("tmpl/error-inside-define", '{{ define "inner" }}\n{{ .nope }}{{ end }}{{ template "inner" .m }}', GENERIC)
case("tmpl/template-pipeline", '{{ define "x" }}{{ . }}{{ end }}{{ template "x" .s | len }}', GENERIC)

# --- functions: and, or, not, len, index, slice, call ---------------------------------------------
case("fn/and-short-circuit", "{{ and 0 (fail) }}|{{ and 1 2 }}|{{ and 1 \"\" 3 }}", NIL)
case("fn/or-short-circuit", "{{ or 1 (fail) }}|{{ or 0 \"\" }}|{{ or 0 \"x\" 3 }}", NIL)
case("fn/and-reaches-failure", "{{ and 1 (fail) }}", NIL)
case("fn/and-no-args", "{{ and }}", NIL)
case("fn/and-piped", "{{ 5 | and 1 }}|{{ 5 | and 0 }}|{{ 0 | or 1 }}", NIL)
case("fn/not-args", "{{ not 1 2 }}", NIL)
case("fn/len", '{{ len .l }} {{ len .m }} {{ len .s }} {{ len .u }} {{ len "" }}', GENERIC)
case("fn/len-int", "{{ len 3 }}", NIL)
case("fn/len-nil", "{{ len nil }}", NIL)
case("fn/len-missing", "{{ len .absent }}", GENERIC, missingkey="default")
case("fn/index-list", "{{ index .l 0 }} {{ index .ls 2 }} {{ index .lm 1 \"name\" }}", GENERIC)
case("fn/index-map", '{{ index .m "b" }} [{{ index .m "zz" }}] [{{ index .ms "zz" }}] [{{ index .mm "zz" }}]', GENERIC)
case("fn/index-string-byte", '{{ index .s 1 }} {{ index "héllo" 1 }}', GENERIC)
case("fn/index-out-of-range", "{{ index .l 9 }}", GENERIC)
case("fn/index-at-len", "{{ index .l 4 }}", GENERIC)
case("fn/index-string-at-len", '{{ index "ab" 2 }}', NIL)
case("fn/index-negative", "{{ index .l -1 }}", GENERIC)
case("fn/index-with-string", '{{ index .l "a" }}', GENERIC)
case("fn/index-map-with-int", "{{ index .m 1 }}", GENERIC)
case("fn/index-map-with-nil", "{{ index .m nil }}", GENERIC)
case("fn/index-nil", "{{ index nil 1 }}", NIL)
case("fn/index-int", "{{ index 5 1 }}", NIL)
case("fn/index-no-keys", "{{ index .ls }}", GENERIC)
case("fn/index-list-with-nil", "{{ index .l nil }}", GENERIC)
case("fn/slice", '{{ slice .l 1 }} {{ slice .l 1 3 }} {{ slice .l 1 2 3 }} {{ slice .l }} {{ slice "hello" 1 3 }} {{ slice .s 2 }}', GENERIC)
case("fn/slice-string-three", '{{ slice "abc" 1 2 3 }}', NIL)
case("fn/slice-inverted", "{{ slice .l 2 1 }}", GENERIC)
case("fn/slice-out-of-range", "{{ slice .l 0 9 }}", GENERIC)
case("fn/slice-too-many", "{{ slice .l 0 1 2 3 }}", GENERIC)
case("fn/slice-int", "{{ slice 3 }}", NIL)
case("fn/slice-nil", "{{ slice nil }}", NIL)
case("fn/call-nil", "{{ call nil }}", NIL)
case("fn/call-string", "{{ call .s }}", GENERIC)
case("fn/wrong-arg-count", "{{ len 1 2 }}", NIL)
case("fn/function-as-arg", "{{ print len }}", NIL)
case("fn/custom-upper", '{{ upper "abc" }} {{ "xyz" | upper }} {{ add 1 2 }}', NIL)
case("fn/custom-error", "{{ fail }}", NIL)
case("fn/custom-arity", "{{ add 1 }}", NIL)
case("fn/custom-arity-piped", "{{ 1 | add 2 3 }}", NIL)

# --- comparison -----------------------------------------------------------------------------------------
case("cmp/eq", '{{ eq 1 1 }} {{ eq 1 2 }} {{ eq "a" "a" }} {{ eq .s "hello" }} {{ eq .f 1.5 }} {{ eq true true }}', GENERIC)
case("cmp/eq-many", '{{ eq "b" "a" "b" "c" }} {{ eq 5 1 2 3 }}', NIL)
case("cmp/eq-incompatible", '{{ eq 1 "1" }}', NIL)
case("cmp/eq-int-float", "{{ eq 1 1.0 }}", NIL)
case("cmp/eq-nil", "{{ eq nil nil }} {{ eq .n nil }} {{ eq 1 nil }}", GENERIC)
case("cmp/eq-missing", '{{ eq .absent "" }}', GENERIC, missingkey="default")
case("cmp/eq-one-arg", "{{ eq 1 }}", NIL)
case("cmp/eq-no-args", "{{ eq }}", NIL)
case("cmp/eq-lists", "{{ eq .l .l }}", GENERIC)
case("cmp/eq-list-map", "{{ eq .ls .ms }}", GENERIC)
case("cmp/ne", '{{ ne 1 2 }} {{ ne "a" "a" }}', NIL)
case("cmp/ne-three", "{{ ne 1 2 3 }}", NIL)
case("cmp/order", '{{ lt 1 2 }} {{ le 2 2 }} {{ gt 3 2 }} {{ ge 1 2 }} {{ lt "a" "b" }} {{ gt 1.5 2.5 }} {{ le "b" "a" }}', NIL)
case("cmp/lt-incompatible", '{{ lt 1 "a" }}', NIL)
case("cmp/lt-bool", "{{ lt true false }}", NIL)
case("cmp/lt-list", "{{ lt .l 1 }}", GENERIC)
case("cmp/lt-nil", "{{ lt nil 1 }}", NIL)
case("cmp/in-if", '{{ if gt (len .l) 3 }}long{{ end }}', GENERIC)

# --- print, println, escapers --------------------------------------------------------------------------
case("print/spacing", '{{ print 1 2 }}|{{ print "a" "b" }}|{{ print "a" 1 2 "b" 3 }}|{{ print 1.5 true nil }}', NIL)
case("print/values", "{{ print .l .m .n .mixed }}", GENERIC)
case("print/println", '{{ println 1 "a" nil }}', NIL)
case("print/no-args", "[{{ print }}][{{ println }}][{{ html }}]", NIL)
case("esc/html", "{{ html .html }}|{{ html 1 2 }}|{{ html nil }}|{{ html \"a\\x00b\" }}", GENERIC)
case("esc/js", '{{ js .html }}|{{ js "a\\nb=c\\u2028\\u00e9\\x7f" }}|{{ js 1 "x" }}', GENERIC)
case("esc/urlquery", '{{ urlquery "a b/c?d=e&f~g_h.i-j" }}|{{ urlquery .u }}|{{ urlquery 1 2 }}', GENERIC)

# --- printf: integers ---------------------------------------------------------------------------------
case("fmt/int-verbs", '{{ printf "%d|%5d|%-5d|%05d|%+d|% d|%x|%X|%#x|%o|%#o|%O|%b|%#b" 42 42 42 -42 42 42 255 255 255 8 8 8 5 5 }}', NIL)
case("fmt/int-precision", '{{ printf "%.3d|%8.3d|%.0d|%5.0d|%-08d|%+.3d" 7 7 0 0 7 7 }}', NIL)
case("fmt/int-chars", '{{ printf "%c|%q|%U|%#U|%q|%+q|%c" 65 65 0x1F600 0x1F600 10 233 -1 }}', NIL)
case("fmt/int-negative-hex", '{{ printf "%x|%X|%o|%b" -255 -255 -8 -5 }}', NIL)
case("fmt/int-bad-verbs", '{{ printf "%s|%f|%t|%e" 1 2 3 4 }}', NIL)

# --- printf: floats -------------------------------------------------------------------------------------
case("fmt/float-verbs", '{{ printf "%f|%.2f|%8.3f|%-8.2f|%e|%E|%g|%G|%.3g|%v" 3.14159 3.14159 3.14159 3.14159 1234.5678 1234.5678 0.000012345 1e20 1234.5678 0.1 }}', NIL)
case("fmt/float-v-shortest", '{{ printf "%v %v %v %v %v %v %v %v" 1e6 123456.0 1234567.0 1e21 1e-5 0.0001 100.0 2.5 }}', NIL)
case("fmt/float-flags", '{{ printf "%+.2f|% .2f|%08.3f|%-8.3f|%+08.2f|%#g|%#.3e|%#.0f|%#v" 3.5 3.5 -3.14159 3.14159 2.5 1.0 12345.0 3.0 2.0 }}', NIL)
case("fmt/float-hex-binary", '{{ printf "%x|%X|%.2x|%b|%#x" 1.5 -0.75 3.0 1.0 1.0 }}', NIL)
case("fmt/float-rounding", '{{ printf "%.0f|%.0f|%.1f|%.2f|%.3g|%.10g|%.1e" 0.5 2.5 0.25 1.005 2.675 0.1 15.0 }}', NIL)
case("fmt/float-precision-g", '{{ printf "%.1g|%.2g|%.5g|%.0g|%g|%g" 123.0 0.0001234 100000.0 5.0 1e-4 1e-5 }}', NIL)
case("fmt/float-bad-verbs", '{{ printf "%d|%s|%c" 1.5 2.5 3.5 }}', NIL)
case("fmt/float-data", '{{ printf "%v %.1f %e %g" .f .f2 .big .tiny }}', GENERIC)
case("fmt/complex", '{{ printf "%v|%.1f|%d" 2+3i 1i 1i }}', NIL)

# --- printf: strings, bools, nil, types --------------------------------------------------------------
case("fmt/string-verbs", '{{ printf "%s|%10s|%-10s|%.2s|%5.1s|%q|%#q|%+q|%x|% x|%#x|%X|% #X|%05s" "abc" "abc" "abc" "abc" "abc" "a\\"b\\n" "ab" "é" "hi" "hi" "hi" "hi" "hi" "ab" }}', NIL)
case("fmt/string-unicode-width", '{{ printf "[%5s][%-4s][%.1s][%x]" "é" "日本" "日本" "é" }}', NIL)
case("fmt/string-quote-controls", '{{ printf "%q|%#q|%+q" "tab\\there\\x01" "back`tick" "日本" }}', NIL)
case("fmt/string-bad-verbs", '{{ printf "%d|%t|%c" "x" "y" "z" }}', NIL)
case("fmt/bools", '{{ printf "%t|%v|%5t|%d|%s" true false true true false }}', NIL)
case("fmt/nil", '{{ printf "%v|%d|%s|%T|%5v" nil nil nil nil nil }}', NIL)
case("fmt/types", '{{ printf "%T|%T|%T|%T|%T|%8T|" 1 1.5 "s" true 1i 1 }}', NIL)
case("fmt/percent", '{{ printf "100%%|%5%|%-5%|" }}', NIL)

# --- printf: containers -------------------------------------------------------------------------------
case("fmt/map-verbs", '{{ printf "%v|%d|%s|%+v|%#v|%x" .m .m .m .m .m .m }}', GENERIC)
case("fmt/map-string-verbs", '{{ printf "%v|%q|%#v|%x|%5v" .ms .ms .ms .ms .ms }}', GENERIC)
case("fmt/slice-verbs", '{{ printf "%v|%d|%s|%q|%#v|%x|%03d" .l .l .l .ls .ls .ls .l }}', GENERIC)
case("fmt/mixed-slice", '{{ printf "%v|%#v|%d|%s" .mixed .mixed .mixed .mixed }}', GENERIC)
case("fmt/nested", '{{ printf "%v|%+v|%#v" .mm .mm .lm }}', GENERIC)
case("fmt/empty-containers", '{{ printf "%v|%v|%#v|%#v" .le .me .le .me }}', GENERIC)

# --- printf: argument handling ------------------------------------------------------------------------
case("fmt/missing", '{{ printf "%d %d" 1 }}', NIL)
case("fmt/extra", '{{ printf "%d" 1 2 "x" nil }}', NIL)
case("fmt/no-verb", '{{ printf "abc%" }}|{{ printf "%-" 1 }}', NIL)
case("fmt/huge-width", '{{ printf "%099999999d" 5 }}', NIL)
case("fmt/star-width", '{{ printf "[%*d][%-*d][%*d][%.*f]" 5 1 5 1 -5 1 2 3.14159 }}', NIL)
case("fmt/bad-width", '{{ printf "%*d" "x" 1 }}|{{ printf "%.*d" "x" 1 }}', NIL)
case("fmt/arg-index", '{{ printf "%[2]s %[1]s|%[1]d %d|%[3]d|%[2]*[1]d" 1 2 }}', NIL)
case("fmt/bad-arg-index", '{{ printf "%[x]d|%[0]d|%[9]d" 1 }}', NIL)
case("fmt/format-not-string", "{{ printf 1 }}", NIL)
case("fmt/format-field-not-string", "{{ printf .i }}", GENERIC)
case("fmt/format-nil", "{{ printf nil }}", NIL)
case("fmt/format-missing", "{{ printf .absent }}", GENERIC, missingkey="default")
case("fmt/format-piped", '{{ "%d-%s" | printf }}|{{ "x" | printf "%s!" }}', NIL)
case("fmt/unknown-verb", '{{ printf "%z|%!|%ä" 1 2 3 }}', NIL)
case("fmt/width-on-bad-verb", '{{ printf "%5d|%-6t" "x" 1 }}', NIL)

# --- error positions and names ---------------------------------------------------------------------------
case("err/column-after-unicode", 'é日本 {{ .nope }}', GENERIC)
case("err/column-second-line", "line one\n  {{ .mm.inner.nope }}", GENERIC)
case("err/chain-on-parens", "{{ (print 1).x }}", NIL)
case("err/chain-on-parens-map", '{{ (index .mm "inner").zz }}', GENERIC)
case("err/nil-chain", "{{ (nil).x }}", NIL)
case("err/in-if-condition", '{{ if eq .s 1 }}x{{ end }}', GENERIC)
case("err/in-range-body", "{{ range .lm }}{{ .nope }}{{ end }}", GENERIC)
case("err/in-else-branch", "{{ if .e }}x{{ else }}{{ len .i }}{{ end }}", GENERIC)
case("err/in-nested-pipeline", '{{ printf "%s" (index .m "a" "b") }}', GENERIC)
case("err/template-name-quoted", '{{ define "a\\"b" }}{{ .nope }}{{ end }}{{ template "a\\"b" .m }}', GENERIC)
case("err/name-with-percent", "{{ .nope }}", GENERIC, name="100%/x",
     differs="Go formats the location as part of a format string, so a '%' in a template name garbles its message; openfero keeps the name as written")

# --- more shapes people write ------------------------------------------------------------------------
case("more/with-else-if-unsupported", "{{ with .s }}a{{ else if .i }}b{{ end }}", GENERIC)
case("more/trimmed-else", "{{ if .e -}} yes {{- else -}} no {{- end }}", GENERIC)
case("more/redeclare", "{{ $x := 1 }}{{ $x := 2 }}{{ $x }}", NIL)
case("more/pipe-into-len", "{{ .Alert.Labels | len }}")
case("more/index-with-field-key", "{{ index .Alert.Labels .Alert.Labels.container }}[{{ index .Alert.Labels .Status }}]")
case("more/range-top-level-map", "{{ range $k, $v := . }}{{ $k }}:{{ $v }} {{ end }}", generic({"b": [1], "a": {"x": 1}, "c": None}))
case("more/width-on-containers", '{{ printf "[%-6v][%6v][%4d]" .ls .m .l }}', GENERIC)
case("more/js-unicode", '{{ js "\\u00a0\\u00e9\\U0001F600\\t" }}', NIL)
case("more/html-unicode", '{{ html "é<日>" }}', NIL)
case("more/print-floats-ints", "{{ print 1 2.5 3 }} {{ print .f .i .s .i }}", GENERIC)
case("more/printf-missing-all", '{{ printf "%s %d %v" }}', NIL)
case("more/missing-zero-struct", "[{{ .Alert.Labels.absent }}][{{ .HookMessage.CommonLabels.absent }}]", missingkey="zero")
case("more/nested-template-vars", '{{ define "a" }}{{ $v := . }}{{ template "b" $v }}{{ $v }}{{ end }}{{ define "b" }}<{{ . }}>{{ end }}{{ template "a" 3 }}', NIL)
case("more/break-in-nested-if", "{{ range .l }}{{ if gt . 2 }}{{ if true }}{{ break }}{{ end }}{{ end }}{{ . }}{{ end }}", GENERIC)
case("more/continue-in-with", "{{ range .lm }}{{ with .name }}{{ if eq . \"a\" }}{{ continue }}{{ end }}{{ . }}{{ end }}{{ end }}", GENERIC)
case("more/range-else-with-vars", "{{ range $i, $v := .le }}{{ $i }}{{ else }}empty{{ end }}", GENERIC)
case("more/comparison-chain", '{{ if and (ge .i 40) (le .i 50) (ne .s "x") (not .e) }}in range{{ end }}', GENERIC)
case("more/slice-unicode-bytes", '{{ slice .u 0 2 }}|{{ len (slice .u 0 3) }}', GENERIC)
case("more/octal-escape-high", '{{ "\\303\\251" }}|{{ len "\\303\\251" }}', NIL)
case("more/map-in-field-chain-of-list", "{{ (index .lm 0).name }} {{ (index .lm 1).v }}", GENERIC)
case("more/dollar-reassigned", "{{ $ := 5 }}{{ $ }}", GENERIC)
case("more/struct-in-range-of-any", "{{ range .lm }}{{ .nope }}{{ end }}", GENERIC, missingkey="default")
case("more/float-keys-sort", "{{ range $k, $v := .keys }}{{ $k }}{{ end }}|{{ .keys }}", GENERIC)
