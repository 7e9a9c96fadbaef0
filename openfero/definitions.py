"""`openfero definitions list` and `openfero definitions resume NAME`: each definition's storm
control as the cluster holds it (its limits, its breaker, its active Jobs and recent outcomes),
and closing an open breaker by hand.

Exit codes: 0 done, 1 the cluster could not be reached or NAME has no open breaker, 2 wrong usage.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click

from dispatcher.breaking import BreakerStore, definition_name, read_states
from dispatcher.jobbook import Entry
from dispatcher.naming import dns_label
from dispatcher.operarii import GROUP, KIND, PLURAL, VERSION
from dispatcher.rendering import MANAGED_BY
from dispatcher.requesting import Unreachable, call
from dispatcher.storm import Breaker, BreakerState, InvalidStormRule, StormRules
from shared.settings import SERVICE_ACCOUNT_NAMESPACE_FILE, BrokerSettings, KubeSettings, help_epilog, load, resolve_namespaces

EPILOG = help_epilog(BrokerSettings, KubeSettings)
RECENT = 10


@dataclass
class Row:
    definition: str  # "<source>/<key>"
    kind: str  # ConfigMap or Operarius
    rules: StormRules | None  # None: its annotations cannot be read
    breaker: BreakerState = field(default_factory=BreakerState)
    active: int = 0
    recent: list[str] = field(default_factory=list)  # outcomes, newest first

    @property
    def name(self) -> str:
        return definition_name(self.definition)

    def limits(self) -> str:
        rules = self.rules
        if rules is None:
            return "(unreadable annotations)"
        parts = []
        if rules.concurrency is not None:
            parts.append(f"concurrency {rules.concurrency}" + (f" per {','.join(rules.concurrency_key)}" if rules.concurrency_key else ""))
        if rules.cooldown_s is not None:
            parts.append(f"cooldown {rules.cooldown_s:g}s" + (f" per {','.join(rules.cooldown_key)}" if rules.cooldown_key else ""))
        if rules.breaker_failures is not None:
            parts.append(f"breaker {rules.breaker_failures}/{rules.breaker_cooldown_s:g}s")
        return "; ".join(parts) or "-"

    def state(self, now: float) -> str:
        b = self.breaker
        if b.state is Breaker.CLOSED:
            return "closed" + (f" ({b.failures} failed)" if b.failures else "")
        if b.state is Breaker.OPEN:
            return f"OPEN {int(now - b.since)}s ({b.failures} failed)"
        return f"TRIAL {b.trial_job or '(next alert)'}"

    def summary(self) -> dict[str, Any]:
        b = self.breaker
        return {
            "definition": self.definition,
            "name": self.name,
            "kind": self.kind,
            "limits": self.limits(),
            "breaker": {"state": b.state.value, "failures": b.failures, "since": b.since or None, "cooldown_s": b.cooldown_s, "trial_job": b.trial_job or None},
            "active_jobs": self.active,
            "recent_outcomes": self.recent,
        }


def _rules(annotations: dict[str, Any]) -> StormRules | None:
    try:
        return StormRules.of({str(k): str(v) for k, v in annotations.items()})
    except InvalidStormRule:
        return None


class Cluster:
    def __init__(self) -> None:
        from dispatcher.jobs import load_api_client

        kube = load(KubeSettings)
        broker = load(BrokerSettings)
        self.api_client, context_namespace = load_api_client(kube.request_timeout_s)
        self.kube = resolve_namespaces(kube, context_namespace)
        own = kube.own_namespace or (SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE_FILE.exists() else "")
        self.store = BreakerStore(self.api_client, own or self.kube.definitions_namespace, dns_label(f"{broker.queue_prefix}-breakers"), kube.request_timeout_s)

    def _get(self, path: str, query: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        answer = call(self.api_client, "GET", path, self.kube.request_timeout_s, query=query)
        if answer.status == 404:
            return {}
        if not answer.ok:
            raise Unreachable(f"GET {path}: {answer}")
        return answer.body

    def rows(self) -> list[Row]:
        kube = self.kube
        rows: dict[str, Row] = {}
        configmaps = self._get(f"/api/v1/namespaces/{kube.definitions_namespace}/configmaps", [("labelSelector", kube.definition_selector)])
        for cm in configmaps.get("items") or []:
            meta = cm.get("metadata") or {}
            for key in sorted(cm.get("data") or {}):
                definition = f"{meta.get('namespace', '')}/{meta.get('name', '')}/{key}"
                rows[definition] = Row(definition, "ConfigMap", _rules(meta.get("annotations") or {}))
        operarii = self._get(f"/apis/{GROUP}/{VERSION}/namespaces/{kube.definitions_namespace}/{PLURAL}")
        for op in operarii.get("items") or []:
            from dispatcher.operarii import InvalidOperarius, Operarius

            meta = op.get("metadata") or {}
            definition = f"{meta.get('namespace', '')}/{KIND}/{meta.get('name', '')}/jobTemplate"
            try:
                rules = _rules(Operarius.from_resource(op).definition.annotations)
            except (InvalidOperarius, KeyError, ValueError):
                rules = None
            rows[definition] = Row(definition, KIND, rules)
        jobs = self._get(f"/apis/batch/v1/namespaces/{kube.job_namespace}/jobs", [("labelSelector", f"{MANAGED_BY[0]}={MANAGED_BY[1]}")])
        entries = [e for e in map(Entry.of, jobs.get("items") or []) if e is not None]
        for state_definition, state in read_states(self._get(self.store.path)).items():
            rows.setdefault(state_definition, Row(state_definition, "(gone)", StormRules())).breaker = state
        for row in rows.values():
            mine = [e for e in entries if e.definition == row.definition]
            row.active = sum(1 for e in mine if not e.ended)
            ended = sorted((e for e in mine if e.ended), key=lambda e: e.ended_at or 0.0, reverse=True)
            row.recent = [e.ended for e in ended[:RECENT]]
        return sorted(rows.values(), key=lambda r: r.definition)


def table(rows: list[Row], now: float) -> str:
    header = ("DEFINITION", "KIND", "LIMITS", "BREAKER", "ACTIVE", "RECENT")
    letters = {"Succeeded": "S", "Failed": "F", "Deleted": "D"}
    lines = [(r.name, r.kind, r.limits(), r.state(now), str(r.active), "".join(letters.get(o, "?") for o in r.recent) or "-") for r in rows]
    widths = [max(len(x) for x in column) for column in zip(header, *lines, strict=False)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)).rstrip() for line in [header, *lines])


@click.group("definitions", epilog=EPILOG, context_settings={"max_content_width": 100})
def definitions() -> None:
    """Each definition's storm control: limits, breaker, active Jobs, recent outcomes."""


