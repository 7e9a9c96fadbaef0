"""The real ingest process against slow and many clients on loopback, and against the largest bodies.

Bounds on time here are loose, to catch a hang or a stall; the benchmark
measures the real figures (scripts/bench).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, reference_alert_bytes, wait_for
from tests.harness import Process, get_status, post

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 40


@pytest.fixture
def ingest(service_env: dict[str, str], tmp_path: Path, processes: list) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **service_env,
        "OPENFERO_INGEST_ADDR": f"127.0.0.1:{port}",
        "OPENFERO_LOG_LEVEL": "WARNING",
        "OPENFERO_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_S),
        "OPENFERO_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_S),
        "OPENFERO_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    processes.append(Process("ingest", env, tmp_path / "ingest.log"))
    wait_for(lambda: get_status(f"http://127.0.0.1:{port}/readiness") == 200, what="ingest ready")
    yield f"http://127.0.0.1:{port}", port


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def _closed_with(sock: socket.socket) -> tuple[bytes, float]:
    """What the server sent until it closed the connection, and when it closed it.

    A client still sending when the server closes may get a reset instead of
    the rest of the answer: the kernel's doing, after the server closed.
    """
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received, time.monotonic()


def _closed_by_ingest(url: str, reason: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f'openfero_http_connections_closed_total{{reason="{reason}"}} '):
                return float(line.split()[-1])
    return 0.0


def _trickle(socks: list[socket.socket], data: bytes, interval_s: float, stop: threading.Event) -> None:
    """Send ``data`` a byte at a time on each socket until the server closes them or ``stop`` is set."""
    for i in range(len(data)):
        if stop.wait(interval_s):
            return
        for sock in socks:
            try:
                sock.send(data[i : i + 1])
            except OSError:
                pass


def test_clients_that_trickle_their_headers_are_cut_off(ingest) -> None:
    url, port = ingest
    # Given 20 clients sending their headers a byte every 0.2 s
    socks = [_connect(port) for _ in range(20)]
    stop = threading.Event()
    started = time.monotonic()
    threading.Thread(target=_trickle, args=(socks, b"POST /alerts HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 200, 0.2, stop), daemon=True).start()
    try:
        # Then each is answered 408 and closed once the header timeout has passed
        for sock in socks:
            received, closed_at = _closed_with(sock)
            assert received.startswith(b"HTTP/1.1 408 ") or not received
            assert HEADER_TIMEOUT_S * 0.9 <= closed_at - started < HEADER_TIMEOUT_S + 4
        assert _closed_by_ingest(url, "header_timeout") == 20
        # and the service answered meanwhile and still does
        assert get_status(url + "/healthz") == 200
    finally:
        stop.set()
        for sock in socks:
            sock.close()


def test_clients_that_trickle_their_body_get_408(ingest) -> None:
    url, port = ingest
    body = reference_alert_bytes()
    socks = [_connect(port) for _ in range(20)]
    for sock in socks:
        sock.sendall(b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    stop = threading.Event()
    started = time.monotonic()
    threading.Thread(target=_trickle, args=(socks, body, 0.2, stop), daemon=True).start()
    try:
        for sock in socks:
            received, closed_at = _closed_with(sock)
            assert not received or (received.startswith(b"HTTP/1.1 408 ") and b"body not received within 2 s" in received), received[:200]
            assert BODY_TIMEOUT_S * 0.9 <= closed_at - started < BODY_TIMEOUT_S + 4
        assert _closed_by_ingest(url, "body_timeout") == 20
        assert get_status(url + "/healthz") == 200
    finally:
        stop.set()
        for sock in socks:
            sock.close()


def test_idle_connections_are_bounded_and_closed(ingest) -> None:
    url, port = ingest
    # Given as many idle connections as ingest takes
    idle = [_connect(port) for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.2)
    try:
        # Then one more is answered 503 and closed at once
        extra = _connect(port)
        started = time.monotonic()
        received, closed_at = _closed_with(extra)
        assert received.startswith(b"HTTP/1.1 503 ") and b"too many connections" in received
        assert closed_at - started < 1
        # and the idle ones are closed once the header timeout has passed, so the service answers again
        for sock in idle:
            received, _ = _closed_with(sock)
            assert received.startswith(b"HTTP/1.1 408 ")
        assert _closed_by_ingest(url, "too_many") == 1 and _closed_by_ingest(url, "header_timeout") == MAX_CONNECTIONS
        assert get_status(url + "/healthz") == 200
        assert post(url + "/alerts", reference_alert_bytes())[0] == 200
    finally:
        for sock in idle:
            sock.close()


def test_a_kept_alive_connection_serves_request_after_request(ingest) -> None:
    url, port = ingest
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(3):
            connection.request("POST", "/alerts", body=reference_alert_bytes(), headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())) == (200, {"accepted": 1})
            time.sleep(HEADER_TIMEOUT_S * 0.6)  # idle between requests is keep-alive, not a slow header
    finally:
        connection.close()


class HealthzWatch:
    """Asks /healthz every 10 ms on a kept-alive connection; the slowest answer seen."""

    def __init__(self, port: int):
        self.port = port
        self.slowest_s = 0.0
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthzWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.wait(0.01):
            started = time.perf_counter()
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            self.slowest_s = max(self.slowest_s, time.perf_counter() - started)
            self.answers += 1


def _worst_case_bodies() -> dict[str, tuple[bytes, int]]:
    """The bodies that cost ingest the most at the default limits (16 MiB, 10,000 alerts), and their answers."""
    limit = 16 * 1024 * 1024
    tiny = b'{"alerts":[' + b",".join([b'{"labels":{}}'] * ((limit - 20) // 14)) + b"]}"
    one_label = b'{"alerts":[{"labels":{"a":"' + b"x" * (limit - 40) + b'"}}]}'
    # The largest webhook taken: the most alerts, as large as the body allows, no fingerprints sent.
    labels = {f"label_{j:02d}": "v" * 90 for j in range(13)}
    alerts = [{"labels": {**labels, "alertname": "Storm", "n": str(i)}, "annotations": {"summary": "s" * 150}} for i in range(10_000)]
    largest = json.dumps({"alerts": alerts}, separators=(",", ":")).encode()
    return {"tiny alerts": (tiny, 413), "one large label": (one_label, 422), "largest taken": (largest, 200)}


def test_healthz_stays_responsive_while_the_largest_bodies_are_read(ingest) -> None:
    url, port = ingest
    for name, (body, status) in _worst_case_bodies().items():
        with HealthzWatch(port) as watch:
            time.sleep(0.1)
            answer, payload = post(url + "/alerts", body, timeout_s=120)
            time.sleep(0.1)
        assert answer == status, (name, payload)
        # Loose: a stall of seconds (the body read on the event loop) fails it.
        assert watch.slowest_s < 1.0, f"{name}: /healthz took {watch.slowest_s:.3f} s"
        assert watch.answers > 5
