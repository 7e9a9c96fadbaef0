"""The comparison builtins eq, ne, lt, le, gt, ge, with Go's rules on which kinds compare. No I/O here.

Basic kinds (bool, int, float, complex, string) compare with their own kind
only (``eq 1 1.0`` is an error, as in Go); ``eq`` compares its first argument
with each of the others; nil equals nil; maps, slices and functions do not
compare (``non-comparable type``); ``lt`` and friends take ints, floats and
strings only.
"""

from __future__ import annotations

from typing import Any

from .errors import CallError
from .formatting import sprintf
from .values import GoStruct, type_name


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
    less: bool = arg1 < arg2
    return less


def le(st: Any, arg1: Any, arg2: Any) -> bool:
    return lt(st, arg1, arg2) or eq(st, arg1, arg2)


def gt(st: Any, arg1: Any, arg2: Any) -> bool:
    return not le(st, arg1, arg2)


def ge(st: Any, arg1: Any, arg2: Any) -> bool:
    return not lt(st, arg1, arg2)
