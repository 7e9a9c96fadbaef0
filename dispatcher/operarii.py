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

Matchers are Alertmanager's, parsed and evaluated by ``dispatcher.matching``
(its grammar, RE2 regexes anchored at both ends); one entry may hold several
(``'{team="web", severity=~"crit.*"}'``), and every matcher of every entry
must match. They are parsed and their regexes compiled once, when the
Operarius is read; one that cannot be makes the whole Operarius invalid.
Matchers and ``labels`` read an alert's labels as its Job will see them
(``dispatcher.naming.AsTheJobSeesThem``): a guard on ``namespace`` also sees
a label spelled ``NAMESPACE``, which would become the Job's
``OPENFERO_NAMESPACE``.
Among enabled Operarii that match, the highest ``priority`` wins; a tie goes
to the first by namespace, then name, in alphabetical order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dispatcher.definitions import MAX_EXPANDED_NODES, Definition, expanded_size
from dispatcher.matching import InvalidMatcher, Matcher, matches_all, parse
from dispatcher.naming import AsTheJobSeesThem
from dispatcher.rendering import ANNOTATION_RERUN_AFTER
from dispatcher.silences import ANNOTATION_AFTER_SUCCESS, ANNOTATION_SILENCE
from dispatcher.storm import (
    ANNOTATION_BREAKER_COOLDOWN,
    ANNOTATION_BREAKER_FAILURES,
    ANNOTATION_CONCURRENCY,
    ANNOTATION_CONCURRENCY_KEY,
    ANNOTATION_COOLDOWN,
    ANNOTATION_COOLDOWN_KEY,
)
from shared.envelope import Alert

GROUP = "openfero.io"
VERSION = "v1alpha1"
PLURAL = "operariuses"
KIND = "Operarius"

class InvalidOperarius(ValueError):
    """An Operarius whose selector cannot be understood."""


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

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def matches(self, alert: Alert, seen: Mapping[str, str] | None = None) -> bool:
        """Whether the Operarius selects ``alert``; its labels are read as the Job will see them."""
        seen = AsTheJobSeesThem(alert.labels) if seen is None else seen
        return (
            self.enabled
            and (self.alertname is None or alert.alertname == self.alertname)
            and (self.status is None or alert.status == self.status)
            and all(seen.get(k) == v for k, v in self.labels.items())
            and matches_all(self.matchers, seen)
        )

    @classmethod
    def from_resource(cls, obj: dict[str, Any]) -> Operarius:
        """Read a resource; a selector that cannot be understood raises InvalidOperarius."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        namespace, name = meta.get("namespace", ""), meta["name"]
        selector = spec.get("alertSelector") or {}
        template = spec.get("jobTemplate") or {}
        if expanded_size(template) > MAX_EXPANDED_NODES:  # YAML aliases, in a file read by `openfero render`
            raise InvalidOperarius(f"spec.jobTemplate holds over {MAX_EXPANDED_NODES} values once its YAML aliases are expanded")
        manifest = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {**(template.get("metadata") or {}), "name": (template.get("metadata") or {}).get("name") or name},
            "spec": template.get("spec"),
        }
        # The Operarius' own annotations that speak of its Job, such as openfero.io/template-engine.
        annotations = {k: str(v) for k, v in (meta.get("annotations") or {}).items() if str(k).startswith("openfero.io/")}
        dedup = spec.get("deduplication") or {}
        # The original's dedup window maps onto rerun-after: one run per occurrence per window.
        if dedup.get("enabled") and int(dedup.get("ttl") or 0) > 0:
            annotations[ANNOTATION_RERUN_AFTER] = f"{int(dedup['ttl'])}s"
        # spec.silence maps onto the ConfigMap form's annotations, and wins over the Operarius' own.
        silence = spec.get("silence")
        if isinstance(silence, dict):
            if "enabled" in silence:
                annotations[ANNOTATION_SILENCE] = "true" if silence["enabled"] is True else "false"
            if silence.get("afterSuccess") is not None:
                annotations[ANNOTATION_AFTER_SUCCESS] = str(silence["afterSuccess"])
        annotations.update(_storm_annotations(spec.get("stormControl")))
        definition = Definition(
            source=f"{namespace}/{KIND}/{name}", key="jobTemplate", text="", manifest=manifest, annotations=annotations, operarius=name
        )
        return cls(
            namespace=namespace,
            name=name,
            definition=definition,
            alertname=selector.get("alertname") or None,
            status=selector.get("status") or None,
            labels={str(k): str(v) for k, v in (selector.get("labels") or {}).items()},
            matchers=_read_matchers(selector.get("matchers")),
            priority=int(spec.get("priority") or 0),
            enabled=spec.get("enabled", True) is not False,
        )


def _storm_annotations(storm: Any) -> dict[str, str]:
    """spec.stormControl as the ConfigMap form's annotations (dispatcher.storm), which it wins over."""
    if not isinstance(storm, dict):
        return {}
    out: dict[str, str] = {}
    breaker: dict[str, Any] = storm["breaker"] if isinstance(storm.get("breaker"), dict) else {}
    for value, annotation in (
        (storm.get("concurrency"), ANNOTATION_CONCURRENCY),
        (storm.get("cooldown"), ANNOTATION_COOLDOWN),
        (breaker.get("failures"), ANNOTATION_BREAKER_FAILURES),
        (breaker.get("cooldown"), ANNOTATION_BREAKER_COOLDOWN),
    ):
        if value is not None:
            out[annotation] = str(value)
    for field_name, annotation in (("concurrencyKey", ANNOTATION_CONCURRENCY_KEY), ("cooldownKey", ANNOTATION_COOLDOWN_KEY)):
        key = storm.get(field_name)
        if isinstance(key, list):
            out[annotation] = ",".join(str(label) for label in key)
    return out


# What one Operarius' selector may cost for each alert; ordinary ones use a few percent of it.
MAX_MATCHERS = 64
MAX_PROGRAM_TOTAL = 8000


def _read_matchers(entries: Any) -> tuple[Matcher, ...]:
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise InvalidOperarius("spec.alertSelector.matchers must be a list of strings")
    matchers: list[Matcher] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidOperarius(f"matcher {entry!r}: must be a string")
        try:
            matchers.extend(parse(entry))
        except InvalidMatcher as exc:
            raise InvalidOperarius(str(exc)) from None
    program = sum(m.regex.programsize for m in matchers if m.regex is not None)
    if len(matchers) > MAX_MATCHERS or program > MAX_PROGRAM_TOTAL:
        raise InvalidOperarius(
            f"{len(matchers)} matchers compiling to {program} RE2 instructions: over the limit of {MAX_MATCHERS} matchers "
            f"and {MAX_PROGRAM_TOTAL} instructions for one Operarius (each alert is matched against all of them)"
        )
    return tuple(matchers)


def select(operarii: Iterable[Operarius], alert: Alert) -> Operarius | None:
    """The enabled Operarius for ``alert``: highest priority, then namespace, then name."""
    seen = AsTheJobSeesThem(alert.labels)
    matching = [o for o in operarii if o.matches(alert, seen)]
    if not matching:
        return None
    return min(matching, key=lambda o: (-o.priority, o.namespace, o.name))
