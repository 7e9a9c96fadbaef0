"""An HTTP double of the few Kubernetes API endpoints openfero uses.

The official ``kubernetes`` client talks to it over plain HTTP on 127.0.0.1,
exactly as it talks to a real API server. It keeps what a real server does
on these endpoints and that openfero depends on:

- namespaces, ConfigMaps (list, watch, get, create, replace, delete),
  batch/v1 Jobs (list, watch, get, create, replace, merge-patch, delete),
  coordination.k8s.io/v1 Leases, core/v1 Events (create, list), and
  openfero.io/v1alpha1 Operarii (the same, and replaces and merge-patches
  of their status subresource, pruned and checked against the shipped
  CRD's status schema; or a 404 for them all, as a cluster without the CRD
  answers);
- optimistic concurrency: a replace or patch that carries a
  metadata.resourceVersion other than the stored one is a 409 Conflict;
  a replace of the main resource keeps the stored status (Jobs and
  Operarii have a status subresource), a status write keeps everything else;
- finalizers: a DELETE of an object that has any only sets
  ``deletionTimestamp`` (202, the object); it goes, with a DELETED event,
  when a write removes the last one; no new finalizer may be added to an
  object being deleted (422);
- the Job controller, played by a test: ``job_started``, ``job_succeeded``
  and ``job_failed`` (with a condition reason such as BackoffLimitExceeded
  or DeadlineExceeded) write a Job's status as the controller does;
- label selectors (=, ==, !=, exists, !exists, in, notin);
- a global resourceVersion; watches that replay from a version, send live
  events, end after ``timeoutSeconds`` and answer an expired version with an
  ERROR event of code 410;
- ``generateName``, 409 AlreadyExists, 404 for a missing namespace, 422 for
  invalid names, labels, env var names (the strict rule) and Job pod specs,
  all as ``Status`` objects;
- faults for tests: answer a status (with Retry-After), or hang, for a count
  of requests or a span of time.

It runs its own event loop in a daemon thread so that sync and async tests
and other processes can all use it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import re
import threading
import time
import uuid
from pathlib import Path
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
ENV_NAME_STRICT = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"

KINDS = {
    "configmaps": ("v1", "ConfigMap"),
    "events": ("v1", "Event"),
    "jobs": ("batch/v1", "Job"),
    "leases": ("coordination.k8s.io/v1", "Lease"),
    "operariuses": ("openfero.io/v1alpha1", "Operarius"),
    "operarii": ("openfero.io/v1alpha1", "Operarius"),  # the plural of openfero's first CRD
}
_API_PREFIX = {
    "configmaps": "/api/v1",
    "events": "/api/v1",
    "jobs": "/apis/batch/v1",
    "leases": "/apis/coordination.k8s.io/v1",
    "operariuses": "/apis/openfero.io/v1alpha1",
    "operarii": "/apis/openfero.io/v1alpha1",
}
# Kinds whose status only the status subresource writes.
_WITH_STATUS = {"jobs", "operariuses", "operarii"}
_GROUP_NAME = {"jobs": "jobs.batch", "leases": "leases.coordination.k8s.io", "operariuses": "operariuses.openfero.io"}
# metav1.MicroTime on the wire: RFC 3339 with exactly six fractional digits.
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
CRD_PATH = Path(__file__).resolve().parent.parent / "k8s" / "base" / "operarius-crd.yaml"


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int = 500
    times: int | None = None  # None: until ``until`` or forever
    until: float | None = None  # time.monotonic() deadline
    delay_s: float = 0.0
    retry_after_s: int | None = None
    hits: int = 0

    def active(self) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return self.until is None or time.monotonic() < self.until


@dataclass
class Watcher:
    resource: str
    namespace: str
    selector: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


def matches(labels: dict[str, str], selector: str) -> bool:
    """Kubernetes label selector semantics, equality- and set-based."""
    for term in _split_selector(selector):
        term = term.strip()
        if not term:
            continue
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            present = key in labels and labels[key] in values
            if present != (op == "in"):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = re.split(r"==?", term, maxsplit=1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _split_selector(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return terms


class KubeDouble:
    def __init__(self, strict_env_names: bool = True, operarius_plural: str | None = "operariuses"):
        self.strict_env_names = strict_env_names
        self.operarius_plural = operarius_plural  # the Operarius CRD's plural; None: no CRD installed
        self.namespaces: set[str] = {"default"}
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.created_at: dict[tuple[str, str, str], float] = {}  # wall-clock time each object was created
        self.written_at: dict[tuple[str, str, str], float] = {}  # wall-clock time of each object's last write (or deletion)
        self.events: list[tuple[int, str, str, str, dict[str, Any]]] = []  # rv, resource, ns, type, obj
        self.compacted_rv = 0
        self.version = 100
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        # What RBAC is asked for each request: (verb, API group, resource[/subresource], name).
        self.authorized: list[tuple[str, str, str, str]] = []
        self.watchers: list[Watcher] = []
        self._status_schema: dict[str, Any] | None = None
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> KubeDouble:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="kube-double", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("kube double did not start")
        return self

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        app = web.Application(middlewares=[self._faults_middleware])
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._loop is None:
            return
        self.close_watches()
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)  # type: ignore[union-attr]
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def job_creation_times(self) -> dict[str, float]:
        """Job name -> wall-clock time it was created; safe from any thread."""
        with self._lock:
            return {name: at for (resource, _, name), at in self.created_at.items() if resource == "jobs"}

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return self.kubeconfig_for(self.url, namespace)

    @staticmethod
    def kubeconfig_for(url: str, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "double", "cluster": {"server": url}}],
            "users": [{"name": "double", "user": {"token": "double"}}],
            "contexts": [{"name": "double", "context": {"cluster": "double", "user": "double", "namespace": namespace}}],
            "current-context": "double",
        }

    # -- test helpers (any thread) -------------------------------------------------

    def add_namespace(self, name: str) -> None:
        with self._lock:
            self.namespaces.add(name)

    def add_fault(
        self,
        method: str,
        path: str,
        status: int = 500,
        times: int | None = None,
        for_s: float | None = None,
        delay_s: float = 0.0,
        retry_after_s: int | None = None,
    ) -> Fault:
        fault = Fault(
            method.upper(),
            re.compile(path),
            status,
            times,
            None if for_s is None else time.monotonic() + for_s,
            delay_s,
            retry_after_s,
        )
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def apply(self, resource: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object, emitting watch events as the API would."""
        name = obj["metadata"]["name"]
        with self._lock:
            existing = (resource, namespace, name) in self.objects
            self.namespaces.add(namespace)
            return self._store(resource, namespace, obj, "MODIFIED" if existing else "ADDED")

    def delete(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Delete as the API does: an object with finalizers is only marked (returned), others go (None)."""
        with self._lock:
            obj = self.objects[(resource, namespace, name)]
            if obj["metadata"].get("finalizers"):
                if obj["metadata"].get("deletionTimestamp"):
                    return copy.deepcopy(obj)
                marked = copy.deepcopy(obj)
                marked["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
                return self._store(resource, namespace, marked, "MODIFIED")
            self._remove(resource, namespace, name)
            return None

    def _remove(self, resource: str, namespace: str, name: str) -> None:
        self.written_at[(resource, namespace, name)] = time.time()
        obj = self.objects.pop((resource, namespace, name))
        self._record(resource, namespace, "DELETED", obj)

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self.objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    # -- the Job controller, played by tests (any thread) ---------------------------------
    # What kube-controller-manager's job controller writes (Kubernetes 1.31 and later: the
    # SuccessCriteriaMet and FailureTarget conditions come before Complete and Failed).

    def job_started(self, name: str, namespace: str = "default") -> dict[str, Any]:
        def start(status: dict[str, Any], now: str) -> None:
            status.update(active=1, ready=0, startTime=status.get("startTime") or now)

        return self._job_status(namespace, name, start)

    def job_succeeded(self, name: str, namespace: str = "default") -> dict[str, Any]:
        def succeed(status: dict[str, Any], now: str) -> None:
            status.update(active=0, ready=0, succeeded=1, startTime=status.get("startTime") or now, completionTime=now)
            message = "Reached expected number of succeeded pods"
            status["conditions"] = [_condition("SuccessCriteriaMet", "CompletionsReached", message, now), _condition("Complete", "CompletionsReached", message, now)]

        return self._job_status(namespace, name, succeed)

    def job_failed(self, name: str, namespace: str = "default", reason: str = "BackoffLimitExceeded", message: str = "") -> dict[str, Any]:
        words = {
            "BackoffLimitExceeded": "Job has reached the specified backoff limit",
            "DeadlineExceeded": "Job was active longer than specified deadline",
        }

        def fail(status: dict[str, Any], now: str) -> None:
            failed = int(status.get("failed") or 0) + 1
            status.update(active=0, ready=0, failed=failed, startTime=status.get("startTime") or now)
            text = message or words.get(reason, reason)
            status["conditions"] = [_condition("FailureTarget", reason, text, now), _condition("Failed", reason, text, now)]

        return self._job_status(namespace, name, fail)

    def _job_status(self, namespace: str, name: str, change: Any) -> dict[str, Any]:
        with self._lock:
            job = copy.deepcopy(self.objects[("jobs", namespace, name)])
            change(job.setdefault("status", {}), _now())
            return self._store("jobs", namespace, job, "MODIFIED")

    def list(self, resource: str, namespace: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(o) for (r, ns, _), o in sorted(self.objects.items()) if r == resource and ns == namespace]

    def jobs(self, namespace: str = "default") -> list[dict[str, Any]]:
        return self.list("jobs", namespace)

    def count(self, resource: str, namespace: str, predicate: Any) -> int:
        """How many stored objects ``predicate`` holds for; no copies (it must not change them)."""
        with self._lock:
            return sum(1 for (r, ns, _), o in self.objects.items() if r == resource and ns == namespace and predicate(o))

    def compact(self) -> None:
        """Forget history: watches from any earlier version now get 410 Gone."""
        with self._lock:
            self.compacted_rv = self.version
            self.events.clear()

    def close_watches(self) -> None:
        if self._loop is None:
            return
        for w in list(self.watchers):
            self._loop.call_soon_threadsafe(w.queue.put_nowait, None)

    # -- state --------------------------------------------------------------------------

    def _next_version(self) -> int:
        self.version += 1
        return self.version

    def _store(self, resource: str, namespace: str, obj: dict[str, Any], event: str) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        api_version, kind = KINDS[resource]
        obj["apiVersion"], obj["kind"] = api_version, kind
        meta = obj["metadata"]
        meta["namespace"] = namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["resourceVersion"] = str(self._next_version())
        self.objects[(resource, namespace, meta["name"])] = obj
        self.written_at[(resource, namespace, meta["name"])] = time.time()
        if event == "ADDED":
            self.created_at[(resource, namespace, meta["name"])] = time.time()
        self._record(resource, namespace, event, obj)
        return copy.deepcopy(obj)

    def _record(self, resource: str, namespace: str, event: str, obj: dict[str, Any]) -> None:
        rv = int(obj["metadata"]["resourceVersion"]) if event != "DELETED" else self._next_version()
        if event == "DELETED":
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(rv)
        self.events.append((rv, resource, namespace, event, obj))
        for w in list(self.watchers):
            if w.resource == resource and w.namespace == namespace and matches(_labels(obj), w.selector):
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(w.queue.put_nowait, {"type": event, "object": copy.deepcopy(obj)})

    # -- HTTP -------------------------------------------------------------------------------

    @web.middleware
    async def _faults_middleware(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        with self._lock:
            self.requests.append((request.method, request.path))
            attributes = rbac_attributes(request.method, request.path, request.query.get("watch") in ("true", "1"))
            if attributes is not None:
                self.authorized.append(attributes)
            fault = next(
                (f for f in self.faults if f.method in (request.method, "*") and f.path.search(request.path) and f.active()),
                None,
            )
            if fault is not None:
                fault.hits += 1
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.status:
                headers = {"Retry-After": str(fault.retry_after_s)} if fault.retry_after_s is not None else None
                body = status_body(fault.status, "InternalError", f"injected fault {fault.status}")
                return web.json_response(body, status=fault.status, headers=headers)
        return await handler(request)

    def _discovery(self) -> web.Response:
        """What the API server says it serves in openfero.io/v1alpha1: the Operarius CRD, under its plural."""
        if self.operarius_plural is None:
            return web.json_response(status_body(404, "NotFound", "the server could not find the requested resource"), status=404)
        verbs = ["delete", "get", "list", "patch", "create", "update", "watch"]
        resources = [
            {"name": self.operarius_plural, "singularName": "operarius", "namespaced": True, "kind": "Operarius", "verbs": verbs},
            {"name": f"{self.operarius_plural}/status", "singularName": "", "namespaced": True, "kind": "Operarius", "verbs": ["get", "patch", "update"]},
        ]
        return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "openfero.io/v1alpha1", "resources": resources})

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/")
        if path == "/debug/created":
            return web.json_response(self.job_creation_times())
        if path == "/version":
            return web.json_response({"major": "1", "minor": "34", "gitVersion": "v1.34.0-double"})
        if path == "/api/v1/namespaces":
            if request.method == "POST":
                body = await request.json()
                self.add_namespace(body["metadata"]["name"])
                return web.json_response(body, status=201)
            return web.json_response({"kind": "NamespaceList", "items": [{"metadata": {"name": n}} for n in sorted(self.namespaces)]})
        if path == "/apis/openfero.io/v1alpha1":
            return self._discovery()
        if path in ("/api", "/apis", "/api/v1", "/apis/batch/v1", "/apis/coordination.k8s.io/v1"):
            return web.json_response(_legacy_discovery(path, self.operarius_plural is not None))
        m = re.fullmatch(r"(/api/v1|/apis/[^/]+/[^/]+)/namespaces/([^/]+)(?:/([a-z]+)(?:/([^/]+)(/status)?)?)?", path)
        if m is None:
            return web.json_response(status_body(404, "NotFound", f"the server could not find {path}"), status=404)
        api, namespace, resource, name, subresource = m.groups()
        if resource is None and api == "/api/v1":
            if namespace in self.namespaces:
                return web.json_response({"kind": "Namespace", "metadata": {"name": namespace}})
            return self._not_found("namespaces", namespace)
        if _API_PREFIX.get(resource or "") != api or (KINDS.get(resource or "", ("", ""))[1] == "Operarius" and resource != self.operarius_plural):
            return web.json_response(status_body(404, "NotFound", f"the server could not find the requested resource {path}"), status=404)
        if subresource:
            if resource not in _WITH_STATUS or request.method not in ("GET", "PUT", "PATCH"):
                return web.json_response(status_body(405, "MethodNotAllowed", "method not allowed"), status=405)
            if request.method == "GET":
                obj = self.get(resource, namespace, name)
                return web.json_response(obj) if obj else self._not_found(resource, name)
            return await self._write(request, resource, namespace, name, status_only=True)
        if name is None:
            if request.method == "GET":
                if request.query.get("watch") in ("true", "1"):
                    return await self._watch(request, resource, namespace)
                return self._list(request, resource, namespace)
            if request.method == "POST":
                return await self._create(request, resource, namespace)
        else:
            if request.method == "GET":
                obj = self.get(resource, namespace, name)
                return web.json_response(obj) if obj else self._not_found(resource, name)
            if request.method in ("PUT", "PATCH"):
                return await self._write(request, resource, namespace, name, status_only=False)
            if request.method == "DELETE":
                with self._lock:
                    if (resource, namespace, name) not in self.objects:
                        return self._not_found(resource, name)
                    marked = self.delete(resource, namespace, name)
                if marked is not None:  # finalizers hold it: accepted, not done
                    return web.json_response(marked, status=202)
                return web.json_response({"kind": "Status", "status": "Success", "code": 200})
        return web.json_response(status_body(405, "MethodNotAllowed", "method not allowed"), status=405)

    async def _write(self, request: web.Request, resource: str, namespace: str, name: str, status_only: bool) -> web.Response:
        """A replace (PUT) or a JSON merge patch (PATCH) of an object or of its status.

        A resourceVersion (or uid) in the written object is a precondition;
        the parts the endpoint does not own are kept as stored.
        """
        if request.method == "PATCH" and request.content_type != MERGE_PATCH:
            # Strategic merge (built-in kinds only on a real server) and JSON patch are not modelled:
            # refused loudly rather than applied with merge semantics they do not have.
            message = f"the double takes only {MERGE_PATCH} patches, not {request.content_type!r}"
            return web.json_response(status_body(415, "UnsupportedMediaType", message), status=415)
        try:
            given = await request.json()
        except ValueError:
            return web.json_response(status_body(400, "BadRequest", "body is not JSON"), status=400)
        if not isinstance(given, dict):
            return web.json_response(status_body(400, "BadRequest", "body is not an object"), status=400)
        with self._lock:
            stored = self.objects.get((resource, namespace, name))
            if stored is None:
                return self._not_found(resource, name)
            written = _merge(copy.deepcopy(stored), given) if request.method == "PATCH" else copy.deepcopy(given)
            meta = written.get("metadata") if isinstance(written.get("metadata"), dict) else {}
            old_meta = stored["metadata"]
            for field_, value in (("resourceVersion", meta.get("resourceVersion")), ("uid", meta.get("uid"))):
                if value and value != old_meta.get(field_):
                    return self._conflict(resource, name)
            undecodable = _undecodable(resource, written)
            if undecodable:
                return web.json_response(status_body(400, "BadRequest", undecodable), status=400)
            if status_only:
                updated = copy.deepcopy(stored)
                updated["status"] = written.get("status")
                if KINDS[resource][1] == "Operarius":
                    problem = self._check_operarius_status(updated)
                    if problem:
                        return self._invalid(resource, name, [{"reason": "FieldValueInvalid", "field": "status", "message": problem}])
            else:
                updated = written
                new_meta = updated.setdefault("metadata", {})
                for kept in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
                    if kept in old_meta:
                        new_meta[kept] = old_meta[kept]
                    else:
                        new_meta.pop(kept, None)
                if resource in _WITH_STATUS:
                    updated.pop("status", None)
                    if "status" in stored:
                        updated["status"] = copy.deepcopy(stored["status"])
                added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if old_meta.get("deletionTimestamp") and added:
                    cause = {"reason": "FieldValueForbidden", "field": "metadata.finalizers", "message": "Forbidden: no new finalizers can be added if the object is being deleted"}
                    return self._invalid(resource, name, [cause])
                causes = validate(resource, updated, self.strict_env_names)
                if causes:
                    return self._invalid(resource, name, causes)
            updated["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
            if updated == stored:
                return web.json_response(copy.deepcopy(stored))  # a no-op write changes nothing, not even the version
            if old_meta.get("deletionTimestamp") and not updated["metadata"].get("finalizers"):
                self.objects[(resource, namespace, name)] = updated
                self._remove(resource, namespace, name)  # the last finalizer went: now it is deleted
                return web.json_response(copy.deepcopy(updated))
            return web.json_response(self._store(resource, namespace, updated, "MODIFIED"))

    def _check_operarius_status(self, obj: dict[str, Any]) -> str:
        """Prune unknown status fields and check the rest, as the API server does with the CRD's schema."""
        if self._status_schema is None:
            import yaml

            crd = yaml.safe_load(CRD_PATH.read_text())
            self._status_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        status = obj.get("status")
        if status is None:
            return ""
        obj["status"] = _prune(status, self._status_schema)
        import jsonschema

        try:
            jsonschema.validate(obj["status"], self._status_schema)
        except jsonschema.ValidationError as exc:
            return f"{'.'.join(map(str, exc.absolute_path))}: {exc.message}"
        return ""

    def _conflict(self, resource: str, name: str) -> web.Response:
        group = _GROUP_NAME.get(resource, resource)
        message = f'Operation cannot be fulfilled on {group} "{name}": the object has been modified; please apply your changes to the latest version and try again'
        return web.json_response(status_body(409, "Conflict", message, {"name": name, "kind": resource}), status=409)

    def _invalid(self, resource: str, name: str, causes: list[dict[str, str]]) -> web.Response:
        _, kind = KINDS[resource]
        message = f'{kind} "{name}" is invalid: ' + "; ".join(f"{c['field']}: {c['message']}" for c in causes)
        return web.json_response(status_body(422, "Invalid", message, {"name": name, "kind": resource, "causes": causes}), status=422)

    def _not_found(self, resource: str, name: str) -> web.Response:
        return web.json_response(
            status_body(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource}), status=404
        )

    def _list(self, request: web.Request, resource: str, namespace: str) -> web.Response:
        selector = request.query.get("labelSelector", "")
        with self._lock:
            items = [o for o in self.list(resource, namespace) if matches(_labels(o), selector)]
            version = str(self.version)
        _, kind = KINDS[resource]
        api_version = KINDS[resource][0]
        return web.json_response(
            {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {"resourceVersion": version}, "items": items}
        )

    async def _watch(self, request: web.Request, resource: str, namespace: str) -> web.StreamResponse:
        selector = request.query.get("labelSelector", "")
        timeout_s = float(request.query.get("timeoutSeconds", "1800"))
        since = request.query.get("resourceVersion", "")
        watcher = Watcher(resource, namespace, selector)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with self._lock:
            if since not in ("", "0") and int(since) < self.compacted_rv:
                backlog = [{"type": "ERROR", "object": status_body(410, "Expired", f"too old resource version: {since} ({self.compacted_rv})")}]
                watcher = None  # type: ignore[assignment]
            elif since in ("", "0"):
                backlog = [{"type": "ADDED", "object": o} for o in self.list(resource, namespace) if matches(_labels(o), selector)]
            else:
                backlog = [
                    {"type": t, "object": copy.deepcopy(o)}
                    for rv, r, ns, t, o in self.events
                    if rv > int(since) and r == resource and ns == namespace and matches(_labels(o), selector)
                ]
            if watcher is not None:
                self.watchers.append(watcher)
        try:
            for event in backlog:
                await response.write(json.dumps(event).encode() + b"\n")
            if watcher is None:
                return response
            deadline = time.monotonic() + timeout_s
            while (left := deadline - time.monotonic()) > 0:
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout=left)
                except TimeoutError:
                    break
                if event is None:
                    break
                await response.write(json.dumps(event).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            with self._lock:
                if watcher in self.watchers:
                    self.watchers.remove(watcher)
        return response

    async def _create(self, request: web.Request, resource: str, namespace: str) -> web.Response:
        try:
            obj = await request.json()
        except ValueError:
            return web.json_response(status_body(400, "BadRequest", "body is not JSON"), status=400)
        meta = obj.setdefault("metadata", {})
        with self._lock:
            if namespace not in self.namespaces:
                return self._not_found("namespaces", namespace)
            if not meta.get("name") and meta.get("generateName"):
                prefix = meta["generateName"][: 63 - 5 if resource == "jobs" else 253 - 5]
                meta["name"] = prefix + "".join(random.choice(GENERATE_CHARS) for _ in range(5))
            undecodable = _undecodable(resource, obj)
            if undecodable:
                return web.json_response(status_body(400, "BadRequest", undecodable), status=400)
            if resource == "events" and (obj.get("involvedObject") or {}).get("namespace", namespace) != namespace:
                cause = {"reason": "FieldValueInvalid", "field": "involvedObject.namespace", "message": "does not match event.namespace"}
                return self._invalid(resource, meta.get("name", ""), [cause])
            causes = validate(resource, obj, self.strict_env_names)
            if causes:
                return self._invalid(resource, meta.get("name", ""), causes)
            key = (resource, namespace, meta["name"])
            if key in self.objects:
                message = f'{_GROUP_NAME.get(resource, resource)} "{meta["name"]}" already exists'
                body = status_body(409, "AlreadyExists", message, {"name": meta["name"], "kind": resource})
                return web.json_response(body, status=409)
            meta.pop("resourceVersion", None)
            meta.pop("deletionTimestamp", None)
            stored = self._store(resource, namespace, obj, "ADDED")
        return web.json_response(stored, status=201)


def _undecodable(resource: str, obj: dict[str, Any]) -> str:
    """What the API server could not even decode (a 400, before validation)."""
    if resource == "leases":
        spec = obj.get("spec") or {}
        for field_ in ("acquireTime", "renewTime"):
            value = spec.get(field_)
            if value is not None and not (isinstance(value, str) and MICRO_TIME.match(value)):
                return f"Lease in version \"v1\" cannot be handled as a Lease: spec.{field_}: {value!r} is not a MicroTime (RFC 3339, six fractional digits)"
    return ""


def _legacy_discovery(path: str, with_crd: bool) -> dict[str, Any]:
    """The discovery documents kubectl reads first (the unaggregated form, which it falls back to)."""
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}
    if path == "/apis":
        groups = ["batch/v1", "coordination.k8s.io/v1"] + (["openfero.io/v1alpha1"] if with_crd else [])
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}], "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}}
                for gv in groups
            ],
        }
    verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
    served = {
        "/api/v1": [("configmaps", "ConfigMap"), ("events", "Event"), ("namespaces", "Namespace")],
        "/apis/batch/v1": [("jobs", "Job"), ("jobs/status", "Job")],
        "/apis/coordination.k8s.io/v1": [("leases", "Lease")],
    }[path]
    resources = [{"name": name, "singularName": "", "namespaced": name != "namespaces", "kind": kind, "verbs": verbs} for name, kind in served]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": path.removeprefix("/apis/").removeprefix("/api/") if path != "/api/v1" else "v1", "resources": resources}


