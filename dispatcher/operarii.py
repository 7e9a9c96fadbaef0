"""The Operarius custom resource (openfero.io/v1alpha1): selecting a definition for an alert. No I/O here.

Field-compatible with the Go original's Operarius::

    spec:
      alertSelector:
        alertname: KubePodCrashLooping     # optional
        status: firing                     # optional: firing, resolved
        labels: {severity: critical}       # optional: equality on alert labels
        matchers: ['namespace=~"prod-.*"', 'team!=ops']   # beyond the original
      jobTemplate: {metadata: ..., spec: ...}   # a Job's metadata and spec
      priority: 80          # the highest priority among matching ones wins
      enabled: true
      deduplication: {enabled: true, ttl: 300}

Matchers are Alertmanager's: ``=``, ``!=``, ``=~``, ``!~``, regexes anchored
at both ends, the value optionally double-quoted. Among enabled Operarii
that match, the highest ``priority`` wins; a tie goes to the first by
namespace, then name, in alphabetical order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dispatcher.definitions import Definition
from dispatcher.rendering import ANNOTATION_RERUN_AFTER
from shared.envelope import Alert

GROUP = "openfero.io"
VERSION = "v1alpha1"
PLURAL = "operariuses"
KIND = "Operarius"

_MATCHER = re.compile(r'^\s*([^\s=!~]+)\s*(=~|!~|!=|=)\s*(.*?)\s*$')


class InvalidOperarius(ValueError):
    """An Operarius whose selector cannot be understood."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    pattern: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = _MATCHER.match(text)
        if m is None:
            raise InvalidOperarius(f"matcher {text!r}: expected NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX")
        name, op, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        pattern = None
        if op in ("=~", "!~"):
            try:
                pattern = re.compile(f"(?:{value})")
            except re.error as exc:
                raise InvalidOperarius(f"matcher {text!r}: bad regex: {exc}") from None
        return cls(name, op, value, pattern)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")  # a missing label matches as empty, as in Alertmanager
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class Operarius:
    namespace: str
    name: str
    definition: Definition
    alertname: str | None = None
    status: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    matchers: tuple[Matcher, ...] = ()
    priority: int = 0
    enabled: bool = True
    status_view: dict[str, Any] = field(default_factory=dict)  # .status as last seen

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def matches(self, alert: Alert) -> bool:
        return (
            self.enabled
            and (self.alertname is None or alert.alertname == self.alertname)
            and (self.status is None or alert.status == self.status)
            and all(alert.labels.get(k) == v for k, v in self.labels.items())
            and all(m.matches(alert.labels) for m in self.matchers)
        )

    @classmethod
    def from_resource(cls, obj: dict[str, Any]) -> Operarius:
        """Read a resource; a selector that cannot be understood raises InvalidOperarius."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        namespace, name = meta.get("namespace", ""), meta["name"]
        selector = spec.get("alertSelector") or {}
        template = spec.get("jobTemplate") or {}
        manifest = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {**(template.get("metadata") or {}), "name": (template.get("metadata") or {}).get("name") or name},
            "spec": template.get("spec"),
        }
        annotations = {}
        dedup = spec.get("deduplication") or {}
        # The original's dedup window maps onto rerun-after: one run per occurrence per window.
        if dedup.get("enabled") and int(dedup.get("ttl") or 0) > 0:
            annotations[ANNOTATION_RERUN_AFTER] = f"{int(dedup['ttl'])}s"
        definition = Definition(
            source=f"{namespace}/{KIND}/{name}", key="jobTemplate", text="", manifest=manifest, annotations=annotations
        )
        return cls(
            namespace=namespace,
            name=name,
            definition=definition,
            alertname=selector.get("alertname") or None,
            status=selector.get("status") or None,
            labels={str(k): str(v) for k, v in (selector.get("labels") or {}).items()},
            matchers=tuple(Matcher.parse(m) for m in selector.get("matchers") or []),
            priority=int(spec.get("priority") or 0),
            enabled=spec.get("enabled", True) is not False,
            status_view=dict(obj.get("status") or {}),
        )


def select(operarii: Iterable[Operarius], alert: Alert) -> Operarius | None:
    """The enabled Operarius for ``alert``: highest priority, then namespace, then name."""
    matching = [o for o in operarii if o.matches(alert)]
    if not matching:
        return None
    return min(matching, key=lambda o: (-o.priority, o.namespace, o.name))
