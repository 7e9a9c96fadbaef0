"""What the console reads from the cluster: openfero's Jobs, the definitions, Warning events, the API's health.

Jobs (by the ``app.kubernetes.io/managed-by=openfero`` label, in the Job
namespace), ConfigMap definitions and Operariuses are each kept by a
list+watch (dispatcher.watching, the dispatcher's own), on threads of their
own; what they hear is handed to the event loop. Events and the API's
``/version`` are read now and then. Everything is read-only: the console's
Role grants get, list and watch, nothing more.

Without a cluster, definitions can come from files (OPENFERO_DEFINITIONS_PATH),
as for `openfero dispatcher --dry-run`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from dispatcher.catalog import Catalog, load_files, manifest_files
from dispatcher.definitions import configmap_definitions
from dispatcher.operarii import GROUP, KIND, PLURAL, VERSION, InvalidOperarius, Operarius
from dispatcher.rendering import MANAGED_BY
from dispatcher.watching import ResourceWatcher
from shared.settings import KubeSettings

log = logging.getLogger("openfero.console")

_PROBE_EVERY_S = 15.0
_EVENTS_EVERY_S = 30.0
_EVENTS_KEPT = 50


@dataclass
class DefinitionInfo:
    """One definition as the definitions page lists it."""

    id: str  # "<source>/<key>": what a Job's openfero.io/definition annotation names
    kind: str  # ConfigMap or Operarius
    namespace: str
    name: str
    key: str
    selects: str  # which alerts it is for, in words
    enabled: bool = True
    priority: int | None = None
    problem: str = ""
    status: dict[str, Any] = field(default_factory=dict)  # the Operarius' .status


@dataclass
class ApiHealth:
    configured: bool = False
    ok: bool | None = None
    version: str = ""
    latency_ms: float | None = None
    error: str = ""
    checked: datetime | None = None
    listed: dict[str, datetime] = field(default_factory=dict)  # kind -> last full list


def configmap_infos(configmap: dict[str, Any]) -> list[DefinitionInfo]:
    meta = configmap.get("metadata") or {}
    name = str(meta.get("name", ""))
    status = name.rpartition("-")[2]
    infos = []
    for key, definition in configmap_definitions(configmap).items():
        infos.append(
            DefinitionInfo(
                id=f"{definition.source}/{key}",
                kind="ConfigMap",
                namespace=str(meta.get("namespace", "")),
                name=name,
                key=key,
                selects=f"alertname={key}, status={status}",
                problem=definition.parse_error,
            )
        )
    return infos


def operarius_info(obj: dict[str, Any]) -> DefinitionInfo:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    selector = spec.get("alertSelector") or {}
    parts = [f"{k}={selector[k]}" for k in ("alertname", "status") if selector.get(k)]
    parts += [f"{k}={v}" for k, v in sorted((selector.get("labels") or {}).items())]
    parts += [str(m) for m in selector.get("matchers") or []]
    problem = ""
    try:
        Operarius.from_resource(obj)
    except (InvalidOperarius, KeyError, TypeError, ValueError) as exc:
        problem = str(exc)
    return DefinitionInfo(
        id=f"{namespace}/{KIND}/{name}/jobTemplate",
        kind=KIND,
        namespace=namespace,
        name=name,
        key="jobTemplate",
        selects=", ".join(parts) or "every alert",
        enabled=spec.get("enabled", True) is not False,
        priority=int(spec.get("priority") or 0) if str(spec.get("priority") or 0).lstrip("-").isdigit() else None,
        problem=problem,
        status=dict(obj.get("status") or {}),
    )


class Cluster:
    """The cluster's side of the console. Callbacks run on the event loop ``loop``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        kube: KubeSettings,
        catalog: Catalog,
        on_jobs: Callable[[list[dict[str, Any]]], None],
        on_job: Callable[[str, dict[str, Any]], None],
        on_definitions: Callable[[], None],
    ):
        self.loop = loop
        self.kube = kube
        self.catalog = catalog
        self.on_jobs = on_jobs
        self.on_job = on_job
        self.on_definitions = on_definitions
        self.health = ApiHealth()
        self.events: list[dict[str, Any]] = []
        self.events_error = ""
        self._configmaps: dict[str, dict[str, Any]] = {}
        self._operarii: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watchers: list[ResourceWatcher] = []
        self.api_client: Any = None

    # -- start and stop ---------------------------------------------------------------------

    def start(self, api_client: Any | None) -> None:
        """Watch the cluster through ``api_client``; with None, read definitions from files if any are set."""
        self.api_client = api_client
        if api_client is None:
            if self.kube.definitions_path:
                self._read_files(Path(self.kube.definitions_path))
            else:
                self.catalog.replace_configmaps([])
                self.catalog.replace_operarii([])
            return
        from kubernetes import client

        self.health.configured = True
        batch, core, custom = client.BatchV1Api(api_client), client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
        selector = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"
        self._watchers = [
            ResourceWatcher(
                "Job",
                functools.partial(batch.list_namespaced_job, self.kube.job_namespace, label_selector=selector),
                lambda items: self._listed("Job", lambda: self.on_jobs(items)),
                lambda kind, obj: self._soon(self.on_job, kind, obj),
                self.kube.watch_timeout_s,
            ),
            ResourceWatcher(
                "ConfigMap",
                functools.partial(core.list_namespaced_config_map, self.kube.definitions_namespace, label_selector=self.kube.definition_selector),
                self._configmaps_listed,
                self._configmap_changed,
                self.kube.watch_timeout_s,
            ),
            ResourceWatcher(
                "Operarius",
                functools.partial(custom.list_namespaced_custom_object, GROUP, VERSION, self.kube.definitions_namespace, PLURAL),
                self._operarii_listed,
                self._operarius_changed,
                self.kube.watch_timeout_s,
            ),
        ]
        for watcher in self._watchers:
            watcher.start()
        threading.Thread(target=self._probe_loop, args=(client.VersionApi(api_client), core), name="console-probe", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for watcher in self._watchers:
            watcher.stop()

    def _soon(self, callback: Callable[..., None], *args: Any) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback, *args)

    def _listed(self, kind: str, then: Callable[[], None]) -> None:
        self.health.listed[kind] = datetime.now(timezone.utc)
        self._soon(then)

    # -- definitions ------------------------------------------------------------------------

    def _configmaps_listed(self, items: list[dict[str, Any]]) -> None:
        self.catalog.replace_configmaps(items)
        with self._lock:
            self._configmaps = {i["metadata"]["name"]: i for i in items}
        self._listed("ConfigMap", self.on_definitions)

    def _configmap_changed(self, kind: str, obj: dict[str, Any]) -> None:
        self.catalog.apply_configmap(kind, obj)
        with self._lock:
            if kind == "DELETED":
                self._configmaps.pop(obj["metadata"]["name"], None)
            else:
                self._configmaps[obj["metadata"]["name"]] = obj
        self._soon(self.on_definitions)

    def _operarii_listed(self, items: list[dict[str, Any]]) -> None:
        self.catalog.replace_operarii(items)
        with self._lock:
            self._operarii = {i["metadata"]["name"]: i for i in items}
        self._listed("Operarius", self.on_definitions)

    def _operarius_changed(self, kind: str, obj: dict[str, Any]) -> None:
        self.catalog.apply_operarius(kind, obj)
        with self._lock:
            if kind == "DELETED":
                self._operarii.pop(obj["metadata"]["name"], None)
            else:
                self._operarii[obj["metadata"]["name"]] = obj
        self._soon(self.on_definitions)

    def _read_files(self, path: Path) -> None:
        load_files(path, self.catalog)
        for file in manifest_files([path]):
            for doc in yaml.safe_load_all(file.read_text()):
                if not isinstance(doc, dict):
                    continue
                doc.setdefault("metadata", {}).setdefault("namespace", str(file))
                if doc.get("kind") == "ConfigMap":
                    self._configmaps[doc["metadata"]["name"]] = doc
                elif doc.get("kind") == KIND:
                    self._operarii[doc["metadata"]["name"]] = doc

    def definitions(self) -> list[DefinitionInfo]:
        with self._lock:
            configmaps, operarii = list(self._configmaps.values()), list(self._operarii.values())
        infos = [info for cm in configmaps for info in configmap_infos(cm)] + [operarius_info(o) for o in operarii]
        return sorted(infos, key=lambda d: (d.kind, d.namespace, d.name, d.key))

    # -- health and events -------------------------------------------------------------------

    def _probe_loop(self, version_api: Any, core: Any) -> None:
        next_events = 0.0
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                answer = version_api.get_code(_request_timeout=5, _preload_content=False)
                version = str(json.loads(answer.data).get("gitVersion", ""))
                self.health.ok, self.health.version, self.health.error = True, version, ""
                self.health.latency_ms = (time.perf_counter() - started) * 1000
            except Exception as exc:  # any failure is the API's health, shown as it is
                self.health.ok, self.health.error, self.health.latency_ms = False, _short(exc), None
            self.health.checked = datetime.now(timezone.utc)
            if time.monotonic() >= next_events:
                next_events = time.monotonic() + _EVENTS_EVERY_S
                self._read_events(core)
            self._stop.wait(_PROBE_EVERY_S)

    def _read_events(self, core: Any) -> None:
        try:
            listed = core.list_namespaced_event(
                self.kube.job_namespace, field_selector="type=Warning", limit=200, _request_timeout=10, _preload_content=False
            )
            items = json.loads(listed.data).get("items") or []
            items.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), reverse=True)
            self.events, self.events_error = items[:_EVENTS_KEPT], ""
        except Exception as exc:
            self.events_error = _short(exc)


def _short(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status:
        return f"HTTP {status} {reason or ''}".strip()
    return str(exc)[:300] or type(exc).__name__
