"""Alertmanager's matchers: its own parser cases, evaluation with RE2, and no ReDoS. No I/O."""

from __future__ import annotations

import time

import jsonschema
import pytest
import re2
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher import matching
from dispatcher.matching import InvalidMatcher, MatchType, parse, parse_classic, parse_utf8
from dispatcher.operarii import InvalidOperarius, Operarius, select
from shared.envelope import envelopes_from_webhook
from tests.conftest import ROOT
from tests.helpers import crd_schema

SAME = object()  # openfero's (fallback) reading equals the one upstream expects from that file's parser

# Derived from prometheus/alertmanager pkg/labels/parse_test.go (TestMatchers), the classic parser.
# Each case: the input, what upstream's classic parser yields (None: refused; else (name, op, value)
# for each matcher), and what openfero yields when that differs. Every case is kept: the classic
# parser is half of the fallback grammar. Upstream's error texts are not compared (openfero words
# its own, and Go's regexp messages are not RE2's).
CLASSIC = [
    ("{}", ()),
    (",", None),
    ("{,}", None),
    ("{foo='}", (("foo", "=", "'"),)),
    ("{foo=`}", (("foo", "=", "`"),)),
    ('{foo=\\"}', (("foo", "=", '"'),)),
    ("{foo=bar}", (("foo", "=", "bar"),)),
    ('{foo="bar"}', (("foo", "=", "bar"),)),
    ("{foo=~bar.*}", (("foo", "=~", "bar.*"),)),
    ('{foo=~"bar.*"}', (("foo", "=~", "bar.*"),)),
    ("{foo!=bar}", (("foo", "!=", "bar"),)),
    ('{foo!="bar"}', (("foo", "!=", "bar"),)),
    ("{foo!~bar.*}", (("foo", "!~", "bar.*"),)),
    ('{foo!~"bar.*"}', (("foo", "!~", "bar.*"),)),
    ('{foo="bar", baz!="quux"}', (("foo", "=", "bar"), ("baz", "!=", "quux"))),
    ('{foo="bar", baz!~"quux.*"}', (("foo", "=", "bar"), ("baz", "!~", "quux.*"))),
    ('{foo="bar",baz!~".*quux", derp="wat"}', (("foo", "=", "bar"), ("baz", "!~", ".*quux"), ("derp", "=", "wat"))),
    ('{foo="bar", baz!="quux", derp="wat"}', (("foo", "=", "bar"), ("baz", "!=", "quux"), ("derp", "=", "wat"))),
    ('{foo="bar", baz!~".*quux.*", derp="wat"}', (("foo", "=", "bar"), ("baz", "!~", ".*quux.*"), ("derp", "=", "wat"))),
    ('{foo="bar", instance=~"some-api.*"}', (("foo", "=", "bar"), ("instance", "=~", "some-api.*"))),
    ('{foo=""}', (("foo", "=", ""),)),
    ('{foo="bar,quux", job="job1"}', (("foo", "=", "bar,quux"), ("job", "=", "job1"))),
    ('{foo = "bar", dings != "bums", }', (("foo", "=", "bar"), ("dings", "!=", "bums"))),
    ("foo=bar,dings!=bums", (("foo", "=", "bar"), ("dings", "!=", "bums"))),
    ('{quote="She said: \\"Hi, ladies! That\'s gender-neutral…\\""}', (("quote", "=", "She said: \"Hi, ladies! That's gender-neutral…\""),)),
    ('statuscode=~"5.."', (("statuscode", "=~", "5.."),)),
    ("tricky=~~~", (("tricky", "=~", "~~"),)),
    ('trickier==\\\\=\\=\\"', (("trickier", "=", '=\\=\\="'),)),
    ('contains_quote != "\\"" , contains_comma !~ "foo,bar" , ', (("contains_quote", "!=", '"'), ("contains_comma", "!~", "foo,bar"))),
    ("{foo=bar}}", (("foo", "=", "bar}"),)),
    ("{foo=bar}},}", (("foo", "=", "bar}}"),)),
    ("{foo=,bar=}}", (("foo", "=", ""), ("bar", "=", "}"))),
    ("{foo=bar\\t}", (("foo", "=", "bar\\t"),)),  # an escape other than \\ \" \n stays as written
    ("{foo=bar\\n}", (("foo", "=", "bar\n"),)),
    ("{foo=bar\\}", (("foo", "=", "bar\\"),)),
    ("{foo=bar\\\\}", (("foo", "=", "bar\\"),)),
    ('{foo=bar\\"}', (("foo", "=", 'bar"'),)),
    ("job=", (("job", "=", ""),)),
    ('job="value', None),
    ('job=value"', None),
    ('trickier==\\\\=\\=\\""', None),
    ('contains_unescaped_quote = foo"bar', None),
    # Not a classic name; the UTF-8 parser takes it, so Alertmanager 0.27+ and openfero accept it.
    ('{invalid-name = "valid label"}', None, (("invalid-name", "=", "valid label"),)),
    ('{foo=~"invalid[regexp"}', None),
    ('"{foo=\\"bar"}', None),
    ('"foo=\\"bar"', None),
    ('"foo=\\"bar\\""', None),
    ('"foo=\\"bar\\"', None),
    ('"{foo=\\"bar\\"}"', None),
    ('"foo="bar""', None),
    ("{{foo=", None),
    ("{foo=", (("foo", "=", ""),)),
    ("{foo=}b", (("foo", "=", "}b"),)),
]

