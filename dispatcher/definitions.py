"""Job definitions, kept in memory and fed by a list+watch of ConfigMaps.

A definition for alert ``A`` with status ``S`` is the ConfigMap named
``openfero-<a>-<s>`` (``A`` lower-cased) that matches the definition
selector, and within it the data key ``A`` as the alert spells it. Lookups
never call the API: a background thread lists once, then watches from the
list's resourceVersion, relists when the watch expires (410 Gone) and
starts again after API errors.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("openfero.definitions")


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
    annotations: dict[str, str] = field(default_factory=dict)  # the ConfigMap's

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


class DefinitionStore:
    """Thread-safe map of ConfigMap name -> its definitions, by data key."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, Definition]] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()

    def lookup(self, alertname: str, status: str) -> Lookup:
        name = configmap_name(alertname, status)
        entries = self._by_name.get(name)
        if entries is None:
            return Lookup(None, name)
        definition = entries.get(alertname)
        return Lookup(definition, name, missing_key=definition is None)

    def replace_all(self, configmaps: list[dict[str, Any]]) -> None:
        fresh = {cm["metadata"]["name"]: self._definitions_of(cm) for cm in configmaps}
        with self._lock:
            self._by_name = fresh
        self.synced.set()

    def apply(self, event_type: str, configmap: dict[str, Any]) -> None:
        name = configmap["metadata"]["name"]
        with self._lock:
            updated = dict(self._by_name)
            if event_type == "DELETED":
                updated.pop(name, None)
            else:
                updated[name] = self._definitions_of(configmap)
            self._by_name = updated

    def __len__(self) -> int:
        return len(self._by_name)

    @staticmethod
    def _definitions_of(configmap: dict[str, Any]) -> dict[str, Definition]:
        meta = configmap["metadata"]
        source = f"{meta.get('namespace', '')}/{meta['name']}"
        data = configmap.get("data") or {}
        annotations = meta.get("annotations") or {}
        return {key: Definition.parse(source, key, text, annotations) for key, text in data.items()}


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class ConfigMapWatcher:
    """Keeps a DefinitionStore in step with the cluster, in a daemon thread."""

    def __init__(self, core_api: Any, namespace: str, selector: str, store: DefinitionStore, watch_timeout_s: int):
        self.core_api = core_api
        self.namespace = namespace
        self.selector = selector
        self.store = store
        self.watch_timeout_s = watch_timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="definitions-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        pause = 0.2
        while not self._stop.is_set():
            try:
                version = self._list()
                pause = 0.2
                while not self._stop.is_set():
                    version = self._watch_from(version)
            except WatchExpired:
                log.info("definitions watch expired; listing again", extra={"event": "definitions.relist"})
            except Exception as exc:
                if getattr(exc, "status", None) == 410:
                    log.info("definitions watch expired; listing again", extra={"event": "definitions.relist"})
                    continue
                log.warning(
                    "definitions list/watch failed: %s",
                    exc,
                    extra={"event": "definitions.error", "http_status": getattr(exc, "status", None)},
                )
                self._stop.wait(pause)
                pause = min(pause * 2, 10.0)

    def _list(self) -> str:
        response = self.core_api.list_namespaced_config_map(
            self.namespace, label_selector=self.selector, _preload_content=False
        )
        _raise_for_status(response)
        body = json.loads(response.data)
        self.store.replace_all(body.get("items") or [])
        log.info(
            "definitions listed",
            extra={"event": "definitions.listed", "configmaps": len(self.store), "namespace": self.namespace},
        )
        return body["metadata"]["resourceVersion"]

    def _watch_from(self, version: str) -> str:
        """Apply events from ``version`` on until the watch ends; return where it got to."""
        response = self.core_api.list_namespaced_config_map(
            self.namespace,
            label_selector=self.selector,
            watch=True,
            resource_version=version,
            timeout_seconds=self.watch_timeout_s,
            allow_watch_bookmarks=True,
            _preload_content=False,
            # The server ends the watch after timeout_seconds; a silent
            # connection is dropped a little after that.
            _request_timeout=(10, self.watch_timeout_s + 30),
        )
        try:
            _raise_for_status(response)
            for line in iter_resp_lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise WatchExpired(obj.get("message", ""))
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                version = obj["metadata"].get("resourceVersion", version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.store.apply(kind, obj)
                    log.info(
                        "definition %s",
                        kind.lower(),
                        extra={"event": "definitions.changed", "configmap": obj["metadata"]["name"]},
                    )
                if self._stop.is_set():
                    break
        finally:
            response.close()
            response.release_conn()
        return version


class ApiStatusError(Exception):
    def __init__(self, status: int, body: bytes):
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status


def _raise_for_status(response: Any) -> None:
    # Calls made with _preload_content=False hand back error answers as they are.
    if response.status == 410:
        raise WatchExpired(response.data[:300])
    if not 200 <= response.status < 300:
        raise ApiStatusError(response.status, response.data)


def load_files(path: Path, store: DefinitionStore) -> None:
    """Fill ``store`` from ConfigMap manifests in a file or a folder of them."""
    files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
    configmaps = []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
                doc.setdefault("metadata", {}).setdefault("namespace", str(file))
                configmaps.append(doc)
    store.replace_all(configmaps)


def wait_synced(store: DefinitionStore, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if store.synced.wait(0.1):
            return True
    return False
