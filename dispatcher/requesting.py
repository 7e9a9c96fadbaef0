"""One raw Kubernetes API call through the official client: the status and the JSON body back.

The outcome tracker, the leader election and the status writer need what
the client's generated methods hide or get in the way of: the status code
of every answer (409 is an answer, not an error), merge patches that carry
a resourceVersion as a precondition, and bodies sent exactly as written
(a Lease's times must have six fractional digits; the client's models
print none when the microseconds are zero). So they send requests through
the client's own serializer and connection pool, with our configuration,
and get back an ``Answer``. Blocking: call it from a thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

MERGE_PATCH = "application/merge-patch+json"


class Unreachable(Exception):
    """No answer: connection refused or reset, a timeout, a TLS failure."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    @property
    def message(self) -> str:
        return str(self.body.get("message") or "")

    def __str__(self) -> str:
        return f"HTTP {self.status}" + (f": {self.message}" if self.message else "")


def call(
    api_client: ApiClient,
    method: str,
    path: str,
    timeout_s: float,
    body: Any = None,
    content_type: str = "application/json",
    query: list[tuple[str, str]] | None = None,
) -> Answer:
    """``method`` on ``path`` (already holding its names); raises Unreachable when nothing answered."""
    try:
        request = api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = api_client.call_api(*request, _request_timeout=timeout_s)
        try:
            data = response.read()
        finally:
            response.response.release_conn()
    except (urllib3.exceptions.HTTPError, OSError, ApiException) as exc:
        raise Unreachable(str(exc) or type(exc).__name__) from None
    try:
        parsed = json.loads(data or b"{}")
    except ValueError:
        parsed = {"message": (data or b"")[:300].decode(errors="replace")}
    return Answer(response.status, parsed if isinstance(parsed, dict) else {})
