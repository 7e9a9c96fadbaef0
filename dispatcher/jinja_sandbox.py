"""Definitions written for Jinja2: its sandbox, bounded, with delimiters shell text cannot hit. No I/O here.

openfero's first template engine was Jinja2; definitions that use its forms
(``{{ alert.labels.pod }}``, ``{{ x | default('') }}``) keep working here.
Expressions are ``{{ ... }}`` as before; statements and comments take
delimiters that no shell, awk or jq text contains, so ``${#VAR}``,
``{%`` and ``#}`` in a script stay text:

- statements ``{{% if ... %}} ... {{% endif %}}`` (Jinja's own ``{% %}`` is text);
- comments ``{{# ... #}}``.

Each ``{{ }}`` output can be escaped as the caller asks, knowing the text
written before it (the kubelet's ``$`` pairs across that boundary). Blocks
that capture output instead of writing it (``filter``, ``set`` ... ``endset``,
macros, call blocks) are refused, so every output is escaped exactly once,
as it is written.

Bounded, because a careless or hostile definition must not hang a
dispatcher, and the checks come before a value is built, not after: ``*``,
``~`` and ``**`` are refused when their result would be too large, ``%``
formatting and every call and filter refuse huge widths and counts, the
filters that can grow a value (``replace``, ``join``, ``indent``) check
what they would build, methods are limited to those that cannot grow
their value, ``range`` is capped, nothing outlives a loop iteration (no
``namespace``), loops may not nest (nor recurse, nor hide in macros), and
the output of one string is capped while it is produced.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS = 256 * 1024  # one rendered string
MAX_VALUE_CHARS = 64 * 1024  # one computed string or list
MAX_RANGE = 1000
MAX_INT_ARGUMENT = 10_000  # widths, counts, repeat factors handed to calls and filters
MAX_EXPONENT = 64
MAX_INT_BITS = 4096  # the largest number a power may make (about 1,200 digits)
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


def _growth_checked(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """The filters that can make a value much larger than their input, checked before they build it."""

    def size(value: Any) -> int:
        return len(value) if isinstance(value, str) else len(str(value))

    # Filters that take Jinja's context or environment get it as their first argument.
    skip = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)
    def call(*all_args: Any, **kwargs: Any) -> Any:
        args = all_args[skip:]
        if name == "replace" and len(args) >= 3:
            text, old, new = str(args[0]), str(args[1]), str(args[2])
            times = text.count(old) if old else len(text) + 1
            estimate = len(text) + times * max(len(new) - len(old), 0)
        elif name == "join" and args:
            items = list(args[0]) if not isinstance(args[0], str) else list(args[0])
            separator = str(args[1]) if len(args) > 1 else str(kwargs.get("d", ""))
            estimate = sum(size(i) for i in items[:MAX_VALUE_CHARS + 1]) + len(separator) * max(len(items) - 1, 0)
        elif name == "indent" and args:
            width = args[1] if len(args) > 1 else kwargs.get("width", 4)
            estimate = size(args[0]) * (1 + (len(width) if isinstance(width, str) else int(width)))
        else:
            estimate = 0
        if estimate > MAX_VALUE_CHARS:
            raise SandboxError(f"{name} would make a value of about {estimate} characters, over the limit of {MAX_VALUE_CHARS}")
        return function(*all_args, **kwargs)

    return call


# Methods a template may call: none of them makes a value larger than its input.
_SAFE_METHODS = {
    str: {
        "capitalize", "casefold", "count", "endswith", "find", "index", "isalnum", "isalpha", "isascii", "isdecimal",
        "isdigit", "islower", "isnumeric", "isspace", "istitle", "isupper", "lower", "lstrip", "partition",
        "removeprefix", "removesuffix", "rfind", "rindex", "rpartition", "rsplit", "rstrip", "split", "splitlines",
        "startswith", "strip", "swapcase", "title", "upper",
    },
    dict: {"get", "items", "keys", "values"},
    list: {"count", "index"},
    tuple: {"count", "index"},
}  # fmt: skip


def bounded_concat(parts: tuple[Any, ...]) -> str:
    """Jinja's ``~``, refused before it joins more than the limit."""
    texts = [str(part) for part in parts]
    total = sum(len(t) for t in texts)
    if total > MAX_VALUE_CHARS:
        raise SandboxError(f"joining {total} characters with ~ is over the limit of {MAX_VALUE_CHARS}")
    return "".join(texts)


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, but ``~`` goes through ``bounded_concat``."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SandboxError(f"range of {len(numbers)} is over the limit of {MAX_RANGE}")
    return numbers


class BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "%", "+"])
    code_generator_class = _BoundedCodeGenerator
    bounded_concat = staticmethod(bounded_concat)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if callable(value):
            allowed = next((names for kind, names in _SAFE_METHODS.items() if isinstance(obj, kind)), None)
            return allowed is not None and attr in allowed
        return True

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise SandboxError(f"a product of about {left.bit_length() + right.bit_length()} bits is over the limit of {MAX_INT_BITS}")
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(times, int):
                    if len(sequence) * max(times, 0) > MAX_VALUE_CHARS:
                        raise SandboxError(f"repeating {len(sequence)} items {times} times is over the limit of {MAX_VALUE_CHARS}")
        elif operator == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise SandboxError(f"an exponent of {right} is over the limit of {MAX_EXPONENT}")
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                if right * math.log2(abs(left)) > MAX_INT_BITS:
                    raise SandboxError(f"a power of about {int(right * math.log2(abs(left)))} bits is over the limit of {MAX_INT_BITS}")
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


# Set by finalize, which Jinja calls on an output value right before it yields it: the next
# chunk a template yields is that output (block captures, which would break this, are refused).
_OUTPUT_NEXT = threading.local()


def _mark_output(value: Any) -> Any:
    _OUTPUT_NEXT.value = True
    return value


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
    env.filters = {
        name: _bounded(_growth_checked(name, f) if name in ("replace", "join", "indent") else f, formats_first_argument=name == "format")
        for name, f in env.filters.items()
    }
    # No namespace(): with it a value could grow from one loop iteration to the next.
    env.globals = {"range": _range, "dict": dict}
    return env


def refuse_unbounded_structure(template: nodes.Template) -> None:
    """Loops may not nest, recurse or sit in macros (each would multiply the work without a bound),
    and no block may capture output (it would escape, or escape twice, what it captured)."""
    if template.find(nodes.Macro) is not None or template.find(nodes.CallBlock) is not None:
        raise SandboxError("macros and call blocks are not allowed in definitions")
    if template.find(nodes.FilterBlock) is not None or template.find(nodes.AssignBlock) is not None:
        raise SandboxError("filter blocks and {{% set %}} ... {{% endset %}} blocks are not allowed in definitions; filter an expression")
    for loop in template.find_all(nodes.For):
        if loop.recursive:
            raise SandboxError("recursive loops are not allowed in definitions")
        if any(True for _ in loop.find_all(nodes.For)):
            raise SandboxError("loops may not nest in definitions")


Escape = Callable[[str, Sequence[str]], str]  # (output, what was written before it) -> what to write


class JinjaTemplate:
    """One compiled string, rendered with an optional escape of every ``{{ }}`` output."""

    def __init__(self, template: jinja2.Template):
        self._template = template

    def render(self, variables: dict[str, Any], escape: Escape | None) -> str:
        out: list[str] = []
        size = 0
        _OUTPUT_NEXT.value = False
        for chunk in self._template.generate(variables):
            if _OUTPUT_NEXT.value:
                _OUTPUT_NEXT.value = False
                if escape is not None:
                    chunk = escape(chunk, out)
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise SandboxError(f"output over the limit of {MAX_OUTPUT_CHARS} characters")
            out.append(chunk)
        return "".join(out)


class JinjaEngine:
    """Compiles strings for Jinja2, with openfero's functions as filters."""

    def __init__(self, functions: dict[str, Callable[..., Any]]):
        self._env = _environment(_mark_output)
        self._env.filters.update({name: _bounded(f) for name, f in functions.items()})

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (one engine per process; its cache lives as long)
    def compile(self, text: str) -> JinjaTemplate:
        if len(text) > MAX_SOURCE_CHARS:
            raise SandboxError(f"a template of {len(text)} characters is over the limit of {MAX_SOURCE_CHARS}")
        refuse_unbounded_structure(self._env.parse(text))
        return JinjaTemplate(self._env.from_string(text))
