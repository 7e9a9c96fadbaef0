"""What ships in k8s/: the Operarius CRD's schema accepts what users write, and RBAC stays least-privilege."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers import DISPATCHER_NAMESPACE_GRANTS, JOB_NAMESPACE_GRANTS, crd, crd_schema

DATA = Path(__file__).parent / "data" / "go-original"


def operariuses_shipped() -> list[tuple[str, dict]]:
    found = []
    for path in [*DATA.glob("*.operarius.yaml"), *(ROOT / "k8s" / "examples").glob("*.yaml")]:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Operarius":
                found.append((path.name, doc))
    return found


def test_the_schema_accepts_the_go_originals_operariuses_and_our_examples() -> None:
    shipped = operariuses_shipped()
    assert {name for name, _ in shipped} >= {"kubepodcrashlooping.operarius.yaml", "podrestart-templated.operarius.yaml"}
    schema = crd_schema()
    for name, doc in shipped:
        try:
            jsonschema.validate(doc, schema)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{name}: {exc.message}")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("jobTemplate"), "'jobTemplate' is a required property"),
        (lambda s: s["alertSelector"].update(status="burning"), "'burning' is not one of"),
        (lambda s: s["alertSelector"].update(matchers="severity=critical"), "is not of type 'array'"),
        (lambda s: s.update(priority="high"), "'high' is not of type 'integer'"),
        (lambda s: s["deduplication"].update(ttl="5m"), "'5m' is not of type 'integer'"),
    ],
)
def test_the_schema_refuses_what_cannot_work(change, message: str) -> None:
    doc = yaml.safe_load((DATA / "kubepodcrashlooping.operarius.yaml").read_text())
    change(doc["spec"])
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.validate(doc, crd_schema())


def granted(path: Path) -> set[tuple[str, str, str]]:
    [role] = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "Role"]
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def granted_by_name(path: Path) -> set[tuple[str, str, str, str]]:
    """(group, resource, verb, name) of the Role in ``path``; name "*" where the rule names none."""
    [role] = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "Role"]
    return {
        (g, r, v, n)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
        for n in rule.get("resourceNames") or ["*"]
    }


def test_the_dispatcher_may_do_what_it_needs_and_nothing_more() -> None:
    assert granted_by_name(ROOT / "k8s" / "base" / "dispatcher-rbac.yaml") == DISPATCHER_NAMESPACE_GRANTS
    # Jobs only in the Job namespace
    assert granted_by_name(ROOT / "k8s" / "base" / "job-namespace.yaml") == JOB_NAMESPACE_GRANTS


def test_the_lease_the_role_names_is_the_one_the_shipped_prefix_makes() -> None:
    from dispatcher.naming import dns_label

    settings = yaml.safe_load((ROOT / "k8s" / "base" / "settings.yaml").read_text())["data"]
    named = {n for (_, r, _, n) in DISPATCHER_NAMESPACE_GRANTS if r == "leases" and n != "*"}
    assert named == {dns_label(f"{settings['OPENFERO_QUEUE_PREFIX']}-{lease}") for lease in ("outcomes", "storm", "breakers")}


# -- the Go original's CRD -----------------------------------------------------------------

GO_CRD = yaml.safe_load((DATA / "operariuses-crd.trimmed.yaml").read_text())


def test_the_crd_has_the_go_originals_names() -> None:
    names = crd()["spec"]["names"]
    assert crd()["metadata"]["name"] == GO_CRD["name"] == "operariuses.openfero.io"
    for key in ("kind", "listKind", "plural", "singular"):
        assert names[key] == GO_CRD["names"][key], key
    assert set(GO_CRD["names"]["shortNames"]) <= set(names["shortNames"])


def _narrowing(ours: dict, go: dict, path: str) -> list[str]:
    """Where our schema would refuse or prune what the Go original's accepts and keeps."""
    if ours.get("x-kubernetes-preserve-unknown-fields"):
        return []  # everything below is kept as it is, and only typed by the dispatcher
    problems = []
    if "type" in ours and ours["type"] != go.get("type"):
        problems.append(f"{path}: type {ours['type']} where the Go original has {go.get('type')}")
    for keyword in ("minimum", "maximum", "pattern", "minLength", "maxLength", "minItems", "maxItems", "format"):
        if keyword in ours and ours[keyword] != go.get(keyword):
            problems.append(f"{path}: {keyword} {ours[keyword]!r} where the Go original has {go.get(keyword)!r}")
    if "enum" in ours and not set(go.get("enum", [object()])) <= set(ours["enum"]):
        problems.append(f"{path}: enum {ours['enum']} narrower than {go.get('enum')}")
    extra_required = set(ours.get("required", [])) - set(go.get("required", []))
    if extra_required:
        problems.append(f"{path}: requires {sorted(extra_required)}, which the Go original does not")
    for name, child in (go.get("properties") or {}).items():
        if name not in (ours.get("properties") or {}):
            problems.append(f"{path}.{name}: missing, so it would be pruned")
        else:
            problems += _narrowing(ours["properties"][name], child, f"{path}.{name}")
    if "additionalProperties" in go:
        problems += _narrowing(ours.get("additionalProperties") or {}, go["additionalProperties"], f"{path}.*")
    if "items" in go:
        problems += _narrowing(ours.get("items") or {}, go["items"], f"{path}[]")
    return problems


def test_the_schema_accepts_and_keeps_everything_the_go_originals_does() -> None:
    assert _narrowing(crd_schema(), GO_CRD["schema"], "") == []


def test_the_superset_check_notices_a_narrower_schema() -> None:
    narrower = crd_schema()
    narrower["properties"]["spec"]["properties"]["deduplication"]["properties"]["ttl"]["minimum"] = 0
    narrower["properties"]["status"]["properties"].pop("lastExecutedJobName")
    narrower["required"] = ["spec"]
    assert len(_narrowing(narrower, GO_CRD["schema"], "")) == 3


def test_the_console_may_read_and_nothing_more() -> None:
    console = ROOT / "k8s" / "components" / "console" / "rbac.yaml"
    roles = [d for d in yaml.safe_load_all(console.read_text()) if d["kind"] == "Role"]
    granted = {(role["metadata"].get("namespace", ""), g, r, v, n) for role in roles for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"] for n in rule.get("resourceNames") or ["*"]}
    assert {v for (_, _, _, v, _) in granted} == {"get", "list", "watch"}
    # the breakers' state, by its one name: the console shows each definition's breaker
    assert ("", "coordination.k8s.io", "leases", "get", "openfero-breakers") in granted
    assert {x for x in granted if x[2] == "leases"} == {("", "coordination.k8s.io", "leases", "get", "openfero-breakers")}
