"""Job definitions: what one is, and where the ConfigMap form keeps it. No I/O here.

A ConfigMap definition for alert ``A`` with status ``S`` is the ConfigMap
named ``openfero-<a>-<s>`` (``A`` lower-cased) that matches the definition
selector, and within it the data key ``A`` as the alert spells it. The
Operarius form is in ``dispatcher.operarii``; ``dispatcher.catalog`` holds
both and chooses between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

# Named here, not in dispatcher.templating, so that a definition knows its engine without importing one.
ENGINE_ANNOTATION = "openfero.io/template-engine"


def configmap_name(alertname: str, status: str) -> str:
    return f"openfero-{alertname.lower()}-{status}"


@dataclass(frozen=True)
class Definition:
    """One definition's text, parsed once when it arrives."""

    source: str  # "<namespace>/<configmap>", for messages
    key: str
    text: str
    manifest: Any = None
    parse_error: str = ""
    annotations: dict[str, str] = field(default_factory=dict)  # the ConfigMap's (or the Operarius')
    operarius: str = ""  # the Operarius' name, when the definition is one

    @property
    def engine(self) -> str:
        """The template engine the definition asks for, or "" to choose by what its templates parse as."""
        meta = self.manifest.get("metadata") if isinstance(self.manifest, dict) else None
        own = (meta.get("annotations") or {}) if isinstance(meta, dict) else {}
        declared = self.annotations.get(ENGINE_ANNOTATION) or (own.get(ENGINE_ANNOTATION) if isinstance(own, dict) else None)
        return str(declared or "").strip().lower()

    @classmethod
    def parse(cls, source: str, key: str, text: str, annotations: dict[str, str] | None = None) -> Definition:
        annotations = annotations or {}
        try:
            return cls(source, key, text, manifest=yaml.safe_load(text), annotations=annotations)
        except yaml.YAMLError as exc:
            hint = ' (a value that starts with {{ must be quoted: value: "{{ .Labels.pod }}")' if "{{" in text else ""
            return cls(source, key, text, parse_error=f"not valid YAML{hint}: {exc}", annotations=annotations)


@dataclass(frozen=True)
class Lookup:
    """What a lookup found: a definition, or why there is none."""

    definition: Definition | None
    configmap: str
    missing_key: bool = False
    operarius: tuple[str, str] | None = None  # (namespace, name) when an Operarius was chosen


def configmap_definitions(configmap: dict[str, Any]) -> dict[str, Definition]:
    """The definitions of one ConfigMap, by data key."""
    meta = configmap["metadata"]
    source = f"{meta.get('namespace', '')}/{meta['name']}"
    data = configmap.get("data") or {}
    annotations = meta.get("annotations") or {}
    return {key: Definition.parse(source, key, text, annotations) for key, text in data.items()}
