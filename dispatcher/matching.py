"""Alertmanager's label matchers: parsed as Alertmanager 0.27+ parses them, evaluated with RE2. No I/O here.

One matcher is ``NAME OP VALUE`` with OP one of ``=``, ``!=``, ``=~``, ``!~``.
A string holds zero or more of them, comma-separated, optionally inside
``{...}``; all of them must match. The grammar is the one Alertmanager 0.27
and later accept in their default ("fallback") mode: the *classic* parser
first, and the *UTF-8* parser for what the classic one refuses. When both
accept an input but read it differently, Alertmanager keeps the classic
reading, so openfero does too: ``a="x\\ty"`` is a backslash and a ``t``
(classic), while ``"a"="x\\ty"`` (a quoted name, which only the UTF-8
parser reads) is a tab.

Classic (``parse_classic``, Alertmanager's ``pkg/labels`` parser):
  - one ``{`` at the very start and one ``}`` at the very end are dropped,
    paired or not (so ``{a=b`` is ``a=b``); the rest is split at commas
    outside double quotes (``\\"`` does not end a quoted part); a last
    empty part (a trailing comma) is ignored;
  - NAME is ``[a-zA-Z_:][a-zA-Z0-9_:]*``; white space (space, tab, CR, LF,
    FF) around NAME, OP and VALUE is dropped;
  - VALUE is the rest, optionally in double quotes; inside it ``\\\\``,
    ``\\"`` and ``\\n`` are a backslash, a quote and a line feed; any other
    backslash is itself. A double quote elsewhere is an error.

UTF-8 (``parse_utf8``, Alertmanager's ``matcher/parse`` parser):
  - braces must come in pairs; a trailing comma is allowed;
  - NAME and VALUE are either double-quoted strings with Go's escapes
    (``\\n``, ``\\t``, ``\\"``, ``\\\\``, ``\\xHH``, ``\\uHHHH``, ...; others
    are errors; the result must be valid UTF-8), or unquoted runs of any
    characters but space and ``{}!=~,\\"'`` and backtick. So names such as
    ``"service.name"`` or ``http.status-code`` work.

An empty string, ``{}`` or ``{ }`` (and, by the classic rule above, a lone
``{`` or ``}``) holds no matcher, so adds no condition, as in Alertmanager.
A matcher's text must be valid UTF-8.

Evaluation, as Alertmanager's: a label the alert does not have is the empty
string; ``=~``/``!~`` compile ``^(?:VALUE)$`` with RE2 once, when parsed.
RE2 runs in time linear in the label's length (Python's ``re`` backtracks,
and a pattern such as ``([a-z0-9]+-?)+-[a-z0-9]{5}`` takes seconds on a
28-character label); it has no backreferences and no lookaround, and
patterns using them are refused at parse time. This is Google's C++ RE2
(package google-re2), whose syntax Go's regexp shares; one difference
known: RE2 accepts ``\\C`` (any byte), which Go refuses.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import re2

from dispatcher import matcher_syntax as syntax


class MatchType(str, enum.Enum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


class InvalidMatcher(ValueError):
    """Matcher text that cannot be parsed, or a regex RE2 cannot compile."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"matcher {_short(text)!r}: {reason}")
        self.text, self.reason = text, reason


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print every refused pattern to stderr; the error says it instead
# RE2 is linear in the label's length, but its cost per character grows with the compiled
# program: a 600-character pattern of counted repetitions took 100 MB to compile and 2.4 s
# on a 16 KiB label (the largest ingest accepts). These bound both; an ordinary matcher
# compiles to tens of instructions.
_RE2_OPTIONS.max_mem = 1 << 20
MAX_PROGRAM_SIZE = 2000


@dataclass(frozen=True)
class Matcher:
    name: str
    type: MatchType
    value: str
    regex: Any = field(default=None, compare=False, repr=False)  # re2's compiled pattern, for =~ and !~

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")  # a missing label is empty, as in Alertmanager
        if self.type is MatchType.EQUAL:
            return actual == self.value
        if self.type is MatchType.NOT_EQUAL:
            return actual != self.value
        # search, not fullmatch: the anchors are in the pattern, as Alertmanager builds it, so
        # a value such as 'a)|(b' means what it means there.
        found = self.regex.search(actual) is not None
        return found if self.type is MatchType.REGEX else not found

    def __str__(self) -> str:
        """The matcher as text that parses back to it."""
        name = self.name if syntax.is_classic_name(self.name) else f'"{_escape(self.name)}"'
        return f'{name}{self.type.value}"{_escape(self.value)}"'


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def parse(text: str) -> tuple[Matcher, ...]:
    """The matchers in ``text``, as Alertmanager's default (fallback) mode reads it."""
    try:
        return parse_classic(text)
    except InvalidMatcher:
        pass
    # Only the UTF-8 parser's reason is reported: it says where in the text it stopped.
    return parse_utf8(text)


def parse_classic(text: str) -> tuple[Matcher, ...]:
    """The matchers in ``text`` by the classic grammar alone."""
    _check_utf8(text)
    try:
        triples = syntax.classic(text)
    except syntax.Refused as exc:
        raise InvalidMatcher(text, str(exc)) from None
    return tuple(_new(text, op, name, value) for name, op, value in triples)


def parse_utf8(text: str) -> tuple[Matcher, ...]:
    """The matchers in ``text`` by the UTF-8 grammar alone."""
    _check_utf8(text)
    try:
        triples = syntax.utf8(text)
    except syntax.Refused as exc:
        raise InvalidMatcher(text, str(exc)) from None
    return tuple(_new(text, op, name, value) for name, op, value in triples)


def _new(text: str, op: str, name: str, value: str) -> Matcher:
    kind = MatchType(op)
    if kind in (MatchType.EQUAL, MatchType.NOT_EQUAL):
        return Matcher(name, kind, value)
    try:
        regex = re2.compile(f"^(?:{value})$", _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise InvalidMatcher(
            text, f"RE2 cannot compile the regex {_short(value)!r}: {_short(detail)} (RE2 has no backreferences or lookaround)"
        ) from None
    if regex.programsize > MAX_PROGRAM_SIZE:
        raise InvalidMatcher(text, f"the regex {_short(value)!r} compiles to {regex.programsize} RE2 instructions, over the limit of {MAX_PROGRAM_SIZE}")
    return Matcher(name, kind, value, regex)


def _check_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMatcher(text, "not valid UTF-8") from None


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _short(s: str, limit: int = 200) -> str:
    return s if len(s) <= limit else s[:limit] + "..."
