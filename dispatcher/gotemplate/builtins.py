"""The builtin functions of text/template, with Go's semantics and error messages. No I/O here.

Each takes the execution state first (for limits) and the evaluated
arguments; a failure is a CallError with Go's message, which execution
reports as ``error calling NAME: MESSAGE``. ``and``, ``or`` are evaluated by
the executor itself, since they do not evaluate every argument.
Strings are indexed, sliced and measured in UTF-8 bytes, as in Go.
"""

from __future__ import annotations

import inspect
from typing import Any

from .escaping import html_escape, js_escape, url_query_escape
from .formatting import sprint, sprintf, sprintln
from .comparing import eq, ge, gt, le, lt, ne
from .errors import CallError
from .values import ANY, NIL_IFACE, is_true, type_name, zero_of

# Argument kinds: VALUE and ANY take anything (nil too); STRING must be a string.
VALUE, ANYARG, STRING = "value", "any", "string"


_MISSING = object()


def _utf8(st: Any, s: str) -> bytes:
    st.charge(len(s))
    return s.encode("utf-8", "replace")


def _index_arg(index: Any, cap: int) -> int:
    if type(index) is int:
        if index < 0 or index > cap:
            raise CallError(f"index out of range: {index}")
        return index
    if index is None:
        raise CallError("cannot index slice/array with nil")
    raise CallError(f"cannot index slice/array with type {type_name(index)}")


def _map_key(st: Any, index: Any, mapping: dict[Any, Any]) -> Any:
    kt = st.key_type(mapping)
    if index is None:
        if kt == ANY:
            return None
        raise CallError(f"value is nil; should be of type {kt}")
    it = type_name(index)
    if it == kt or kt == ANY:
        return index
    raise CallError(f"value has type {it}; should be {kt}")


def index(st: Any, item: Any, *indexes: Any) -> Any:
    if item is None:
        raise CallError("index of untyped nil")
    for idx in indexes:
        if item is None:
            raise CallError("index of nil pointer")
        t = type(item)
        if t is str:
            data = item.encode() if item.isascii() else _utf8(st, item)
            x = _index_arg(idx, len(data))
            if x == len(data):
                raise CallError("reflect: string index out of range")
            item = data[x]
        elif t is list or t is tuple:
            x = _index_arg(idx, len(item))
            if x == len(item):
                raise CallError("reflect: slice index out of range")
            item = item[x]
        elif t is dict:
            value = item.get(_map_key(st, idx, item), _MISSING)
            item = zero_of(st.elem_type(item)) if value is _MISSING else value
        else:
            raise CallError(f"can't index item of type {type_name(item)}")
    return item


def slice_(st: Any, item: Any, *indexes: Any) -> Any:
    if item is None:
        raise CallError("slice of untyped nil")
    if len(indexes) > 3:
        raise CallError(f"too many slice indexes: {len(indexes)}")
    t = type(item)
    data = None
    if t is str:
        if len(indexes) == 3:
            raise CallError("cannot 3-index slice a string")
        data = item if item.isascii() else _utf8(st, item)
        cap = len(data)
    elif t is list or t is tuple:
        cap = len(item)
    else:
        raise CallError(f"can't slice item of type {type_name(item)}")
    idx = [0, cap, cap]
    for i, index_ in enumerate(indexes):
        idx[i] = _index_arg(index_, cap)
    if idx[0] > idx[1]:
        raise CallError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise CallError(f"invalid slice index: {idx[1]} > {idx[2]}")
    if data is None:
        st.charge(idx[1] - idx[0])
        return item[idx[0]:idx[1]]
    part = data[idx[0]:idx[1]]
    return part if type(part) is str else part.decode("utf-8", "replace")


