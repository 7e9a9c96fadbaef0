"""Python values seen as Go values: types, truth, zero values, map order. No I/O here.

The data model: ``dict`` is a Go map, ``list``/``tuple`` a slice, ``str``
string, ``int`` int, ``float`` float64, ``complex`` complex128, ``bool`` bool,
``None`` nil, and ``GoStruct`` a struct. Python values carry no element type,
so a container's is inferred from its contents, by one rule that the Go
oracle (tests/data/gotemplate/oracle) applies when it builds the same data:
string, bool, int or float64 when every element is of that one kind (string
when there are none: openfero's maps are ``map[string]string``), else
``interface {}``. The element type matters for the zero value of a missing
key (``index``, ``missingkey=zero``), ``%T`` and error messages.
"""

from __future__ import annotations

import math
from typing import Any

ANY = "interface {}"


class GoStruct:
    """A Go struct value: a type name (e.g. ``"main.Alert"``) and its fields, in declaration order.

    A field that does not exist is an error (``can't evaluate field X in type
    T``); ``%v`` prints ``{v1 v2}`` and ``%+v`` ``{A:v1 B:v2}``.
    """

    __slots__ = ("type_name", "fields")

    def __init__(self, type_name: str, fields: dict[str, Any]) -> None:
        self.type_name = type_name
        self.fields = dict(fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoStruct) and self.type_name == other.type_name and self.fields == other.fields

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dict

    def __repr__(self) -> str:
        return f"GoStruct({self.type_name!r}, {self.fields!r})"


def _basic(value: Any) -> str | None:
    t = type(value)
    if t is str:
        return "string"
    if t is bool:
        return "bool"
    if t is int:
        return "int"
    if t is float:
        return "float64"
    return None


def elem_type(values: Any) -> str:
    """The element type of a container's values, by the rule in the module docstring."""
    first = True
    kind: str | None = "string"
    for value in values:
        k = _basic(value)
        if first:
            kind, first = k, False
        elif k != kind:
            return ANY
    return kind or ANY


def key_type(mapping: dict[Any, Any]) -> str:
    return elem_type(mapping.keys())


def type_name(value: Any) -> str:
    """Go's name for the type of ``value`` (what ``%T`` prints); ``<nil>`` for None."""
    if value is None:
        return "<nil>"
    basic = _basic(value)
    if basic is not None:
        return basic
    t = type(value)
    if t is dict:
        return f"map[{key_type(value)}]{elem_type(value.values())}"
    if t is list or t is tuple:
        return f"[]{elem_type(value)}"
    if t is GoStruct:
        struct_name: str = value.type_name
        return struct_name
    if t is complex:
        return "complex128"
    if callable(value):
        return "func(...) interface {}"
    return t.__name__


def zero_of(go_type: str) -> Any:
    """The zero value of a type named by ``elem_type``."""
    if go_type == "string":
        return ""
    if go_type == "int":
        return 0
    if go_type == "float64":
        return 0.0
    if go_type == "bool":
        return False
    return None


def is_true(value: Any) -> bool:
    """Go's truth: false, 0, nil, and empty strings, maps and slices are false; structs are true."""
    if value is None:
        return False
    t = type(value)
    if t is str or t is dict or t is list or t is tuple:
        return len(value) > 0
    # type(value) is T does not narrow ``value`` for mypy: typed names say what it is.
    if t is bool:
        flag: bool = value
        return flag
    if t is int or t is float or t is complex:
        number: complex = value
        return number != 0
    return True


def _float_key(x: float) -> tuple[int, float]:
    return (0, 0.0) if math.isnan(x) else (1, x)  # fmtsort: NaN first


def sorted_keys(mapping: dict[Any, Any]) -> list[Any]:
    """Keys in the order Go's fmt and range use (internal/fmtsort)."""
    keys = list(mapping)
    kt = key_type(mapping)
    if kt in ("string", "int", "bool"):
        return sorted(keys)
    if kt == "float64":
        return sorted(keys, key=_float_key)
    # Mixed keys (an interface key type): by kind, then by value within a kind.
    rank = {"bool": 0, "int": 1, "float64": 2, "string": 3}
    return sorted(keys, key=lambda k: (rank.get(_basic(k) or "", 4), _float_key(k) if type(k) is float else k if _basic(k) else str(k)))


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
