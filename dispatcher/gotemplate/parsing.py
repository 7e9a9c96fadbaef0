"""Go's text/template parser: tokens to trees, one per template name, with Go's errors. No I/O here.

It follows Go 1.19's parser rule for rule: variables are known from their
declaration to the ``end`` of the enclosing control structure, functions
must be known when parsing, ``break``/``continue`` only inside ``range``,
``define`` and ``block`` make new trees. A parse error is a TemplateError
worded as Go's, ``template: NAME:LINE: ...``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from . import lexing as lx
from .errors import TemplateError
from .limits import Limits
from .literals import go_quote, number_constant, unquote
from .nodes import (
    ActionNode, BoolNode, BranchNode, BreakNode, ChainNode, CommandNode, ContinueNode, DotNode, ElseNode, EndNode,
    FieldNode, IdentifierNode, IfNode, ListNode, NilNode, Node, NumberNode, PipeNode, RangeNode, StringNode,
    TemplateNode, TextNode, VariableNode, WithNode, is_empty_tree,
)

_TERM_START = frozenset({
    lx.BOOL, lx.CHAR_CONSTANT, lx.COMPLEX, lx.DOT, lx.FIELD, lx.IDENTIFIER, lx.NUMBER, lx.NIL,
    lx.RAW_STRING, lx.STRING, lx.VARIABLE, lx.LEFT_PAREN,
})
_NOT_EXECUTABLE = (BoolNode, DotNode, NilNode, NumberNode, StringNode)


class _Parser:
    def __init__(self, name: str, text: str, functions: Collection[str], limits: Limits) -> None:
        self.name = name
        self.text = text
        self.functions = functions
        self.max_nesting = limits.max_nesting
        self.tokens = lx.lex(text, break_ok="break" not in functions, continue_ok="continue" not in functions)
        self.i = 0
        self.furthest = 0
        self.vars = ["$"]
        self.range_depth = 0
        self.action_line = 0
        self.nesting = 0
        self.trees: dict[str, ListNode] = {}

    # Tokens.
    def next(self) -> lx.Token:
        i = min(self.i, len(self.tokens) - 1)
        self.i = i + 1
        if i > self.furthest:
            self.furthest = i
        return self.tokens[i]

    def peek(self) -> lx.Token:
        token = self.next()
        self.i -= 1
        return token

    def next_non_space(self) -> lx.Token:
        token = self.next()
        while token.typ == lx.SPACE:
            token = self.next()
        return token

    def peek_non_space(self) -> lx.Token:
        token = self.next_non_space()
        self.i -= 1
        return token

    def error(self, message: str) -> TemplateError:
        token = self.tokens[self.furthest]
        line_start = self.text.rfind("\n", 0, token.pos) + 1
        return TemplateError(
            f"template: {self.name}:{token.line}: {message}", stage="parse",
            line=token.line, col=len(self.text[line_start:token.pos].encode()),
        )

    def expect(self, expected: int, context: str) -> lx.Token:
        token = self.next_non_space()
        if token.typ != expected:
            raise self.unexpected(token, context)
        return token

    def unexpected(self, token: lx.Token, context: str) -> TemplateError:
        if token.typ == lx.ERROR:
            extra = ""
            if self.action_line != 0 and self.action_line != token.line:
                extra = f" in action started at {self.name}:{self.action_line}"
                if token.val.endswith(" action"):
                    extra = extra[len(" in action"):]
            return self.error(f"{token}{extra}")
        return self.error(f"unexpected {token} in {context}")

    def nest(self) -> None:
        self.nesting += 1
        if self.nesting > self.max_nesting:
            raise TemplateError(
                f"template: {self.name}:{self.tokens[self.furthest].line}: blocks and parentheses nest deeper than {self.max_nesting} (limit max_nesting)",
                stage="parse", line=self.tokens[self.furthest].line, limit="max_nesting",
            )

    # Trees.
    def parse(self) -> dict[str, ListNode]:
        root = ListNode(self.peek().pos)
        while self.peek().typ != lx.EOF:
            if self.peek().typ == lx.LEFT_DELIM:
                mark = self.i
                self.next()
                if self.next_non_space().typ == lx.DEFINE:
                    self.in_new_tree(self.definition)
                    continue
                self.i = mark
            node = self.text_or_action()
            if isinstance(node, (EndNode, ElseNode)):
                raise self.error(f"unexpected {node}")
            root.nodes.append(node)
        self.add(self.name, root)
        return self.trees

    def in_new_tree(self, parse_body: Callable[..., object], *args: object) -> object:
        saved = (self.vars, self.range_depth, self.action_line)
        self.vars, self.range_depth, self.action_line = ["$"], 0, 0
        self.nest()
        try:
            return parse_body(*args)
        finally:
            self.vars, self.range_depth, self.action_line = saved
            self.nesting -= 1

    def definition(self) -> None:
        context = "define clause"
        token = self.next_non_space()
        if token.typ not in (lx.STRING, lx.RAW_STRING):
            raise self.unexpected(token, context)
        name = self.unquote(token.val)
        self.expect(lx.RIGHT_DELIM, context)
        body, end = self.item_list()
        if not isinstance(end, EndNode):
            raise self.error(f"unexpected {end} in {context}")
        self.add(name, body)

    def add(self, name: str, root: ListNode) -> None:
        tree = self.trees.get(name)
        if tree is None or is_empty_tree(tree):
            self.trees[name] = root
        elif not is_empty_tree(root):
            raise self.error(f"template: multiple definition of template {go_quote(name)}")

    def item_list(self) -> tuple[ListNode, Node]:
        body = ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != lx.EOF:
            node = self.text_or_action()
            if isinstance(node, (EndNode, ElseNode)):
                return body, node
            body.nodes.append(node)
        raise self.error("unexpected EOF")

    def text_or_action(self) -> Node:
        token = self.next_non_space()
        if token.typ == lx.TEXT:
            return TextNode(token.pos, token.val)
        if token.typ == lx.LEFT_DELIM:
            self.action_line = token.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        raise self.unexpected(token, "input")

    # Actions and control structures.
    def action(self) -> Node:
        token = self.next_non_space()
        typ = token.typ
        if typ == lx.BLOCK:
            return self.block_control()
        if typ in (lx.BREAK, lx.CONTINUE):
            word = "break" if typ == lx.BREAK else "continue"
            after = self.next_non_space()
            if after.typ != lx.RIGHT_DELIM:
                raise self.unexpected(after, "{{" + word + "}}")
            if self.range_depth == 0:
                raise self.error("{{" + word + "}} outside {{range}}")
            return (BreakNode if typ == lx.BREAK else ContinueNode)(token.pos, token.line)
        if typ == lx.ELSE:
            after = self.peek_non_space()
            if after.typ == lx.IF:
                return ElseNode(after.pos, after.line)
            after = self.expect(lx.RIGHT_DELIM, "else")
            return ElseNode(after.pos, after.line)
        if typ == lx.END:
            return EndNode(self.expect(lx.RIGHT_DELIM, "end").pos)
        if typ == lx.IF:
            return self.control(IfNode, "if", allow_else_if=True)
        if typ == lx.RANGE:
            return self.control(RangeNode, "range")
        if typ == lx.TEMPLATE:
            return self.template_control()
        if typ == lx.WITH:
            return self.control(WithNode, "with")
        self.i -= 1
        token = self.peek()
        return ActionNode(token.pos, token.line, self.pipeline("command", lx.RIGHT_DELIM))

    def control(self, kind: type[BranchNode], context: str, allow_else_if: bool = False) -> BranchNode:
        saved_vars = len(self.vars)
        self.nest()
        try:
            pipe = self.pipeline(context, lx.RIGHT_DELIM)
            if context == "range":
                self.range_depth += 1
            body, end = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list = None
            if isinstance(end, ElseNode):
                if allow_else_if and self.peek().typ == lx.IF:
                    self.next()
                    else_list = ListNode(end.pos, [self.control(IfNode, "if", allow_else_if=True)])
                else:
                    else_list, end = self.item_list()
                    if not isinstance(end, EndNode):
                        raise self.error(f"expected end; found {end}")
            return kind(pipe.pos, pipe.line, pipe, body, else_list)
        finally:
            del self.vars[saved_vars:]
            self.nesting -= 1

    def template_name(self, token: lx.Token, context: str) -> str:
        if token.typ not in (lx.STRING, lx.RAW_STRING):
            raise self.unexpected(token, context)
        return self.unquote(token.val)

    def template_control(self) -> TemplateNode:
        token = self.next_non_space()
        name = self.template_name(token, "template clause")
        pipe = None
        if self.next_non_space().typ != lx.RIGHT_DELIM:
            self.i -= 1
            pipe = self.pipeline("template clause", lx.RIGHT_DELIM)
        return TemplateNode(token.pos, token.line, name, pipe)

    def block_control(self) -> TemplateNode:
        context = "block clause"
        token = self.next_non_space()
        name = self.template_name(token, context)
        pipe = self.pipeline(context, lx.RIGHT_DELIM)

        def body() -> None:
            root, end = self.item_list()
            if not isinstance(end, EndNode):
                raise self.error(f"unexpected {end} in {context}")
            self.add(name, root)

        self.in_new_tree(body)
        return TemplateNode(token.pos, token.line, name, pipe)

    # Pipelines, commands, operands.
    def pipeline(self, context: str, end: int) -> PipeNode:
        token = self.peek_non_space()
        pipe = PipeNode(token.pos, token.line)
        while True:  # declarations; loops only for range's second variable
            v = self.peek_non_space()
            if v.typ != lx.VARIABLE:
                break
            mark = self.i
            self.next()
            self.peek()  # Go looks at the token after the variable: it counts for the line of an error
            nxt = self.peek_non_space()
            if nxt.typ in (lx.ASSIGN, lx.DECLARE):
                pipe.is_assign = nxt.typ == lx.ASSIGN
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, v.val))
                self.vars.append(v.val)
            elif nxt.typ == lx.CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, v.val))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (lx.VARIABLE, lx.RIGHT_DELIM, lx.RIGHT_PAREN):
                        continue
                    raise self.error("range can only initialize variables")
                raise self.error(f"too many declarations in {context}")
            else:
                self.i = mark  # not a declaration: read the variable again as an operand
            break
        while True:
            token = self.next_non_space()
            if token.typ == end:
                self.check_pipeline(pipe, context)
                return pipe
            if token.typ in _TERM_START:
                self.i -= 1
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(token, context)

    def check_pipeline(self, pipe: PipeNode, context: str) -> None:
        if not pipe.cmds:
            raise self.error(f"missing value for {context}")
        for i, cmd in enumerate(pipe.cmds[1:]):
            if isinstance(cmd.args[0], _NOT_EXECUTABLE):
                raise self.error(f"non executable command in pipeline stage {i + 2}")

    def command(self) -> CommandNode:
        cmd = CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            token = self.next()
            if token.typ == lx.SPACE:
                continue
            if token.typ in (lx.RIGHT_DELIM, lx.RIGHT_PAREN):
                self.i -= 1
            elif token.typ != lx.PIPE:
                raise self.unexpected(token, "operand")
            break
        if not cmd.args:
            raise self.error("empty command")
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == lx.FIELD:
            chain = ChainNode(self.peek().pos, node)
            while self.peek().typ == lx.FIELD:
                chain.fields.append(self.next().val[1:])
            if isinstance(node, FieldNode):
                return FieldNode(chain.pos, str(chain))
            if isinstance(node, VariableNode):
                return VariableNode(chain.pos, str(chain))
            if isinstance(node, (BoolNode, StringNode, NumberNode, NilNode, DotNode)):
                raise self.error(f"unexpected . after term {go_quote(str(node))}")
            return chain
        return node

    def term(self) -> Node | None:
        token = self.next_non_space()
        typ = token.typ
        if typ == lx.IDENTIFIER:
            if token.val not in self.functions:
                raise self.error(f'function "{token.val}" not defined')
            return IdentifierNode(token.pos, token.val)
        if typ == lx.DOT:
            return DotNode(token.pos)
        if typ == lx.NIL:
            return NilNode(token.pos)
        if typ == lx.VARIABLE:
            node = VariableNode(token.pos, token.val)
            if node.ident[0] not in self.vars:
                raise self.error(f'undefined variable "{node.ident[0]}"')
            return node
        if typ == lx.FIELD:
            return FieldNode(token.pos, token.val)
        if typ == lx.BOOL:
            return BoolNode(token.pos, token.val == "true")
        if typ in (lx.CHAR_CONSTANT, lx.COMPLEX, lx.NUMBER):
            try:
                value, overflow = number_constant(token.val, typ == lx.CHAR_CONSTANT, typ == lx.COMPLEX)
            except ValueError as exc:
                raise self.error(str(exc)) from None
            return NumberNode(token.pos, token.val, value, overflow)
        if typ == lx.LEFT_PAREN:
            self.nest()
            try:
                return self.pipeline("parenthesized pipeline", lx.RIGHT_PAREN)
            finally:
                self.nesting -= 1
        if typ in (lx.STRING, lx.RAW_STRING):
            return StringNode(token.pos, token.val, self.unquote(token.val))
        self.i -= 1
        return None

    def unquote(self, quoted: str) -> str:
        try:
            return unquote(quoted)
        except ValueError as exc:
            raise self.error(str(exc)) from None


def parse_trees(name: str, text: str, functions: Collection[str], limits: Limits) -> dict[str, ListNode]:
    """Every template the text defines, by name; the text's own body under ``name``. TemplateError if malformed."""
    if len(text) > limits.max_text_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.max_text_bytes:
        raise TemplateError(
            f"template: {name}: text longer than {limits.max_text_bytes} bytes (limit max_text_bytes)",
            stage="parse", limit="max_text_bytes",
        )
    try:
        return _Parser(name, text, functions, limits).parse()
    except RecursionError:
        raise TemplateError(
            f"template: {name}: nested too deeply for Python's stack (limit max_nesting: {limits.max_nesting})",
            stage="parse", limit="max_nesting",
        ) from None