def length(st: Any, item: Any) -> int:
    t = type(item)
    if t is str:
        return len(item) if item.isascii() else len(_utf8(st, item))
    if t is dict or t is list or t is tuple:
        return len(item)
    if item is NIL_IFACE:
        raise CallError("len of nil pointer")
    if item is None:
        raise CallError("reflect: call of reflect.Value.Type on zero Value")
    raise CallError(f"len of type {type_name(item)}")


def not_(st: Any, arg: Any) -> bool:
    return not is_true(arg)


def _built(st: Any, s: str, per_step: int = 16) -> str:
    st.charge(len(s), per_step)
    return s


# Formatting is Python work per character: one step per 4 characters made.
def print_(st: Any, *args: Any) -> str:
    return _built(st, sprint(list(args), st.max_out), 4)


def println(st: Any, *args: Any) -> str:
    return _built(st, sprintln(list(args), st.max_out), 4)


def printf(st: Any, fmt: str, *args: Any) -> str:
    return _built(st, sprintf(fmt, list(args), st.max_out, st.max_width), 4)


def _escaper_text(st: Any, args: tuple[Any, ...]) -> str:
    if len(args) == 1 and type(args[0]) is str:
        return args[0]
    return sprint(["<no value>" if a is None else a for a in args], st.max_out)


def html(st: Any, *args: Any) -> str:
    return _built(st, html_escape(_escaper_text(st, args)))


def js(st: Any, *args: Any) -> str:
    return _built(st, js_escape(_escaper_text(st, args)), 4)


def urlquery(st: Any, *args: Any) -> str:
    return _built(st, url_query_escape(_escaper_text(st, args)))


def arity(fn: Any) -> tuple[int, int, bool] | None:
    """(positional parameters a call must fill, positional parameters it may fill, whether *args follows); None if unknown."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    required = total = 0
    star = False
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            total += 1
            if p.default is p.empty:
                required += 1
        elif p.kind == p.VAR_POSITIONAL:
            star = True
        elif p.kind == p.KEYWORD_ONLY and p.default is p.empty:
            return None
    return required, total, star


def call_python(fn: Any, args: list[Any]) -> Any:
    """Call a function of the caller's; any exception becomes a CallError with its message."""
    try:
        return fn(*args)
    except Exception as exc:  # the caller's code: whatever it raises is this template's failure
        raise CallError(str(exc) or type(exc).__name__) from None


def call(st: Any, fn: Any, *args: Any) -> Any:
    if fn is None:
        raise CallError("call of nil")
    if not callable(fn):
        raise CallError(f"non-function of type {type_name(fn)}")
    shape = arity(fn)
    if shape is not None:
        required, total, star = shape
        if len(args) < required or (not star and len(args) > total):
            want = f"at least {required}" if star or total > required else str(required)
            raise CallError(f"wrong number of args: got {len(args)} want {want}")
    result = call_python(fn, list(args))
    if type(result) is str:
        st.charge(len(result))
    return result


# name -> (function, kinds of the fixed parameters, kind of the variadic ones or None)
BUILTINS: dict[str, tuple[Any, tuple[str, ...], str | None]] = {
    "and": (None, (VALUE,), VALUE),
    "or": (None, (VALUE,), VALUE),
    "call": (call, (VALUE,), VALUE),
    "html": (html, (), ANYARG),
    "index": (index, (VALUE,), VALUE),
    "slice": (slice_, (VALUE,), VALUE),
    "js": (js, (), ANYARG),
    "len": (length, (VALUE,), None),
    "not": (not_, (VALUE,), None),
    "print": (print_, (), ANYARG),
    "printf": (printf, (STRING,), ANYARG),
    "println": (println, (), ANYARG),
    "urlquery": (urlquery, (), ANYARG),
    "eq": (eq, (VALUE,), VALUE),
    "ge": (ge, (VALUE, VALUE), None),
    "gt": (gt, (VALUE, VALUE), None),
    "le": (le, (VALUE, VALUE), None),
    "lt": (lt, (VALUE, VALUE), None),
    "ne": (ne, (VALUE, VALUE), None),
}
