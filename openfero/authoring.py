"""Writing definitions without a broker or a cluster: `openfero render` and `openfero validate`.

``render`` runs the dispatcher's own lookup and rendering (dispatcher.catalog,
dispatcher.rendering), so what it prints is the Job the dispatcher would
create. ``validate`` checks what can be checked before an alert arrives.

Exit codes: 0 fine (validate: warnings allowed), 1 a definition or an alert
has an error, 2 wrong usage.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
import yaml

from dispatcher.catalog import Catalog, load_files, manifest_files
from dispatcher.definitions import Definition, configmap_definitions
from dispatcher.operarii import KIND, InvalidOperarius, Operarius
from dispatcher.naming import JOB_BASE_ROOM, configmap_name, dns_label
from dispatcher.rendering import JobRules, Refused, RenderError, render
from dispatcher import silences
from dispatcher.templating import TemplateError, choose_engine, referenced_annotations, referenced_labels, templated_fields
from openfero import podsecurity
from openfero.shell_lint import container_warnings
from shared.envelope import Envelope, InvalidWebhook, envelopes_from_webhook
from shared.settings import DispatcherSettings, OutcomeSettings, load

def alerts_from_payload(payload: object) -> list[Envelope]:
    """A decoded webhook, or one alert on its own, as the envelopes ingest would make; InvalidWebhook otherwise."""
    if isinstance(payload, dict) and not any(str(k).lower() == "alerts" for k in payload):
        payload = {"alerts": [payload]}
    return envelopes_from_webhook(payload)


def read_alerts(path: Path) -> list[Envelope]:
    """A webhook, or one alert on its own, from a file."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: {exc}") from None
    try:
        return alerts_from_payload(payload)
    except InvalidWebhook as exc:
        raise click.BadParameter(f"{path}: {exc}") from None


@dataclass(frozen=True)
class Preview:
    """What the dispatcher would do with one alert: the Job as YAML, or why there is none."""

    alertname: str
    status: str
    definition: str = ""  # "<source>/<key>", as the Job's openfero.io/definition annotation says
    job_yaml: str = ""
    dropped_fields: tuple[str, ...] = ()
    problem: str = ""  # no definition, a render error or a refusal; empty when there is a Job


def preview(catalog: Catalog, envelope: Envelope, rules: JobRules) -> Preview:
    """The dispatcher's own lookup and rendering for ``envelope``; `openfero render` and the console show this."""
    alert = envelope.alert
    found = catalog.lookup(alert)
    if found.definition is None:
        return Preview(alert.alertname, alert.status, problem="no definition matches")
    where = f"{found.definition.source}/{found.definition.key}"
    try:
        job = render(found.definition, envelope, rules)
    except (RenderError, Refused) as exc:
        return Preview(alert.alertname, alert.status, where, problem=str(exc))
    return Preview(alert.alertname, alert.status, where, yaml.safe_dump(job.body, sort_keys=False), tuple(job.dropped_fields))