# Derived from prometheus/alertmanager matcher/parse/parse_test.go (TestMatchers), the UTF-8 parser,
# in the same form. Left out: that file's TestMatcher (the one-matcher entry point, which refuses
# braces and lists; Alertmanager's config, like openfero, reads each list entry as Matchers) and the
# lexer's own tests (token positions). Where the classic parser accepts an input too, Alertmanager's
# fallback mode keeps the classic reading: the third column.
UTF8 = [
    ("", ()),
    ("{}", ()),
    ("{foo=bar}", (("foo", "=", "bar"),)),
    ("{foo=bar,}", (("foo", "=", "bar"),)),
    ("{foo!=bar}", (("foo", "!=", "bar"),)),
    ("{foo=~[a-z]+}", (("foo", "=~", "[a-z]+"),)),
    ("{foo!~[a-z]+}", (("foo", "!~", "[a-z]+"),)),
    ("{foo=🙂}", (("foo", "=", "🙂"),)),
    ("{foo=🙂bar}", (("foo", "=", "🙂bar"),)),
    ("foo=bar", (("foo", "=", "bar"),)),
    ("foo=bar,", (("foo", "=", "bar"),)),
    ("foo!=bar", (("foo", "!=", "bar"),)),
    ("foo=~[a-z]+", (("foo", "=~", "[a-z]+"),)),
    ("foo!~[a-z]+", (("foo", "!~", "[a-z]+"),)),
    ('{"foo"="bar"}', (("foo", "=", "bar"),)),
    ('{"foo"="bar",}', (("foo", "=", "bar"),)),
    ('{"foo"!="bar"}', (("foo", "!=", "bar"),)),
    ('{"foo"=~"[a-z]+"}', (("foo", "=~", "[a-z]+"),)),
    ('{"foo"=~"\\\\d+"}', (("foo", "=~", "\\d+"),)),
    ('{"foo"!~"[a-z]+"}', (("foo", "!~", "[a-z]+"),)),
    ('{"foo"="🙂"}', (("foo", "=", "🙂"),)),
    ('{"foo"="\\xf0\\x9f\\x99\\x82"}', (("foo", "=", "🙂"),)),
    ('{"foo"="\\U0001f642"}', (("foo", "=", "🙂"),)),
    ('{"foo"="🙂bar"}', (("foo", "=", "🙂bar"),)),
    ('{"foo"="bar\\n"}', (("foo", "=", "bar\n"),)),
    ('{"foo"="bar\\t"}', (("foo", "=", "bar\t"),)),
    ('{"foo"="\\"bar\\""}', (("foo", "=", '"bar"'),)),
    ('{"foo"="bar\\\\"}', (("foo", "=", "bar\\"),)),
    ('"foo"="bar"', (("foo", "=", "bar"),)),
    ('"foo"="bar",', (("foo", "=", "bar"),)),
    ("{foo=bar,bar!=baz}", (("foo", "=", "bar"), ("bar", "!=", "baz"))),
    ('{foo="bar",bar!="baz"}', (("foo", "=", "bar"), ("bar", "!=", "baz"))),
    ("foo=bar,bar!=baz", (("foo", "=", "bar"), ("bar", "!=", "baz"))),
    ('foo="bar",bar!="baz"', (("foo", "=", "bar"), ("bar", "!=", "baz"))),
    (",", None),
    ("{,}", None),
    # The classic parser drops one leading "{" and one trailing "}" without pairing them.
    ("{", None, ()),
    ("}", None, ()),
    ("foo=bar}", None, (("foo", "=", "bar"),)),
    ("{foo=bar", None, (("foo", "=", "bar"),)),
    ('{foo=:"bar"}', None),
    # The classic parser keeps an escape it does not know as written.
    ('{foo="bar\\w"}', None, (("foo", "=", "bar\\w"),)),
    ('{"foo"=~"\\d+"}', None),
    ("{foo=bar\\n}", None, (("foo", "=", "bar\n"),)),
    ('{"foo"="\\xf0\\x9f"}', None),
]


