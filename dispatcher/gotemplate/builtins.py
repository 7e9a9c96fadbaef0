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
from .values import ANY, GoStruct, elem_type, is_true, key_type, type_name, zero_of

# Argument kinds: VALUE and ANY take anything (nil too); STRING must be a string.
VALUE, ANYARG, STRING = "value", "any", "string"


class CallError(Exception):
    """A builtin or a function of the caller failed; the message is Go's, after ``error calling NAME:``."""


class NilInterface:
    """A nil that sits in an interface{} slot (an element of []interface{} given to range).

    Go tells it from no value in two places: a field of it is ``nil pointer
    evaluating interface {}.X``, and ``len`` of it is ``len of nil pointer``.
    Everywhere else it is nil.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "NIL_IFACE"


NIL_IFACE = NilInterface()
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


def _map_key(index: Any, mapping: dict) -> Any:
    kt = key_type(mapping)
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
            value = item.get(_map_key(idx, item), _MISSING)
            item = zero_of(elem_type(item.values())) if value is _MISSING else value
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


def _basic_kind(v: Any) -> str | None:
    t = type(v)
    if t is str:
        return "string"
    if t is int:
        return "int"
    if t is bool:
        return "bool"
    if t is float:
        return "float"
    if t is complex:
        return "complex"
    return None


def _go_kind(v: Any) -> str:
    t = type(v)
    if v is None:
        return "invalid"
    if t is dict:
        return "map"
    if t is list or t is tuple:
        return "slice"
    if t is GoStruct:
        return "struct"
    return "func" if callable(v) else t.__name__


def _comparable(v: Any) -> bool:
    t = type(v)
    if t is GoStruct:
        return all(_comparable(f) for f in v.fields.values())
    return not (t is dict or t is list or t is tuple or callable(v))


def _format(verb: str, v: Any, st: Any) -> str:
    return sprintf(verb, [v], st.max_out, st.max_width)


def eq(st: Any, arg1: Any, *args: Any) -> bool:
    if not args:
        raise CallError("missing argument for comparison")
    k1 = _basic_kind(arg1)
    for arg in args:
        k2 = _basic_kind(arg)
        if k1 != k2:
            if arg1 is not None and arg is not None:
                raise CallError("incompatible types for comparison")
            truth = False
        elif k1 is not None:
            if k1 == "string" and len(arg1) > 256:
                st.charge(min(len(arg1), len(arg)))
            truth = arg1 == arg
        else:
            g1, g2 = _go_kind(arg1), _go_kind(arg)
            if g1 != g2 and g1 != "invalid" and g2 != "invalid":
                raise CallError(
                    f"non-comparable types {_format('%s', arg1, st)}: {type_name(arg1)}, {type_name(arg)}: {_format('%v', arg, st)}")
            if arg1 is None or arg is None:
                truth = (arg1 is None) == (arg is None)
            else:
                if not _comparable(arg):
                    raise CallError(f"non-comparable type {_format('%s', arg, st)}: {type_name(arg)}")
                truth = type(arg1) is type(arg) and arg1 == arg
        if truth:
            return True
    return False


def ne(st: Any, arg1: Any, arg2: Any) -> bool:
    return not eq(st, arg1, arg2)


def lt(st: Any, arg1: Any, arg2: Any) -> bool:
    k1, k2 = _basic_kind(arg1), _basic_kind(arg2)
    if k1 is None or k2 is None:
        raise CallError("invalid type for comparison")
    if k1 != k2:
        raise CallError("incompatible types for comparison")
    if k1 in ("bool", "complex"):
        raise CallError("invalid type for comparison")
    if k1 == "string" and len(arg1) > 256:
        st.charge(min(len(arg1), len(arg2)))
    return arg1 < arg2


def le(st: Any, arg1: Any, arg2: Any) -> bool:
    return lt(st, arg1, arg2) or eq(st, arg1, arg2)


def gt(st: Any, arg1: Any, arg2: Any) -> bool:
    return not le(st, arg1, arg2)


def ge(st: Any, arg1: Any, arg2: Any) -> bool:
    return not lt(st, arg1, arg2)


def _built(st: Any, s: str) -> str:
    st.charge(len(s))
    return s


def print_(st: Any, *args: Any) -> str:
    return _built(st, sprint(list(args), st.max_out))


def println(st: Any, *args: Any) -> str:
    return _built(st, sprintln(list(args), st.max_out))


def printf(st: Any, fmt: str, *args: Any) -> str:
    return _built(st, sprintf(fmt, list(args), st.max_out, st.max_width))


def _escaper_text(st: Any, args: tuple) -> str:
    if len(args) == 1 and type(args[0]) is str:
        return args[0]
    return sprint(["<no value>" if a is None else a for a in args], st.max_out)


def html(st: Any, *args: Any) -> str:
    return _built(st, html_escape(_escaper_text(st, args)))


def js(st: Any, *args: Any) -> str:
    return _built(st, js_escape(_escaper_text(st, args)))


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


def call_python(fn: Any, args: list) -> Any:
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
