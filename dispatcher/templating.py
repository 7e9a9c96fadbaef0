"""Templates in Job definitions: which engine renders a definition, and what templates see. No I/O here.

Every string value of a definition's Job that holds ``{{`` is a template;
any other string is left exactly as written (as in the Go original), so
shell text such as ``${#VAR}``, ``{%`` or ``#}`` is never touched. The
definition is parsed as YAML first and only then are its strings
rendered, so an alert's values are data: they land inside one string and
can never add a field or change the Job's structure.

Two engines, chosen per definition with the annotation
``openfero.io/template-engine`` (on the ConfigMap, the Operarius, or the
Job's own metadata):

- ``go``: Go's text/template, whole (dispatcher.gotemplate), over the Go
  original's data model, with ``missingkey=error``;
- ``jinja``: Jinja2's sandbox as openfero first offered it
  (dispatcher.jinja_sandbox), statements written ``{{% %}}``.

Without the annotation a definition is Go's when all its templates parse
as Go, else Jinja's when they all parse as that (definitions written for
openfero's first engine keep working; ``openfero validate`` says which
engine each one gets).

Whatever an action prints into a field the kubelet expands (``$(VAR)``)
is escaped there, by the caller's ``escape_at``; the definition's own text
is not.
"""

from __future__ import annotations

import functools
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dispatcher import gotemplate
from dispatcher.definitions import ENGINE_ANNOTATION
from dispatcher.jinja_sandbox import JinjaEngine
from dispatcher.naming import dns_label, label_value
from shared.envelope import Envelope

ENGINES = ("go", "jinja")

# The Jinja engine reads the Go original's forms too: inside {{ }}, a dot that starts
# a name and follows no name, bracket or quote is dropped (.Labels.pod -> Labels.pod).
_GO_DOT = re.compile(r"(?<![\w\])'\"])\.(?=[A-Za-z_])")
_EXPRESSION = re.compile(r"{{-?(.*?)-?}}", re.S)
_REFERENCE = r"\b(?:{names})(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*['\"]([^'\"]+)['\"]\s*\])"
_LABEL_REFERENCE = re.compile(_REFERENCE.format(names="Labels|labels"))
_ANNOTATION_REFERENCE = re.compile(_REFERENCE.format(names="Annotations|annotations"))


class TemplateError(ValueError):
    """A template that cannot be compiled or rendered; the message names the problem."""


class MissingValue(TemplateError):
    """The alert lacks a label or annotation the template reads: the alert's shape, not the definition's fault."""


# How each engine says a key of one of the data's maps (labels, annotations, the group's) is absent.
_GO_MISSING = re.compile(r"map has no entry for key ")
_JINJA_MISSING = re.compile(r"^'dict object' has no attribute ")


def shell_quote(value: Any) -> str:
    """``value`` as one word for a POSIX shell, outside double quotes."""
    return shlex.quote(str(value))


FUNCTIONS: dict[str, Callable[..., str]] = {
    "shell_quote": shell_quote,
    "name_safe": dns_label,
    "label_value": label_value,
}


def escape_for_kubelet(value: str, written: Sequence[str]) -> str:
    """What an action printed, written so that the kubelet's ``$(VAR)`` expansion yields it as it is.

    Every ``$`` is doubled. The text written before it counts too: a ``$``
    of the definition's left unpaired right before the value would pair
    with the value's first character (``$`` + ``(DB_PASSWORD)``), so it is
    paired; and a value inside a ``$(`` the definition opened would name the
    variable, which alert data may not choose.
    """
    if not value:
        return value
    dangling, inside_reference = _kubelet_state("".join(written))
    if inside_reference:
        raise TemplateError("a template inside $( ... ) would let alert data choose which variable the kubelet puts there")
    escaped = value.replace("$", "$$")
    return "$" + escaped if dangling else escaped


def _kubelet_state(text: str) -> tuple[bool, bool]:
    """(a lone ``$`` ends ``text``, ``text`` ends inside an unclosed ``$(``) as the kubelet scans it."""
    i = 0
    while True:
        i = text.find("$", i)
        if i == -1 or i == len(text) - 1:
            return i == len(text) - 1 and i != -1, False
        following = text[i + 1]
        if following == "$":
            i += 2
        elif following == "(":
            end = text.find(")", i + 2)
            if end == -1:
                return False, True
            i = end + 1
        else:
            i += 1


_GO_NAME = "template"
_GO_PREFIX = re.compile(rf"^template: {_GO_NAME}:")


