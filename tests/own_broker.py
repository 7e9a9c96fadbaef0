"""A RabbitMQ node of a test's own, beside the machine's, so that the test may stop or kill it.

Started from Debian's ``rabbitmq-server`` with its own node name, ports
(AMQP, Erlang distribution, management when that plugin is enabled), data
and log folders and configuration file (owned by user ``rabbitmq``, which
the server drops to; the machine's configuration pins port 5672). Nodes
run as ``rabbitmq`` with that user's home, so every node of this machine
shares one Erlang cookie and can join the others (``tests.broker_cluster``).
Quorum queue contents survive a stop and start, as on any node.

Each node's folder records the process that made it (``owner``): a run
that was aborted leaves nodes whose owner is gone, and ``remove_leftovers``
ends those, and only those, so that test runs side by side leave each
other alone.
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
from collections.abc import Sequence
from pathlib import Path

STARTUP_TIMEOUT_S = 90.0
FOLDER_PREFIX = "openfero-broker-"


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now (all held open while picking, so none twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OwnBroker:
    def __init__(self, name: str | None = None, plugins: Sequence[str] = (), ports: Sequence[int] = ()) -> None:
        """``ports``: AMQP, distribution and management port, when the caller picked them (else free ones)."""
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("rabbitmq-server is not installed: apt-get install rabbitmq-server")
        self.node = f"{name or 'oftest-' + uuid.uuid4().hex[:8]}@localhost"
        self.port, self.dist_port, management_port = list(ports) or free_ports(3)
        self.management_port = management_port if "rabbitmq_management" in plugins else None
        # Not under pytest's tmp_path: user rabbitmq cannot enter that.
        self.dir = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        self.dir.chmod(0o755)
        for sub in ("mnesia", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "owner").write_text(f"{os.getpid()}\n{self.node}\n")
        (self.dir / "plugins").write_text(f"[{','.join(plugins)}].\n")
        config = [f"listeners.tcp.local = 127.0.0.1:{self.port}", "loopback_users = none"]
        if self.management_port is not None:
            config += [f"management.tcp.port = {self.management_port}", "management.tcp.ip = 127.0.0.1"]
            # Queue members and leaders reach the management API with the statistics: every second, not 5.
            config += ["collect_statistics_interval = 1000"]
        (self.dir / "rabbitmq.conf").write_text("\n".join(config) + "\n")
        for path in [self.dir, *self.dir.rglob("*")]:
            shutil.chown(path, "rabbitmq", "rabbitmq")
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def management_url(self) -> str:
        assert self.management_port is not None, "this node runs without the management plugin"
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def pid(self) -> int | None:
        """The node's Erlang VM, while it runs."""
        try:
            pid = int((self.dir / "pid").read_text().strip())
        except (OSError, ValueError):
            return None
        # A stale pid file may name a process that has nothing to do with this node.
        return pid if _runs_node(pid, self.node) else None

    def launch(self) -> None:
        """Start the node; return before it listens (see ``wait_listening``), so nodes can boot side by side."""
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, check=True, capture_output=True, timeout=60)

    def wait_listening(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        started = time.monotonic()
        # `rabbitmqctl await_startup` returns too early: wait for the AMQP port (of this node, not
        # of whatever else might hold it: the VM must be running too).
        while not (listening(self.port) and self.pid is not None):
            waited = time.monotonic() - started
            if waited > timeout_s or (waited > 15 and self.pid is None):
                raise RuntimeError(f"broker node {self.node} did not start within {waited:.0f} s; its log ends:\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 20) -> str:
        logs = sorted((self.dir / "log").glob("*.log"))
        text = "".join(path.read_text(errors="replace") for path in logs)
        return "\n".join(text.splitlines()[-lines:]) or "(no log)"

    def start(self) -> None:
        self.launch()
        self.wait_listening()

    def ctl(self, *args: str, tool: str = "rabbitmqctl", check: bool = True, timeout_s: float = 60) -> str:
        """Run a RabbitMQ CLI tool against this node; its output."""
        result = subprocess.run([tool, "-n", self.node, *args], env=self.env, capture_output=True, text=True, timeout=timeout_s)
        if check and result.returncode != 0:
            tail = "" if self.pid is not None else f"\nthe node is not running; its log ends:\n{self.log_tail()}"
            raise RuntimeError(f"{tool} {' '.join(args)} on {self.node}: {result.stdout}{result.stderr}{tail}")
        return result.stdout

    def stop(self) -> None:
        """Stop the node gracefully, as a rolling restart does."""
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], env=self.env, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while _listening_or_running(self) and time.monotonic() < deadline:
            time.sleep(0.1)

    def kill(self, wait: bool = True) -> None:
        """SIGKILL the node's VM, as a crashed pod looks to the others; ``wait`` until it is gone."""
        pid = self.pid
        if pid is None:
            raise RuntimeError(f"broker node {self.node} is not running")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while wait and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def remove(self) -> None:
        """End the node for good and delete its data (test teardown)."""
        pid = self.pid
        if pid is not None:
            # No graceful stop: the data goes anyway, and a stop waits on a cluster that may be gone.
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def _runs_node(pid: int, node: str) -> bool:
    """Whether process ``pid`` is the VM (or a helper) of ``node``: the node name is in its environment."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"RABBITMQ_NODENAME={node}".encode() in environ


def _listening_or_running(broker: OwnBroker) -> bool:
    return listening(broker.port) or broker.pid is not None


def remove_leftovers(tmp: Path | None = None) -> list[str]:
    """End the nodes of earlier runs whose owning process is gone, and delete their folders; their names."""
    removed = []
    for folder in Path(tmp or tempfile.gettempdir()).glob(FOLDER_PREFIX + "*"):
        try:
            owner, node = (folder / "owner").read_text().split()
        except (OSError, ValueError):
            continue
        if _alive(int(owner)):
            continue  # a run in progress, maybe another engineer's
        for pid in _pids_of_node(node):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(node)
    return removed


def _pids_of_node(node: str) -> set[int]:
    """Every process that runs ``node``: the server sets RABBITMQ_NODENAME in its environment."""
    pids = {int(proc.name) for proc in Path("/proc").iterdir() if proc.name.isdigit() and _runs_node(int(proc.name), node)}
    return pids - {os.getpid()}
