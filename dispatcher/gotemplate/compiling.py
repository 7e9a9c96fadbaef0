"""Turning parse trees into closures that execute them (see executing.py for the rules). No I/O here.

Every closure that evaluates sets ``st.node`` where Go's evaluator calls
``s.at(node)``, so an error names the node Go would name. Each list of nodes
carries a weight, the steps its execution costs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .executing import Program, State, _Break, _Continue
from .formatting import print_action, sprint
from .literals import go_quote
from .nodes import (
    ActionNode, BranchNode, BreakNode, ChainNode, CommandNode, ContinueNode, ListNode, Node, PipeNode, RangeNode,
    TemplateNode, TextNode, WithNode,
)
from .pipelines import Closure, PipelineCompiler
from .values import NIL_IFACE, is_true, type_name


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


class Compiler(PipelineCompiler):
    """Statements: lists, text, actions, if/with, range and template calls."""

    def __init__(self, program: Program) -> None:
        self.program = program

    # Lists and statements.
    def list(self, node: ListNode) -> tuple[tuple[Any, ...], int]:
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
                s = st.escape(s, st.out)
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
                    items: Iterator[tuple[Any, Any]] | None = enumerate(val) if val else None
                elif t is dict:
                    items = ((k, val[k]) for k in st.sorted_keys(val)) if val else None
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



def compile_program(program: Program, trees: dict[str, ListNode]) -> None:
    compiler = Compiler(program)
    for name, root in trees.items():
        program.trees[name] = compiler.list(root)
