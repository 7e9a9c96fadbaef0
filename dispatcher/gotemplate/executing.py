"""Executing parsed templates: each tree compiled once into Python closures, then run per execute. No I/O here.

Go's evaluator walks the tree for every execution; here each node becomes a
closure at parse time, so an execute is a chain of calls with no dispatch
on node types and no copying of data. The rules are Go 1.19's exec.go:
variables on a stack popped at the ``end`` of their control structure,
``$`` the data of the template being run, ``missingkey`` for absent map
keys, Go's truth, and errors worded as Go's, located at the node Go names
(``template: NAME:LINE:COL: executing "NAME" at <NODE>: ...``).

Bounds (``Limits``): output bytes, steps, template call depth and block
nesting are counted as the execution goes and end it with a TemplateError.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .errors import TemplateError
from .limits import Limits
from .literals import go_quote
from .nodes import Node
from .values import ANY, NIL_IFACE, GoStruct, elem_type, key_type, sorted_keys, type_name, zero_of

# Turns the text an action prints into what is written; it is also given the output written so far
# (read-only), for escapes whose effect depends on what precedes the value.
Escape = Callable[[str, Sequence[str]], str]

NOFINAL = object()  # "no value piped in" (Go's missingVal)
RAW = "raw"  # an argument kind like any value, but a nil from an interface slot stays one (only len tells them apart)
_MISSING = object()


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class Program:
    """The compiled templates of one parse: name -> (closures of its body, steps its list costs)."""

    __slots__ = ("name", "text", "trees", "functions", "missingkey")

    def __init__(self, name: str, text: str, functions: dict[str, Any], missingkey: str) -> None:
        self.name, self.text, self.functions, self.missingkey = name, text, functions, missingkey
        self.trees: dict[str, tuple[tuple[Any, ...], int]] = {}


class State:
    """One execution: output, variables, counters, and the node Go would name in an error."""

    __slots__ = ("program", "out", "size", "max_out", "steps", "max_steps", "depth", "max_depth", "nest",
                 "max_nest", "max_width", "vars", "node", "tmpl_name", "escape", "missing_error", "missing_zero",
                 "range_elem", "range_container", "_known")

    def __init__(self, program: Program, data: Any, limits: Limits, escape: Escape | None, missingkey: str) -> None:
        self.program = program
        self.out: list[str] = []
        self.size = 0
        self.max_out = limits.max_output_bytes
        self.steps = 0
        self.max_steps = limits.max_steps
        self.depth = 0
        self.max_depth = limits.max_depth
        self.nest = 0
        self.max_nest = limits.max_nesting
        self.max_width = limits.max_width
        self.vars: list[tuple[str, Any]] = [("$", data)]
        self.node: Node | None = None
        self.tmpl_name = program.name
        self.escape = escape
        self.missing_error = missingkey == "error"
        self.missing_zero = missingkey == "zero"
        # The element range is visiting and its container: Go sees an element of a []interface{} as an
        # interface{} value, and names that type in errors (see _static).
        self.range_elem: Any = _MISSING
        self.range_container: Any = None
        self._known: dict[int, list[Any]] | None = None  # per map or slice: (it, key type, element type, sorted keys)

    def fail(self, message: str, limit: str | None = None) -> TemplateError:
        text, node = self.program.text, self.node
        if node is None:
            return TemplateError(f"template: {self.tmpl_name}: {message}", stage="exec", limit=limit)
        before = text[:node.pos]
        line = before.count("\n") + 1
        col = len(before[before.rfind("\n") + 1:].encode("utf-8", "replace"))
        return TemplateError(
            f"template: {self.program.name}:{line}:{col}: executing {go_quote(self.tmpl_name)} at <{node}>: {message}",
            stage="exec", line=line, col=col, limit=limit,
        )

    def over(self, what: str, limit: str, bound: int) -> TemplateError:
        return self.fail(f"{what} (limit {limit}: {bound})", limit)

    def charge(self, size: int, per_step: int = 16) -> None:
        """Count work proportional to a size: one step per ``per_step`` characters or elements."""
        self.steps += size // per_step
        if self.steps > self.max_steps:
            raise self.over("too many steps", "max_steps", self.max_steps)

    def _facts(self, container: Any) -> list[Any]:
        # Data never changes during an execution, so what a scan of a container finds is kept for the rest
        # of it: a loop over a large map pays for the scan once. The entry holds the container, so its id
        # cannot be reused meanwhile.
        known = self._known
        if known is None:
            known = self._known = {}
        facts = known.get(id(container))
        if facts is None:
            self.charge(len(container))
            values = container.values() if type(container) is dict else container
            facts = known[id(container)] = [container, key_type(container) if type(container) is dict else "int",
                                            elem_type(values), None]
        return facts

    def key_type(self, mapping: dict[Any, Any]) -> str:
        kt: str = self._facts(mapping)[1]
        return kt

    def elem_type(self, container: Any) -> str:
        et: str = self._facts(container)[2]
        return et

    def sorted_keys(self, mapping: dict[Any, Any]) -> list[Any]:
        facts = self._facts(mapping)
        if facts[3] is None:
            self.charge(len(mapping), 4)
            facts[3] = sorted_keys(mapping)
        keys: list[Any] = facts[3]
        return keys

    def write(self, s: str) -> None:
        self.size += len(s) if s.isascii() else len(s.encode("utf-8", "replace"))
        if self.size > self.max_out:
            raise self.over("output too long", "max_output_bytes", self.max_out)
        self.out.append(s)

    def var(self, name: str) -> Any:
        vs = self.vars
        i = len(vs) - 1
        while i >= 0:
            if vs[i][0] == name:
                return vs[i][1]
            i -= 1
        raise self.fail(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        vs = self.vars
        i = len(vs) - 1
        while i >= 0:
            if vs[i][0] == name:
                vs[i] = (name, value)
                return
            i -= 1
        raise self.fail(f"undefined variable: {name}")


def want_string(st: State, v: Any) -> str:
    """An argument for a string parameter (printf's format), with Go's complaints."""
    if type(v) is str:
        return v
    if v is None or v is NIL_IFACE:
        raise st.fail("invalid value; expected string")
    raise st.fail(f"wrong type for value; expected string; got {type_name(v)}")


def run_list(st: State, dot: Any, body: tuple[Any, ...], weight: int) -> None:
    st.steps += weight
    if st.steps > st.max_steps:
        raise st.over("too many steps", "max_steps", st.max_steps)
    for fn in body:
        fn(st, dot)


# Field access.

def field_chain(st: State, receiver: Any, idents: list[str], has_args: bool) -> Any:
    """Go's evalFieldChain: each name looked up in turn, with Go's errors and missingkey."""
    parent: Any = _RANGED if receiver is st.range_elem else None
    last = len(idents) - 1
    for i, name in enumerate(idents):
        receiver, parent = _field(st, name, receiver, parent, has_args and i == last)
    return receiver


_RANGED = object()  # "the receiver is the element range is visiting"


def _holds_interfaces(container: Any) -> bool:
    values = container.values() if type(container) is dict else container
    return elem_type(values) == ANY


def _static(st: State, value: Any, parent: Any) -> str:
    """The type Go names for a receiver: interface {} when it was taken out of an interface{} slot."""
    if value is NIL_IFACE:
        return ANY
    if parent is _RANGED:
        return ANY if _holds_interfaces(st.range_container) else type_name(value)
    if type(parent) is dict and _holds_interfaces(parent):
        return ANY
    return type_name(value)


def _field(st: State, name: str, receiver: Any, parent: Any, has_args: bool) -> tuple[Any, Any]:
    """One step of a field chain: (value, the map or struct it came from)."""
    if receiver is None or receiver is NIL_IFACE:
        if receiver is NIL_IFACE or parent is not None:  # a nil held in an interface{}
            raise st.fail(f"nil pointer evaluating interface {{}}.{name}")
        if st.missing_error:
            raise st.fail(f"nil data; no entry for key {go_quote(name)}")
        return None, None
    t = type(receiver)
    if t is GoStruct:
        value = receiver.fields.get(name, _MISSING)
        if value is not _MISSING:
            if not name[:1].isupper():
                raise st.fail(f"{name} is an unexported field of struct type {_static(st, receiver, parent)}")
            if has_args:
                raise st.fail(f"{name} has arguments but cannot be invoked as function")
            return value, receiver
    elif t is dict and st.key_type(receiver) in ("string", ANY):
        if has_args:
            raise st.fail(f"{name} is not a method but has arguments")
        value = receiver.get(name, _MISSING)
        if value is not _MISSING:
            return value, receiver
        if st.missing_error:
            raise st.fail(f"map has no entry for key {go_quote(name)}")
        if st.missing_zero:
            zero = zero_of(st.elem_type(receiver))
            return zero, (receiver if zero is None else None)  # a zero interface{} is a nil in an interface
        return None, None
    raise st.fail(f"can't evaluate field {name} in type {_static(st, receiver, parent)}")


def compile_field(node: Node, idents: list[str], has_extra_args: bool) -> Callable[..., Any]:
    """A field chain evaluated on dot, with a fast path for present map keys and exported struct fields."""
    steps = tuple((name, name[:1].isupper()) for name in idents)

    def field(st: State, dot: Any, final: Any) -> Any:
        st.node = node
        if final is NOFINAL and not has_extra_args:
            recv = dot
            for name, exported in steps:
                t = type(recv)
                if t is dict:
                    recv = recv.get(name, _MISSING)
                elif t is GoStruct and exported:
                    recv = recv.fields.get(name, _MISSING)
                else:
                    break
                if recv is _MISSING:
                    break
            else:
                return recv
        return field_chain(st, dot, idents, has_extra_args or final is not NOFINAL)

    return field


def fast_chain(recv: Any, steps: tuple[Any, ...]) -> Any:
    """The chain's value when every step is a present key or exported field; _MISSING when Go's checks are needed."""
    for name, exported in steps:
        t = type(recv)
        if t is dict:
            recv = recv.get(name, _MISSING)
        elif t is GoStruct and exported:
            recv = recv.fields.get(name, _MISSING)
        else:
            return _MISSING
        if recv is _MISSING:
            return _MISSING
    return recv


class Budget:
    """Steps several executions share (each still within its own ``max_steps``): what is left of them."""

    __slots__ = ("steps",)

    def __init__(self, steps: int) -> None:
        self.steps = steps


def execute(program: Program, data: Any, limits: Limits, escape: Escape | None, missingkey: str, budget: Budget | None = None) -> str:
    st = State(program, data, limits, escape, missingkey)
    if budget is not None:
        st.max_steps = min(st.max_steps, max(budget.steps, 0))
    body, weight = program.trees[program.name]
    try:
        run_list(st, data, body, weight)
    except RecursionError:
        raise TemplateError(
            f"template: {program.name}: nested too deeply for Python's stack (limit max_nesting: {limits.max_nesting})",
            stage="exec", limit="max_nesting",
        ) from None
    finally:
        if budget is not None:
            budget.steps -= st.steps
    return "".join(st.out)
