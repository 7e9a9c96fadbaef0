"""Turning parse trees into closures that execute them (see executing.py for the rules). No I/O here.

Every closure that evaluates sets ``st.node`` where Go's evaluator calls
``s.at(node)``, so an error names the node Go would name. Each list of nodes
carries a weight, the steps its execution costs.
"""

from __future__ import annotations

from typing import Any, Callable

from . import builtins as bi
from .builtins import NIL_IFACE, VALUE, ANYARG, STRING, CallError
from .executing import NOFINAL, _MISSING, Program, State, _Break, _Continue, compile_field, fast_chain, field_chain
from .formatting import print_action, sprint
from .literals import go_quote
from .nodes import (
    ActionNode, BoolNode, BranchNode, BreakNode, ChainNode, CommandNode, ContinueNode, DotNode, FieldNode,
    IdentifierNode, ListNode, NilNode, Node, NumberNode, PipeNode, RangeNode, StringNode, TemplateNode, TextNode,
    VariableNode, WithNode,
)
from .values import is_true, sorted_keys, type_name

RAW = "raw"  # like VALUE, but a nil from an interface slot stays one (only len tells them apart)
Closure = Callable[..., Any]


def _want_string(st: State, v: Any) -> str:
    if type(v) is str:
        return v
    if v is None or v is NIL_IFACE:
        raise st.fail("invalid value; expected string")
    raise st.fail(f"wrong type for value; expected string; got {type_name(v)}")


def _checked(kind: str, ev: Closure) -> Closure:
    """An argument evaluator that converts or checks the value for its parameter kind."""
    if kind == STRING:
        return lambda st, dot: _want_string(st, ev(st, dot))
    if kind == RAW:
        return ev

    def arg(st: State, dot: Any) -> Any:
        v = ev(st, dot)
        return None if v is NIL_IFACE else v

    return arg


def _weight(node: Node | None) -> int:
    """Nodes in a pipeline or argument: the steps evaluating it costs."""
    if node is None:
        return 0
    if isinstance(node, PipeNode):
        return 1 + sum(_weight(c) for c in node.cmds)
    if isinstance(node, CommandNode):
        return sum(_weight(a) for a in node.args)
    if isinstance(node, ChainNode):
        return 1 + _weight(node.node)
    return 1


