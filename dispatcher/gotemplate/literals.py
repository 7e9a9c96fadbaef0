"""Go's literal syntax: quoting and unquoting strings and runes, parsing number constants. No I/O here.

What strconv does for text/template: ``Quote``/``QuoteToASCII``/``QuoteRune``
for ``%q`` and messages, ``Unquote``/``UnquoteChar`` for string and character
constants, ``ParseInt``/``ParseUint``/``ParseFloat`` with base 0 for numbers.
Go strings are bytes and Python strings are code points: escapes that make
bytes which are not UTF-8 (``"\\xff"``) become U+FFFD here.
"""

from __future__ import annotations

import math

_SIMPLE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
_UNESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}
MAX_RUNE = 0x10FFFF
RUNE_ERROR = "\ufffd"
INVALID_SYNTAX = "invalid syntax"


def is_print(ch: str) -> bool:
    """Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    return ch.isprintable() and (ch == " " or not ch.isspace())


def _escape_rune(ch: str, quote: str, ascii_only: bool) -> str:
    if ch == quote or ch == "\\":
        return "\\" + ch
    if (ch < "\x80" or not ascii_only) and is_print(ch):
        return ch
    simple = _SIMPLE_ESCAPES.get(ch)
    if simple is not None:
        return simple
    r = ord(ch)
    if r < 0x20 or r == 0x7F:
        return f"\\x{r:02x}"
    if 0xD800 <= r <= 0xDFFF:
        return "\\ufffd" if ascii_only else RUNE_ERROR
    if r < 0x10000:
        return f"\\u{r:04x}"
    return f"\\U{r:08x}"


def go_quote(s: str, ascii_only: bool = False) -> str:
    """strconv.Quote (or QuoteToASCII)."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'
    return '"' + "".join(_escape_rune(ch, '"', ascii_only) for ch in s) + '"'


def go_quote_rune(r: int, ascii_only: bool = False) -> str:
    """strconv.QuoteRune (or QuoteRuneToASCII); an invalid rune is quoted as U+FFFD."""
    ch = chr(r) if 0 <= r <= MAX_RUNE and not 0xD800 <= r <= 0xDFFF else RUNE_ERROR
    return "'" + _escape_rune(ch, "'", ascii_only) + "'"


def go_quote_rune_u(ch: str) -> str:
    """fmt's %#U of one character: U+0029 ')'."""
    r = ord(ch)
    return f"U+{r:04X} '{ch}'" if is_print(ch) else f"U+{r:04X}"


def can_backquote(s: str) -> bool:
    """strconv.CanBackquote: one line, no backquote, no control character but tab."""
    return all((ch == "\t" or ch >= " ") and ch not in "`\x7f\ufeff" for ch in s)


def _unquote_char(s: str, i: int, quote: str, out: bytearray) -> int:
    """Decode one (possibly escaped) character of s at i into out; the index after it. ValueError if invalid."""
    ch = s[i]
    if ch == quote:
        raise ValueError(INVALID_SYNTAX)
    if ch != "\\":
        out += ch.encode("utf-8", "surrogatepass")
        return i + 1
    if i + 1 >= len(s):
        raise ValueError(INVALID_SYNTAX)
    c = s[i + 1]
    if c in _UNESCAPES:
        out.append(_UNESCAPES[c])
        return i + 2
    if c in "xuU":
        n = {"x": 2, "u": 4, "U": 8}[c]
        digits = s[i + 2:i + 2 + n]
        if len(digits) < n or any(d not in "0123456789abcdefABCDEF" for d in digits):
            raise ValueError(INVALID_SYNTAX)
        value = int(digits, 16)
        if c == "x":
            out.append(value)
        elif value > MAX_RUNE or 0xD800 <= value <= 0xDFFF:
            raise ValueError(INVALID_SYNTAX)
        else:
            out += chr(value).encode()
        return i + 2 + n
    if "0" <= c <= "7":
        digits = s[i + 1:i + 4]
        if len(digits) < 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
            raise ValueError(INVALID_SYNTAX)
        out.append(int(digits, 8))
        return i + 4
    if c in "'\"" and c == quote:
        out.append(ord(c))
        return i + 2
    raise ValueError(INVALID_SYNTAX)


