"""An HTTP double of the few Kubernetes API endpoints openfero uses.

The official ``kubernetes`` client talks to it over plain HTTP on 127.0.0.1,
exactly as it talks to a real API server. It keeps what a real server does
on these endpoints and that openfero depends on:

- namespaces, ConfigMaps (list, watch, get, create, replace, delete),
  batch/v1 Jobs (list, get, create, delete) and openfero.io/v1alpha1
  Operarii (the same, and merge-patches of their status subresource; or a
  404 for them all, as a cluster without the CRD answers);
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
    "jobs": ("batch/v1", "Job"),
    "operariuses": ("openfero.io/v1alpha1", "Operarius"),
    "operarii": ("openfero.io/v1alpha1", "Operarius"),  # the plural of openfero's first CRD
}
_API_PREFIX = {"configmaps": "/api/v1", "jobs": "/apis/batch/v1", "operariuses": "/apis/openfero.io/v1alpha1", "operarii": "/apis/openfero.io/v1alpha1"}


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
        self.events: list[tuple[int, str, str, str, dict[str, Any]]] = []  # rv, resource, ns, type, obj
        self.compacted_rv = 0
        self.version = 100
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.watchers: list[Watcher] = []
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

    def delete(self, resource: str, namespace: str, name: str) -> None:
        with self._lock:
            obj = self.objects.pop((resource, namespace, name))
            self._record(resource, namespace, "DELETED", obj)

    def list(self, resource: str, namespace: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(o) for (r, ns, _), o in sorted(self.objects.items()) if r == resource and ns == namespace]

    def jobs(self, namespace: str = "default") -> list[dict[str, Any]]:
        return self.list("jobs", namespace)

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
            if request.method != "PATCH" or resource != self.operarius_plural:
                return web.json_response(status_body(405, "MethodNotAllowed", "method not allowed"), status=405)
            return await self._patch_status(request, resource, namespace, name)
        if name is None:
            if request.method == "GET":
                if request.query.get("watch") in ("true", "1"):
                    return await self._watch(request, resource, namespace)
                return self._list(request, resource, namespace)
            if request.method == "POST":
                return await self._create(request, resource, namespace)
        else:
            if request.method == "GET":
                with self._lock:
                    obj = self.objects.get((resource, namespace, name))
                return web.json_response(obj) if obj else self._not_found(resource, name)
            if request.method == "PUT":
                return await self._create(request, resource, namespace, replace=name)
            if request.method == "DELETE":
                with self._lock:
                    if (resource, namespace, name) not in self.objects:
                        return self._not_found(resource, name)
                    self.delete(resource, namespace, name)
                return web.json_response({"kind": "Status", "status": "Success", "code": 200})
        return web.json_response(status_body(405, "MethodNotAllowed", "method not allowed"), status=405)

    async def _patch_status(self, request: web.Request, resource: str, namespace: str, name: str) -> web.Response:
        """A JSON merge patch of .status, which is all a status subresource lets through."""
        patch = await request.json()
        with self._lock:
            obj = self.objects.get((resource, namespace, name))
            if obj is None:
                return self._not_found(resource, name)
            updated = copy.deepcopy(obj)
            updated["status"] = _merge(updated.get("status") or {}, patch.get("status") or {})
            stored = self._store(resource, namespace, updated, "MODIFIED")
        return web.json_response(stored)

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

    async def _create(self, request: web.Request, resource: str, namespace: str, replace: str | None = None) -> web.Response:
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
            causes = validate(resource, obj, self.strict_env_names)
            if causes:
                _, kind = KINDS[resource]
                message = f'{kind} "{meta.get("name", "")}" is invalid: ' + "; ".join(f"{c['field']}: {c['message']}" for c in causes)
                body = status_body(422, "Invalid", message, {"name": meta.get("name", ""), "kind": resource, "causes": causes})
                return web.json_response(body, status=422)
            key = (resource, namespace, meta["name"])
            if replace is None and key in self.objects:
                group = "jobs.batch" if resource == "jobs" else resource
                message = f'{group} "{meta["name"]}" already exists'
                body = status_body(409, "AlreadyExists", message, {"name": meta["name"], "kind": resource})
                return web.json_response(body, status=409)
            if replace is not None and key not in self.objects:
                return self._not_found(resource, replace)
            stored = self._store(resource, namespace, obj, "MODIFIED" if replace else "ADDED")
        return web.json_response(stored, status=200 if replace else 201)


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
