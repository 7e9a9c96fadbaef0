"""Definitions written for Jinja2: its sandbox, bounded, with delimiters shell text cannot hit. No I/O here.

openfero's first template engine was Jinja2; definitions that use its forms
(``{{ alert.labels.pod }}``, ``{{ x | default('') }}``) keep working here.
Expressions are ``{{ ... }}`` as before; statements and comments take
delimiters that no shell, awk or jq text contains, so ``${#VAR}``,
``{%`` and ``#}`` in a script stay text:

- statements ``{{% if ... %}} ... {{% endif %}}`` (Jinja's own ``{% %}`` is text);
- comments ``{{# ... #}}``.

Bounded, because a careless or hostile definition must not hang a
dispatcher: ``*`` and ``**`` are capped, ``%`` formatting and every call and
filter refuse huge widths and counts, ``range`` is capped, loops may not
nest (nor recurse, nor hide in macros), and the output of one string is
capped while it is produced.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS = 256 * 1024  # one rendered string
MAX_VALUE_CHARS = 64 * 1024  # one computed string or list
MAX_RANGE = 1000
MAX_INT_ARGUMENT = 10_000  # widths, counts, repeat factors handed to calls and filters
MAX_EXPONENT = 64
MAX_SOURCE_CHARS = 64 * 1024

# In a format string (%-style or str.format): a width or precision of five digits or more,
# or one taken from the arguments (*, or a nested {} field).
_HUGE_FORMAT = re.compile(r"%[-#0 +]*(?:\d{5,}|\*)|%[-#0 +]*\d*\.(?:\d{5,}|\*)|\{[^{}]*(?:\d{5,}|\{)")


class SandboxError(jinja2.exceptions.SecurityError):
    """A template went past one of the sandbox's bounds."""


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, bytes, list, tuple)) and len(value) > MAX_VALUE_CHARS:
        raise SandboxError(f"a value of {len(value)} items is over the limit of {MAX_VALUE_CHARS}")
    return value


def _check_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT_ARGUMENT:
            raise SandboxError(f"the number {value} is over the limit of {MAX_INT_ARGUMENT} for an argument")


def _check_format(text: Any) -> None:
    if isinstance(text, str) and _HUGE_FORMAT.search(text):
        raise SandboxError("a format with a width or precision of five digits or more")


def _bounded(function: Callable[..., Any], formats_first_argument: bool = False) -> Callable[..., Any]:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        _check_arguments(args, kwargs)
        if formats_first_argument and args:
            _check_format(args[0])
        return _check_size(function(*args, **kwargs))

    return call


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SandboxError(f"range of {len(numbers)} is over the limit of {MAX_RANGE}")
    return numbers


class BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "%", "+"])

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(times, int):
                    if len(sequence) * max(times, 0) > MAX_VALUE_CHARS:
                        raise SandboxError(f"repeating {len(sequence)} items {times} times is over the limit of {MAX_VALUE_CHARS}")
        elif operator == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise SandboxError(f"an exponent of {right} is over the limit of {MAX_EXPONENT}")
        elif operator == "%":
            _check_format(left)
        return _check_size(super().call_binop(context, operator, left, right))

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's signature)
        _check_arguments(args, kwargs)
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``'...'.format`` as Jinja's sandbox wraps it, refused when its widths are huge."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format(value.__self__)
        return wrapped


def _environment(finalize: Callable[[Any], Any] | None) -> BoundedSandbox:
    env = BoundedSandbox(
        block_start_string="{{%",
        block_end_string="%}}",
        comment_start_string="{{#",
        comment_end_string="#}}",
        line_statement_prefix=None,
        line_comment_prefix=None,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=finalize,
    )
    env.filters = {name: _bounded(f, formats_first_argument=name == "format") for name, f in env.filters.items()}
    env.globals = {"range": _range, "dict": dict, "namespace": env.globals["namespace"]}
    return env


def refuse_unbounded_structure(template: nodes.Template) -> None:
    """Loops may not nest, recurse or sit in macros: each would multiply the work without a bound."""
    if template.find(nodes.Macro) is not None or template.find(nodes.CallBlock) is not None:
        raise SandboxError("macros and call blocks are not allowed in definitions")
    for loop in template.find_all(nodes.For):
        if loop.recursive:
            raise SandboxError("recursive loops are not allowed in definitions")
        if any(True for _ in loop.find_all(nodes.For)):
            raise SandboxError("loops may not nest in definitions")


class JinjaTemplate:
    """One compiled string, rendered with an optional escape of every ``{{ }}`` output."""

    def __init__(self, plain: jinja2.Template, escaping: jinja2.Template):
        self._plain = plain
        self._escaping = escaping

    def render(self, variables: dict[str, Any], escape: bool) -> str:
        chunks: Iterator[str] = (self._escaping if escape else self._plain).generate(variables)
        out: list[str] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise SandboxError(f"output over the limit of {MAX_OUTPUT_CHARS} characters")
            out.append(chunk)
        return "".join(out)


class JinjaEngine:
    """Compiles strings for Jinja2; ``escape_output`` is applied to every ``{{ }}`` output when asked."""

    def __init__(self, functions: dict[str, Callable[..., Any]], escape_output: Callable[[str], str]):
        self._plain = _environment(None)
        self._escaping = _environment(lambda value: escape_output(value if isinstance(value, str) else str(value)))
        for env in (self._plain, self._escaping):
            env.filters.update({name: _bounded(f) for name, f in functions.items()})

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (one engine per process; its cache lives as long)
    def compile(self, text: str) -> JinjaTemplate:
        if len(text) > MAX_SOURCE_CHARS:
            raise SandboxError(f"a template of {len(text)} characters is over the limit of {MAX_SOURCE_CHARS}")
        refuse_unbounded_structure(self._plain.parse(text))
        return JinjaTemplate(self._plain.from_string(text), self._escaping.from_string(text))
