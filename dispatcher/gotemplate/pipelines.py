"""Compiling pipelines, commands and arguments into closures (the expressions inside actions). No I/O here.

Go's evalPipeline, evalCommand and evalArg: a command is a field chain, a
variable, a function call, a parenthesized pipeline or a constant; an
argument is evaluated for the kind of parameter it fills. Each closure sets
``st.node`` where Go calls ``s.at(node)``, so errors name Go's node.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

from .calling import compile_call
from .executing import NOFINAL, RAW, _MISSING, Program, State, compile_field, fast_chain, field_chain, want_string
from .nodes import (
    BoolNode, ChainNode, CommandNode, DotNode, FieldNode, IdentifierNode, NilNode, Node, NumberNode, PipeNode,
    StringNode, VariableNode,
)
from .values import NIL_IFACE
from .builtins import STRING, VALUE

Closure = Callable[..., Any]


def _checked(kind: str, ev: Closure) -> Closure:
    """An argument evaluator that converts or checks the value for its parameter kind."""
    if kind == STRING:
        return lambda st, dot: want_string(st, ev(st, dot))
    if kind == RAW:
        return ev

    def arg(st: State, dot: Any) -> Any:
        v = ev(st, dot)
        return None if v is NIL_IFACE else v

    return arg


class PipelineCompiler:
    program: Program

    def pipe(self, node: PipeNode) -> Closure:
        cmds = [self.command(c) for c in node.cmds]
        names = [v.ident[0] for v in node.decl]
        is_assign = node.is_assign
        if len(cmds) == 1 and not names:
            only = cmds[0]

            def single(st: State, dot: Any) -> Any:
                st.node = node
                v = only(st, dot, NOFINAL)
                return None if v is NIL_IFACE else v

            return single

        def pipeline(st: State, dot: Any) -> Any:
            st.node = node
            v = NOFINAL
            for cmd in cmds:
                v = cmd(st, dot, v)
                if v is NIL_IFACE:
                    v = None
            for name in names:
                if is_assign:
                    st.set_var(name, v)
                else:
                    st.vars.append((name, v))
            return v

        return pipeline

    def command(self, cmd: CommandNode) -> Closure:
        first = cmd.args[0]
        extra = len(cmd.args) > 1
        if isinstance(first, FieldNode):
            return compile_field(first, first.ident, extra)
        if isinstance(first, ChainNode):
            return self.chain(first, extra)
        if isinstance(first, IdentifierNode):
            return self.call(first, cmd, cmd.args[1:])
        if isinstance(first, VariableNode):
            return self.variable(first, extra)
        if isinstance(first, PipeNode):
            inner = self.pipe(first)

            def parenthesized(st: State, dot: Any, final: Any) -> Any:
                if extra or final is not NOFINAL:
                    raise st.fail(f"can't give argument to non-function {first}")
                return inner(st, dot)

            return parenthesized
        value_of = self.constant(first)

        def constant(st: State, dot: Any, final: Any) -> Any:
            st.node = first
            if extra or final is not NOFINAL:
                raise st.fail(f"can't give argument to non-function {first}")
            return value_of(st, dot)

        return constant

    def constant(self, node: Node) -> Closure:
        if isinstance(node, DotNode):
            return lambda st, dot: dot
        if isinstance(node, NilNode):
            def nil(st: State, dot: Any) -> Any:
                raise st.fail("nil is not a command")
            return nil
        if isinstance(node, NumberNode) and node.overflow is not None:
            message = node.overflow

            def overflow(st: State, dot: Any) -> Any:
                st.node = node
                raise st.fail(message)
            return overflow
        value = node.value if isinstance(node, (BoolNode, NumberNode)) else node.text  # type: ignore[attr-defined]
        return lambda st, dot: value

    def chain(self, node: ChainNode, extra: bool) -> Closure:
        fields = node.fields
        if isinstance(node.node, NilNode):
            def explicit_nil(st: State, dot: Any, final: Any) -> Any:
                st.node = node
                raise st.fail(f"indirection through explicit nil in {node}")
            return explicit_nil
        base = self.arg(node.node, VALUE)

        def chained(st: State, dot: Any, final: Any) -> Any:
            st.node = node
            return field_chain(st, base(st, dot), fields, extra or final is not NOFINAL)

        return chained

    def variable(self, node: VariableNode, extra: bool) -> Closure:
        name, rest = node.ident[0], node.ident[1:]
        steps = tuple((f, f[:1].isupper()) for f in rest)

        def variable(st: State, dot: Any, final: Any) -> Any:
            st.node = node
            v = st.var(name)
            if not rest:
                if extra or final is not NOFINAL:
                    raise st.fail(f"can't give argument to non-function {node}")
                return v
            if not extra and final is NOFINAL:
                found = fast_chain(v, steps)
                if found is not _MISSING:
                    return found
            return field_chain(st, v, rest, extra or final is not NOFINAL)

        return variable

    def arg(self, node: Node, kind: str) -> Closure:
        """Go's evalArg: one argument's value, for a parameter of the given kind."""
        if isinstance(node, (DotNode, NilNode, BoolNode, NumberNode, StringNode)):
            return self.constant_arg(node, kind)
        if isinstance(node, FieldNode):
            field = compile_field(node, node.ident, False)
            ev = lambda st, dot: field(st, dot, NOFINAL)  # noqa: E731
        elif isinstance(node, VariableNode):
            var = self.variable(node, False)
            ev = lambda st, dot: var(st, dot, NOFINAL)  # noqa: E731
        elif isinstance(node, PipeNode):
            pipe = self.pipe(node)

            def ev(st: State, dot: Any) -> Any:
                st.node = node
                return pipe(st, dot)
        elif isinstance(node, IdentifierNode):
            fn = self.call(node, node, [])

            def ev(st: State, dot: Any) -> Any:
                st.node = node
                return fn(st, dot, NOFINAL)
        elif isinstance(node, ChainNode):
            chain = self.chain(node, False)

            def ev(st: State, dot: Any) -> Any:
                st.node = node
                return chain(st, dot, NOFINAL)
        else:
            raise TypeError(f"unknown argument {node!r}")  # the parser makes no other kind
        return _checked(kind, ev)

    def constant_arg(self, node: Node, kind: str) -> Closure:
        if isinstance(node, DotNode):
            def dot_arg(st: State, dot: Any) -> Any:
                st.node = node
                return dot
            return _checked(kind, dot_arg)
        if kind == STRING:
            if isinstance(node, StringNode):
                text = node.text

                def string_arg(st: State, dot: Any) -> str:
                    st.node = node
                    return text
                return string_arg
            message = "cannot assign nil to string" if isinstance(node, NilNode) else f"expected string; found {node}"

            def wrong(st: State, dot: Any) -> Any:
                st.node = node
                raise st.fail(message)
            return wrong
        if isinstance(node, NilNode):
            def nil_arg(st: State, dot: Any) -> Any:
                st.node = node
                return None
            return nil_arg
        value_of = self.constant(node)

        def constant_arg(st: State, dot: Any) -> Any:
            st.node = node
            return value_of(st, dot)
        return constant_arg

    def call(self, ident: IdentifierNode, cmd: Node, arg_nodes: list[Node]) -> Closure:
        return compile_call(self, ident, cmd, arg_nodes)
