"""What handling one message came to, as one value. No I/O here.

The handler returns a ``Result``; the consuming loop decides from it what
to do with the message (``dispatcher.deciding``), does it, and logs and
counts from the same value. A failure is a ``Failure`` from where it enters
(the envelope, the definition, the API) to the headers of a dead letter.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shared.envelope import Alert

# The words a failure is known by: in logs, in metrics, in the header openfero-error-class.
INVALID_ENVELOPE = "InvalidEnvelope"  # the message cannot be read
INVALID_DEFINITION = "InvalidDefinition"  # the definition is not a Job, or cannot be used
RENDER_ERROR = "RenderError"  # the definition's templates fail
API_REJECTED = "ApiRejected"  # the API refused the Job for good (400, 422)
API_UNAVAILABLE = "ApiUnavailable"  # unreachable, timed out, 429, 5xx
API_NEEDS_OPERATOR = "ApiNeedsOperator"  # 401, 403, 404: RBAC or a namespace to fix
INTERNAL_ERROR = "InternalError"  # a bug

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
NEEDS_OPERATOR_STATUSES = frozenset({401, 403, 404})  # someone must fix RBAC or create the namespace


@dataclass(frozen=True)
class Failure:
    """Why a message could not be handled, and whether trying again can help."""

    reason: str
    error_class: str
    status: int | None = None  # the API's HTTP status, where there was one
    transient: bool = False  # trying again later may succeed
    needs_operator: bool = False  # ... once someone has fixed something (RBAC, a namespace)
    retry_after_s: float | None = None  # the API's Retry-After

    @classmethod
    def from_api(cls, status: int | None, message: str, retry_after_s: float | None = None) -> Failure:
        """An API call that failed: None for no answer at all (unreachable, timed out)."""
        if status is None or status in TRANSIENT_STATUSES or status >= 500:
            return cls(message, API_UNAVAILABLE, status, transient=True, retry_after_s=retry_after_s)
        if status in NEEDS_OPERATOR_STATUSES:
            return cls(message, API_NEEDS_OPERATOR, status, transient=True, needs_operator=True)
        return cls(message, API_REJECTED, status)


class Kind(enum.Enum):
    CREATED = "created"  # the Job was created (or, in a dry run, printed)
    DUPLICATE = "duplicate"  # the Job exists already: an earlier delivery of the same occurrence made it
    NO_DEFINITION = "no_definition"  # nothing to do
    REFUSED = "refused"  # the alert's own data cannot be handed to a Job (not a dead letter)
    FAILED = "failed"  # see ``failure``
    SUPPRESSED = "suppressed"  # a Job for the same target ran within the definition's cool-down (``covering_job``)
    WAITING = "waiting"  # over a concurrency or the global limit: into the wait queue (``hold``)
    PARKED = "parked"  # the definition's breaker is open: into the parked queue (``hold``)


@dataclass(frozen=True)
class Hold:
    """Where a waiting or parked alert stands: written into its headers."""

    definition: str
    target: str = ""
    limit: int | None = None  # the concurrency limit it waits for; None for the global limit alone
    job: str = ""
    why: str = ""  # concurrency, global, breaker
    received: str = ""  # the alert's receivedAt
    cooldown_target: str = ""  # with a cool-down: its target, and how long (the wait leader lets such alerts go without a slot)
    cooldown_s: float | None = None


@dataclass(frozen=True)
class Result:
    kind: Kind
    reason: str = ""  # in words, for the log
    failure: Failure | None = None  # with FAILED
    refusal: str = ""  # with REFUSED: why, in a word (env_name_collision, missing_value, too_large)
    alert: Alert | None = None  # None when the message could not be read
    definition: str = ""  # "<source>/<key>" of the definition found
    operarius: tuple[str, str] | None = None  # (namespace, name) when an Operarius was chosen
    job: str = ""  # the Job's name, once rendered
    silence: str = ""  # the id of the Alertmanager silence made (or found) before the Job
    covering_job: str = ""  # with SUPPRESSED: the Job that covers the target
    hold: Hold | None = None  # with WAITING and PARKED
    alertname_label: str = ""  # the metric label for the alertname (bounded: see dispatcher.metrics)

    def __post_init__(self) -> None:
        # A failure is what makes a result FAILED: neither goes without the other.
        if (self.kind is Kind.FAILED) != (self.failure is not None):
            raise ValueError(f"a {self.kind.value} result {'needs' if self.kind is Kind.FAILED else 'has no'} failure")

    @property
    def done(self) -> bool:
        """Whether the Job exists now (created or found)."""
        return self.kind in (Kind.CREATED, Kind.DUPLICATE)