def case(row: tuple) -> tuple[str, tuple | None, object]:
    text, upstream, *rest = row
    return text, upstream, rest[0] if rest else SAME


def read(matchers: tuple[matching.Matcher, ...]) -> tuple[tuple[str, str, str], ...]:
    return tuple((m.name, m.type.value, m.value) for m in matchers)


def outcome(parser, text: str) -> tuple | None:
    try:
        return read(parser(text))
    except InvalidMatcher:
        return None


@pytest.mark.parametrize("row", CLASSIC, ids=[r[0] for r in CLASSIC])
def test_the_classic_grammar_reads_upstreams_cases_as_upstream_does(row: tuple) -> None:
    text, upstream, _ = case(row)
    assert outcome(parse_classic, text) == upstream


@pytest.mark.parametrize("row", UTF8, ids=[r[0] for r in UTF8])
def test_the_utf8_grammar_reads_upstreams_cases_as_upstream_does(row: tuple) -> None:
    text, upstream, _ = case(row)
    assert outcome(parse_utf8, text) == upstream


@pytest.mark.parametrize("row", CLASSIC + UTF8, ids=[r[0] for r in CLASSIC + UTF8])
def test_openfero_reads_every_case_as_alertmanagers_fallback_mode(row: tuple) -> None:
    text, upstream, fallback = case(row)
    assert outcome(parse, text) == (upstream if fallback is SAME else fallback)


def test_a_refusal_names_the_matcher_and_says_why() -> None:
    with pytest.raises(InvalidMatcher, match=r"""matcher 'severity': .*expected an operator"""):
        parse("severity")
    with pytest.raises(InvalidMatcher, match=r"""matcher '\{foo="bar"': .*'\}'"""):
        parse_utf8('{foo="bar"')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"a"\v=\u3000"b"', (("a", "=", "b"),)),  # Go's white space: \v and U+3000 separate tokens
        ('"a"="b"\x1c', None),  # \x1c is no white space to Go (Python's str.isspace says it is)
        ("a=\vb", (("a", "=", "\vb"),)),  # the classic grammar trims RE2's \s only, which has no \v
        ('"a"=it\'s', None),  # ' and ` are reserved outside quotes
        ('"a"="\\q"', None),  # an escape Go does not know
        ('"a"="\\101\\x41\\u0041"', (("a", "=", "AAA"),)),  # octal, hex and code point escapes
        ('"a"="\\ud800"', None),  # a surrogate is no character
        ('a="x\\ty"', (("a", "=", "x\\ty"),)),  # classic: an escape it does not know stays as written...
        ('"a"="x\\ty"', (("a", "=", "x\ty"),)),  # ...while the UTF-8 grammar (quoted name) reads a tab
        ('"a"="line\nfeed"', None),  # a raw line feed inside quotes
        ('"a"="\ud800"', None),  # text that is not valid UTF-8
    ],
)
def test_fine_points_of_the_grammars(text: str, expected: tuple | None) -> None:
    assert outcome(parse, text) == expected


