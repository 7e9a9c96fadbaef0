"""How well openfero's queues are replicated, from what the management API reports. No I/O here.

A quorum queue (or stream) keeps the members it was created with: one
declared before every node had joined the cluster has fewer replicas, and
RabbitMQ 3.10 never adds the missing ones by itself. Wanted is
OPENFERO_QUORUM_INITIAL_GROUP_SIZE, at most the number of nodes. Each
finding comes with the command RabbitMQ documents to mend it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.topology import Names


@dataclass
class QueueHealth:
    name: str
    kind: str  # quorum, stream, classic or missing
    members: list[str] = field(default_factory=list)
    online: list[str] = field(default_factory=list)
    leader: str | None = None
    wanted: int = 0
    problems: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "; ".join(self.problems) or "ok"


@dataclass
class Health:
    nodes: dict[str, bool]  # node name -> running
    queues: list[QueueHealth]
    grow_commands: list[str]  # every queue of this installation at once, one command per node

    @property
    def problems(self) -> list[str]:
        down = [f"node {n} is not running" for n, running in sorted(self.nodes.items()) if not running]
        return down + [f"{q.name}: {p}" for q in self.queues for p in q.problems]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "nodes": [{"name": n, "running": r} for n, r in sorted(self.nodes.items())],
            "queues": [{**asdict(q), "status": q.status} for q in self.queues],
            "problems": self.problems,
            "grow_commands": self.grow_commands,
        }


def ours(names: Names, queue_names: list[str]) -> list[str]:
    """openfero's queues among ``queue_names``: the work, dead, wait and parked queues, the archive, the outcome stream and every delay tier."""
    fixed = {names.work_queue, names.dead_queue, names.wait_queue, names.parked_queue, names.archive, names.outcomes}
    delay = names.prefix + ".delay."
    return sorted(n for n in queue_names if n in fixed or n.startswith(delay))


def assess(names: Names, vhost: str, nodes: dict[str, bool], queues: list[dict[str, Any]], group_size: int) -> Health:
    """The health of this installation's queues, from /api/nodes and /api/queues/<vhost>."""
    wanted = max(1, min(group_size, len(nodes)))
    by_name = {q["name"]: q for q in queues}
    report = []
    for name in sorted(set(ours(names, list(by_name))) | {names.work_queue, names.dead_queue, names.archive, names.outcomes}):
        queue = by_name.get(name)
        if queue is None:
            report.append(QueueHealth(name, "missing", wanted=wanted, problems=["missing: ingest and the dispatchers declare it when they connect"]))
            continue
        report.append(_one(queue, vhost, nodes, wanted))
    shortfall = any(q.kind in ("quorum", "stream") and len(q.members) < q.wanted for q in report)
    grow = [_grow(node, vhost, names) for node in sorted(nodes) if nodes[node]] if shortfall else []
    return Health(nodes=nodes, queues=report, grow_commands=grow)


def _one(queue: dict[str, Any], vhost: str, nodes: dict[str, bool], wanted: int) -> QueueHealth:
    kind = queue.get("type") or "classic"
    members = list(queue.get("members") or [])
    online = list(queue.get("online") or [])
    # Streams report their writer as "node" and no leader.
    leader = queue.get("leader") or (queue.get("node") if kind == "stream" else None)
    health = QueueHealth(queue["name"], kind, members, online, leader, wanted)
    if kind not in ("quorum", "stream"):
        health.problems.append(f"a {kind} queue, not replicated: openfero declares quorum queues and a stream")
        return health
    if "members" not in queue:
        health.problems.append("members not reported yet (the broker collects them every few seconds): run again")
        return health
    if len(members) < wanted:
        health.problems.append(f"{len(members)} of {wanted} members")
        missing = [n for n in sorted(nodes) if nodes[n] and n not in members][: wanted - len(members)]
        for node in missing:
            if kind == "quorum":
                health.fixes.append(f"rabbitmq-queues add_member --vhost {shlex.quote(vhost)} {shlex.quote(queue['name'])} {node}")
            else:
                health.fixes.append(f"rabbitmq-streams add_replica --vhost {shlex.quote(vhost)} {shlex.quote(queue['name'])} {node}")
    offline = [m for m in members if m not in online]
    if offline:
        health.problems.append(f"members offline on {', '.join(offline)}")
    if kind == "quorum" and not leader:
        health.problems.append("no leader: most of its members are down")
    return health


def _grow(node: str, vhost: str, names: Names) -> str:
    """rabbitmq-queues grow, limited to this installation's quorum queues (streams take add_replica)."""
    vhost_pattern = "^" + _literal(vhost) + "$"
    queue_pattern = "^" + _literal(names.prefix + ".")
    return f"rabbitmq-queues grow {node} all --vhost-pattern {shlex.quote(vhost_pattern)} --queue-pattern {shlex.quote(queue_pattern)}"


def _literal(text: str) -> str:
    """``text`` as a regular expression that matches just it (only metacharacters escaped, for readability)."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)