class Compiler:
    def __init__(self, program: Program) -> None:
        self.program = program

    # Lists and statements.
    def list(self, node: ListNode) -> tuple[tuple, int]:
        fns, weight = [], 0
        for n in node.nodes:
            fns.append(self.statement(n))
            weight += 1 + _weight(getattr(n, "pipe", None))
        return tuple(fns), weight

    def statement(self, node: Node) -> Closure:
        if isinstance(node, TextNode):
            return self.text(node)
        if isinstance(node, ActionNode):
            return self.action(node)
        if isinstance(node, RangeNode):
            return self.range(node)
        if isinstance(node, BranchNode):
            return self.if_or_with(node)
        if isinstance(node, TemplateNode):
            return self.template(node)
        if isinstance(node, ContinueNode):
            def continue_(st: State, dot: Any) -> None:
                raise _Continue()
            return continue_
        if isinstance(node, BreakNode):
            def break_(st: State, dot: Any) -> None:
                raise _Break()
            return break_
        raise TypeError(f"unknown node {node!r}")  # the parser makes no other kind

    def text(self, node: TextNode) -> Closure:
        text = node.text
        nbytes = len(text.encode("utf-8", "replace"))

        def write_text(st: State, dot: Any) -> None:
            st.size += nbytes
            if st.size > st.max_out:
                st.node = node
                raise st.over("output too long", "max_output_bytes", st.max_out)
            st.out.append(text)

        return write_text

    def action(self, node: ActionNode) -> Closure:
        pipe = self.pipe(node.pipe)
        if node.pipe.decl:
            def declare(st: State, dot: Any) -> None:
                st.node = node
                pipe(st, dot)
            return declare

        def print_(st: State, dot: Any) -> None:
            st.node = node
            v = pipe(st, dot)
            if type(v) is str:
                s = v
            else:
                if callable(v):
                    st.node = node
                    raise st.fail(f"can't print {node} of type {type_name(v)}")
                s = print_action(v, st.max_out)
            if st.escape is not None:
                s = st.escape(s)
            st.size += len(s) if s.isascii() else len(s.encode("utf-8", "replace"))
            if st.size > st.max_out:
                st.node = node
                raise st.over("output too long", "max_output_bytes", st.max_out)
            st.out.append(s)

        return print_

    def if_or_with(self, node: BranchNode) -> Closure:
        pipe = self.pipe(node.pipe)
        body, body_weight = self.list(node.list)
        else_body, else_weight = self.list(node.else_list) if node.else_list is not None else ((), 0)
        has_else = node.else_list is not None
        is_with = isinstance(node, WithNode)

        def branch(st: State, dot: Any) -> None:
            st.node = node
            mark = len(st.vars)
            st.nest += 1
            try:
                if st.nest > st.max_nest:
                    raise st.over("blocks nested too deeply", "max_nesting", st.max_nest)
                v = pipe(st, dot)
                if is_true(v):
                    fns, weight = body, body_weight
                    if is_with:
                        dot = v
                elif has_else:
                    fns, weight = else_body, else_weight
                else:
                    return
                st.steps += weight
                if st.steps > st.max_steps:
                    raise st.over("too many steps", "max_steps", st.max_steps)
                for fn in fns:
                    fn(st, dot)
            finally:
                del st.vars[mark:]
                st.nest -= 1

        return branch

    def range(self, node: RangeNode) -> Closure:
        pipe = self.pipe(node.pipe)
        body, body_weight = self.list(node.list)
        else_body, else_weight = self.list(node.else_list) if node.else_list is not None else ((), 0)
        names = [v.ident[0] for v in node.pipe.decl]
        elem_name = names[-1] if names else None
        index_name = names[0] if len(names) > 1 else None
        cost = body_weight + 1

        def range_(st: State, dot: Any) -> None:
            st.node = node
            mark = len(st.vars)
            st.nest += 1
            try:
                if st.nest > st.max_nest:
                    raise st.over("blocks nested too deeply", "max_nesting", st.max_nest)
                val = pipe(st, dot)
                t = type(val)
                if t is list or t is tuple:
                    items = enumerate(val) if val else None
                elif t is dict:
                    items = ((k, val[k]) for k in sorted_keys(val)) if val else None
                elif val is None:
                    items = None
                else:
                    raise st.fail(f"range can't iterate over {sprint([val], st.max_out)}")
                if items is None:
                    if else_body:
                        st.steps += else_weight
                        if st.steps > st.max_steps:
                            raise st.over("too many steps", "max_steps", st.max_steps)
                        for fn in else_body:
                            fn(st, dot)
                    return
                vs = st.vars
                top = len(vs)
                saved_elem, saved_container = st.range_elem, st.range_container
                st.range_container = val
                for index, elem in items:
                    st.steps += cost
                    if st.steps > st.max_steps:
                        raise st.over("too many steps", "max_steps", st.max_steps)
                    if elem is None:
                        elem = NIL_IFACE  # an element of a slice or map of interface{}
                    st.range_elem = elem
                    if elem_name is not None:
                        vs[top - 1] = (elem_name, elem)
                        if index_name is not None:
                            vs[top - 2] = (index_name, index)
                    try:
                        for fn in body:
                            fn(st, elem)
                    except _Continue:
                        pass
                    except _Break:
                        break
                    finally:
                        del vs[top:]
                st.range_elem, st.range_container = saved_elem, saved_container
            finally:
                del st.vars[mark:]
                st.nest -= 1

        return range_

    def template(self, node: TemplateNode) -> Closure:
        name = node.name
        pipe = self.pipe(node.pipe) if node.pipe is not None else None
        trees = self.program.trees

        def call_template(st: State, dot: Any) -> None:
            st.node = node
            tree = trees.get(name)
            if tree is None:
                raise st.fail(f"template {go_quote(name)} not defined")
            if st.depth >= st.max_depth:
                raise st.over(f"exceeded maximum template depth ({st.max_depth})", "max_depth", st.max_depth)
            new_dot = pipe(st, dot) if pipe is not None else None
            body, weight = tree
            st.steps += 1 + weight
            if st.steps > st.max_steps:
                raise st.over("too many steps", "max_steps", st.max_steps)
            saved_vars, saved_name = st.vars, st.tmpl_name
            st.vars, st.tmpl_name = [("$", new_dot)], name
            st.depth += 1
            try:
                for fn in body:
                    fn(st, new_dot)
            finally:
                st.vars, st.tmpl_name = saved_vars, saved_name
                st.depth -= 1

        return call_template

    # Pipelines and commands.
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
        exported = all(f[:1].isupper() for f in rest)

        def variable(st: State, dot: Any, final: Any) -> Any:
            st.node = node
            v = st.var(name)
            if not rest:
                if extra or final is not NOFINAL:
                    raise st.fail(f"can't give argument to non-function {node}")
                return v
            if not extra and final is NOFINAL:
                found = fast_chain(v, rest, exported)
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
        from .calling import compile_call

        return compile_call(self, ident, cmd, arg_nodes)


def compile_program(program: Program, trees: dict[str, ListNode]) -> None:
    compiler = Compiler(program)
    for name, root in trees.items():
        program.trees[name] = compiler.list(root)
