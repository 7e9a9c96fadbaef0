"""The two grammars of Alertmanager's matchers, classic and UTF-8, read into (name, op, value). No I/O here.

``classic`` and ``utf8`` each return the matchers of a text as
``(name, op, value)`` triples, values unescaped, or raise ``Refused`` with
the reason. Which grammar wins, and what the matchers mean, is
``dispatcher.matching``'s business; its docstring describes both grammars.
Written from Alertmanager's documentation and parser tests (see
tests/test_matching.py), not from its code.
"""

from __future__ import annotations

import string


class Refused(ValueError):
    """Text that the grammar does not accept."""


Triple = tuple[str, str, str]

OPERATORS = ("=~", "=", "!=", "!~")  # in this order: "=~" must be tried before "="

# Go's unicode.IsSpace (the Unicode White_Space property), used by the UTF-8 lexer and by the
# classic splitter's last trim. Python's str.isspace differs: it also counts \x1c-\x1f.
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
_GO_SPACE = frozenset(GO_SPACE)
# RE2's \s, which the classic parser's pattern uses around its three tokens: no \v, ASCII only.
CLASSIC_SPACE = " \t\n\f\r"

_NAME_START = frozenset(string.ascii_letters + "_:")
_NAME_REST = _NAME_START | frozenset(string.digits)


def is_classic_name(name: str) -> bool:
    return bool(name) and name[0] in _NAME_START and all(c in _NAME_REST for c in name)


# -- classic ----------------------------------------------------------------------------


def classic(text: str) -> list[Triple]:
    body = text[1:] if text.startswith("{") else text
    body = body[:-1] if body.endswith("}") else body
    parts: list[str] = []
    current: list[str] = []
    inside = escaped = False
    for ch in body:
        # The same quote tracking as upstream's, quirks included: a comma does not reset `escaped`.
        if ch == ",":
            if not inside:
                parts.append("".join(current))
                current = []
                continue
        elif ch == '"':
            if escaped:
                escaped = False
            else:
                inside = not inside
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        current.append(ch)
    last = "".join(current).strip(GO_SPACE)
    if last:  # a trailing comma leaves an empty last part, which is dropped; earlier empty parts are errors
        parts.append(last)
    return [_classic_matcher(part) for part in parts]


def _classic_matcher(part: str) -> Triple:
    n = len(part)
    i = _skip(part, 0, CLASSIC_SPACE)
    start = i
    if i < n and part[i] in _NAME_START:
        i += 1
        while i < n and part[i] in _NAME_REST:
            i += 1
    name = part[start:i]
    i = _skip(part, i, CLASSIC_SPACE)
    op = next((o for o in OPERATORS if part.startswith(o, i)), None)
    if not name or op is None:
        raise Refused(f"{_show(part)} is not NAME OP VALUE (NAME is [a-zA-Z_:][a-zA-Z0-9_:]*, OP one of = != =~ !~)")
    return name, op, _classic_value(part[i + len(op) :].strip(CLASSIC_SPACE))


def _classic_value(raw: str) -> str:
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    out: list[str] = []
    escaped = False
    last = len(raw) - 1
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            out.append("\n" if ch == "n" else ch if ch in '"\\' else "\\" + ch)  # other escapes stay as written
        elif ch == "\\":
            if i < last:
                escaped = True
            else:
                out.append(ch)  # a backslash at the very end is itself
        elif ch == '"':
            if not quoted or i < last:
                raise Refused("the value has an unescaped double quote")
            quoted = False  # the closing quote
        else:
            out.append(ch)
    if quoted:
        raise Refused("the value's double quote is not closed")
    return "".join(out)


def _show(s: str, limit: int = 80) -> str:
    return repr(s if len(s) <= limit else s[:limit] + "...")


def _skip(s: str, i: int, chars: str) -> int:
    while i < len(s) and s[i] in chars:
        i += 1
    return i


# -- UTF-8 ------------------------------------------------------------------------------

_RESERVED = frozenset('{}!=~,\\"\'`')
_QUOTED, _UNQUOTED = "quoted", "unquoted"
Token = tuple[str, str, int]  # kind, text, offset


