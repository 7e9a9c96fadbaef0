"""Regenerate tests/data/gotemplate/cases.json: every case of cases.py, and every string of the Go
original's sample definitions, run through Go's own text/template by main.go.

    python3 tests/data/gotemplate/oracle/regenerate.py

Needs Go (Debian's golang-go, 1.19) and PyYAML; the tests only read the table it writes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[3]
GO_ORIGINAL = ROOT / "tests" / "data" / "go-original"
OUT = HERE.parent / "cases.json"


def _load_cases() -> list[dict]:
    spec = importlib.util.spec_from_file_location("gotemplate_oracle_cases", HERE / "cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.CASES, module.struct_from_webhook


def _strings(tree, path=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _strings(value, f"{path}[{i}]")
    elif isinstance(tree, str):
        yield path, tree


def go_original_cases(struct_from_webhook) -> list[dict]:
    """One case per string value of the Go original's sample definitions, over its sample alert."""
    data = {"kind": "struct", "value": struct_from_webhook(json.loads((GO_ORIGINAL / "kubepodcrashlooping.alert.json").read_text()))}
    cases = []
    for path in sorted(GO_ORIGINAL.glob("*.operarius.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for field, text in _strings(doc):
                cases.append({
                    "id": f"go-original/{path.name.removesuffix('.operarius.yaml')}/{field}",
                    "name": field, "template": text, "data": data, "missingkey": "error",
                })
    return cases


def main() -> int:
    cases, struct_from_webhook = _load_cases()
    cases = cases + go_original_cases(struct_from_webhook)
    ids = [c["id"] for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        print(f"duplicate case ids: {sorted(duplicates)}", file=sys.stderr)
        return 1
    go = shutil.which("go") or "/usr/bin/go"
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, GOCACHE=os.path.join(tmp, "cache"), GOPATH=os.path.join(tmp, "path"), GO111MODULE="off", GOFLAGS="")
        result = subprocess.run([go, "run", str(HERE / "main.go")], input=json.dumps(cases), capture_output=True,
                                text=True, env=env, cwd=tmp, check=False)
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return result.returncode
    table = json.loads(result.stdout)
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout.strip()
    OUT.write_text(json.dumps({"go": version, "cases": table}, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(table)} cases written to {OUT.relative_to(ROOT)} by {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
