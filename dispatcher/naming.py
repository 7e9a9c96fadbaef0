"""Kubernetes' naming rules, and how alert data is made to fit them. No I/O here.

Every name or value that openfero derives from alert data passes through one
of these functions, so each rule is written once:

- env var names: ``OPENFERO_`` + the label name upper-cased, every character
  outside ``[A-Z0-9_]`` replaced by ``_`` (a POSIX name a shell can read);
- label values: at most 63 of ``[-A-Za-z0-9_.]``, alphanumeric at both ends;
- DNS-1123 labels: lower case ``[a-z0-9-]``, at most 63;
- ConfigMap definitions: ``openfero-<alertname lower-cased>-<status>``;
- Job names: the definition's name as a DNS label cut to 52, a dash and a
  10-character hash of the alert occurrence;
- the group key as a label value, as the Go original hashes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

MAX_NAME = 63
ENV_PREFIX = "OPENFERO_"
JOB_HASH_CHARS = 10
# Room for the definition's name in a Job name: the rest is a dash and the hash.
JOB_BASE_ROOM = MAX_NAME - JOB_HASH_CHARS - 1

_ENV_FORBIDDEN = re.compile(r"[^A-Z0-9_]")
_DNS_FORBIDDEN = re.compile(r"[^a-z0-9-]+")
_LABEL_FORBIDDEN = re.compile(r"[^-A-Za-z0-9_.]")


def env_name(label: str) -> str:
    """``OPENFERO_<LABEL>``: upper-cased, every character outside ``[A-Z0-9_]`` made ``_``."""
    return ENV_PREFIX + _ENV_FORBIDDEN.sub("_", label.upper())


def env_collisions(labels: Iterable[str]) -> dict[str, list[str]]:
    """Env names that two or more of ``labels`` would share, with the labels, sorted."""
    by_name: dict[str, list[str]] = {}
    for label in labels:
        by_name.setdefault(env_name(label), []).append(label)
    return {name: sorted(found) for name, found in by_name.items() if len(found) > 1}


class AsTheJobSeesThem(Mapping[str, str]):
    """Labels looked up by the env name a Job gets them under: ``namespace`` finds ``NAMESPACE`` too.

    Selectors read labels through this view, so that whatever a definition's
    matchers saw is what its Job gets in ``OPENFERO_<NAME>``: an alert whose
    only namespace label is spelled ``NAMESPACE`` meets a guard on
    ``namespace``. Labels that share an env name are refused before any Job
    is made, so each lookup has one answer.
    """

    def __init__(self, labels: Mapping[str, str]):
        self._by_env = {env_name(name): value for name, value in labels.items()}

    def __getitem__(self, name: str) -> str:
        return self._by_env[env_name(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_env)

    def __len__(self) -> int:
        return len(self._by_env)


def label_value(value: object) -> str:
    """``value`` made a valid label value: at most 63 of [-A-Za-z0-9_.], alphanumeric ends."""
    cleaned = _LABEL_FORBIDDEN.sub("_", str(value))[:MAX_NAME]
    return cleaned.strip("-_.")


def dns_label(value: object, limit: int = MAX_NAME) -> str:
    """``value`` made a DNS-1123 label of at most ``limit`` characters (empty if nothing is left)."""
    cleaned = _DNS_FORBIDDEN.sub("-", str(value).lower()).strip("-")
    return cleaned[:limit].rstrip("-")


def configmap_name(alertname: str, status: str) -> str:
    """The ConfigMap that holds the definition for ``alertname`` with ``status``."""
    return f"openfero-{alertname.lower()}-{status}"


def job_name(base: str, occurrence: str) -> str:
    """``base`` (the definition's name) made a DNS label that leaves room for ``occurrence``, a dash, then it."""
    return f"{dns_label(base, JOB_BASE_ROOM) or 'openfero'}-{occurrence}"


_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def group_key_label(group_key: str) -> str:
    """Alertmanager's group key as the Go original labels Jobs with it: "g" + FNV-1a 64 in base 36 ("" for "")."""
    if not group_key:
        return ""
    h = _FNV64_OFFSET
    for byte in group_key.encode():
        h = ((h ^ byte) * _FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    digits = ""
    while True:
        h, remainder = divmod(h, 36)
        digits = _BASE36[remainder] + digits
        if not h:
            return "g" + digits
