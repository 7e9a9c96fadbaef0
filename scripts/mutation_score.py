"""One module's score from a scripts/mutation run: mutants killed of those that can be killed.

A survivor listed in scripts/mutation-equivalent.txt (by module, operator and the
line as the mutant has it) behaves as the original does and is not counted. The
others are written to .mutation/<module>.survivors, each as such a line and its diff.

    python scripts/mutation_score.py MODULE DB EQUIVALENT_FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome


def equivalent_mutants(path: Path) -> set[tuple[str, str, str]]:
    """(module, operator, mutated line) of every mutant listed as equivalent."""
    found = set()
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            module, operator, text = (part.strip() for part in line.split("|", 2))
            found.add((module, operator, text))
    return found


def mutated_line(diff: str) -> str:
    """The first line the mutant changed, as the mutant has it, stripped."""
    return next((line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")), "")


def main(module: str, db: str, equivalent_file: str) -> None:
    equivalent = equivalent_mutants(Path(equivalent_file))
    killed, survivors, listed, errors, pending = 0, [], 0, 0, 0
    with use_db(db, WorkDB.Mode.open) as work_db:
        pending = len(work_db.pending_work_items)
        for item, result in work_db.completed_work_items:
            if result.worker_outcome in (WorkerOutcome.SKIPPED, WorkerOutcome.NO_TEST):
                continue
            if result.worker_outcome != WorkerOutcome.NORMAL:
                errors += 1
                continue
            if result.test_outcome != TestOutcome.SURVIVED:
                killed += 1
                continue
            [mutation] = item.mutations
            line = mutated_line(result.diff or "")
            if (module, mutation.operator_name, line) in equivalent:
                listed += 1
            else:
                survivors.append(f"{module} | {mutation.operator_name} | {line}\n{result.diff or ''}")
    counted = killed + len(survivors)
    score = 100.0 * killed / counted if counted else 100.0
    name = module.replace("/", ".")
    Path(".mutation", f"{name}.survivors").write_text("\n".join(survivors))
    unfinished = f", {pending} not run" if pending else ""
    print(f"{module}: {score:.0f}% ({killed} of {counted} killed, {listed} equivalent, {errors} errors{unfinished})")


if __name__ == "__main__":
    main(*sys.argv[1:])