# -- evaluation -------------------------------------------------------------------------


def one(text: str) -> matching.Matcher:
    [matcher] = parse(text)
    return matcher


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        # escapes inside double quotes
        ('a=~"\\\\d+"', "12", True),  # in YAML: 'a=~"\\d+"'
        ('a=~"\\\\d+"', "1a", False),
        ('a="x\\"y"', 'x"y', True),
        ('a="x\\ny"', "x\ny", True),
        ('a="x\\\\y"', "x\\y", True),
        # anchored at both ends, as ^(?:VALUE)$
        ('a=~"b"', "abc", False),
        ('a=~"b"', "ab", False),
        ('a=~"b"', "b\n", False),  # RE2's $ is the end of the text, not before a final line feed
        ('a=~"b"', "b", True),
        ('a=~"a|b"', "ab", False),  # the group keeps the alternation inside the anchors
        ('a=~"x)|(y"', "xyz", True),  # ^(?:x)|(y)$ as Alertmanager builds it: not anchored at the end
        ('a!~"kube-.*"', "kube-system", False),
        ('a!~"kube-.*"', "default", True),
        # RE2 is UTF-8: . is one character, not one byte
        ('a=~"caf."', "café", True),
        ('a=~"🙂+"', "🙂🙂", True),
        ('a=~"\\\\pL+"', "naïveΣ", True),
    ],
)
def test_values_and_regexes_are_read_and_anchored_as_in_alertmanager(text: str, value: str, expected: bool) -> None:
    assert one(text).matches({"a": value}) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [('a=""', True), ("a=", True), ('a!=""', False), ('a=~".*"', True), ('a=~".+"', False), ('a!~"x"', True), ("a!=x", True)],
)
def test_a_missing_label_is_the_empty_string(text: str, expected: bool) -> None:
    assert one(text).matches({"other": "x"}) is expected


def test_utf8_label_names_quoted_or_not() -> None:
    labels = {"service.name": "api", "http.status-code": "503", "région": "zürich"}
    assert one('"service.name"="api"').matches(labels)
    assert one('{"http.status-code"=~"5.."}').matches(labels)
    assert one("http.status-code=~5..").matches(labels)  # unquoted: the UTF-8 grammar allows . and -
    assert one('"région"="zürich"').matches(labels)
    assert not one('"service.name"!="api"').matches(labels)


def test_braces_hold_several_matchers_that_all_must_match() -> None:
    matchers = parse('{team="web", severity=~"crit.*", env!="dev"}')
    assert [m.type for m in matchers] == [MatchType.EQUAL, MatchType.REGEX, MatchType.NOT_EQUAL]
    assert matching.matches_all(matchers, {"team": "web", "severity": "critical", "env": "prod"})
    assert not matching.matches_all(matchers, {"team": "web", "severity": "critical", "env": "dev"})
    assert not matching.matches_all(matchers, {"team": "db", "severity": "critical", "env": "prod"})


@pytest.mark.parametrize(
    "text",
    ['a=~"(a)\\\\1"', 'pod=~"(?!keep-).*"', 'pod=~"(?=x)x"', 'a=~"(?<=a)b"', 'a=~"a{1001}"', "a=~(unclosed"],
)
def test_patterns_re2_cannot_compile_are_refused_naming_the_matcher(text: str) -> None:
    with pytest.raises(InvalidMatcher) as caught:
        parse(text)
    assert str(caught.value).startswith(f"matcher {text!r}: RE2 cannot compile the regex")


def test_each_pattern_is_compiled_once_when_read_not_per_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = []
    real = re2.compile
    monkeypatch.setattr(re2, "compile", lambda *a, **k: compiled.append(a[0]) or real(*a, **k))
    o = operarius(["namespace=~prod-.*", 'pod!~"canary-.*"'])
    assert compiled == ["^(?:prod-.*)$", "^(?:canary-.*)$"]
    for n in range(100):
        o.matches(alert({"alertname": "A", "namespace": f"prod-{n}", "pod": f"web-{n}"}))
    assert len(compiled) == 2


