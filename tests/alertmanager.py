"""Debian's Alertmanager (prometheus-alertmanager 0.25) on loopback, for tests, and a pager that records what it is sent.

Each ``Alertmanager`` has its own configuration, storage folder and ports;
two of them form a cluster (gossip on loopback) when one names the other
as its peer. Cluster timings are shortened so a pair settles in about a
second. The ``Pager`` is a webhook receiver of the test's own: every
notification it gets is what would have paged someone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import free_port, wait_for

BINARY = "/usr/bin/prometheus-alertmanager"


def binary() -> str:
    found = shutil.which("prometheus-alertmanager") or (BINARY if Path(BINARY).exists() else None)
    assert found, "Alertmanager is needed (Debian: apt-get install prometheus-alertmanager; .ci/run does it)"
    return found


def iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def routes(openfero_url: str, pager_url: str, oncall_wait_s: float = 3, oncall_interval_s: float = 2, basic_auth: tuple[str, str] | None = None) -> dict[str, Any]:
    """The worked example's routing, with test timings: openfero hears of each alert at once, the page waits."""
    openfero: dict[str, Any] = {"url": openfero_url, "send_resolved": True, "max_alerts": 0}
    return {
        "route": {
            "receiver": "oncall",
            "routes": [
                {"receiver": "openfero", "group_by": ["..."], "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h", "continue": True},
                {"receiver": "oncall", "group_by": ["..."], "group_wait": f"{oncall_wait_s:g}s", "group_interval": f"{oncall_interval_s:g}s", "repeat_interval": "1h"},
            ],
        },
        "receivers": [
            {"name": "openfero", "webhook_configs": [openfero]},
            {"name": "oncall", "webhook_configs": [{"url": pager_url, "send_resolved": True}]},
        ],
    }


class Alertmanager:
    def __init__(self, folder: Path, config: dict[str, Any], peer: Alertmanager | None = None, clustered: bool = False, web_config: dict[str, Any] | None = None, port: int | None = None):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.cluster_port = free_port() if (clustered or peer) else None
        self.scheme = "https" if web_config and "tls_server_config" in web_config else "http"
        (folder / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.args = [
            binary(),
            f"--config.file={folder / 'alertmanager.yml'}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=debug",
        ]
        if web_config is not None:
            (folder / "web.yml").write_text(yaml.safe_dump(web_config))
            self.args.append(f"--web.config.file={folder / 'web.yml'}")
        if self.cluster_port is None:
            self.args.append("--cluster.listen-address=")
        else:
            self.args += [
                f"--cluster.listen-address=127.0.0.1:{self.cluster_port}",
                f"--cluster.advertise-address=127.0.0.1:{self.cluster_port}",
                "--cluster.gossip-interval=50ms",
                "--cluster.pushpull-interval=1s",
                "--cluster.settle-timeout=1s",
                "--cluster.peer-timeout=500ms",
                "--cluster.probe-interval=200ms",
                "--cluster.reconnect-interval=1s",
            ]
            if peer is not None:
                self.args.append(f"--cluster.peer=127.0.0.1:{peer.cluster_port}")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = open(folder / "alertmanager.log", "ab")

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Alertmanager:
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            try:
                wait_for(lambda: self.proc.poll() is not None or self._ready(), timeout_s=20, what="Alertmanager ready")
                assert self.proc.poll() is None, self.logs()[-2000:]
            except BaseException:
                self.close()  # never leave one running behind a failed test
                raise
        return self

    def _ready(self) -> bool:
        try:
            return self.request("GET", "/-/ready")[0] in (200, 401)  # 401: up, behind basic auth
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        self.stop()
        self._log.close()

    def logs(self) -> str:
        return (self.folder / "alertmanager.log").read_text(errors="replace")

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        import ssl

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
        context = ssl._create_unverified_context() if self.scheme == "https" else None
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                text = response.read().decode()
                try:
                    return response.status, json.loads(text) if text.strip() else None
                except ValueError:
                    return response.status, text
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def push(self, *labelsets: dict[str, str], starts_at: datetime | None = None, ends_at: datetime | None = None) -> None:
        """Post alerts as Prometheus does (startsAt now unless given)."""
        start = starts_at or datetime.now(timezone.utc)
        alerts = [{"labels": labels, "startsAt": iso(start), **({"endsAt": iso(ends_at)} if ends_at else {})} for labels in labelsets]
        status, answer = self.request("POST", "/api/v2/alerts", alerts)
        assert status == 200, answer

    def resolve(self, *labelsets: dict[str, str]) -> None:
        now = datetime.now(timezone.utc)
        self.push(*labelsets, starts_at=now - timedelta(minutes=1), ends_at=now)

    def silences(self) -> list[dict[str, Any]]:
        status, found = self.request("GET", "/api/v2/silences")
        assert status == 200, found
        return found

    def silence(self, silence_id: str) -> dict[str, Any] | None:
        status, found = self.request("GET", f"/api/v2/silence/{silence_id}")
        return found if status == 200 else None

    def alerts(self) -> list[dict[str, Any]]:
        status, found = self.request("GET", "/api/v2/alerts")
        assert status == 200, found
        return found


class Pager:
    """A webhook receiver that records each notification with the time it came (monotonic)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        pager = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                pager.received.append((time.monotonic(), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/page"

    def pages(self, status: str = "firing") -> list[tuple[float, dict[str, str]]]:
        """(when, labels) of every alert notified with ``status``."""
        return [(at, alert["labels"]) for at, body in self.received for alert in body.get("alerts", []) if alert.get("status") == status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
