"""The Job book's indexes agree with a count over its Jobs, whatever the watch reports in whatever order. No I/O."""

from __future__ import annotations

import random
from typing import Any

from dispatcher.jobbook import Entry, JobBook


def job(name: str, definition: str, target: str, second: int, ended: str = "", deleting: bool = False) -> dict[str, Any]:
    annotations = {"openfero.io/definition": definition}
    if target:
        annotations["openfero.io/concurrency-target"] = target
        annotations["openfero.io/cooldown-target"] = target
    meta: dict[str, Any] = {"name": name, "annotations": annotations, "creationTimestamp": f"2026-01-01T00:{second // 60:02d}:{second % 60:02d}Z"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T01:00:00Z"
    status = {"conditions": [{"type": "Complete" if ended == "Succeeded" else "Failed", "status": "True", "lastTransitionTime": "2026-01-01T00:30:00Z"}]} if ended else {}
    return {"metadata": meta, "status": status}


def brute(book: JobBook) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], tuple[str, float]], list[float]]:
    entries: list[Entry] = book._all()
    active: dict[tuple[str, str], int] = {}
    newest: dict[tuple[str, str], tuple[str, float]] = {}
    for e in entries:
        if not e.ended:
            active[(e.definition, "")] = active.get((e.definition, ""), 0) + 1
            if e.target:
                active[(e.definition, e.target)] = active.get((e.definition, e.target), 0) + 1
        key = (e.definition, e.cooldown_target)
        if key not in newest or (newest[key][1], newest[key][0]) <= (e.created, e.name):
            newest[key] = (e.name, e.created)
    return active, newest, sorted(e.created for e in entries)


def test_the_indexes_match_a_count_after_any_sequence_of_events() -> None:
    rng = random.Random(7)
    for _ in range(30):
        book = JobBook()
        book.replace([job(f"j{i}", "d1", "", i) for i in range(3)])
        for _ in range(200):
            name = f"j{rng.randrange(12)}"
            definition, target = rng.choice([("d1", ""), ("d2", "pod=a"), ("d2", "pod=b")])
            op = rng.random()
            if op < 0.2:
                book.claim(name, definition, target, target)
            elif op < 0.3:
                book.unclaim(name)
            elif op < 0.8:
                book.apply(rng.choice(["ADDED", "MODIFIED"]), job(name, definition, target, rng.randrange(100), rng.choice(["", "", "Succeeded", "Failed"]), rng.random() < 0.1))
            elif op < 0.95:
                book.apply("DELETED", job(name, definition, target, 0))
            else:
                book.replace([job(f"j{i}", "d1", "", i) for i in range(rng.randrange(4))])
            active, newest, times = brute(book)
            assert book.active() == active
            for key, (name_, created) in newest.items():
                assert book.last_job(*key) == (name_, created)
            assert book._times == times
            assert book.created_since(1767225600.0 + 50) == sum(1 for t in times if t >= 1767225600.0 + 50)


def test_an_ended_job_is_reported_once_and_a_claim_becomes_the_job() -> None:
    ended: list[str] = []
    book = JobBook()
    book.on_ended = lambda entry: ended.append(f"{entry.name}:{entry.ended}")
    book.replace([])
    book.claim("a", "d", "")
    assert book.active() == {("d", ""): 1} and book.knows("a")
    book.apply("ADDED", job("a", "d", "", 5))
    assert book.active() == {("d", ""): 1}  # the claim became the Job, not a second one
    book.apply("MODIFIED", job("a", "d", "", 5, "Failed"))
    book.apply("MODIFIED", job("a", "d", "", 5, "Failed"))
    book.apply("ADDED", job("b", "d", "", 6))
    book.apply("DELETED", job("b", "d", "", 6))  # deleted before it ended
    assert ended == ["a:Failed", "b:Deleted"] and book.active() == {}
