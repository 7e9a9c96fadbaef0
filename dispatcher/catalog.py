"""The catalog: every definition the dispatcher knows, and which one an alert gets.

It holds the ConfigMap definitions and the Operarii, each fed by its own
list+watch (dispatcher.watching) or read from files. Lookups never call
the API. An Operarius that matches wins over a ConfigMap: it was written
to select alerts, with a priority; the ConfigMap form is the fallback that
keeps the Go original's definitions working.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import yaml

from dispatcher.metrics import DEFINITIONS
from dispatcher.definitions import Definition, Lookup, configmap_definitions
from dispatcher.naming import configmap_name
from dispatcher.operarii import KIND, InvalidOperarius, Operarius, select
from shared.envelope import Alert

log = logging.getLogger("openfero.definitions")


class Catalog:
    def __init__(self) -> None:
        self._configmaps: dict[str, dict[str, Definition]] = {}
        self._operarii: dict[tuple[str, str], Operarius] = {}
        self._lock = threading.Lock()
        self.configmaps_synced = threading.Event()
        self.operarii_synced = threading.Event()

    @property
    def synced(self) -> bool:
        return self.configmaps_synced.is_set() and self.operarii_synced.is_set()

    def lookup(self, alert: Alert) -> Lookup:
        name = configmap_name(alert.alertname, alert.status)
        chosen = select(self._operarii.values(), alert)
        if chosen is not None:
            return Lookup(chosen.definition, name, operarius=chosen.key)
        entries = self._configmaps.get(name)
        if entries is None:
            return Lookup(None, name)
        definition = entries.get(alert.alertname)
        return Lookup(definition, name, missing_key=definition is None)

    def data_keys(self, configmap: str) -> list[str]:
        """The data keys of a ConfigMap definition, sorted; none if there is no such ConfigMap."""
        return sorted(self._configmaps.get(configmap, {}))

    def operarius(self, key: tuple[str, str]) -> Operarius | None:
        return self._operarii.get(key)

    def knows(self, kind: str, namespace: str, name: str) -> bool:
        """Whether the definition a Job names (kind Operarius or ConfigMap) exists now."""
        if kind == KIND:
            return (namespace, name) in self._operarii
        return name in self._configmaps  # one namespace: the definitions namespace

    def __len__(self) -> int:
        return len(self._configmaps) + len(self._operarii)

    def _count(self) -> None:
        DEFINITIONS.labels("ConfigMap").set(sum(len(d) for d in self._configmaps.values()))
        DEFINITIONS.labels("Operarius").set(len(self._operarii))

    # -- ConfigMaps --------------------------------------------------------------------

    def replace_configmaps(self, configmaps: list[dict[str, Any]]) -> None:
        fresh = {cm["metadata"]["name"]: configmap_definitions(cm) for cm in configmaps}
        with self._lock:
            self._configmaps = fresh
            self._count()
        self.configmaps_synced.set()

    def apply_configmap(self, event_type: str, configmap: dict[str, Any]) -> None:
        name = configmap["metadata"]["name"]
        with self._lock:
            updated = dict(self._configmaps)
            if event_type == "DELETED":
                updated.pop(name, None)
            else:
                updated[name] = configmap_definitions(configmap)
            self._configmaps = updated
            self._count()

    # -- Operarii ------------------------------------------------------------------------

    def replace_operarii(self, resources: list[dict[str, Any]]) -> None:
        fresh = {}
        for obj in resources:
            operarius = self._read(obj)
            if operarius is not None:
                fresh[operarius.key] = operarius
        with self._lock:
            self._operarii = fresh
            self._count()
        self.operarii_synced.set()

    def apply_operarius(self, event_type: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        operarius = None if event_type == "DELETED" else self._read(obj)
        with self._lock:
            updated = dict(self._operarii)
            updated.pop(key, None)
            if operarius is not None:
                updated[key] = operarius
            self._operarii = updated
            self._count()

    @staticmethod
    def _read(obj: dict[str, Any]) -> Operarius | None:
        try:
            return Operarius.from_resource(obj)
        except (InvalidOperarius, KeyError, TypeError, ValueError) as exc:
            # One broken resource must not hide the others; it selects nothing.
            log.error(
                "Operarius ignored: %s",
                exc,
                extra={"event": "definitions.invalid", "object": (obj.get("metadata") or {}).get("name")},
            )
            return None


def manifest_files(paths: list[Path]) -> list[Path]:
    """The YAML files among ``paths``, folders searched."""
    files: list[Path] = []
    for path in paths:
        files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
    return files


def load_files(paths: Path | list[Path], catalog: Catalog) -> None:
    """Fill ``catalog`` from the ConfigMap and Operarius manifests in files or folders of them.

    Each manifest without a namespace is given its file's path as one, so
    that messages say where a definition came from.
    """
    configmaps, operarii = [], []
    for file in manifest_files(paths if isinstance(paths, list) else [paths]):
        for doc in yaml.safe_load_all(file.read_text()):
            if not isinstance(doc, dict):
                continue
            doc.setdefault("metadata", {}).setdefault("namespace", str(file))
            if doc.get("kind") == "ConfigMap":
                configmaps.append(doc)
            elif doc.get("kind") == KIND:
                operarii.append(doc)
    catalog.replace_configmaps(configmaps)
    catalog.replace_operarii(operarii)
