"""Go's text/template lexer: the text cut into tokens, with Go's rules and error messages. No I/O here.

Positions are indexes into the Python string; lines count from 1. The token
list ends with an EOF token, or with an ERROR token whose value is Go's
message, after which Go's lexer stops too.
"""

from __future__ import annotations

from .literals import go_quote, go_quote_rune_u

# Token types. Those from BLOCK on are keywords: Go prints them as <word> in errors.
ERROR, BOOL, CHAR, CHAR_CONSTANT, COMPLEX, ASSIGN, DECLARE, EOF, FIELD, IDENTIFIER = range(10)
LEFT_DELIM, LEFT_PAREN, NUMBER, PIPE, RAW_STRING, RIGHT_DELIM, RIGHT_PAREN, SPACE, STRING, TEXT, VARIABLE = range(10, 21)
KEYWORD = 21
BLOCK, BREAK, CONTINUE, DOT, DEFINE, ELSE, END, IF, NIL, RANGE, TEMPLATE, WITH = range(22, 34)

KEYWORDS = {
    ".": DOT, "block": BLOCK, "break": BREAK, "continue": CONTINUE, "define": DEFINE, "else": ELSE,
    "end": END, "if": IF, "range": RANGE, "nil": NIL, "template": TEMPLATE, "with": WITH,
}

SPACES = " \t\r\n"
_TERMINATORS = frozenset(SPACES) | frozenset(".,|:)(")
_DECIMAL = "0123456789_"
_HEX = "0123456789abcdefABCDEF_"


class Token:
    __slots__ = ("typ", "pos", "val", "line")

    def __init__(self, typ: int, pos: int, val: str, line: int) -> None:
        self.typ, self.pos, self.val, self.line = typ, pos, val, line

    def __str__(self) -> str:
        """As Go's parser names a token in its messages."""
        if self.typ == EOF:
            return "EOF"
        if self.typ == ERROR:
            return self.val
        if self.typ > KEYWORD:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


def is_alphanumeric(ch: str) -> bool:
    return ch == "_" or ch.isalpha() or ch.isdecimal()


