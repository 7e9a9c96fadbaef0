"""From a definition and an alert to the Job to create. No I/O here.

What rendering does to the definition's Job, in order:
0. renders every string value as a template (dispatcher.templating) with
   the alert as data; the fields that choose where and as whom the Job runs
   (namespace, service account) may not be templates, and a Job may not run
   as the dispatcher's own account or a forbidden one;
1. names it ``<definition name>-<hash of fingerprint, status, startsAt>``:
   one name per alert occurrence, so a redelivered message finds its Job.
   A definition annotated ``openfero.io/rerun-after: <duration>`` adds the
   number of the rerun window the alert was received in (counted from
   startsAt), so the same occurrence runs again once per window;
2. labels it (managed-by, alertname, status, fingerprint, and the Go
   original's managed-by, alert, group-key, operarius) with values made
   valid for Kubernetes whatever the alert holds;
3. hands every alert label to every container and init container as
   ``OPENFERO_<LABEL>`` (dispatcher.naming), leaving variables the definition
   sets alone. An alert with two labels that map to one name is refused:
   a Job must never run with a value its definition's matchers did not see;
4. sets ``ttlSecondsAfterFinished`` where the definition has none;
5. drops the fields a Job does not have, as the API server would, and
   reports them so the definition's author can see what was ignored.

What the container sees is exactly the alert's data: the kubelet expands
``$(VAR)`` and turns ``$$`` into ``$`` in env values, command, args,
subPathExpr and exec probes' commands, so every value that came from the alert (the injected
variables and whatever a template printed there) has its ``$`` doubled,
while ``$(VAR)`` written by the definition's author still expands.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pydantic
from kubernetes.client import V1Job

from dispatcher.definitions import Definition
from dispatcher import naming
from dispatcher.naming import env_collisions, env_name, group_key_label, label_value
from dispatcher.storm import ANNOTATION_BREAKER_COOLDOWN, ANNOTATION_BREAKER_FAILURES, ANNOTATION_CONCURRENCY_TARGET, ANNOTATION_COOLDOWN_TARGET, InvalidStormRule, StormRules
from dispatcher.templating import MissingValue, TemplateError, is_template, render_tree
from shared.durations import parse_duration
from shared.envelope import Envelope

# Most bytes a rendered Job may have (its JSON); the API server's own limit is about 1.5 MiB.
MAX_RENDERED_BYTES = 1024 * 1024

MANAGED_BY = ("app.kubernetes.io/managed-by", "openfero")
# The Go original's labels, so that its users' selectors keep finding openfero's Jobs.
GO_MANAGED_BY = ("openfero.io/managed-by", "openfero")
LABEL_GO_ALERT = "openfero.io/alert"
LABEL_GO_GROUP_KEY = "openfero.io/group-key"
LABEL_GO_OPERARIUS = "openfero.io/operarius"
LABEL_ALERTNAME = "openfero.io/alertname"
LABEL_STATUS = "openfero.io/status"
LABEL_FINGERPRINT = "openfero.io/fingerprint"
ANNOTATION_MESSAGE_ID = "openfero.io/message-id"
ANNOTATION_DEFINITION = "openfero.io/definition"
ANNOTATION_STARTS_AT = "openfero.io/starts-at"
ANNOTATION_RERUN_AFTER = "openfero.io/rerun-after"
ANNOTATION_RUN_ID = "openfero.io/run-id"
# Outcome tracking (dispatcher.tracking): the finalizer keeps a deleted Job until its outcome is
# recorded; the annotation, set once by the leader, is the mark that it was counted.
FINALIZER_OUTCOME = "openfero.io/outcome"
ANNOTATION_OUTCOME = "openfero.io/outcome"


class _NoJob(ValueError):
    """No Job for this alert: ``where`` names the definition ("" if it is not the definition's doing), ``problem`` says why."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where, self.problem = where, problem


class RenderError(_NoJob):
    """The definition cannot make a Job for this alert; retrying will not help."""


class Refused(_NoJob):
    """The alert itself cannot be handed to a Job (not the definition's fault); ``reason`` says why, in a word."""

    def __init__(self, where: str, problem: str, reason: str):
        super().__init__(where, problem)
        self.reason = reason


@dataclass(frozen=True)
class JobRules:
    """What the dispatcher enforces on every Job, whatever the definition says."""

    default_ttl_s: int = 86400
    job_namespace: str = ""
    # (namespace, name) of accounts no Job may run as; namespace "*" means any.
    forbidden_accounts: frozenset[tuple[str, str]] = frozenset()
    track_outcomes: bool = False  # add FINALIZER_OUTCOME (OPENFERO_TRACK_OUTCOMES)

    def forbids(self, namespace: str, account: str) -> bool:
        return (namespace, account) in self.forbidden_accounts or ("*", account) in self.forbidden_accounts


@dataclass
class RenderedJob:
    name: str
    body: dict[str, Any]
    dropped_fields: list[str] = field(default_factory=list)
    storm: StormRules = field(default_factory=StormRules)  # what the definition asks of storm control
    concurrency_target: str = ""  # the target the alert is for, by the definition's keys
    cooldown_target: str = ""


# Where the kubelet expands $(VAR): a container's command, args, env values and subPathExpr,
# and its exec probes' commands (from the static env values only).
_EXPANDED = re.compile(
    r"spec\.template\.spec\.(?:initContainers|containers)\[\d+\]\."
    r"(?:command\[\d+\]|args\[\d+\]|env\[\d+\]\.value|volumeMounts\[\d+\]\.subPathExpr"
    r"|(?:livenessProbe|readinessProbe|startupProbe)\.exec\.command\[\d+\])"
)


def expanded_by_kubelet(path: str) -> bool:
    """Whether the kubelet expands ``$(VAR)`` in the Job field at ``path``."""
    return _EXPANDED.fullmatch(path) is not None


def escape_expansion(value: str) -> str:
    """``value`` as the kubelet must receive it for a container to see ``value`` itself."""
    return value.replace("$", "$$")


def rerun_window(envelope: Envelope, rerun_after_s: float) -> int:
    """Which window of ``rerun_after_s`` after startsAt the alert was received in."""
    received = _timestamp(envelope.received_at) or 0.0
    starts = _timestamp(envelope.alert.starts_at)
    return int((received - (starts if starts is not None else 0.0)) // rerun_after_s)


def _timestamp(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def occurrence_hash(envelope: Envelope, rerun_after_s: float | None = None, run_id: str = "") -> str:
    alert = envelope.alert
    parts = [alert.fingerprint, alert.status, alert.starts_at]
    if rerun_after_s:
        parts.append(str(rerun_window(envelope, rerun_after_s)))
    if run_id:
        parts.append(f"run:{run_id}")
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[: naming.JOB_HASH_CHARS]


def job_name(base: str, envelope: Envelope, rerun_after_s: float | None = None, run_id: str = "") -> str:
    """A DNS-1123 label of at most 63 characters, the same for every delivery of one occurrence.

    ``run_id`` (a forced replay) makes a new name for the same occurrence.
    """
    return naming.job_name(base, occurrence_hash(envelope, rerun_after_s, run_id))


def render(definition: Definition, envelope: Envelope, rules: JobRules, run_id: str = "") -> RenderedJob:
    """The Job ``definition`` makes for ``envelope``; RenderError (the definition) or Refused (the alert)."""
    where = f"definition {definition.source} key {definition.key!r}"
    if definition.parse_error:
        raise RenderError(where, definition.parse_error)
    manifest = definition.manifest
    if not isinstance(manifest, dict) or manifest.get("kind") != "Job":
        raise RenderError(where, f"not a Job manifest (kind: {_kind(manifest)!r})")
    _refuse_templated_identity(manifest, where)
    _refuse_forbidden_account(manifest, rules, where)
    collisions = env_collisions(envelope.alert.labels)
    if collisions:
        name, clashing = next(iter(sorted(collisions.items())))
        raise Refused("", f"labels {' and '.join(repr(x) for x in clashing)} would both be {name}", "env_name_collision")
    try:
        job = render_tree(manifest, envelope, definition.engine, escape_at=expanded_by_kubelet)  # a copy
    except MissingValue as exc:
        raise Refused(where, f"the alert lacks what the definition reads: {exc}", "missing_value") from None
    except TemplateError as exc:
        raise RenderError(where, str(exc)) from None
    job["apiVersion"] = job.get("apiVersion") or "batch/v1"
    metadata = _mapping(job, "metadata", where)
    base = metadata.pop("generateName", None) or metadata.get("name") or definition.source.rpartition("/")[2]
    rerun = (metadata.get("annotations") or {}).get(ANNOTATION_RERUN_AFTER) or definition.annotations.get(ANNOTATION_RERUN_AFTER)
    try:
        rerun_after_s = parse_duration(str(rerun)) if rerun else None
    except ValueError as exc:
        raise RenderError(where, f"annotation {ANNOTATION_RERUN_AFTER}: {exc}") from None
    name = job_name(str(base), envelope, rerun_after_s, run_id)
    try:
        storm = StormRules.of({**definition.annotations, **{str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()}})
    except InvalidStormRule as exc:
        raise RenderError(where, str(exc)) from None
    metadata["name"] = name
    metadata.pop("namespace", None)  # the dispatcher decides where Jobs go
    if rules.track_outcomes:
        _add_finalizer(metadata, FINALIZER_OUTCOME)

    alert = envelope.alert
    labels = _mapping(metadata, "labels", where)
    _make_label_values_valid(labels)
    labels.update(
        {
            MANAGED_BY[0]: MANAGED_BY[1],
            LABEL_ALERTNAME: label_value(alert.alertname),
            LABEL_STATUS: label_value(alert.status),
            LABEL_FINGERPRINT: label_value(alert.fingerprint),
            GO_MANAGED_BY[0]: GO_MANAGED_BY[1],
            LABEL_GO_ALERT: label_value(alert.alertname),
            LABEL_GO_GROUP_KEY: group_key_label(envelope.group.group_key),
        }
    )
    if definition.operarius:
        labels[LABEL_GO_OPERARIUS] = label_value(definition.operarius)
    annotations = _mapping(metadata, "annotations", where)
    annotations.update(
        {
            ANNOTATION_MESSAGE_ID: envelope.id,
            ANNOTATION_DEFINITION: f"{definition.source}/{definition.key}",
            ANNOTATION_STARTS_AT: alert.starts_at,
        }
    )
    if run_id:
        annotations[ANNOTATION_RUN_ID] = run_id
    concurrency_target, cooldown_target = storm.concurrency_target(alert.labels), storm.cooldown_target(alert.labels)
    if concurrency_target:
        annotations[ANNOTATION_CONCURRENCY_TARGET] = concurrency_target
    if cooldown_target:
        annotations[ANNOTATION_COOLDOWN_TARGET] = cooldown_target
    if storm.breaker_failures is not None:
        # The wait leader reads from the ended Job what its failure does to the breaker
        annotations[ANNOTATION_BREAKER_FAILURES] = str(storm.breaker_failures)
        annotations[ANNOTATION_BREAKER_COOLDOWN] = f"{storm.breaker_cooldown_s:g}s"

    spec = _mapping(job, "spec", where)
    spec.setdefault("ttlSecondsAfterFinished", rules.default_ttl_s)
    pod_template = _mapping(spec, "template", where)
    if isinstance(pod_template.get("metadata"), dict) and isinstance(pod_template["metadata"].get("labels"), dict):
        _make_label_values_valid(pod_template["metadata"]["labels"])
    pod_spec = _mapping(pod_template, "spec", where)
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise RenderError(where, "spec.template.spec.containers must be a non-empty list")
    # Checked before the labels are added, so that a problem is named where the definition has it.
    body, dropped = _prune_unknown_fields(job, where)
    injected_env = [{"name": env_name(k), "value": escape_expansion(v)} for k, v in sorted(alert.labels.items())]
    for kind in ("initContainers", "containers"):
        for container in pod_spec.get(kind) or []:
            _inject_env(container, injected_env)
    size = len(orjson.dumps(body))
    if size > MAX_RENDERED_BYTES:
        # The labels every container gets are the alert's doing; the rest is the definition's.
        injected = len(orjson.dumps(injected_env)) * sum(len(pod_spec.get(kind) or []) for kind in ("initContainers", "containers"))
        message = f"the rendered Job has {size} bytes, over the limit of {MAX_RENDERED_BYTES}"
        if size - injected <= MAX_RENDERED_BYTES:
            raise Refused(where, f"{message}, because of the alert's labels", "too_large")
        raise RenderError(where, message)
    return RenderedJob(name=name, body=body, dropped_fields=dropped, storm=storm, concurrency_target=concurrency_target, cooldown_target=cooldown_target)


# Where a Job runs and with which rights is the definition's to say, never an alert's.
IDENTITY_FIELDS = (
    ("metadata", "namespace"),
    ("spec", "template", "metadata", "namespace"),
    ("spec", "template", "spec", "serviceAccountName"),
    ("spec", "template", "spec", "serviceAccount"),  # the deprecated alias
)


def _field(manifest: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        manifest = manifest.get(part) if isinstance(manifest, dict) else None
    return manifest


def _refuse_templated_identity(manifest: dict[str, Any], where: str) -> None:
    for path in IDENTITY_FIELDS:
        value = _field(manifest, path)
        if isinstance(value, str) and is_template(value):
            raise RenderError(where, f"{'.'.join(path)} may not be a template: alert data cannot choose it")


def service_account(manifest: dict[str, Any]) -> str:
    """The account the Job's pods run as: serviceAccountName, else its alias, else ``default``."""
    pod = _field(manifest, ("spec", "template", "spec"))
    pod = pod if isinstance(pod, dict) else {}
    return str(pod.get("serviceAccountName") or pod.get("serviceAccount") or "default")


def _refuse_forbidden_account(manifest: dict[str, Any], rules: JobRules, where: str) -> None:
    account = service_account(manifest)
    if rules.forbids(rules.job_namespace, account):
        raise RenderError(
            where,
            f"the Job would run as service account {account!r} in namespace {rules.job_namespace!r}, "
            "which Jobs may not use (the dispatcher's own, or OPENFERO_FORBIDDEN_SERVICE_ACCOUNTS)"
        )


def _add_finalizer(metadata: dict[str, Any], finalizer: str) -> None:
    finalizers = metadata.get("finalizers") or []
    if isinstance(finalizers, list) and finalizer not in finalizers:  # anything else fails the Job's validation below
        metadata["finalizers"] = [*finalizers, finalizer]


def _make_label_values_valid(labels: dict[str, Any]) -> None:
    for key, value in labels.items():
        labels[key] = label_value(value)


def _inject_env(container: dict[str, Any], injected: list[dict[str, str]]) -> None:
    env = container.get("env") or []  # a list of objects: checked against the Job's model already
    taken = {e.get("name") for e in env}
    # First, so that the definition's own values may refer to them: $(OPENFERO_POD).
    container["env"] = [dict(var) for var in injected if var["name"] not in taken] + env


def _prune_unknown_fields(job: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """Drop fields a batch/v1 Job does not have, as the API server does; reject wrong types."""
    dropped: list[str] = []
    try:
        model = V1Job.model_validate(job)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
    else:
        if _has_underscore_key(job):
            # The client's models also take fields by their Python names (service_account_name);
            # the API server does not know those and drops them: so do we, and say so.
            _drop_python_names(job, model.model_dump(by_alias=True, exclude_unset=True), (), dropped)
        return job, dropped
    problems = []
    for err in errors:
        if err["type"] == "extra_forbidden":
            _delete(job, err["loc"])
            dropped.append(_path(err["loc"]))
        else:
            problems.append(f"{_path(err['loc'])}: {err['msg']}")
    if problems:
        raise RenderError(where, "invalid Job: " + "; ".join(problems))
    return job, dropped


def _has_underscore_key(tree: Any) -> bool:
    if isinstance(tree, dict):
        return any("_" in str(k) or _has_underscore_key(v) for k, v in tree.items())
    if isinstance(tree, list):
        return any(_has_underscore_key(v) for v in tree)
    return False


def _drop_python_names(given: Any, dumped: Any, loc: tuple[Any, ...], dropped: list[str]) -> None:
    """Remove the keys of ``given`` that the model's dump by alias does not have (Python-named fields)."""
    if isinstance(given, dict) and isinstance(dumped, dict):
        for key in list(given):
            if key not in dumped:
                del given[key]
                dropped.append(_path((*loc, key)))
            else:
                _drop_python_names(given[key], dumped[key], (*loc, key), dropped)
    elif isinstance(given, list) and isinstance(dumped, list):
        for index, (a, b) in enumerate(zip(given, dumped, strict=False)):
            _drop_python_names(a, b, (*loc, index), dropped)


def _delete(obj: Any, loc: tuple[Any, ...]) -> None:
    for part in loc[:-1]:
        obj = obj[part]
    obj.pop(loc[-1], None)


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _mapping(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    if not isinstance(value, dict):
        raise RenderError(where, f"{key} must be an object")
    return value


def _kind(manifest: Any) -> Any:
    return manifest.get("kind") if isinstance(manifest, dict) else type(manifest).__name__
