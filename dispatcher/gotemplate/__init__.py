"""Go's text/template (as of Go 1.19), whole, in pure Python: the template language of openfero's definitions. No I/O here.

Users of openfero come from the Go original, Prometheus and Alertmanager and
write Go templates; this package parses and executes them as Go does, with
Go's output and Go's error messages, and bounds what one template may cost.

    tmpl = parse(text, name="spec.containers[0].args[2]", funcs={"shell_quote": shell_quote})
    out = tmpl.execute(data, limits=Limits(), escape=None)

Data are plain Python values seen as Go values (see values.py): dict a map,
list a slice, GoStruct a struct, None nil. ``missingkey`` is Go's option of
that name; openfero uses "error", as the Go original does.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable, Mapping

from .builtins import BUILTINS
from .compiling import compile_program
from .errors import TemplateError
from .executing import Budget, Escape, Program, execute
from .limits import Limits
from .literals import go_quote
from .nodes import ListNode
from .parsing import parse_trees
from .references import referenced_fields
from .values import GoStruct

__all__ = ["Budget", "Escape", "GoStruct", "Limits", "Template", "TemplateError", "parse"]

_MISSINGKEY = ("error", "default", "invalid", "zero")
_DEFAULT_LIMITS = Limits()


class Template:
    """A parsed template and the ones it defines; parse once, execute many times (it is never modified)."""

    __slots__ = ("name", "text", "_program", "_trees")

    def __init__(self, name: str, text: str, program: Program, trees: dict[str, ListNode]) -> None:
        self.name, self.text, self._program, self._trees = name, text, program, trees

    def execute(self, data: Any = None, *, limits: Limits | None = None, escape: Escape | None = None,
                missingkey: str | None = None, budget: Budget | None = None) -> str:
        """The text the template produces for ``data``; TemplateError if execution fails or exceeds a limit.

        ``escape`` is applied to the text each action prints (``{{ pipeline }}``, at any depth),
        never to the template's own text; it also gets the output written so far, read-only.
        ``budget`` is shared by several executions: each takes its steps from it.
        """
        if missingkey is not None and missingkey not in _MISSINGKEY:
            raise ValueError(f"unrecognized option: missingkey={missingkey}")
        return execute(self._program, data, limits or _DEFAULT_LIMITS, escape, missingkey or self._program.missingkey, budget)

    def referenced_fields(self) -> set[tuple[str, ...]]:
        """The field chains the template reads from its data, e.g. ("Alert", "Labels", "pod")."""
        return referenced_fields(self._trees, self.name)

    @property
    def defined_templates(self) -> list[str]:
        return sorted(self._trees)

    def __repr__(self) -> str:
        return f"Template({self.name!r})"


def parse(text: str, name: str = "template", funcs: Mapping[str, Callable[..., Any]] | None = None, *,
          missingkey: str = "error", limits: Limits | None = None) -> Template:
    """Parse ``text`` as a Go template; TemplateError (stage "parse") if it is malformed.

    ``funcs`` are extra functions by name, known at parse time as in Go: a name
    neither builtin nor given is a parse error. A function that raises makes
    execution fail with ``error calling NAME: ...``.
    """
    if missingkey not in _MISSINGKEY:
        raise ValueError(f"unrecognized option: missingkey={missingkey}")
    functions = dict(funcs or {})
    for fname, fn in functions.items():
        if not _good_name(fname):
            raise ValueError(f"function name {go_quote(fname)} is not a valid identifier")
        if not callable(fn):
            raise ValueError(f"value for {fname} not a function")
    limits = limits or _DEFAULT_LIMITS
    trees = parse_trees(name, text, set(BUILTINS) | set(functions), limits)
    program = Program(name, text, functions, "default" if missingkey == "invalid" else missingkey)
    try:
        compile_program(program, trees)
    except RecursionError:
        raise TemplateError(
            f"template: {name}: nested too deeply for Python's stack (limit max_nesting: {limits.max_nesting})",
            stage="parse", limit="max_nesting",
        ) from None
    return Template(name, text, program, trees)


def _good_name(name: str) -> bool:
    return bool(name) and (name[0] == "_" or name[0].isalpha()) and all(c == "_" or c.isalnum() for c in name)
