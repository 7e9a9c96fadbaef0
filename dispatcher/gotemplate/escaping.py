"""The html, js and urlquery builtins' escapers, as Go's text/template defines them. No I/O here."""

from __future__ import annotations

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


def _js_char(ch: str) -> str:
    if ch in _JS:
        return _JS[ch]
    if ch < " ":
        return f"\\u00{ord(ch):02X}"
    if ch < "\x80" or is_print(ch):
        return ch
    return f"\\u{ord(ch):04X}"


def js_escape(s: str) -> str:
    """JSEscapeString: quotes, backslash, < > & = and control characters escaped; other non-printables as \\uXXXX."""
    if s.isascii() and s.isprintable() and not any(c in s for c in _JS):
        return s
    return "".join(_js_char(ch) for ch in s)


def url_query_escape(s: str) -> str:
    """url.QueryEscape: all but letters, digits and -_.~ percent-encoded, space as '+'."""
    return quote_plus(s, safe="", encoding="utf-8", errors="replace")