def rbac_attributes(method: str, path: str, watch: bool) -> tuple[str, str, str, str] | None:
    """(verb, group, resource[/subresource], name) as the API server's authorizer sees a request; None for discovery."""
    m = re.fullmatch(r"/(?:api/v1|apis/([^/]+)/[^/]+)/namespaces/[^/]+/([a-z]+)(?:/([^/]+)(?:/([a-z]+))?)?/?", path)
    if m is None:
        return None
    group, resource, name, subresource = m.groups()
    if name is None:
        verb = {"GET": "watch" if watch else "list", "POST": "create", "DELETE": "deletecollection"}.get(method, method.lower())
    else:
        verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())
    return verb, group or "", f"{resource}/{subresource}" if subresource else resource, name or ""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, reason: str, message: str, now: str) -> dict[str, str]:
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastProbeTime": now, "lastTransitionTime": now}


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            target[key] = _merge(target[key], value)
        else:
            target[key] = value
    return target


def _prune(value: Any, schema: dict[str, Any]) -> Any:
    """Drop the fields a structural schema does not name (x-kubernetes-preserve-unknown-fields keeps them)."""
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        properties = schema.get("properties")
        if properties is not None:
            return {k: _prune(v, properties[k]) for k, v in value.items() if k in properties}
        if isinstance(schema.get("additionalProperties"), dict):
            return {k: _prune(v, schema["additionalProperties"]) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(v, schema["items"]) for v in value]
    return value


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def validate(resource: str, obj: dict[str, Any], strict_env_names: bool) -> list[dict[str, str]]:
    """The subset of the API server's validation that openfero's objects meet."""
    causes: list[dict[str, str]] = []

    def bad(path: str, message: str) -> None:
        causes.append({"reason": "FieldValueInvalid", "field": path, "message": message})

    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    if not name:
        bad("metadata.name", "Required value: name or generateName is required")
    elif resource == "jobs" and (len(name) > 63 or not DNS1123_LABEL.match(name)):
        bad("metadata.name", f"Invalid value: {name!r}: a Job name must be a DNS-1123 label of at most 63 characters")
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        bad("metadata.name", f"Invalid value: {name!r}: must be a DNS-1123 subdomain")
    _validate_labels(meta.get("labels") or {}, "metadata.labels", bad)
    if resource == "leases":
        duration = (obj.get("spec") or {}).get("leaseDurationSeconds")
        if duration is not None and (not isinstance(duration, int) or duration <= 0):
            bad("spec.leaseDurationSeconds", f"Invalid value: {duration!r}: must be greater than 0")
    if resource == "events":
        involved = obj.get("involvedObject") or {}
        if not involved.get("name") or not involved.get("kind"):
            bad("involvedObject", "Required value: kind and name")
        if not obj.get("reason"):
            bad("reason", "Required value")
        if obj.get("type") not in (None, "Normal", "Warning"):
            bad("type", f"Unsupported value: {obj.get('type')!r}: supported values: \"Normal\", \"Warning\"")
    if resource == "jobs":
        template = (obj.get("spec") or {}).get("template") or {}
        _validate_labels((template.get("metadata") or {}).get("labels") or {}, "spec.template.metadata.labels", bad)
        pod = template.get("spec") or {}
        if pod.get("restartPolicy") not in ("Never", "OnFailure"):
            bad("spec.template.spec.restartPolicy", f"Unsupported value: {pod.get('restartPolicy')!r}: supported values: \"OnFailure\", \"Never\"")
        containers = pod.get("containers") or []
        if not containers:
            bad("spec.template.spec.containers", "Required value")
        for kind in ("initContainers", "containers"):
            for i, c in enumerate(pod.get(kind) or []):
                where = f"spec.template.spec.{kind}[{i}]"
                if not c.get("name") or not DNS1123_LABEL.match(c["name"]):
                    bad(f"{where}.name", "Invalid value: must be a DNS-1123 label")
                if not c.get("image"):
                    bad(f"{where}.image", "Required value")
                for j, env in enumerate(c.get("env") or []):
                    env_name = env.get("name", "")
                    ok = ENV_NAME_STRICT.match(env_name) if strict_env_names else (env_name and "=" not in env_name and env_name.isprintable())
                    if not ok:
                        bad(f"{where}.env[{j}].name", f"Invalid value: {env_name!r}: a valid environment variable name")
                    if "value" in env and not isinstance(env["value"], str):
                        bad(f"{where}.env[{j}].value", "must be a string")
    return causes


def _validate_labels(labels: dict[str, Any], where: str, bad: Any) -> None:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and not DNS1123_SUBDOMAIN.match(prefix)) or len(name) > 63 or not LABEL_NAME.match(name):
            bad(f"{where}", f"Invalid value: {key!r}: name part must consist of alphanumeric characters, '-', '_' or '.'")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            bad(f"{where}", f"Invalid value: {value!r}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', at most 63")


def main() -> None:
    """Run the double as a process of its own: ``python -m tests.kube_double PORT_FILE [CONFIGMAP.yaml ...]``.

    It writes its URL to PORT_FILE, loads the given ConfigMaps into
    ``default``, and answers ``GET /debug/created`` with the creation time of
    every Job (for benchmarks that must not share a process with it).
    """
    import signal
    import sys

    import yaml

    double = KubeDouble().start()
    for path in sys.argv[2:]:
        double.apply("configmaps", "default", yaml.safe_load(open(path)))
    Path(sys.argv[1]).write_text(double.url)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    double.stop()


if __name__ == "__main__":
    main()