def _go_message(exc: gotemplate.TemplateError) -> str:
    """Go's message without its 'template: NAME:' prefix: the caller names the field."""
    return _GO_PREFIX.sub("line ", str(exc))


_JINJA = JinjaEngine(FUNCTIONS)


def is_template(text: str) -> bool:
    return "{{" in text


def go_to_jinja(text: str) -> str:
    """``{{ .Alert.Labels.pod }}`` -> ``{{ Alert.Labels.pod }}``, for the Jinja engine."""
    return _EXPRESSION.sub(lambda m: "{{" + _GO_DOT.sub("", m.group(0)[2:-2]) + "}}", text)


# -- compiling -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _compile_go(text: str) -> gotemplate.Template:
    return gotemplate.parse(text, name=_GO_NAME, funcs=FUNCTIONS)


def _compile_jinja(text: str) -> Any:
    return _JINJA.compile(go_to_jinja(text))


def _compile(engine: str, text: str) -> Any:
    try:
        return _compile_go(text) if engine == "go" else _compile_jinja(text)
    except gotemplate.TemplateError as exc:
        raise TemplateError(f"template syntax error: {_go_message(exc)}") from None
    except Exception as exc:  # Jinja's syntax and sandbox errors
        raise TemplateError(f"template syntax error: {getattr(exc, 'message', None) or exc}") from None


@dataclass(frozen=True)
class EngineChoice:
    engine: str
    declared: bool  # by the annotation; else chosen by what the templates parse as
    go_error: str = ""  # why the Go engine was not chosen, when it was not


def _compile_all(engine: str, fields: tuple[tuple[str, str], ...]) -> None:
    for path, text in fields:
        try:
            _compile(engine, text)
        except TemplateError as exc:
            raise TemplateError(f"{path}: {exc}" if path else str(exc)) from None


@functools.lru_cache(maxsize=1024)
def choose_engine(fields: tuple[tuple[str, str], ...], declared: str = "") -> EngineChoice:
    """The engine for a definition's templated (field, text) pairs; TemplateError, naming the field, when none fits."""
    if declared:
        if declared not in ENGINES:
            raise TemplateError(f"annotation {ENGINE_ANNOTATION}: {declared!r} is not one of {', '.join(ENGINES)}")
        _compile_all(declared, fields)
        return EngineChoice(declared, declared=True)
    try:
        _compile_all("go", fields)
        return EngineChoice("go", declared=False)
    except TemplateError as exc:
        go_error = str(exc)
    try:
        _compile_all("jinja", fields)
    except TemplateError:
        raise TemplateError(go_error) from None
    return EngineChoice("jinja", declared=False, go_error=go_error)


# -- what templates see --------------------------------------------------------------------


def _views(envelope: Envelope) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The alert, the webhook (HookMessage) and the top level, with the Go original's names."""
    alert, group = envelope.alert, envelope.group
    go_alert = {
        "Labels": alert.labels,
        "Annotations": alert.annotations,
        "StartsAt": alert.starts_at,
        "EndsAt": alert.ends_at,
        "Status": alert.status,
        "Fingerprint": alert.fingerprint,
        "GeneratorURL": alert.generator_url,
    }
    hook = {
        "Version": group.version,
        "GroupKey": group.group_key,
        "TruncatedAlerts": group.truncated_alerts,
        "Status": group.status,
        "Receiver": group.receiver,
        "GroupLabels": group.group_labels,
        "CommonLabels": group.common_labels,
        "CommonAnnotations": group.common_annotations,
        "ExternalURL": group.external_url,
    }
    top = {
        "Labels": alert.labels,
        "Annotations": alert.annotations,
        "Status": alert.status,
        "Fingerprint": alert.fingerprint,
        "GroupKey": group.group_key,
        "Receiver": group.receiver,
        "ExternalURL": group.external_url,
    }
    return go_alert, hook, top


def go_data(envelope: Envelope) -> gotemplate.GoStruct:
    """The Go original's data model. ``.Status`` is the alert's own: openfero handles each alert alone."""
    go_alert, hook, top = _views(envelope)
    return gotemplate.GoStruct(
        "Data", {"Alert": gotemplate.GoStruct("Alert", go_alert), "HookMessage": gotemplate.GoStruct("HookMessage", hook), **top}
    )