@click.command("render", context_settings={"max_content_width": 100})
@click.option("--alert", "alert_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help="A webhook JSON (or one alert) as Alertmanager sends it.")
@click.option("--definition", "definitions", type=click.Path(exists=True, path_type=Path), multiple=True, required=True, help="ConfigMap or Operarius manifests: a file or a folder (repeatable).")
def render_command(alert_path: Path, definitions: tuple[Path, ...]) -> None:
    """Print, as YAML, the Job the dispatcher would create for each alert."""
    catalog = Catalog()
    load_files(list(definitions), catalog)
    rules = JobRules(load(DispatcherSettings).job_ttl_s, track_outcomes=load(OutcomeSettings).track)
    failed = False
    for envelope in read_alerts(alert_path):
        shown = preview(catalog, envelope, rules)
        if shown.problem:
            click.echo(f"# {shown.alertname} ({shown.status}): {shown.problem}", err=True)
            failed = True
            continue
        for dropped in shown.dropped_fields:
            click.echo(f"# {shown.definition.rpartition('/')[0]}: {dropped} is not a field of a Job; dropped", err=True)
        click.echo("---\n" + shown.job_yaml, nl=False)
    sys.exit(1 if failed else 0)


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    definitions: int = 0


def _sample(definition: Definition, alertname: str, status: str, alert: Envelope | None) -> Envelope:
    """The alert to try a definition on: the one given, or one with every label and annotation it reads."""
    if alert is not None:
        return alert
    texts = [text for _, text in templated_fields(definition.manifest)]
    labels = {name: "example" for text in texts for name in referenced_labels(text)}
    labels["alertname"] = alertname or "Example"
    annotations = {name: "example" for text in texts for name in referenced_annotations(text)}
    webhook = {"alerts": [{"labels": labels, "annotations": annotations, "status": status or "firing", "startsAt": "2025-01-01T00:00:00Z"}]}
    return envelopes_from_webhook(webhook)[0]


def _check(definition: Definition, where: str, alertname: str, status: str, alert: Envelope | None, report: Report, level: str) -> None:
    report.definitions += 1
    if definition.parse_error:
        report.errors.append(f"{where}: {definition.parse_error}")
        return
    if alert is not None:
        for name in sorted({n for _, t in templated_fields(definition.manifest) for n in referenced_labels(t)}):
            if name not in alert.alert.labels:
                report.errors.append(f"{where}: a template reads label {name!r}, which the alert does not have")
    try:
        job = render(definition, _sample(definition, alertname, status, alert), JobRules(60))
    except (RenderError, Refused) as exc:
        report.errors.append(f"{where}: {exc.problem}")  # `where` names the definition already
        return
    for dropped in job.dropped_fields:
        report.warnings.append(f"{where}: {dropped} is not a field of a Job; it will be dropped")
    try:
        wanted = silences.wanted(definition.manifest, definition.annotations)
    except silences.InvalidSilenceRequest as exc:
        report.errors.append(f"{where}: {exc}")
    else:
        if wanted is not None and status == "resolved":
            report.warnings.append(f"{where}: asks for a silence, which openfero holds only for firing alerts")
    base = (definition.manifest.get("metadata") or {}).get("name") or ""
    if len(dns_label(str(base))) > JOB_BASE_ROOM:
        report.warnings.append(f"{where}: metadata.name is cut to {JOB_BASE_ROOM} characters in Job names")
    report.warnings += _engine_warnings(definition, where)
    report.warnings += _authority_warnings(definition, where)
    template = (definition.manifest.get("spec") or {}).get("template") or {}
    pod = template.get("spec") or {}
    pod_annotations = (template.get("metadata") or {}).get("annotations") or {}
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(pod.get(kind) or []):
            report.warnings += container_warnings(container, f"{where}: spec.template.spec.{kind}[{index}]")
    report.warnings += [f"{where}: {problem}" for problem in podsecurity.always(pod)]
    report.warnings += [f"{where}: Pod Security {level!r} would reject its pods: {problem}" for problem in podsecurity.violations(pod, level, pod_annotations)]


# Fields where a template lets alert data choose code, a place or an authority. Legitimate uses
# exist (a node name from the alert for a node-local repair), so validate warns and leaves the call to the author.
_AUTHORITY = [
    (re.compile(r"\.(?:initContainers|containers)\[\d+\]\.image$"), "the image, that is the code that runs"),
    (re.compile(r"\.(?:initContainers|containers)\[\d+\]\.command\[0\]$"), "the program that runs"),
    (re.compile(r"^spec\.template\.spec\.(?:nodeName|nodeSelector\.[^.]+)$"), "the node the pod runs on"),
    (re.compile(r"\.hostPath\.path$"), "a directory of the node"),
    (re.compile(r"\.(?:secretKeyRef|configMapKeyRef|secretRef|configMapRef)\.name$|\.secret\.secretName$|\.configMap\.name$"), "which Secret or ConfigMap is read"),
    (re.compile(r"\.persistentVolumeClaim\.claimName$"), "which volume is mounted"),
    (re.compile(r"\.serviceAccountToken\.audience$"), "whom a token is for"),
    (re.compile(r"^spec\.template\.spec\.(?:priorityClassName|runtimeClassName|schedulerName)$"), "how the pod is scheduled or run"),
    (re.compile(r"\.securityContext\."), "the pod's privileges"),
]


def _authority_warnings(definition: Definition, where: str) -> list[str]:
    warnings = []
    for path, text in templated_fields(definition.manifest):
        what = next((what for pattern, what in _AUTHORITY if pattern.search(path)), None)
        if what is not None:
            warnings.append(f"{where}: {path}: the template {text.strip()} lets alert data choose {what}")
    return warnings


def _engine_warnings(definition: Definition, where: str) -> list[str]:
    fields = tuple(templated_fields(definition.manifest))
    texts = [text for _, text in fields]
    try:
        choice = choose_engine(fields, definition.engine)
    except TemplateError:
        return []  # render reported it as an error already
    warnings = []
    if choice.engine == "jinja" and not choice.declared:
        warnings.append(
            f"{where}: its templates are Jinja's, not Go's ({choice.go_error}); "
            "say so with the annotation openfero.io/template-engine: jinja, or write them in Go's syntax"
        )
    if choice.engine == "jinja" and any("{%" in text.replace("{{%", "") for text in texts):
        warnings.append(f"{where}: {{% ... %}} is text, not a Jinja statement: write statements as {{{{% ... %}}}}")
    return warnings


def validate_file(path: Path, alert: Envelope | None, report: Report, level: str = "privileged") -> None:
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as exc:
        report.errors.append(f"{path}: not valid YAML: {exc}")
        return
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            continue
        kind = doc.get("kind")
        name = (doc.get("metadata") or {}).get("name", f"document {index}")
        if kind == "ConfigMap":
            doc.setdefault("metadata", {}).setdefault("namespace", str(path))
            for key, definition in configmap_definitions(doc).items():
                where = f"{path}: ConfigMap {name} key {key}"
                status = str(name).rpartition("-")[2]
                if status not in ("firing", "resolved") or name != configmap_name(key, status):
                    report.errors.append(
                        f"{where}: never used: alert {key!r} looks for ConfigMap {configmap_name(key, 'firing')} or -resolved"
                    )
                _check(definition, where, key, status, alert, report, level)
        elif kind == KIND:
            where = f"{path}: Operarius {name}"
            try:
                operarius = Operarius.from_resource({**doc, "metadata": {**doc.get("metadata", {}), "namespace": str(path)}})
            except (InvalidOperarius, KeyError, TypeError, ValueError) as exc:
                report.errors.append(f"{where}: {exc}")
                continue
            if not (doc.get("spec") or {}).get("jobTemplate"):
                report.errors.append(f"{where}: spec.jobTemplate is required")
                continue
            _check(operarius.definition, where, operarius.alertname or "", operarius.status or "", alert, report, level)


@click.command("validate", context_settings={"max_content_width": 100})
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--alert", "alert_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Also check every definition against this alert (its first).")
@click.option(
    "--pod-security",
    "level",
    type=click.Choice(podsecurity.LEVELS),
    default="privileged",
    show_default=True,
    help="The Pod Security level enforced where the Jobs run: warn about pods it would reject.",
)
def validate_command(paths: tuple[Path, ...], alert_path: Path | None, level: str) -> None:
    """Check definitions: YAML, Job shape, templates, labels they read, name length, shell use, privileges.

    Each problem is printed with its file, definition and field. Exits 1 on
    any error; warnings alone exit 0.
    """
    alert = read_alerts(alert_path)[0] if alert_path else None
    report = Report()
    for path in manifest_files(list(paths)):
        validate_file(path, alert, report, level)
    for line in report.errors:
        click.echo(f"error: {line}")
    for line in report.warnings:
        click.echo(f"warning: {line}")
    click.echo(f"{report.definitions} definitions, {len(report.errors)} errors, {len(report.warnings)} warnings")
    sys.exit(1 if report.errors else 0)