def unquote(token: str) -> str:
    """strconv.Unquote of a "double-quoted" or `raw` string token. ValueError('invalid syntax') if malformed."""
    if token.startswith("`"):
        if len(token) < 2 or not token.endswith("`") or "`" in token[1:-1]:
            raise ValueError(INVALID_SYNTAX)
        return token[1:-1].replace("\r", "")
    if len(token) < 2 or token[0] != '"' or token[-1] != '"':
        raise ValueError(INVALID_SYNTAX)
    body = token[1:-1]
    if "\\" not in body and '"' not in body and "\n" not in body:
        return body
    out = bytearray()
    i = 0
    while i < len(body):
        if body[i] == "\n":
            raise ValueError(INVALID_SYNTAX)
        i = _unquote_char(body, i, '"', out)
    return out.decode("utf-8", "replace")


def unquote_char_constant(token: str) -> int:
    """The rune of a 'c' constant, as newNumber reads it. ValueError with Go's message if malformed."""
    body = token[1:]
    if not body:
        raise ValueError(INVALID_SYNTAX)
    out = bytearray()
    if body[0] == "\\":
        end = _unquote_char(body, 0, "'", out)
        c = body[1]
        rune = out[0] if c == "x" or "0" <= c <= "7" else ord(out.decode("utf-8", "surrogatepass")) if out else 0
    else:
        end = _unquote_char(body, 0, "'", out)
        rune = ord(body[0])
    if body[end:] != "'":
        raise ValueError(f"malformed character constant: {token}")
    return rune


def _underscore_ok(s: str) -> bool:
    """Underscores only between digits (a base prefix counts as a digit), as Go's literals allow."""
    if s[:1] in ("+", "-"):
        s = s[1:]
    saw, i, hexa = "^", 0, False
    if len(s) >= 2 and s[0] == "0" and s[1] in "bBoOxX":
        i, saw, hexa = 2, "0", s[1] in "xX"
    for ch in s[i:]:
        if "0" <= ch <= "9" or (hexa and ch in "abcdefABCDEF"):
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
    return saw != "_"


def parse_int(text: str, signed: bool) -> int | None:
    """strconv.ParseInt (signed) or ParseUint with base 0 and 64 bits; None if it would fail."""
    s, negative = text, False
    if s[:1] in ("+", "-"):
        if not signed:
            return None
        negative, s = s[0] == "-", s[1:]
    base = 10
    if len(s) >= 2 and s[0] == "0" and s[1] in "xXbBoO":
        base, digits = {"x": 16, "b": 2, "o": 8}[s[1].lower()], s[2:]
    elif len(s) >= 1 and s[0] == "0":
        base, digits = 8, s[1:] or "0"
    else:
        digits = s
    if "_" in text and not _underscore_ok(text):
        return None
    digits = digits.replace("_", "")
    if not digits:
        return None
    try:
        value = int(digits, base)
    except ValueError:
        return None
    if negative:
        value = -value
    if signed:
        return value if -(1 << 63) <= value < (1 << 63) else None
    return value if value < (1 << 64) else None


def parse_float(text: str) -> float | None:
    """strconv.ParseFloat(text, 64); None if it would fail (syntax, or out of range)."""
    if "_" in text and not _underscore_ok(text):
        return None
    s = text.replace("_", "")
    body = s.lstrip("+-")
    if len(s) - len(body) > 1:
        return None
    try:
        if body[:2] in ("0x", "0X"):
            if "p" not in body and "P" not in body:
                return None
            value = float.fromhex(s)
        else:
            if not body or body[0] not in "0123456789.":
                return None
            value = float(s)
    except (ValueError, OverflowError):
        return None
    return None if math.isinf(value) else value


def number_constant(text: str, is_char: bool, is_complex: bool) -> tuple[object, str | None]:
    """A number token as an argument: (value, None), or (None, Go's "overflows int" message) to raise at execution.

    ValueError with Go's parse-time message for a malformed constant.
    """
    if is_char:
        return unquote_char_constant(text), None
    if is_complex:
        try:
            return complex(text[:-1] + "j"), None
        except ValueError:
            raise ValueError(f"illegal number syntax: {go_quote(text)}") from None
    if text.endswith("i"):
        imag = parse_float(text[:-1])
        if imag is not None:
            return complex(0, imag), None
    as_int = parse_int(text, signed=True)
    if as_int is not None:
        return as_int, None
    if parse_int(text, signed=False) is not None:
        return None, f"{text} overflows int"
    as_float = parse_float(text)
    if as_float is None:
        raise ValueError(f"illegal number syntax: {go_quote(text)}")
    if not any(c in text for c in ".eEpP"):
        raise ValueError(f"integer overflow: {go_quote(text)}")
    return as_float, None