def jinja_data(envelope: Envelope) -> dict[str, Any]:
    """What Jinja templates see: lower-case names, and the Go original's names."""
    alert, group = envelope.alert, envelope.group
    alert_view = {
        "labels": alert.labels,
        "annotations": alert.annotations,
        "status": alert.status,
        "startsAt": alert.starts_at,
        "endsAt": alert.ends_at,
        "fingerprint": alert.fingerprint,
        "generatorURL": alert.generator_url,
    }
    group_view = {
        "groupKey": group.group_key,
        "receiver": group.receiver,
        "status": group.status,
        "groupLabels": group.group_labels,
        "commonLabels": group.common_labels,
        "commonAnnotations": group.common_annotations,
        "externalURL": group.external_url,
    }
    go_alert, hook, top = _views(envelope)
    return {"alert": alert_view, "group": group_view, "Alert": go_alert, "HookMessage": hook, **top}


# -- rendering -----------------------------------------------------------------------------


# What rendering one definition may cost in all: its Go templates share this many steps (one
# template may take 100,000), and its Jinja templates this long, checked between strings.
DEFINITION_STEPS = 200_000
DEFINITION_JINJA_S = 0.25


def render_string(text: str, engine: str, data: Any, escape: bool = False, budget: gotemplate.Budget | None = None) -> str:
    """One string rendered; ``escape`` doubles ``$`` in what the actions print."""
    if not is_template(text):
        return text
    template = _compile(engine, text)
    try:
        if engine == "go":
            return str(template.execute(data, escape=escape_for_kubelet if escape else None, budget=budget))  # str(): _compile's Any
        return str(template.render(data, escape_for_kubelet if escape else None))
    except TemplateError:
        raise
    except gotemplate.TemplateError as exc:
        error = MissingValue if _GO_MISSING.search(str(exc)) else TemplateError
        raise error(f"template error: {_go_message(exc)}") from None
    except Exception as exc:  # Jinja: an undefined value, a filter or a sandbox refusal, on alert data
        message = getattr(exc, "message", None) or str(exc)
        if type(exc).__name__ == "UndefinedError":
            error = MissingValue if _JINJA_MISSING.search(message) else TemplateError
            raise error(f"undefined value: {message}") from None
        raise TemplateError(f"template error: {type(exc).__name__}: {message}") from None


def render_tree(tree: Any, envelope: Envelope, declared_engine: str, escape_at: Callable[[str], bool]) -> Any:
    """A copy of ``tree`` with every template rendered; TemplateError names the field."""
    fields = tuple(templated_fields(tree))
    if not fields:
        return _copy(tree)
    choice = choose_engine(fields, declared_engine)
    data = go_data(envelope) if choice.engine == "go" else jinja_data(envelope)
    budget = gotemplate.Budget(DEFINITION_STEPS)
    deadline = time.perf_counter() + DEFINITION_JINJA_S

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(item, f"{path}[{i}]") for i, item in enumerate(node)]
        if isinstance(node, str) and is_template(node):
            if choice.engine == "jinja" and time.perf_counter() > deadline:
                raise TemplateError(f"{path}: rendering the definition's templates took over {DEFINITION_JINJA_S:g} s (its limit)")
            if budget.steps <= 0:
                raise TemplateError(f"{path}: the definition's templates took over {DEFINITION_STEPS} steps in all (its limit)")
            try:
                return render_string(node, choice.engine, data, escape_at(path), budget)
            except TemplateError as exc:
                raise type(exc)(f"{path}: {exc}") from None
        return node

    return walk(tree, "")


def _copy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _copy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_copy(v) for v in tree]
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


# -- what templates read, for `openfero validate` ------------------------------------------


def _go_references(text: str, maps: tuple[tuple[str, ...], ...]) -> set[str]:
    try:
        chains = _compile_go(text).referenced_fields()
    except gotemplate.TemplateError:
        return set()
    return {chain[len(prefix)] for chain in chains for prefix in maps if chain[: len(prefix)] == prefix and len(chain) > len(prefix)}


_LABEL_MAPS = (("Labels",), ("Alert", "Labels"))
_ANNOTATION_MAPS = (("Annotations",), ("Alert", "Annotations"))


def referenced_labels(text: str) -> set[str]:
    """Alert label names a template reads (Go: ``.Labels.x``, ``index .Labels "x"``; Jinja: ``labels.x``, ``labels['x']``)."""
    jinja = {dotted or quoted for dotted, quoted in _LABEL_REFERENCE.findall(go_to_jinja(text))}
    return jinja | _go_references(text, _LABEL_MAPS)


def referenced_annotations(text: str) -> set[str]:
    """Alert annotation names a template reads."""
    jinja = {dotted or quoted for dotted, quoted in _ANNOTATION_REFERENCE.findall(go_to_jinja(text))}
    return jinja | _go_references(text, _ANNOTATION_MAPS)
