"""Job definitions: what one is, and where the ConfigMap form keeps it. No I/O here.

A ConfigMap definition for alert ``A`` with status ``S`` is the ConfigMap
named ``openfero-<a>-<s>`` (``A`` lower-cased, dispatcher.naming) that matches the definition
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
# Most values a definition may hold once YAML's aliases are expanded: a few hundred bytes of
# nested aliases can stand for billions (every walk of the manifest would visit them all).
MAX_EXPANDED_NODES = 100_000


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
            manifest = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            hint = ' (a value that starts with {{ must be quoted: value: "{{ .Labels.pod }}")' if "{{" in text else ""
            return cls(source, key, text, parse_error=f"not valid YAML{hint}: {exc}", annotations=annotations)
        size = expanded_size(manifest)
        if size > MAX_EXPANDED_NODES:
            problem = f"{size} values once its YAML aliases are expanded, over the limit of {MAX_EXPANDED_NODES}"
            return cls(source, key, text, parse_error=problem, annotations=annotations)
        return cls(source, key, text, manifest=manifest, annotations=annotations)


def expanded_size(tree: Any) -> int:
    """How many values ``tree`` holds with every shared (aliased) part counted each time it appears.

    Counted once per distinct object, so it takes time linear in the YAML
    text, however far its aliases would expand.
    """
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        if isinstance(node, (dict, list)):
            known = sizes.get(id(node))
            if known is None:
                children = node.values() if isinstance(node, dict) else node
                known = sizes[id(node)] = 1 + sum(min(size(child), MAX_EXPANDED_NODES + 1) for child in children)
            return known
        return 1

    return size(tree)


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
