"""What ships in k8s/: the Operarius CRD's schema accepts what users write, and RBAC stays least-privilege."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT

DATA = Path(__file__).parent / "data" / "go-original"


def crd_schema() -> dict:
    crd = yaml.safe_load((ROOT / "k8s" / "base" / "operarius-crd.yaml").read_text())
    [version] = crd["spec"]["versions"]
    assert (crd["spec"]["group"], version["name"], crd["spec"]["names"]["kind"]) == ("openfero.io", "v1alpha1", "Operarius")
    return version["schema"]["openAPIV3Schema"]


def operarii_shipped() -> list[tuple[str, dict]]:
    found = []
    for path in [*DATA.glob("*.operarius.yaml"), *(ROOT / "k8s" / "examples").glob("*.yaml")]:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Operarius":
                found.append((path.name, doc))
    return found


def test_the_schema_accepts_the_go_originals_operarii_and_our_examples() -> None:
    shipped = operarii_shipped()
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
        (lambda s: s["alertSelector"].update(matchers=["just words"]), "does not match"),
        (lambda s: s.update(priority="high"), "'high' is not of type 'integer'"),
        (lambda s: s["deduplication"].update(ttl=-1), "less than the minimum"),
    ],
)
def test_the_schema_refuses_what_cannot_work(change, message: str) -> None:
    doc = yaml.safe_load((DATA / "kubepodcrashlooping.operarius.yaml").read_text())
    change(doc["spec"])
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.validate(doc, crd_schema())


def test_the_schema_lets_through_every_matcher_text_openfero_accepts() -> None:
    from dispatcher.matching import InvalidMatcher, parse
    from tests.test_matching import CLASSIC, UTF8

    accepted = ['{}', "", '"service.name"="api"', '{team="web", env!="dev"}', 'a!~"x"']
    for text, *_ in CLASSIC + UTF8:
        try:
            parse(text)
        except InvalidMatcher:
            continue
        accepted.append(text)
    doc = yaml.safe_load((DATA / "kubepodcrashlooping.operarius.yaml").read_text())
    doc["spec"]["alertSelector"]["matchers"] = accepted
    jsonschema.validate(doc, crd_schema())


def test_the_dispatcher_may_do_what_it_needs_and_nothing_more() -> None:
    docs = list(yaml.safe_load_all((ROOT / "k8s" / "base" / "dispatcher-rbac.yaml").read_text()))
    [role] = [d for d in docs if d["kind"] == "Role"]
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {
        ("", "configmaps", "get"),
        ("", "configmaps", "list"),
        ("", "configmaps", "watch"),
        ("openfero.io", "operarii", "get"),
        ("openfero.io", "operarii", "list"),
        ("openfero.io", "operarii", "watch"),
        ("openfero.io", "operarii/status", "patch"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "get"),
    }
