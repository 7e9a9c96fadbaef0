"""A three-node RabbitMQ cluster of the tests' own, with a round-robin balancer in front.

Three ``OwnBroker`` nodes (own names, ports, folders and configuration
files; the Erlang cookie of user ``rabbitmq``, which all of them run as)
boot side by side; the second and third then ``join_cluster`` the first.
Clients connect through ``Balancer``, as pods connect through a Kubernetes
Service, so a client that reconnects lands on the next node that answers.
The management plugin runs on every node: it is how the tests (and
``openfero doctor``) see a queue's leader, members and connections.

Nodes are killed (-9), stopped and restarted through their
``OwnBroker``; this module finds the node that holds a quorum queue's
leader or a client's connection, and heals the cluster between tests.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.broker import connection_name

from tests.own_broker import OwnBroker, free_ports, remove_leftovers
from tests.tcp_proxy import ThreadedTcpProxy

PLUGINS = ("rabbitmq_management",)
_AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


class BrokerCluster:
    def __init__(self, size: int = 3):
        run = uuid.uuid4().hex[:6]
        ports = free_ports(3 * size + 1)
        self.nodes = [OwnBroker(f"ofcluster-{run}-{i}", PLUGINS, ports[3 * i : 3 * i + 3]) for i in range(size)]
        self._balancer_port = ports[-1]
        self.balancer: ThreadedTcpProxy | None = None
        self.startup_s = float("nan")

    def start(self) -> float:
        """Boot the nodes side by side, cluster them and open the balancer; the seconds it took."""
        started = time.monotonic()
        remove_leftovers()  # nodes of an aborted earlier run
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_listening()
        first, joining = self.nodes[0], self.nodes[1:]
        with ThreadPoolExecutor(len(joining)) as pool:
            list(pool.map(lambda n: n.ctl("stop_app"), joining))
            # One at a time: two nodes joining at once can abort each other's schema copy.
            for node in joining:
                node.ctl("join_cluster", first.node)
            list(pool.map(lambda n: n.ctl("start_app"), joining))
        for node in joining:
            node.wait_listening()
        self.wait_running(*self.nodes)
        self.balancer = ThreadedTcpProxy.balancer([("127.0.0.1", n.port) for n in self.nodes], self._balancer_port)
        self.startup_s = time.monotonic() - started
        return self.startup_s

    @property
    def url(self) -> str:
        """The AMQP URL of the cluster, through the balancer."""
        assert self.balancer is not None, "the cluster is not started"
        return f"amqp://guest:guest@127.0.0.1:{self.balancer.port}/"

    def by_name(self, name: str) -> OwnBroker:
        [node] = [n for n in self.nodes if n.node == name]
        return node

    def others(self, *nodes: OwnBroker) -> list[OwnBroker]:
        return [n for n in self.nodes if n not in nodes]

    # -- faults ------------------------------------------------------------------------------

    def restart(self, node: OwnBroker) -> None:
        """Start a node that was killed or stopped, and wait until the cluster counts it running again."""
        node.start()
        self.wait_running(node)

    def heal(self) -> None:
        """Bring every node back that is down, and put each back into the balancer."""
        for node in self.nodes:
            self.put_back(node)
            if node.pid is None:
                node.start()
        self.wait_running(*self.nodes)

    def suspend_members(self, node: OwnBroker, queues: list[str]) -> None:
        """Suspend ``node``'s Raft members of these quorum queues (sys:suspend): they neither vote nor
        replicate, while the node serves everything else as before. A leader that dies meanwhile has
        no successor until ``resume_members``: an election held open."""
        node.ctl("eval", _for_each_member(queues, "suspend"))

    def resume_members(self, node: OwnBroker, queues: list[str]) -> None:
        node.ctl("eval", _for_each_member(queues, "resume"))

    @contextlib.contextmanager
    def election_held(self, voter: OwnBroker, queues: list[str], hold_s: float) -> Iterator[None]:
        """Hold back ``voter``'s members of ``queues`` from before the block until ``hold_s`` after it:
        a leader killed in the block has no successor meanwhile (on its own the election takes well
        under a second, so whether a client's new channel lands in it is a matter of timing)."""
        self.suspend_members(voter, queues)
        try:
            yield
            time.sleep(hold_s)
        finally:
            self.resume_members(voter, queues)

    @contextlib.contextmanager
    def only(self, node: OwnBroker) -> Iterator[None]:
        """New connections through the balancer go to ``node`` alone while the block runs."""
        others = self.others(node)
        for other in others:
            self.take_out(other)
        try:
            yield
        finally:
            for other in others:
                self.put_back(other)

    def take_out(self, node: OwnBroker) -> None:
        """Stop sending new connections to ``node`` (a pod that is not ready)."""
        assert self.balancer is not None
        self.balancer.take_out(("127.0.0.1", node.port))

    def put_back(self, node: OwnBroker) -> None:
        assert self.balancer is not None
        self.balancer.put_back(("127.0.0.1", node.port))

    # -- what the management API sees ----------------------------------------------------------

    def api(self, path: str, method: str = "GET") -> Any:
        """GET ``path`` of the management API from the first node that answers."""
        errors = []
        for node in self.nodes:
            if node.pid is None:
                continue
            request = urllib.request.Request(node.management_url + path, method=method, headers={"Authorization": _AUTH})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    body = response.read()
                    return json.loads(body) if body else None
            except (OSError, urllib.error.HTTPError) as exc:
                errors.append(f"{node.node}: {exc}")
        raise RuntimeError("no node's management API answered: " + "; ".join(errors))

    def wait_running(self, *nodes: OwnBroker, timeout_s: float = 60) -> None:
        """Until every node in ``nodes`` is a running member of the cluster and serves its management API."""
        wanted = {n.node for n in nodes}
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                running = {n["name"] for n in self.api("/api/nodes") if n.get("running")}
                served = all(_answers(n.management_url + "/api/overview") for n in nodes)
                if wanted <= running and served:
                    return
            except RuntimeError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes {sorted(wanted)} not running in the cluster within {timeout_s} s")
            time.sleep(0.3)

    def queue(self, name: str) -> dict[str, Any]:
        """The management API's view of queue ``name`` in vhost /: type, leader, members, online, arguments."""
        return self.api(f"/api/queues/%2F/{urllib.parse.quote(name, safe='')}")

    def leader(self, queue: str) -> OwnBroker:
        """The node that holds the leader of quorum queue ``queue``, as quorum_status reports it (not a cached view)."""
        for node in self.nodes:
            if node.pid is None:
                continue
            status = node.ctl("quorum_status", queue, "--formatter", "json", tool="rabbitmq-queues", check=False)
            try:
                members = json.loads(status)
            except ValueError:
                continue
            for member in members:
                if member.get("Raft State") == "leader":
                    return self.by_name(member["Node Name"])
        raise RuntimeError(f"no leader found for {queue}")

    def node_of(self, pid: int) -> OwnBroker | None:
        """The node an openfero process's connection is on (it names its connection after host and pid)."""
        for connection in self.api("/api/connections"):
            if (connection.get("client_properties") or {}).get("connection_name") == connection_name(pid):
                return self.by_name(connection["node"])
        return None

    def remove(self) -> None:
        """End every node and delete its data; the balancer too."""
        if self.balancer is not None:
            self.balancer.close()
        for node in self.nodes:
            node.remove()
        remove_leftovers()


def _for_each_member(queues: list[str], call: str) -> str:
    """Erlang for rabbitmqctl eval: sys:<call> on the local Raft member of each quorum queue in vhost /."""
    names = ", ".join(f'<<"{q}">>' for q in queues)
    return (
        f"[begin {{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"/\">>, queue, N)), "
        f"{{Member, _}} = amqqueue:get_pid(Q), sys:{call}(Member) end || N <- [{names}]], ok."
    )


def _answers(url: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": _AUTH})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False
