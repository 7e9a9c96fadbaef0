"""A RabbitMQ node of a test's own, beside the machine's, so that the test may stop it.

Started from Debian's ``rabbitmq-server`` with its own node name, ports,
data and log folders (owned by user ``rabbitmq``, which the server drops
to). Quorum queue contents survive a stop and start, as on any node.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

STARTUP_TIMEOUT_S = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class OwnBroker:
    def __init__(self) -> None:
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("rabbitmq-server is not installed: apt-get install rabbitmq-server")
        self.node = f"oftest-{uuid.uuid4().hex[:8]}@localhost"
        self.port = _free_port()
        # Not under pytest's tmp_path: user rabbitmq cannot enter that.
        self.dir = Path(tempfile.mkdtemp(prefix="openfero-broker-"))
        self.dir.chmod(0o755)
        for sub in ("mnesia", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "plugins").write_text("[].\n")
        # The machine's rabbitmq.conf names port 5672: this node needs a file of its own.
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n")
        for path in [self.dir, *self.dir.rglob("*")]:
            shutil.chown(path, "rabbitmq", "rabbitmq")
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(_free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> None:
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        # `rabbitmqctl await_startup` returns too early: wait for the AMQP port.
        while not _listening(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker node {self.node} did not listen within {STARTUP_TIMEOUT_S} s; logs in {self.dir / 'log'}")
            time.sleep(0.2)

    def stop(self) -> None:
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], env=self.env, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while _listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def remove(self) -> None:
        """Stop the node for good and delete its data (test teardown)."""
        self.stop()
        pid_file = self.dir / "pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
