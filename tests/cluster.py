"""A real API server seen through the test interface the API double offers.

End-to-end tests talk to ``kube`` through ``apply``, ``delete``, ``jobs`` and
``kubeconfig``. ``ApiCluster`` gives those over the official client to any
API server: testcontainers' K3s when a Docker engine answers, and the API
double itself (which keeps this adapter tested on machines without Docker).
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException


class ApiCluster:
    def __init__(self, kubeconfig: dict[str, Any]):
        self._kubeconfig = kubeconfig
        api_client = config.new_client_from_config_dict(kubeconfig)
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return self._kubeconfig

    def add_namespace(self, name: str) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise

    def apply(self, resource: str, namespace: str, obj: dict[str, Any]) -> None:
        assert resource == "configmaps", "tests apply only ConfigMaps"
        name = obj["metadata"]["name"]
        body = {"apiVersion": "v1", "kind": "ConfigMap", **obj}
        try:
            self.core.create_namespaced_config_map(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_config_map(name, namespace, body)

    def delete(self, resource: str, namespace: str, name: str) -> None:
        if resource == "configmaps":
            self.core.delete_namespaced_config_map(name, namespace)
        else:
            self.batch.delete_namespaced_job(name, namespace)

    def jobs(self, namespace: str = "default") -> list[dict[str, Any]]:
        listed = self.batch.list_namespaced_job(
            namespace, label_selector="app.kubernetes.io/managed-by=openfero", _preload_content=False
        )
        return sorted(json.loads(listed.data)["items"], key=lambda job: job["metadata"]["name"])

    def clean(self, namespace: str = "default") -> None:
        """Remove what tests leave behind: openfero's Jobs and the selected ConfigMaps."""
        for job in self.jobs(namespace):
            self.batch.delete_namespaced_job(job["metadata"]["name"], namespace, propagation_policy="Background")
        for cm in self.core.list_namespaced_config_map(namespace, label_selector="app=openfero").items:
            self.core.delete_namespaced_config_map(cm.metadata.name, namespace)
