"""A steady sender of webhooks, each with alerts of its own, that records every answer.

It posts on a fixed beat whatever the answers take (as Alertmanager's
groups flush independently of each other), so a slow or refused webhook
never hides the ones after it. Afterwards it can send again what got a 503,
as Alertmanager does, and tell how long the 503 answers lasted.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


def alerts(count: int, start: int = 0, alertname: str = "Broken") -> list[dict[str, Any]]:
    """``count`` distinct firing alerts, labelled instance i<start> ... i<start+count-1>."""
    return [
        {"labels": {"alertname": alertname, "instance": f"i{n}"}, "status": "firing", "startsAt": "2025-01-01T00:00:00Z"}
        for n in range(start, start + count)
    ]


def body(n: int, per_webhook: int) -> bytes:
    """Webhook number ``n``: alerts i<n*per_webhook> onwards."""
    return json.dumps({"version": "4", "status": "firing", "receiver": "openfero", "alerts": alerts(per_webhook, n * per_webhook)}).encode()


def post(url: str, data: bytes, timeout_s: float = 30) -> int:
    """The status of one POST; 0 when no answer came (connection refused, timeout)."""
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@dataclass(frozen=True)
class Answer:
    n: int
    sent: float  # time.monotonic()
    answered: float
    status: int

    @property
    def latency_s(self) -> float:
        return self.answered - self.sent


class Poster:
    """Posts webhook n = 0, 1, 2 ... to ``url`` every ``interval_s``, each with ``per_webhook`` alerts of its own."""

    def __init__(self, url: str, per_webhook: int = 5, interval_s: float = 0.1):
        self.url = url
        self.per_webhook = per_webhook
        self.interval_s = interval_s
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="poster", daemon=True)
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="post")
        self.sent = 0

    def start(self) -> Poster:
        self._thread.start()
        return self

    def stop(self) -> list[Answer]:
        """Stop sending, wait for every answer; all answers by webhook number."""
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)
        return self.by_number()

    def _beat(self) -> None:
        started = time.monotonic()
        n = 0
        while not self._stop.is_set():
            self._pool.submit(self._one, n)
            n += 1
            self.sent = n
            self._stop.wait(max(0.0, started + n * self.interval_s - time.monotonic()))

    def _one(self, n: int) -> None:
        sent = time.monotonic()
        status = post(self.url, body(n, self.per_webhook))
        with self._lock:
            self.answers.append(Answer(n, sent, time.monotonic(), status))

    def by_number(self) -> list[Answer]:
        with self._lock:
            return sorted(self.answers, key=lambda a: a.n)

    def accepted(self) -> list[Answer]:
        return [a for a in self.by_number() if a.status == 200]

    def refused(self) -> list[Answer]:
        return [a for a in self.by_number() if a.status != 200]

    def send_refused_again(self, timeout_s: float = 60) -> int:
        """Post every webhook that did not get 200 until it does, as Alertmanager retries; how many."""
        refused = self.refused()
        deadline = time.monotonic() + timeout_s
        for answer in refused:
            while post(self.url, body(answer.n, self.per_webhook)) != 200:
                if time.monotonic() > deadline:
                    raise AssertionError(f"webhook {answer.n} still refused after {timeout_s} s")
                time.sleep(0.2)
        return len(refused)

    def instances(self) -> list[str]:
        """Every alert sent, whatever its answer."""
        return sorted(f"i{i}" for i in range(self.sent * self.per_webhook))


def unavailable_windows(answers: list[Answer]) -> list[tuple[float, float]]:
    """Spans in which webhooks were refused: from the first refused one's sending to the answer
    of the last refused one before a webhook that was sent later got 200."""
    windows: list[tuple[float, float]] = []
    start: float | None = None
    end = 0.0
    for answer in sorted(answers, key=lambda a: a.sent):
        if answer.status != 200:
            start = answer.sent if start is None else start
            end = max(end, answer.answered)
        elif start is not None and answer.sent > end:
            windows.append((start, end))
            start = None
    if start is not None:
        windows.append((start, end))
    return windows
