"""What Kubernetes' Pod Security Standards would say of a definition's pod. No I/O here.

Pod Security Admission rejects pods, not Jobs: the Job is created, then its
controller fails to create pods (events ``FailedCreate ... violates
PodSecurity``) until the Job's deadline. So ``openfero validate`` checks a
definition against the level of the namespace its Jobs run in, and warns
about privileges a remediation rarely needs at any level. The rules follow
the published standards (baseline and restricted, Kubernetes 1.25 and
later).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

LEVELS = ("privileged", "baseline", "restricted")

_BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t"}
_RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


def _containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(pod.get(kind) or []):
            if isinstance(container, dict):
                yield f"{kind}[{index}]", container


def _context(obj: dict[str, Any]) -> dict[str, Any]:
    value = obj.get("securityContext")
    return value if isinstance(value, dict) else {}


def always(pod: dict[str, Any]) -> list[str]:
    """Privileges worth a warning whatever the namespace allows."""
    found = [f"{key}: true shares the node's namespaces" for key in ("hostPID", "hostNetwork", "hostIPC") if pod.get(key)]
    for index, volume in enumerate(pod.get("volumes") or []):
        if isinstance(volume, dict) and "hostPath" in volume:
            found.append(f"volumes[{index}] mounts a path of the node (hostPath)")
    for where, container in _containers(pod):
        context = _context(container)
        if context.get("privileged"):
            found.append(f"{where}: privileged")
        added = (context.get("capabilities") or {}).get("add") or []
        if added:
            found.append(f"{where}: adds capabilities {', '.join(map(str, added))}")
    return found


_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def violations(pod: dict[str, Any], level: str, annotations: dict[str, Any] | None = None) -> list[str]:
    """What the given level (baseline or restricted) would reject in the pod spec (and its template's annotations)."""
    if level == "privileged":
        return []
    found = _baseline(pod)
    for key, value in (annotations or {}).items():
        if str(key).startswith(_APPARMOR_ANNOTATION) and not (value == "runtime/default" or str(value).startswith("localhost/")):
            found.append(f"metadata.annotations.{key}: AppArmor profile {value!r}")
    if level == "restricted":
        found += _restricted(pod)
    return found


def _baseline(pod: dict[str, Any]) -> list[str]:
    found = [f"{key}: true" for key in ("hostPID", "hostNetwork", "hostIPC") if pod.get(key)]
    pod_context = _context(pod)
    for index, volume in enumerate(pod.get("volumes") or []):
        if isinstance(volume, dict) and "hostPath" in volume:
            found.append(f"volumes[{index}]: hostPath")
    for sysctl in pod_context.get("sysctls") or []:
        if isinstance(sysctl, dict) and sysctl.get("name") not in _SAFE_SYSCTLS:
            found.append(f"securityContext.sysctls: {sysctl.get('name')} is not a safe sysctl")
    for where, obj in [("", pod), *((f"{w}.", c) for w, c in _containers(pod))]:
        context = _context(obj)
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where}securityContext.windowsOptions.hostProcess: true")
        if ((context.get("seccompProfile") or {}).get("type")) == "Unconfined":
            found.append(f"{where}securityContext.seccompProfile: Unconfined")
        if (context.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            found.append(f"{where}securityContext.appArmorProfile: an apparmor profile of type {context['appArmorProfile'].get('type')}")
        selinux = context.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in _SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            found.append(f"{where}securityContext.seLinuxOptions: a custom SELinux user, role or type")
    for where, container in _containers(pod):
        context = _context(container)
        if context.get("privileged"):
            found.append(f"{where}: privileged")
        extra = set(map(str, (context.get("capabilities") or {}).get("add") or [])) - _BASELINE_CAPABILITIES
        if extra:
            found.append(f"{where}: capabilities beyond the baseline: {', '.join(sorted(extra))}")
        if context.get("procMount") not in (None, "Default"):
            found.append(f"{where}: procMount {context.get('procMount')}")
        for port in container.get("ports") or []:
            if isinstance(port, dict) and port.get("hostPort"):
                found.append(f"{where}: hostPort {port['hostPort']}")
    return found


def _restricted(pod: dict[str, Any]) -> list[str]:
    found = []
    pod_context = _context(pod)
    for index, volume in enumerate(pod.get("volumes") or []):
        kinds = set(volume) - {"name"} if isinstance(volume, dict) else set()
        if kinds and not kinds <= _RESTRICTED_VOLUMES:
            found.append(f"volumes[{index}]: volume type {', '.join(sorted(kinds))} is not allowed")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    for where, container in _containers(pod):
        context = _context(container)
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: securityContext.allowPrivilegeEscalation must be false")
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
            found.append(f"{where}: securityContext.runAsNonRoot must be true (on the pod or the container)")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            found.append(f"{where}: runAsUser 0 (root)")
        if (context.get("seccompProfile") or {}).get("type", pod_seccomp) not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost (on the pod or the container)")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{where}: capabilities must drop ALL")
        if set(map(str, capabilities.get("add") or [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{where}: only NET_BIND_SERVICE may be added")
    return found
