"""Judging replication from the management API's answers (openfero.health; no I/O)."""

from __future__ import annotations

from openfero.doctor import render, vhost_of
from openfero.health import assess, ours
from shared.topology import Names

NODES = {"rabbit@a": True, "rabbit@b": True, "rabbit@c": True}
ALL = ["rabbit@a", "rabbit@b", "rabbit@c"]
NAMES = Names("openfero")


def quorum(name: str, members: list[str] = ALL, online: list[str] | None = None, leader: str | None = "rabbit@a") -> dict:
    return {"name": name, "type": "quorum", "members": members, "online": members if online is None else online, "leader": leader}


def stream(name: str, members: list[str] = ALL) -> dict:
    return {"name": name, "type": "stream", "members": members, "online": members, "leader": None, "node": "rabbit@a"}


def healthy() -> list[dict]:
    return [quorum("openfero.work"), quorum("openfero.dead"), quorum("openfero.delay.1s"), stream("openfero.archive"), stream("openfero.outcomes")]


def test_three_members_on_three_nodes_is_all_well() -> None:
    health = assess(NAMES, "/", NODES, healthy(), group_size=3)
    assert health.ok and health.problems == [] and health.grow_commands == []
    assert [q.wanted for q in health.queues] == [3, 3, 3, 3, 3]
    assert "all well" in render(health)


def test_only_this_installations_queues_count() -> None:
    names = ["openfero.work", "openfero.delay.5s", "openfero.delayed", "other.work", "openfero-x.work", "openfero.archive", "openfero.outcomes", "other.outcomes", "openfero.wait", "openfero.parked", "other.wait"]
    assert ours(NAMES, names) == ["openfero.archive", "openfero.delay.5s", "openfero.outcomes", "openfero.parked", "openfero.wait", "openfero.work"]


def test_a_queue_with_fewer_members_than_wanted_gets_the_commands_to_grow_it() -> None:
    queues = healthy()
    queues[1] = quorum("openfero.dead", members=["rabbit@a"])
    queues[3] = stream("openfero.archive", members=["rabbit@a", "rabbit@b"])
    health = assess(NAMES, "/", NODES, queues, group_size=3)
    assert not health.ok
    assert health.problems == ["openfero.archive: 2 of 3 members", "openfero.dead: 1 of 3 members"]
    dead = next(q for q in health.queues if q.name == "openfero.dead")
    assert dead.fixes == [
        "rabbitmq-queues add_member --vhost / openfero.dead rabbit@b",
        "rabbitmq-queues add_member --vhost / openfero.dead rabbit@c",
    ]
    archive = next(q for q in health.queues if q.name == "openfero.archive")
    assert archive.fixes == ["rabbitmq-streams add_replica --vhost / openfero.archive rabbit@c"]
    assert health.grow_commands[0] == r"rabbitmq-queues grow rabbit@a all --vhost-pattern '^/$' --queue-pattern '^openfero\.'"
    text = render(health)
    assert "openfero.dead: 1 of 3 members" in text and "rabbitmq-queues grow rabbit@c all" in text


def test_wanted_is_capped_at_the_nodes_there_are() -> None:
    single = {"rabbit@a": True}
    queues = [quorum(q["name"], members=["rabbit@a"]) if q["type"] == "quorum" else stream(q["name"], ["rabbit@a"]) for q in healthy()]
    health = assess(NAMES, "/", single, queues, group_size=3)
    assert health.ok
    assert {q.wanted for q in health.queues} == {1}


def test_a_node_down_a_member_offline_no_leader_and_a_missing_queue_are_findings() -> None:
    nodes = {**NODES, "rabbit@c": False}
    queues = [
        quorum("openfero.work", online=["rabbit@a", "rabbit@b"]),
        quorum("openfero.delay.1s", online=["rabbit@a"], leader=None),
        stream("openfero.archive"),
        stream("openfero.outcomes"),
    ]
    health = assess(NAMES, "/", nodes, queues, group_size=3)
    assert health.problems == [
        "node rabbit@c is not running",
        "openfero.dead: missing: ingest and the dispatchers declare it when they connect",
        "openfero.delay.1s: members offline on rabbit@b, rabbit@c",
        "openfero.delay.1s: no leader: most of its members are down",
        "openfero.work: members offline on rabbit@c",
    ]


def test_a_queue_whose_members_are_not_reported_yet_asks_to_run_again() -> None:
    queues = healthy()
    queues[0] = {"name": "openfero.work", "type": "quorum"}
    health = assess(NAMES, "/", NODES, queues, group_size=3)
    assert health.problems == ["openfero.work: members not reported yet (the broker collects them every few seconds): run again"]


def test_the_vhost_comes_from_the_amqp_url() -> None:
    assert vhost_of("amqp://u:p@rabbit:5672/") == "/"
    assert vhost_of("amqp://u:p@rabbit:5672") == "/"
    assert vhost_of("amqp://u:p@rabbit:5672/prod") == "prod"
    assert vhost_of("amqp://u:p@rabbit:5672/%2Fteam") == "/team"