@given(
    name=st.text(max_size=20),
    op=st.sampled_from(["=", "!="]),
    value=st.text(max_size=40),
)
@settings(max_examples=400, deadline=None)
def test_a_matcher_printed_reads_back_as_itself(name: str, op: str, value: str) -> None:
    matcher = matching.Matcher(name, MatchType(op), value)
    assert parse(str(matcher)) == (matcher,)


# -- through the Operarius --------------------------------------------------------------


def alert(labels: dict[str, str]):
    return envelopes_from_webhook({"alerts": [{"labels": labels, "status": "firing"}]})[0].alert


def operarius(matchers: list, name: str = "o") -> Operarius:
    spec = {"alertSelector": {"matchers": matchers}, "jobTemplate": {"spec": {}}}
    return Operarius.from_resource({"metadata": {"name": name, "namespace": "n"}, "spec": spec})


def test_an_entry_of_braces_expands_and_empty_braces_add_no_condition() -> None:
    o = operarius(['{team="web", severity=~"crit.*"}', "env!=dev"])
    assert len(o.matchers) == 3
    assert o.matches(alert({"alertname": "A", "team": "web", "severity": "critical", "env": "prod"}))
    assert not o.matches(alert({"alertname": "A", "team": "web", "severity": "info", "env": "prod"}))
    assert operarius(["{}"]).matchers == ()
    assert operarius(["{}"]).matches(alert({"alertname": "Anything"}))


def test_a_bad_entry_makes_the_operarius_invalid() -> None:
    with pytest.raises(InvalidOperarius, match="matcher 'pod=~\"\\(\\?!keep\\).\\*\"': RE2 cannot compile"):
        operarius(['pod=~"(?!keep).*"'])
    with pytest.raises(InvalidOperarius, match="must be a string"):
        operarius([42])
    with pytest.raises(InvalidOperarius, match="must be a list"):
        operarius("team=web")  # type: ignore[arg-type]


def test_a_pattern_that_backtracks_exponentially_runs_in_linear_time() -> None:
    # With Python's re, this pattern took 8.4 s on a 28-character label, doubling with each character.
    o = operarius(['pod=~"([a-z0-9]+-?)+-[a-z0-9]{5}"'])
    near_miss = alert({"alertname": "A", "pod": "a" * 10_000})
    hit = alert({"alertname": "A", "pod": "a" * 9_994 + "-abcde"})
    started = time.perf_counter()
    assert not o.matches(near_miss)
    assert select([o], near_miss) is None
    assert select([o], hit) is o
    assert time.perf_counter() - started < 1.0  # loose: catches backtracking, not a slow machine


# Characters the grammars give meaning to, plus some they do not, so that generated text
# often comes close to a matcher.
_ALPHABET = st.sampled_from(list('{}=!~,"\\\'` \t\n.*+?()[]|^$:-_ab01éΣ🙂') + ["\\x", "\\u", "\\U", "\\n", "\\\\", '\\"', "(?=", "\\1"])


@given(st.one_of(st.text(max_size=60), st.lists(_ALPHABET, max_size=30).map("".join)))
@settings(max_examples=3000, deadline=None)
def test_any_text_either_parses_or_makes_the_operarius_invalid(text: str) -> None:
    try:
        o = operarius([text])
    except InvalidOperarius:
        return
    assert all(isinstance(m, matching.Matcher) for m in o.matchers)
    o.matches(alert({"alertname": "A", "a": "x"}))


def test_the_crd_schema_lets_through_every_matcher_text_openfero_accepts() -> None:
    accepted = ['{}', "", '"service.name"="api"', '{team="web", env!="dev"}', 'a!~"x"']
    for text, *_ in CLASSIC + UTF8:
        try:
            parse(text)
        except InvalidMatcher:
            continue
        accepted.append(text)
    doc = yaml.safe_load((ROOT / "tests" / "data" / "go-original" / "kubepodcrashlooping.operarius.yaml").read_text())
    doc["spec"]["alertSelector"]["matchers"] = accepted
    jsonschema.validate(doc, crd_schema())
