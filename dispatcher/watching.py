"""Keeping an in-memory copy of a kind of object in step with the cluster: list, then watch.

A daemon thread lists once, hands the items over, then watches from the
list's resourceVersion and hands over each event. It lists again when the
watch expires (410 Gone) and starts again, pausing a little longer each
time, after API errors. A kind the cluster does not serve (404: a CRD not
installed) counts as listed and empty, and is asked for again now and then;
when the kind is served under another name (another CRD of the same kind),
that is a warning which names it, since its objects are then ignored.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.watch.watch import iter_resp_lines

from dispatcher.metrics import KUBE_API_UP

log = logging.getLogger("openfero.definitions")

ListCall = Callable[..., Any]  # the client's list call, arguments bound but for the watch ones
_MISSING_KIND_RETRY_S = 60.0


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


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


class ResourceWatcher:
    def __init__(
        self,
        kind: str,
        list_call: ListCall,
        on_list: Callable[[list[dict[str, Any]]], object],  # what they return is not used
        on_event: Callable[[str, dict[str, Any]], object],
        watch_timeout_s: int,
        served_elsewhere: Callable[[], str | None] | None = None,
        log_changes: bool = True,
    ):
        self.kind = kind
        self.served_elsewhere = served_elsewhere  # after a 404: the other name the kind is served under, if any
        self.list_call = list_call
        self.on_list = on_list
        self.on_event = on_event
        self.watch_timeout_s = watch_timeout_s
        self.log_changes = log_changes  # off for kinds that change all the time (Jobs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)

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
                log.info("%s watch expired; listing again", self.kind, extra={"event": "definitions.relist", "kind": self.kind})
            except Exception as exc:
                status = getattr(exc, "status", None)
                if status == 410:
                    log.info("%s watch expired; listing again", self.kind, extra={"event": "definitions.relist", "kind": self.kind})
                    continue
                if status == 404:
                    self._missing()
                    self.on_list([])
                    self._stop.wait(_MISSING_KIND_RETRY_S)
                    continue
                KUBE_API_UP.labels(self.kind).set(0)
                log.warning(
                    "%s list/watch failed: %s",
                    self.kind,
                    exc,
                    extra={"event": "definitions.error", "kind": self.kind, "http_status": status},
                )
                self._stop.wait(pause)
                pause = min(pause * 2, 10.0)

    def _missing(self) -> None:
        elsewhere = self.served_elsewhere() if self.served_elsewhere is not None else None
        if elsewhere:
            log.warning(
                "the cluster serves %s only as %s, which this openfero does not read: those objects are ignored "
                "(see the README's migration guide)",
                self.kind,
                elsewhere,
                extra={"event": "definitions.kind_elsewhere", "kind": self.kind, "served_as": elsewhere},
            )
        else:
            log.info("the cluster serves no %s; none in use", self.kind, extra={"event": "definitions.kind_missing", "kind": self.kind})

    def _list(self) -> str:
        response = self.list_call(_preload_content=False)
        _raise_for_status(response)
        body = json.loads(response.data)
        items = body.get("items") or []
        self.on_list(items)
        KUBE_API_UP.labels(self.kind).set(1)
        log.info("%s listed", self.kind, extra={"event": "definitions.listed", "kind": self.kind, "count": len(items)})
        return str(body["metadata"]["resourceVersion"])

    def _watch_from(self, version: str) -> str:
        """Hand over events from ``version`` on until the watch ends; return where it got to."""
        response = self.list_call(
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
                    raise ApiStatusError(obj.get("code") or 500, json.dumps(obj).encode())
                version = obj["metadata"].get("resourceVersion", version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.on_event(kind, obj)
                if kind in ("ADDED", "MODIFIED", "DELETED") and self.log_changes:
                    log.info(
                        "%s %s",
                        self.kind,
                        kind.lower(),
                        extra={"event": "definitions.changed", "kind": self.kind, "object": obj["metadata"]["name"]},
                    )
                if self._stop.is_set():
                    break
        finally:
            response.close()
            response.release_conn()
        return version
