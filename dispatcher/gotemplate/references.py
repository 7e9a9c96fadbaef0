"""Which fields of its data a template reads: for building a sample alert that carries every label it needs. No I/O here.

A static walk over the parse trees that follows what dot and variables
stand for: at the top dot is the data, ``with .Alert`` makes it ``.Alert``,
``$`` is always the data, ``$x := .Labels`` names ``.Labels``, and a template
called with ``{{template "t" .Alert}}`` sees ``.Alert`` as its dot. Inside
``range`` dot is an element and what it reads is not reported.
``index X "k1" "k2"`` on a known chain X reads X.k1.k2.
"""

from __future__ import annotations

from .nodes import (
    ActionNode, BranchNode, ChainNode, CommandNode, DotNode, FieldNode, IdentifierNode, ListNode, Node, PipeNode,
    RangeNode, StringNode, TemplateNode, VariableNode, WithNode,
)

Chain = tuple[str, ...]  # None stands for "unknown"


class _Walker:
    def __init__(self, trees: dict[str, ListNode]) -> None:
        self.trees = trees
        self.found: set[tuple[str, ...]] = set()
        self.seen_calls: set[tuple[str, Chain | None]] = set()

    def add(self, chain: Chain | None) -> None:
        if chain:
            self.found.add(tuple(chain))

    def walk_list(self, node: ListNode | None, dot: Chain | None, env: dict[str, Chain | None]) -> None:
        if node is None:
            return
        for n in node.nodes:
            self.walk(n, dot, env)

    def walk(self, node: Node, dot: Chain | None, env: dict[str, Chain | None]) -> None:
        if isinstance(node, ActionNode):
            self.pipe(node.pipe, dot, env)
        elif isinstance(node, BranchNode):
            inner_env = dict(env)
            value = self.pipe(node.pipe, dot, inner_env)
            if isinstance(node, RangeNode):
                for v in node.pipe.decl:
                    inner_env[v.ident[0]] = None
                self.walk_list(node.list, None, inner_env)
            else:
                self.walk_list(node.list, value if isinstance(node, WithNode) else dot, inner_env)
            self.walk_list(node.else_list, dot, inner_env)
        elif isinstance(node, TemplateNode):
            arg = self.pipe(node.pipe, dot, env) if node.pipe is not None else None
            key = (node.name, arg)
            if key not in self.seen_calls and node.name in self.trees:
                self.seen_calls.add(key)
                self.walk_list(self.trees[node.name], arg, {"$": arg})

    def pipe(self, pipe: PipeNode, dot: Chain | None, env: dict[str, Chain | None]) -> Chain | None:
        value = None
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, env)
        for v in pipe.decl:
            env[v.ident[0]] = value if len(pipe.decl) == 1 else None
        return value

    def command(self, cmd: CommandNode, dot: Chain | None, env: dict[str, Chain | None]) -> Chain | None:
        values = [self.operand(a, dot, env) for a in cmd.args]
        first = cmd.args[0]
        if isinstance(first, IdentifierNode):
            if first.ident == "index" and len(cmd.args) >= 2 and values[1] is not None:
                keys = cmd.args[2:]
                if keys and all(isinstance(k, StringNode) for k in keys):
                    chain = values[1] + tuple(k.text for k in keys if isinstance(k, StringNode))  # all are
                    self.add(chain)
                    return chain
            return None
        return values[0]

    def operand(self, node: Node, dot: Chain | None, env: dict[str, Chain | None]) -> Chain | None:
        if isinstance(node, DotNode):
            return dot
        if isinstance(node, FieldNode):
            chain = dot + tuple(node.ident) if dot is not None else None
            self.add(chain)
            return chain
        if isinstance(node, VariableNode):
            base = env.get(node.ident[0]) if node.ident[0] in env else (() if node.ident[0] == "$" else None)
            chain = base + tuple(node.ident[1:]) if base is not None else None
            if len(node.ident) > 1:
                self.add(chain)
            return chain
        if isinstance(node, PipeNode):
            return self.pipe(node, dot, dict(env))
        if isinstance(node, ChainNode):
            base = self.operand(node.node, dot, env)
            chain = base + tuple(node.fields) if base is not None else None
            self.add(chain)
            return chain
        return None


def referenced_fields(trees: dict[str, ListNode], name: str) -> set[tuple[str, ...]]:
    walker = _Walker(trees)
    walker.walk_list(trees.get(name), (), {"$": ()})
    return walker.found
