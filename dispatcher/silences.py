"""The silence openfero holds in Alertmanager while an alert's remediation runs: the rules. No I/O here.

A definition asks for one with the annotation ``openfero.io/silence: "true"``
(on the ConfigMap, on the Job in it, or ``spec.silence.enabled`` of an
Operarius); off by default. ``openfero.io/silence-after-success`` says what
happens to it when the Job succeeds: ``keep`` (the default: it ends by
itself at its end time, which leaves the fixed alert time to resolve) or
``expire`` (at once).

The silence:
- **matches exactly the alert**: one equality matcher per label, names and
  values as sent (Alertmanager's label names are case-sensitive, so
  ``namespace`` and ``NAMESPACE`` are two labels). Never a regex: label
  values are attacker-shaped. What equality on every label cannot say: an
  alert with the same labels *plus more* matches too (Alertmanager has no
  "no other label" matcher);
- **ends by itself**: at the Job's ``activeDeadlineSeconds`` (else
  OPENFERO_SILENCE_DURATION_SECONDS) plus OPENFERO_SILENCE_MARGIN_SECONDS
  from its creation, so a lost openfero never silences for longer;
- **names its Job**: ``createdBy: openfero`` and a comment that ends with
  the marker ``[openfero.io/job=<namespace>/<name>]``, by which a retried or
  redelivered message finds the silence an earlier attempt created
  (Alertmanager chooses silence ids, so nothing else could find it).

The Job carries the silence (``openfero.io/silence-*`` annotations: its id,
the Alertmanager that made it, its end, the choice after success), so the
outcome leader can end it: a Job that failed, timed out or was deleted
has its silence expired at once, so the alert's next notification pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from dispatcher.outcomes import SUCCEEDED, parse_time

ANNOTATION_SILENCE = "openfero.io/silence"
ANNOTATION_AFTER_SUCCESS = "openfero.io/silence-after-success"
# On the Job: the silence it holds.
JOB_SILENCE_ID = "openfero.io/silence-id"
JOB_SILENCE_ALERTMANAGER = "openfero.io/silence-alertmanager"
JOB_SILENCE_ENDS_AT = "openfero.io/silence-ends-at"
JOB_SILENCE_AFTER_SUCCESS = ANNOTATION_AFTER_SUCCESS

CREATED_BY = "openfero"
KEEP, EXPIRE = "keep", "expire"
# Sent as startsAt: Alertmanager moves a start in the past to its own now, so a clock of
# ours that runs up to this far ahead still makes an active silence, not a pending one.
BACKDATE = timedelta(seconds=60)
HOLDING = ("active", "pending")

# What became of a Job's silence, in its outcome record.
KEPT = "kept"  # succeeded, after-success keep: it ends at its own end
EXPIRED = "expired"  # ended before its end: by openfero now, or earlier by openfero or a person
ENDED = "ended"  # it had reached its own end
MISSING = "missing"  # no Alertmanager that answered knows it (lost with an Alertmanager's state)

_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0", ""}


class InvalidSilenceRequest(ValueError):
    """The definition's silence annotations cannot be understood."""


@dataclass(frozen=True)
class Wanted:
    """A definition's request for a silence."""

    after_success: str  # KEEP or EXPIRE


def wanted(manifest: Any, annotations: Mapping[str, str]) -> Wanted | None:
    """What the definition asks for: the Job manifest's own annotations first, then the definition's."""
    meta = manifest.get("metadata") if isinstance(manifest, dict) else None
    own = meta.get("annotations") if isinstance(meta, dict) else None
    own = own if isinstance(own, dict) else {}

    def read(name: str) -> str | None:
        value = own.get(name, annotations.get(name))
        if value is None:
            return None
        if "{{" in str(value):
            raise InvalidSilenceRequest(f"annotation {name} may not be a template: alert data cannot choose it")
        return str(value).strip().lower()

    asked = read(ANNOTATION_SILENCE)
    if asked is None or asked in _FALSE:
        return None
    if asked not in _TRUE:
        raise InvalidSilenceRequest(f"annotation {ANNOTATION_SILENCE}: {asked!r} is not true or false")
    after = read(ANNOTATION_AFTER_SUCCESS) or KEEP
    if after not in (KEEP, EXPIRE):
        raise InvalidSilenceRequest(f"annotation {ANNOTATION_AFTER_SUCCESS}: {after!r} is not keep or expire")
    return Wanted(after)


