"""Import contracts of openfero's own that import-linter's built-in types cannot state.

import-linter sees an external package only as a whole (``kubernetes``, not
``kubernetes.client.api``), but the pure modules may use the Kubernetes client's
model classes (rendering prunes unknown Job fields with them) and nothing else
of it. ``ModelsOnlyContract`` reads each import of the package, in the source
modules and in every module of ours they import, directly or not, and keeps
only those whose names come from the allowed modules.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output
from importlinter.domain.imports import Module


@dataclass(frozen=True)
class Breach:
    source: str  # the module the contract names
    importer: str  # the module with the import: source itself, or one it imports
    line_number: int
    what: str  # the name imported, fully qualified
    defined_in: str  # the module that name comes from
    chain: tuple[str, ...]  # source -> ... -> importer


class ModelsOnlyContract(Contract):
    """The source modules, and the modules of ours they import, take from ``package`` only names defined in ``allowed_modules``.

    Options:
        - source_modules:  modules (with their descendants) that must keep to the allowed names.
        - package:         the external package whose imports are read (``kubernetes``).
        - allowed_modules: modules of that package whose names may be imported
                           (``kubernetes.client.models``); a name re-exported elsewhere
                           (``from kubernetes.client import V1Job``) counts where it is defined.
    """

    type_name = "models_only"

    source_modules = fields.ListField(subfield=fields.ModuleField())
    package = fields.StringField()
    allowed_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        package, allowed = self._package(), self._allowed()
        ours = _root_packages(graph)
        breaches: list[Breach] = []
        for source in cast(list[Module], self.source_modules):
            if source.name not in graph.modules:
                raise ValueError(f"Module '{source.name}' does not exist.")
            reached = {source.name} | graph.find_descendants(source.name)
            for module in list(reached):
                reached |= graph.find_upstream_modules(module)
            for importer in sorted(m for m in reached if m.split(".")[0] in ours):
                if package not in graph.modules or not graph.direct_import_exists(importer=importer, imported=package):
                    continue
                lines = sorted({d["line_number"] for d in graph.get_import_details(importer=importer, imported=package)})
                output.verbose_print(verbose, f"Reading {importer}'s imports of {package} (l.{', '.join(map(str, lines))})...")
                for line_number, what, defined_in in _imported_names(importer, lines, package):
                    if not any(defined_in == a or defined_in.startswith(a + ".") for a in allowed):
                        chain = _chain(graph, source.name, importer)
                        breaches.append(Breach(source.name, importer, line_number, what, defined_in, chain))
        return ContractCheck(kept=not breaches, metadata={"breaches": breaches})

    # import-linter sets each field's parsed value on the instance, over the class's Field.
    def _package(self) -> str:
        return cast(str, self.package)

    def _allowed(self) -> list[str]:
        return cast(list[str], self.allowed_modules)

    def render_broken_contract(self, check: ContractCheck) -> None:
        allowed = ", ".join(self._allowed())
        by_source: dict[str, list[Breach]] = {}
        for breach in check.metadata["breaches"]:
            by_source.setdefault(breach.source, []).append(breach)
        for source, breaches in by_source.items():
            output.print_error(f"{source} may take from {self._package()} only what {allowed} define:", bold=False)
            output.new_line()
            for breach in breaches:
                output.print_error(
                    f"-   {' -> '.join(breach.chain)} imports {breach.what} (l.{breach.line_number})",
                    bold=False,
                )
            output.new_line()


def _chain(graph: ImportGraph, source: str, importer: str) -> tuple[str, ...]:
    """How ``source`` (a package: any module in it) comes to import ``importer``."""
    if importer == source or importer.startswith(source + "."):
        return (importer,)
    return tuple(graph.find_shortest_chain(importer=source, imported=importer, as_packages=True) or (source, importer))


def _root_packages(graph: ImportGraph) -> set[str]:
    """Our own packages: those whose modules grimp read (external ones are squashed to one module)."""
    return {m.split(".")[0] for m in graph.modules if "." in m}


def _imported_names(module: str, line_numbers: list[int], package: str) -> list[tuple[int, str, str]]:
    """(line, name, the module defining it) for each name the imports on those lines take from ``package``."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"cannot find the source of {module}")
    tree = ast.parse(Path(spec.origin).read_text(), spec.origin)
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) not in line_numbers:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    # `import kubernetes.x` binds `kubernetes`: all of it is reachable.
                    found.append((node.lineno, alias.name, alias.name if alias.asname else package))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            if node.module == package or node.module.startswith(package + "."):
                for alias in node.names:
                    found.append((node.lineno, f"{node.module}.{alias.name}", _defined_in(node.module, alias.name)))
    return found


def _defined_in(module: str, name: str) -> str:
    """Where ``from module import name`` gets its object: its own module if a module, else where it was defined."""
    if name == "*":
        return module
    try:
        return importlib.import_module(f"{module}.{name}").__name__
    except ImportError:
        pass
    value: Any = getattr(importlib.import_module(module), name)
    if isinstance(value, ModuleType):
        return value.__name__
    return str(getattr(value, "__module__", module))
