"""The parse tree: one class per node kind, printed as Go prints them in error messages. No I/O here.

``pos`` is the index in the template text where the node starts (Go's
``Position``); ``str(node)`` is Go's ``node.String()``, which execution
errors quote (``executing "t" at <.Labels.x>``).
"""

from __future__ import annotations

from typing import Any

from .literals import go_quote


class Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos


class ListNode(Node):
    __slots__ = ("nodes",)

    def __init__(self, pos: int, nodes: list[Node] | None = None) -> None:
        super().__init__(pos)
        self.nodes = nodes if nodes is not None else []

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


class TextNode(Node):
    __slots__ = ("text",)

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text

    def __str__(self) -> str:
        return self.text


class VariableNode(Node):
    __slots__ = ("ident",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.ident = name.split(".")

    def __str__(self) -> str:
        return ".".join(self.ident)


class PipeNode(Node):
    __slots__ = ("line", "is_assign", "decl", "cmds")

    def __init__(self, pos: int, line: int) -> None:
        super().__init__(pos)
        self.line = line
        self.is_assign = False
        self.decl: list[VariableNode] = []
        self.cmds: list[CommandNode] = []

    def __str__(self) -> str:
        head = ", ".join(str(v) for v in self.decl) + " := " if self.decl else ""
        return head + " | ".join(str(c) for c in self.cmds)


class ActionNode(Node):
    __slots__ = ("line", "pipe")

    def __init__(self, pos: int, line: int, pipe: PipeNode) -> None:
        super().__init__(pos)
        self.line, self.pipe = line, pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


class CommandNode(Node):
    __slots__ = ("args",)

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.args: list[Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)


class IdentifierNode(Node):
    __slots__ = ("ident",)

    def __init__(self, pos: int, ident: str) -> None:
        super().__init__(pos)
        self.ident = ident

    def __str__(self) -> str:
        return self.ident


class DotNode(Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "."


class NilNode(Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "nil"


class FieldNode(Node):
    __slots__ = ("ident",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.ident = name[1:].split(".")  # ".A.B" -> ["A", "B"]

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


class ChainNode(Node):
    __slots__ = ("node", "fields")

    def __init__(self, pos: int, node: Node) -> None:
        super().__init__(pos)
        self.node = node
        self.fields: list[str] = []

    def __str__(self) -> str:
        head = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return head + "".join("." + f for f in self.fields)


class BoolNode(Node):
    __slots__ = ("value",)

    def __init__(self, pos: int, value: bool) -> None:
        super().__init__(pos)
        self.value = value

    def __str__(self) -> str:
        return "true" if self.value else "false"


class NumberNode(Node):
    """A number constant. ``value`` is what it is as an argument (Go's idealConstant), or ``overflow`` says why it has none."""

    __slots__ = ("text", "value", "overflow")

    def __init__(self, pos: int, text: str, value: Any, overflow: str | None) -> None:
        super().__init__(pos)
        self.text, self.value, self.overflow = text, value, overflow

    def __str__(self) -> str:
        return self.text


class StringNode(Node):
    __slots__ = ("quoted", "text")

    def __init__(self, pos: int, quoted: str, text: str) -> None:
        super().__init__(pos)
        self.quoted, self.text = quoted, text

    def __str__(self) -> str:
        return self.quoted


class BranchNode(Node):
    __slots__ = ("line", "pipe", "list", "else_list")
    keyword = ""

    def __init__(self, pos: int, line: int, pipe: PipeNode, body: ListNode, else_list: ListNode | None) -> None:
        super().__init__(pos)
        self.line, self.pipe, self.list, self.else_list = line, pipe, body, else_list

    def __str__(self) -> str:
        tail = "{{else}}" + str(self.else_list) if self.else_list is not None else ""
        return "{{" + f"{self.keyword} {self.pipe}" + "}}" + str(self.list) + tail + "{{end}}"


class IfNode(BranchNode):
    __slots__ = ()
    keyword = "if"


class RangeNode(BranchNode):
    __slots__ = ()
    keyword = "range"


class WithNode(BranchNode):
    __slots__ = ()
    keyword = "with"


class TemplateNode(Node):
    __slots__ = ("line", "name", "pipe")

    def __init__(self, pos: int, line: int, name: str, pipe: PipeNode | None) -> None:
        super().__init__(pos)
        self.line, self.name, self.pipe = line, name, pipe

    def __str__(self) -> str:
        arg = f" {self.pipe}" if self.pipe is not None else ""
        return "{{template " + go_quote(self.name) + arg + "}}"


class BreakNode(Node):
    __slots__ = ("line",)

    def __init__(self, pos: int, line: int) -> None:
        super().__init__(pos)
        self.line = line

    def __str__(self) -> str:
        return "{{break}}"


class ContinueNode(BreakNode):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{continue}}"


class EndNode(Node):
    """{{end}}: closes a list while parsing; never in a finished tree."""

    __slots__ = ()

    def __str__(self) -> str:
        return "{{end}}"


class ElseNode(Node):
    """{{else}}: closes a list while parsing; never in a finished tree."""

    __slots__ = ("line",)

    def __init__(self, pos: int, line: int) -> None:
        super().__init__(pos)
        self.line = line

    def __str__(self) -> str:
        return "{{else}}"


def is_empty_tree(node: Node | None) -> bool:
    """Go's IsEmptyTree: nothing but space and comments (such a definition may be replaced)."""
    if node is None:
        return True
    if isinstance(node, ListNode):
        return all(is_empty_tree(n) for n in node.nodes)
    if isinstance(node, TextNode):
        return not node.text.strip()
    return False