class _Lexer:
    def __init__(self, text: str, break_ok: bool, continue_ok: bool) -> None:
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.start = 0
        self.tokens: list[Token] = []
        self.paren_depth = 0
        self.break_ok, self.continue_ok = break_ok, continue_ok
        self._line_pos, self._line = 0, 1

    def _line_at(self, pos: int) -> int:
        self._line += self.text.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line

    def emit(self, typ: int) -> None:
        self.tokens.append(Token(typ, self.start, self.text[self.start:self.pos], self._line_at(self.start)))
        self.start = self.pos

    def fail(self, message: str) -> bool:
        self.tokens.append(Token(ERROR, self.start, message, self._line_at(self.start)))
        return False

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < self.n else ""

    def accept(self, valid: str) -> bool:
        if self.pos < self.n and self.text[self.pos] in valid:
            self.pos += 1
            return True
        return False

    def accept_run(self, valid: str) -> None:
        while self.pos < self.n and self.text[self.pos] in valid:
            self.pos += 1

    def at_terminator(self) -> bool:
        return self.pos >= self.n or self.text[self.pos] in _TERMINATORS or self.text.startswith("}}", self.pos)

    def at_right_delim(self) -> tuple[bool, bool]:
        text, pos = self.text, self.pos
        if pos + 1 < self.n and text[pos] in SPACES and text[pos + 1] == "-" and text.startswith("}}", pos + 2):
            return True, True
        return text.startswith("}}", pos), False

    def run(self) -> list[Token]:
        text = self.text
        while True:
            x = text.find("{{", self.pos)
            if x < 0:
                self.pos = self.n
                if self.pos > self.start:
                    self.emit(TEXT)
                self.emit(EOF)
                return self.tokens
            trim = _left_trim_marker(text, x + 2)
            end = len(text[self.start:x].rstrip(SPACES)) + self.start if trim else x
            if end > self.start:
                self.pos = end
                self.emit(TEXT)
            self.pos = self.start = x
            if not self.left_delim(trim):
                return self.tokens

    def left_delim(self, trim: bool) -> bool:
        self.pos += 2
        after = 2 if trim else 0
        if self.text.startswith("/*", self.pos + after):
            self.pos += after
            self.start = self.pos
            return self.comment()
        self.emit(LEFT_DELIM)
        self.pos += after
        self.start = self.pos
        self.paren_depth = 0
        return self.inside_action()

    def comment(self) -> bool:
        self.pos += 2
        i = self.text.find("*/", self.pos)
        if i < 0:
            return self.fail("unclosed comment")
        self.pos = i + 2
        delim, trim = self.at_right_delim()
        if not delim:
            return self.fail("comment ends before closing delimiter")
        self.pos += 4 if trim else 2
        if trim:
            self.pos = _skip_spaces(self.text, self.pos)
        self.start = self.pos
        return True

    def right_delim(self) -> bool:
        trim = self.text[self.pos] in SPACES and self.text.startswith("-}}", self.pos + 1)
        if trim:
            self.pos += 2
            self.start = self.pos
        self.pos += 2
        self.emit(RIGHT_DELIM)
        if trim:
            self.pos = self.start = _skip_spaces(self.text, self.pos)
        return True

    def inside_action(self) -> bool:
        text = self.text
        while True:
            delim, _ = self.at_right_delim()
            if delim:
                if self.paren_depth == 0:
                    return self.right_delim()
                return self.fail("unclosed left paren")
            if self.pos >= self.n:
                return self.fail("unclosed action")
            r = text[self.pos]
            self.pos += 1
            if r in SPACES:
                self.pos -= 1
                if self.space():
                    return self.right_delim()
            elif r == "=":
                self.emit(ASSIGN)
            elif r == ":":
                if self.peek() != "=":
                    if self.pos < self.n:
                        self.pos += 1
                    return self.fail("expected :=")
                self.pos += 1
                self.emit(DECLARE)
            elif r == "|":
                self.emit(PIPE)
            elif r == '"':
                if not self.quote('"', "unterminated quoted string"):
                    return False
            elif r == "`":
                if not self.raw_quote():
                    return False
            elif r == "$":
                if not self.variable():
                    return False
            elif r == "'":
                if not self.quote("'", "unterminated character constant"):
                    return False
            elif r == "." and self.pos < self.n and not ("0" <= text[self.pos] <= "9"):
                if not self.field_or_variable(FIELD):
                    return False
            elif r in "+-.0123456789":
                self.pos -= 1
                if not self.number():
                    return False
            elif is_alphanumeric(r):
                self.pos -= 1
                if not self.identifier():
                    return False
            elif r == "(":
                self.emit(LEFT_PAREN)
                self.paren_depth += 1
            elif r == ")":
                self.emit(RIGHT_PAREN)
                self.paren_depth -= 1
                if self.paren_depth < 0:
                    return self.fail(f"unexpected right paren {go_quote_rune_u(r)}")
            elif r < "\x80" and r.isprintable():
                self.emit(CHAR)
            else:
                return self.fail(f"unrecognized character in action: {go_quote_rune_u(r)}")

    def space(self) -> bool:
        """Consume spaces; True when they were the one space of a ' -}}' (go straight to the delimiter)."""
        count = 0
        while self.pos < self.n and self.text[self.pos] in SPACES:
            self.pos += 1
            count += 1
        if self.text.startswith("-}}", self.pos):
            self.pos -= 1
            if count == 1:
                return True
        self.emit(SPACE)
        return False

    def identifier(self) -> bool:
        while self.pos < self.n and is_alphanumeric(self.text[self.pos]):
            self.pos += 1
        if not self.at_terminator():
            self.pos += 1
            return self.fail(f"bad character {go_quote_rune_u(self.text[self.pos - 1])}")
        word = self.text[self.start:self.pos]
        typ = KEYWORDS.get(word)
        if typ is not None:
            if (typ == BREAK and not self.break_ok) or (typ == CONTINUE and not self.continue_ok):
                typ = IDENTIFIER
            self.emit(typ)
        elif word in ("true", "false"):
            self.emit(BOOL)
        else:
            self.emit(IDENTIFIER)
        return True

    def variable(self) -> bool:
        if self.at_terminator():
            self.emit(VARIABLE)
            return True
        return self.field_or_variable(VARIABLE)

    def field_or_variable(self, typ: int) -> bool:
        if self.at_terminator():
            self.emit(VARIABLE if typ == VARIABLE else DOT)
            return True
        while self.pos < self.n and is_alphanumeric(self.text[self.pos]):
            self.pos += 1
        if not self.at_terminator():
            self.pos += 1
            return self.fail(f"bad character {go_quote_rune_u(self.text[self.pos - 1])}")
        self.emit(typ)
        return True

    def quote(self, close: str, unterminated: str) -> bool:
        text = self.text
        while True:
            if self.pos >= self.n:
                return self.fail(unterminated)
            r = text[self.pos]
            self.pos += 1
            if r == "\\":
                if self.pos >= self.n or text[self.pos] == "\n":
                    if self.pos < self.n:
                        self.pos += 1
                    return self.fail(unterminated)
                self.pos += 1
            elif r == "\n":
                return self.fail(unterminated)
            elif r == close:
                self.emit(STRING if close == '"' else CHAR_CONSTANT)
                return True

    def raw_quote(self) -> bool:
        end = self.text.find("`", self.pos)
        if end < 0:
            self.pos = self.n
            return self.fail("unterminated raw quoted string")
        self.pos = end + 1
        self.emit(RAW_STRING)
        return True

    def number(self) -> bool:
        if not self.scan_number():
            return self.fail(f"bad number syntax: {go_quote(self.text[self.start:self.pos])}")
        if self.peek() in ("+", "-"):
            if not self.scan_number() or self.text[self.pos - 1] != "i":
                return self.fail(f"bad number syntax: {go_quote(self.text[self.start:self.pos])}")
            self.emit(COMPLEX)
        else:
            self.emit(NUMBER)
        return True

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = _DECIMAL
        if self.accept("0"):
            if self.accept("xX"):
                digits = _HEX
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if digits is _DECIMAL and self.accept("eE"):
            self.accept("+-")
            self.accept_run(_DECIMAL)
        if digits is _HEX and self.accept("pP"):
            self.accept("+-")
            self.accept_run(_DECIMAL)
        self.accept("i")
        if self.pos < self.n and is_alphanumeric(self.text[self.pos]):
            self.pos += 1
            return False
        return True


def _left_trim_marker(text: str, pos: int) -> bool:
    return text.startswith("-", pos) and pos + 1 < len(text) and text[pos + 1] in SPACES


def _skip_spaces(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in SPACES:
        pos += 1
    return pos


def lex(text: str, *, break_ok: bool = True, continue_ok: bool = True) -> list[Token]:
    """All tokens of ``text``, ending with EOF or ERROR."""
    return _Lexer(text, break_ok, continue_ok).run()