@definitions.command("list", epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_command(as_json: bool) -> None:
    """List the definitions with their limits, breaker state, active Jobs and recent outcomes (newest first: S succeeded, F failed, D deleted)."""
    try:
        rows = Cluster().rows()
    except Unreachable as exc:
        click.echo(f"openfero: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"definitions": [r.summary() for r in rows]}, indent=2))
    else:
        click.echo(table(rows, time.time()))


@definitions.command("resume", epilog=EPILOG)
@click.argument("name")
def resume_command(name: str) -> None:
    """Close NAME's breaker now (the ConfigMap's or the Operarius' name, or the full <source>/<key>).

    New alerts run again at once; those parked meanwhile stay parked until
    you replay them (openfero parked replay --alertname ...).
    """
    try:
        cluster = Cluster()
        states = cluster.store.states()
        chosen = [d for d, s in states.items() if (definition_name(d) == name or d == name) and s.state is not Breaker.CLOSED]
        for definition in chosen:
            cluster.store.update(definition, lambda state: BreakerState())
            click.echo(f"resumed {definition}: its breaker is closed")
    except Unreachable as exc:
        click.echo(f"openfero: {exc}", err=True)
        sys.exit(1)
    if not chosen:
        click.echo(f"openfero: no open breaker for {name!r}", err=True)
        sys.exit(1)