def lifetime_s(job_body: dict[str, Any], default_s: float, margin_s: float) -> float:
    """How long the silence for this Job holds: its activeDeadlineSeconds (else ``default_s``) plus ``margin_s``."""
    deadline = (job_body.get("spec") or {}).get("activeDeadlineSeconds")
    if not isinstance(deadline, int) or isinstance(deadline, bool) or deadline <= 0:
        deadline = default_s
    return float(deadline) + margin_s


def marker(namespace: str, job_name: str) -> str:
    return f"[openfero.io/job={namespace}/{job_name}]"


def matchers(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """One equality matcher per label, as sent: never a regex, never a name changed."""
    return [{"name": name, "value": value, "isRegex": False, "isEqual": True} for name, value in sorted(labels.items())]


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def body(labels: Mapping[str, str], namespace: str, job_name: str, definition: str, now: datetime, lifetime: float) -> dict[str, Any]:
    """The silence to POST to /api/v2/silences for the Job ``namespace/job_name`` of this alert."""
    ends = now + timedelta(seconds=lifetime)
    comment = (
        f"openfero is remediating this alert: Job {namespace}/{job_name} (definition {definition}). "
        f"Expired at once if the remediation fails; ends by itself at {_iso(ends)} at the latest. "
        + marker(namespace, job_name)
    )
    return {"matchers": matchers(labels), "startsAt": _iso(now - BACKDATE), "endsAt": _iso(ends), "createdBy": CREATED_BY, "comment": comment}


def is_ours(silence: Mapping[str, Any], namespace: str, job_name: str) -> bool:
    """Whether ``silence`` is the one openfero made for that Job."""
    return silence.get("createdBy") == CREATED_BY and str(silence.get("comment") or "").endswith(marker(namespace, job_name))


def holding(silence: Mapping[str, Any]) -> bool:
    return (silence.get("status") or {}).get("state") in HOLDING


@dataclass(frozen=True)
class Held:
    """The silence a Job holds, as its annotations say."""

    id: str
    alertmanager: str
    ends_at: datetime
    after_success: str

    def annotations(self) -> dict[str, str]:
        return {
            JOB_SILENCE_ID: self.id,
            JOB_SILENCE_ALERTMANAGER: self.alertmanager,
            JOB_SILENCE_ENDS_AT: _iso(self.ends_at),
            JOB_SILENCE_AFTER_SUCCESS: self.after_success,
        }

    @classmethod
    def of(cls, annotations: Mapping[str, str]) -> Held | None:
        silence_id = annotations.get(JOB_SILENCE_ID, "")
        if not silence_id:
            return None
        # A Job whose end annotation was damaged: treat its silence as ending now, the short side.
        ends = parse_time(annotations.get(JOB_SILENCE_ENDS_AT, "")) or datetime.now(timezone.utc)
        after = annotations.get(JOB_SILENCE_AFTER_SUCCESS, KEEP)
        return cls(silence_id, annotations.get(JOB_SILENCE_ALERTMANAGER, ""), ends, after if after in (KEEP, EXPIRE) else EXPIRE)

    @classmethod
    def found(cls, silence: Mapping[str, Any], alertmanager: str, after_success: str) -> Held:
        ends = parse_time(str(silence.get("endsAt") or "").replace("Z", "+00:00")) or datetime.now(timezone.utc)
        return cls(str(silence["id"]), alertmanager, ends, after_success)

    def ended(self, now: datetime) -> bool:
        return now >= self.ends_at


def keeps(outcome: str, held: Held) -> bool:
    """Whether the silence stays when its Job ended so: only a success whose definition says keep."""
    return outcome == SUCCEEDED and held.after_success == KEEP


def already_over(silence: Mapping[str, Any], held: Held) -> str:
    """EXPIRED or ENDED, for a silence Alertmanager says has expired: did it end before its time?"""
    ends = parse_time(str(silence.get("endsAt") or "").replace("Z", "+00:00"))
    # A second of slack: Alertmanager's clock and ours, and its rounding.
    return EXPIRED if ends is not None and ends < held.ends_at - timedelta(seconds=1) else ENDED


def record_entry(held: Held, action: str, where: str = "") -> dict[str, Any]:
    """What the outcome record says of the Job's silence."""
    return {"id": held.id, "alertmanager": where or held.alertmanager, "endsAt": _iso(held.ends_at), "afterSuccess": held.after_success, "action": action}
