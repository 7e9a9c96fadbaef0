"""Templates in Job definitions: Jinja2's sandbox, strict, over string values only. No I/O here.

Every string value of a definition's Job may be a template. The definition
is parsed as YAML first and only then are its strings rendered, so an
alert's values are data: they land inside one string and can never add a
field, change the structure or reach another part of the manifest.

The Go original's forms work unchanged: ``{{ .Alert.Labels.pod }}``,
``{{ .Labels.namespace }}``, ``{{ .Status }}``, ``{{ .GroupKey }}``,
``{{ .HookMessage.Status }}`` ... A leading dot inside ``{{ }}`` is simply
dropped, which turns them into Jinja expressions over the same names.
"""

from __future__ import annotations

import functools
import re
import shlex
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.envelope import Envelope

_MARKERS = ("{{", "{%", "{#")
# Inside {{ ... }}: a dot that starts a name and follows no name, bracket or quote.
_GO_DOT = re.compile(r"(?<![\w\])'\"])\.(?=[A-Za-z_])")
_EXPRESSION = re.compile(r"{{-?(.*?)-?}}", re.S)
_REFERENCE = r"\b(?:{names})(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*['\"]([^'\"]+)['\"]\s*\])"
_LABEL_REFERENCE = re.compile(_REFERENCE.format(names="Labels|labels"))
_ANNOTATION_REFERENCE = re.compile(_REFERENCE.format(names="Annotations|annotations"))


class TemplateError(ValueError):
    """A template that cannot be compiled or rendered; the message names the problem."""


def _name_safe(value: Any) -> str:
    """A DNS-1123 label: lower case, [a-z0-9-], at most 63 characters."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", str(value).lower()).strip("-")
    return cleaned[:63].rstrip("-")


def _label_value(value: Any) -> str:
    cleaned = re.sub(r"[^-A-Za-z0-9_.]", "_", str(value))[:63]
    return cleaned.strip("-_.")


def _environment() -> jinja2.Environment:
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters.update(
        shell_quote=lambda value: shlex.quote(str(value)),
        name_safe=_name_safe,
        label_value=_label_value,
    )
    return env


_ENV = _environment()


def is_template(text: str) -> bool:
    return any(marker in text for marker in _MARKERS)


def go_to_jinja(text: str) -> str:
    """``{{ .Alert.Labels.pod }}`` -> ``{{ Alert.Labels.pod }}``; Jinja text passes unchanged."""
    return _EXPRESSION.sub(lambda m: "{{" + _GO_DOT.sub("", m.group(0)[2:-2]) + "}}", text)


@functools.lru_cache(maxsize=4096)
def compile_template(text: str) -> jinja2.Template:
    try:
        return _ENV.from_string(go_to_jinja(text))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from None


def referenced_labels(text: str) -> set[str]:
    """Alert label names a template reads (``.Labels.x``, ``labels.x``, ``labels['x']``)."""
    return {dotted or quoted for dotted, quoted in _LABEL_REFERENCE.findall(go_to_jinja(text))}


def referenced_annotations(text: str) -> set[str]:
    """Alert annotation names a template reads."""
    return {dotted or quoted for dotted, quoted in _ANNOTATION_REFERENCE.findall(go_to_jinja(text))}


def context(envelope: Envelope) -> dict[str, Any]:
    """What templates see: Jinja-style lower-case names, and the Go original's names."""
    alert, group = envelope.alert, envelope.group
    alert_view = {
        "labels": alert.labels,
        "annotations": alert.annotations,
        "status": alert.status,
        "startsAt": alert.startsAt,
        "endsAt": alert.endsAt,
        "fingerprint": alert.fingerprint,
        "generatorURL": alert.generatorURL,
    }
    group_view = {
        "groupKey": group.groupKey,
        "receiver": group.receiver,
        "status": group.status,
        "groupLabels": group.groupLabels,
        "commonLabels": group.commonLabels,
        "commonAnnotations": group.commonAnnotations,
        "externalURL": group.externalURL,
    }
    go_alert = {
        "Labels": alert.labels,
        "Annotations": alert.annotations,
        "Status": alert.status,
        "StartsAt": alert.startsAt,
        "EndsAt": alert.endsAt,
        "Fingerprint": alert.fingerprint,
        "GeneratorURL": alert.generatorURL,
    }
    hook = {
        "Status": group.status,
        "Receiver": group.receiver,
        "GroupKey": group.groupKey,
        "GroupLabels": group.groupLabels,
        "CommonLabels": group.commonLabels,
        "CommonAnnotations": group.commonAnnotations,
        "ExternalURL": group.externalURL,
    }
    return {
        "alert": alert_view,
        "group": group_view,
        "Alert": go_alert,
        "HookMessage": hook,
        "Labels": alert.labels,
        "Annotations": alert.annotations,
        "Status": alert.status,
        "Fingerprint": alert.fingerprint,
        "GroupKey": group.groupKey,
        "Receiver": group.receiver,
        "ExternalURL": group.externalURL,
    }


def render_string(text: str, variables: dict[str, Any]) -> str:
    if not is_template(text):
        return text
    template = compile_template(text)
    try:
        return template.render(variables)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"undefined value: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template error: {exc}") from None
    except Exception as exc:  # a filter or a sandbox refusal, on alert data
        raise TemplateError(f"template error: {type(exc).__name__}: {exc}") from None


def render_tree(tree: Any, variables: dict[str, Any], path: str = "") -> Any:
    """A copy of ``tree`` with every string value rendered; TemplateError names the field."""
    if isinstance(tree, dict):
        return {key: render_tree(value, variables, f"{path}.{key}" if path else str(key)) for key, value in tree.items()}
    if isinstance(tree, list):
        return [render_tree(item, variables, f"{path}[{i}]") for i, item in enumerate(tree)]
    if isinstance(tree, str):
        try:
            return render_string(tree, variables)
        except TemplateError as exc:
            raise TemplateError(f"{path}: {exc}") from None
    return tree


def templated_fields(tree: Any, path: str = "") -> list[tuple[str, str]]:
    """(field, text) of every string value that is a template."""
    found: list[tuple[str, str]] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += templated_fields(value, f"{path}.{key}" if path else str(key))
    elif isinstance(tree, list):
        for i, item in enumerate(tree):
            found += templated_fields(item, f"{path}[{i}]")
    elif isinstance(tree, str) and is_template(tree):
        found.append((path, tree))
    return found
