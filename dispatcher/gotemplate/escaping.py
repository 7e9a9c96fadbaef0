"""The html, js and urlquery builtins' escapers, as Go's text/template defines them. No I/O here."""

from __future__ import annotations

import re
from urllib.parse import quote_plus

from .literals import is_print

_HTML = {"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;"}
_HTML_TABLE = str.maketrans(_HTML)
_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}


def html_escape(s: str) -> str:
    """HTMLEscapeString: " ' & < > as entities, NUL as U+FFFD."""
    if not any(c in s for c in _HTML):
        return s
    return s.translate(_HTML_TABLE)


_JS_TABLE = str.maketrans({**{chr(c): f"\\u00{c:02X}" for c in range(0x20)}, **_JS})
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _js_non_ascii(match: re.Match[str]) -> str:
    ch = match.group()
    return ch if is_print(ch) else f"\\u{ord(ch):04X}"


def js_escape(s: str) -> str:
    """JSEscapeString: quotes, backslash, < > & = and control characters escaped; other non-printables as \\uXXXX."""
    s = s.translate(_JS_TABLE)
    return s if s.isascii() else _NON_ASCII.sub(_js_non_ascii, s)


def url_query_escape(s: str) -> str:
    """url.QueryEscape: all but letters, digits and -_.~ percent-encoded, space as '+'."""
    return quote_plus(s, safe="", encoding="utf-8", errors="replace")
