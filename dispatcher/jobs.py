"""Creating Jobs, and writing Operarius status, through the official, blocking ``kubernetes`` client.

Calls run in a bounded thread pool so that the event loop stays free.
Errors are classified here, where they enter: the handler sees only
``Created``, ``AlreadyExists`` or an ``ApiFailure`` that says whether trying
again can help.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from dispatcher import operarius_status as run_status
from dispatcher.metrics import JOB_CREATE_SECONDS, JOBS_CREATED
from dispatcher.operarii import GROUP, PLURAL, VERSION
from dispatcher.requesting import Unreachable, call
from dispatcher.results import Failure
from shared.settings import KubeSettings

log = logging.getLogger("openfero.dispatcher")

class ApiFailure(Exception):
    """A create that failed, and why: the ``Failure`` the handler hands on as it is."""

    def __init__(self, failure: Failure):
        super().__init__(failure.reason)
        self.failure = failure

    @property
    def status(self) -> int | None:
        return self.failure.status

    @property
    def transient(self) -> bool:
        return self.failure.transient

    @property
    def needs_operator(self) -> bool:
        return self.failure.needs_operator

    @property
    def retry_after_s(self) -> float | None:
        return self.failure.retry_after_s


def load_api_client(timeout_s: float, connections: int = 16) -> tuple[client.ApiClient, str | None]:
    """The standard access: in-cluster service account, else KUBECONFIG, else ~/.kube/config.

    Returns the client and the kubeconfig context's namespace (None in-cluster).
    """
    configuration = client.Configuration()
    namespace = None
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        # Read KUBECONFIG now: the client reads it once, at import.
        path = os.environ.get("KUBECONFIG") or "~/.kube/config"
        config.load_kube_config(config_file=path, client_configuration=configuration)
        _, active = config.list_kube_config_contexts(config_file=path)
        namespace = (active or {}).get("context", {}).get("namespace")
    # Retries are ours to decide; urllib3's own would hide 429 and 5xx.
    configuration.retries = 0
    # One kept-alive connection per concurrent call (plus the watches): the
    # default pool (5 per core) would open and drop connections under load.
    configuration.connection_pool_maxsize = connections + 4
    return client.ApiClient(configuration), namespace


class JobCreator:
    """The JobSink that creates Jobs through the API."""

    dry_run = False

    def __init__(self, api_client: client.ApiClient, kube: KubeSettings, concurrency: int):
        self.api_client = api_client
        self.namespace = kube.job_namespace
        self.timeout_s = kube.request_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kube")

    async def create(self, body: dict[str, Any]) -> bool:
        """Create the Job; True if created, False if one of that name already exists."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._create_blocking, body)

    def _create_blocking(self, body: dict[str, Any]) -> bool:
        with JOB_CREATE_SECONDS.time():
            return self._create_once(body)

    def _create_once(self, body: dict[str, Any]) -> bool:
        # The request BatchV1Api.create_namespaced_job makes, through the same
        # client (configuration, credentials, connection pool), minus its two
        # passes through the pydantic models: render() has already checked
        # the body against V1Job, and converting it to a model and back cost
        # about a fifth of the client's CPU per call (README, Performance).
        api = self.api_client
        try:
            request = api.param_serialize(
                method="POST",
                resource_path="/apis/batch/v1/namespaces/{namespace}/jobs",
                path_params={"namespace": self.namespace},
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = api.call_api(*request, _request_timeout=self.timeout_s)
            try:
                response.read()
            finally:
                response.response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError, ApiException) as exc:
            # No answer: connection refused or reset, timeout, TLS failure
            # (which the client may wrap in an ApiException of status 0).
            raise ApiFailure(Failure.from_api(None, f"Kubernetes API unreachable: {exc}")) from None
        if response.status == 409:
            return False
        if not 200 <= response.status <= 299:
            raise classify(response.status, response.data, response.getheaders())
        JOBS_CREATED.inc()
        return True

    async def annotations(self, name: str) -> dict[str, str] | None:
        """The annotations of the Job ``name``, or None when there is no such Job; ApiFailure when the API cannot say."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._annotations_blocking, name)

    def _annotations_blocking(self, name: str) -> dict[str, str] | None:
        try:
            got = call(self.api_client, "GET", f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{name}", self.timeout_s)
        except Unreachable as exc:
            raise ApiFailure(Failure.from_api(None, f"Kubernetes API unreachable: {exc}")) from None
        if got.status == 404:
            return None
        if not got.ok:
            raise classify(got.status, json.dumps(got.body), None)
        return dict((got.body.get("metadata") or {}).get("annotations") or {})

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def classify(status: int, data: str | bytes | None, headers: Any) -> ApiFailure:
    """An API error answer as an ApiFailure that says what to do about it (``Failure.from_api``)."""
    try:
        message = json.loads(data or "").get("message") or ""
    except (ValueError, AttributeError):
        message = str(data or "")[:200]
    text = f"Kubernetes API answered {status}: {message}".rstrip(": ")
    retry_after = None
    if headers is not None and headers.get("Retry-After", "").isdigit():
        retry_after = float(headers["Retry-After"])
    return ApiFailure(Failure.from_api(status, text, retry_after))


class OperariusStatusWriter:
    """Writes each step of a run to an Operarius' status (dispatcher.operarius_status says what).

    Every write reads the Operarius, computes the new status from the one
    read and replaces it with that resourceVersion: a 409 (another
    dispatcher wrote in between) reads and computes again. So writes from
    any number of dispatchers, in any order, count every creation once.
    Status is for people: a write that keeps failing is logged, never
    allowed to hold up an alert or an outcome.
    """

    MAX_CONFLICTS = 10

    def __init__(self, api_client: client.ApiClient, timeout_s: float = 10.0):
        self.api_client = api_client
        self.timeout_s = timeout_s
        # Its own small pool: status writes never take a thread from Job creation.
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="status")

    def record(self, operarius: tuple[str, str], job_name: str, outcome: str) -> None:
        """After handling an alert (Created, Duplicate, Failed); returns at once."""
        self.pool.submit(self._write_handled, operarius, job_name, outcome)

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def _write_handled(self, key: tuple[str, str], job_name: str, outcome: str) -> None:
        self.update(key, lambda status: run_status.after_handling(status, job_name, outcome, datetime.now(timezone.utc)))

    def update(self, key: tuple[str, str], change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Apply ``change`` to the status, again on each conflict (blocking); the Operarius as written, or None."""
        namespace, name = key
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
        extra = {"event": "operarius.status_failed", "operarius": f"{namespace}/{name}"}
        try:
            for attempt in range(self.MAX_CONFLICTS):
                got = call(self.api_client, "GET", path, self.timeout_s)
                if not got.ok:
                    if got.status != 404:  # gone: nothing to write to
                        log.warning("could not read the Operarius for its status: %s", got, extra=extra)
                    return None
                status = change(dict(got.body.get("status") or {}))
                if status is None:
                    return got.body
                put = call(self.api_client, "PUT", path + "/status", self.timeout_s, {**got.body, "status": status})
                if put.ok:
                    return put.body
                if put.status != 409:
                    log.warning("could not write Operarius status: %s", put, extra=extra)
                    return None
                time.sleep(random.uniform(0, 0.02 * (attempt + 1)))  # others are writing: step aside a moment
            log.warning("could not write Operarius status: still conflicting after %d attempts", self.MAX_CONFLICTS, extra=extra)
        except Unreachable as exc:  # status is for people; never let it disturb an alert
            log.warning("could not write Operarius status: %s", exc, extra=extra)
        return None