def utf8(text: str) -> list[Triple]:
    tokens = _lex(text)
    n, i = len(tokens), 0
    found: list[Triple] = []
    braced = n > 0 and tokens[0][0] == "{"
    i = 1 if braced else 0
    if i < n and tokens[i][0] != "}":
        while True:
            name, i = _operand(tokens, i, "a label name")
            if i >= n or tokens[i][0] not in OPERATORS:
                raise _unexpected(tokens, i, "an operator such as '=', '!=', '=~' or '!~'")
            op = tokens[i][0]
            value, i = _operand(tokens, i + 1, "a label value")
            found.append((name, op, value))
            if i < n and tokens[i][0] == ",":
                i += 1
                if i < n and tokens[i][0] in (_QUOTED, _UNQUOTED):
                    continue  # a comma may also end the list
            break
    if braced:
        if i < n and tokens[i][0] == "}":
            i += 1
        else:
            raise _unexpected(tokens, i, "'}' to close the '{'")
    if i < n:
        raise _unexpected(tokens, i, "a comma or the end" if found else "a matcher")
    return found


def _operand(tokens: list[Token], i: int, what: str) -> tuple[str, int]:
    if i >= len(tokens) or tokens[i][0] not in (_QUOTED, _UNQUOTED):
        raise _unexpected(tokens, i, what)
    kind, raw, offset = tokens[i]
    return (_unquote(raw, offset) if kind == _QUOTED else raw), i + 1


def _unexpected(tokens: list[Token], i: int, expected: str) -> Refused:
    if i >= len(tokens):
        return Refused(f"end of input: expected {expected}")
    _, raw, offset = tokens[i]
    return Refused(f"at {offset}: unexpected {_show(raw)}: expected {expected}")


def _lex(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _GO_SPACE:
            i += 1
        elif ch in "{},":
            tokens.append((ch, ch, i))
            i += 1
        elif ch == "=":
            op = "=~" if text.startswith("=~", i) else "="
            tokens.append((op, op, i))
            i += len(op)
        elif ch == "!":
            if text[i + 1 : i + 2] not in ("=", "~"):
                raise Refused(f"at {i}: '!' must be followed by '=' or '~'")
            tokens.append((text[i : i + 2], text[i : i + 2], i))
            i += 2
        elif ch == '"':
            j, escaped = i + 1, False
            while j < n and (escaped or text[j] != '"'):
                escaped = not escaped and text[j] == "\\"
                j += 1
            if j >= n:
                raise Refused(f"at {i}: {_show(text[i:])}: missing closing '\"'")
            tokens.append((_QUOTED, text[i : j + 1], i))
            i = j + 1
        elif ch in _RESERVED:  # ~ \ ' ` outside quotes
            raise Refused(f"at {i}: {ch!r}: invalid input (quote the value)")
        else:
            j = i
            while j < n and text[j] not in _RESERVED and text[j] not in _GO_SPACE:
                j += 1
            tokens.append((_UNQUOTED, text[i:j], i))
            i = j
    return tokens


_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_HEX_WIDTH = {"x": 2, "u": 4, "U": 8}
_HEX = frozenset(string.hexdigits)
_OCTAL = frozenset(string.octdigits)


def _unquote(raw: str, offset: int) -> str:
    """A double-quoted string read as Go's strconv.Unquote reads it; the result must be valid UTF-8."""
    body = raw[1:-1]
    if "\n" in body:
        raise Refused(f"at {offset}: a line feed inside quotes must be written \\n")
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        esc = body[i + 1] if i + 1 < n else ""
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc in _HEX_WIDTH:
            digits = body[i + 2 : i + 2 + _HEX_WIDTH[esc]]
            if len(digits) != _HEX_WIDTH[esc] or not _HEX.issuperset(digits):
                raise Refused(f"at {offset}: bad escape \\{esc}{digits} in {_show(raw)}")
            code = int(digits, 16)
            if esc == "x":
                out.append(code)  # one byte; several may spell one UTF-8 character
            elif code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise Refused(f"at {offset}: \\{esc}{digits} is not a Unicode character")
            else:
                out += chr(code).encode("utf-8")
            i += 2 + len(digits)
        elif esc in _OCTAL:
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or not _OCTAL.issuperset(digits) or int(digits, 8) > 255:
                raise Refused(f"at {offset}: bad escape \\{digits} in {_show(raw)}")
            out.append(int(digits, 8))
            i += 4
        else:
            raise Refused(f"at {offset}: invalid escape \\{esc} in {_show(raw)} (write \\\\ for a backslash)")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(f"at {offset}: {_show(raw)} is not valid UTF-8") from None
