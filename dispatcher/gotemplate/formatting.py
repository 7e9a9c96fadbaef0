"""Go's fmt entry points for templates: Sprintf, Sprint, Sprintln and what an action prints. No I/O here.

Sprintf reads the format as Go does: flags ``-+# 0``, width and precision
(also ``*`` and ``[n]`` argument indexes), and Go's complaints in the output:
``%!v(MISSING)``, ``%!(EXTRA int=1)``, ``%!(NOVERB)``, ``%!(BADWIDTH)``,
``%!d(BADINDEX)``. A width or precision above ``max_width`` and text longer
than ``max_chars`` are TemplateErrors, raised as the text grows, so no
format string can build a huge result first. The values themselves are
printed by printing.Printer.
"""

from __future__ import annotations

from typing import Any, Literal

from .errors import TemplateError
from .literals import go_quote
from .printing import Printer
from .values import type_name

_TOO_LARGE = 1_000_000  # fmt's own bound on a width, precision or argument index


def _int_arg(args: list[Any], i: int) -> tuple[int, bool, int]:
    """A '*' width or precision: (value, ok, next argument index)."""
    if i >= len(args):
        return 0, False, i
    v = args[i]
    if type(v) is int and -_TOO_LARGE <= v <= _TOO_LARGE:
        return v, True, i + 1
    return 0, False, i + 1


def _parse_num(s: str, start: int, end: int) -> tuple[int, bool, int]:
    num, is_num, i = 0, False, start
    while i < end and "0" <= s[i] <= "9":
        if num > _TOO_LARGE:
            return 0, False, end  # an absurd number: fmt gives up on the rest
        num = num * 10 + ord(s[i]) - 48
        is_num = True
        i += 1
    return num, is_num, i


def _arg_number(p: Printer, state: dict[str, Any], arg_num: int, s: str, i: int, n_args: int) -> tuple[int, int, bool]:
    if i >= len(s) or s[i] != "[":
        return arg_num, i, False
    state["reordered"] = True
    end = s.find("]", i + 1)
    if end < 0 or len(s) - i < 3:
        state["good"] = False
        return arg_num, i + 1, False
    index, ok, newi = _parse_num(s, i + 1, end)
    if not ok or newi != end:
        state["good"] = False
        return arg_num, end + 1, False
    index -= 1
    if 0 <= index < n_args:
        return index, end + 1, True
    state["good"] = False
    return arg_num, end + 1, True


def _check_width(p: Printer, what: str, value: int) -> None:
    if value > p.max_width:
        raise TemplateError(f"printf {what} {value} is more than {p.max_width} (limit max_width)", stage="exec", limit="max_width")


_SIMPLE: dict[str, tuple[str, ...] | None] = {}


def _simple_format(fmt: str) -> tuple[str, ...] | None:
    """A format of plain text and bare %s, %v, %d, %q verbs, cut into (text, verb, text, verb, ..., text); None otherwise."""
    parts: list[str] = []
    i = 0
    while True:
        j = fmt.find("%", i)
        if j < 0:
            parts.append(fmt[i:])
            return tuple(parts)
        if j + 1 >= len(fmt) or fmt[j + 1] not in "svdq":
            return None
        parts.append(fmt[i:j])
        parts.append(fmt[j + 1])
        i = j + 2


def sprintf(fmt: str, args: list[Any], max_chars: int, max_width: int) -> str:
    simple: tuple[str, ...] | None | Literal[False] = _SIMPLE.get(fmt, False)
    if simple is False:
        simple = _simple_format(fmt) if len(fmt) <= 256 else None
        if len(_SIMPLE) < 1024:
            _SIMPLE[fmt] = simple
    if simple is not None and len(simple) // 2 == len(args):
        # The common case (strings for %s %v %q, ints for %v %d): no flags, no complaints, one join.
        out = [simple[0]]
        for k, arg in enumerate(args):
            verb, t = simple[2 * k + 1], type(arg)
            if t is str and verb != "d":
                out.append(go_quote(arg) if verb == "q" else arg)
            elif t is int and verb in "vd":
                out.append(str(arg))
            else:
                break
            out.append(simple[2 * k + 2])
        else:
            text = "".join(out)
            if len(text) > max_chars:
                raise TemplateError(f"formatted text longer than {max_chars} bytes (limit max_output_bytes)",
                                    stage="exec", limit="max_output_bytes")
            return text
    return _sprintf(fmt, args, max_chars, max_width)


def _sprintf(fmt: str, args: list[Any], max_chars: int, max_width: int) -> str:
    p = Printer(max_chars, max_width)
    end = len(fmt)
    arg_num, i = 0, 0
    after_index = False
    state = {"reordered": False, "good": True}
    while i < end:
        state["good"] = True
        j = fmt.find("%", i)
        if j < 0:
            p.write(fmt[i:])
            break
        if j > i:
            p.write(fmt[i:j])
        i = j + 1
        p.clear_flags()
        while i < end:  # flags, and the fast path for a bare verb
            c = fmt[i]
            if c == "#":
                p.sharp = True
            elif c == "0":
                p.zero = not p.minus
            elif c == "+":
                p.plus = True
            elif c == "-":
                p.minus, p.zero = True, False
            elif c == " ":
                p.space = True
            else:
                if "a" <= c <= "z" and arg_num < len(args):
                    if c == "v":
                        p.sharp_v, p.sharp, p.plus_v, p.plus = p.sharp, False, p.plus, False
                    p.print_arg(args[arg_num], c)
                    arg_num += 1
                    i += 1
                    break
                c = ""
                break
            i += 1
        else:
            c = ""
        if c:
            continue
        arg_num, i, after_index = _arg_number(p, state, arg_num, fmt, i, len(args))
        if i < end and fmt[i] == "*":
            i += 1
            p.wid, p.wid_present, arg_num = _int_arg(args, arg_num)
            if not p.wid_present:
                p.write("%!(BADWIDTH)")
            if p.wid < 0:
                p.wid, p.minus, p.zero = -p.wid, True, False
            after_index = False
        else:
            p.wid, p.wid_present, i = _parse_num(fmt, i, end)
            if after_index and p.wid_present:
                state["good"] = False
        _check_width(p, "width", p.wid)
        if i + 1 < end and fmt[i] == ".":
            i += 1
            if after_index:
                state["good"] = False
            arg_num, i, after_index = _arg_number(p, state, arg_num, fmt, i, len(args))
            if i < end and fmt[i] == "*":
                i += 1
                p.prec, p.prec_present, arg_num = _int_arg(args, arg_num)
                if p.prec < 0:
                    p.prec, p.prec_present = 0, False
                if not p.prec_present:
                    p.write("%!(BADPREC)")
                after_index = False
            else:
                p.prec, p.prec_present, i = _parse_num(fmt, i, end)
                if not p.prec_present:
                    p.prec, p.prec_present = 0, True
            _check_width(p, "precision", p.prec)
        if not after_index:
            arg_num, i, after_index = _arg_number(p, state, arg_num, fmt, i, len(args))
        if i >= end:
            p.write("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            p.write("%")
        elif not state["good"]:
            p.write(f"%!{verb}(BADINDEX)")
        elif arg_num >= len(args):
            p.write(f"%!{verb}(MISSING)")
        else:
            if verb == "v":
                p.sharp_v, p.sharp, p.plus_v, p.plus = p.sharp, False, p.plus, False
            p.print_arg(args[arg_num], verb)
            arg_num += 1
    if not state["reordered"] and arg_num < len(args):
        p.clear_flags()
        p.write("%!(EXTRA ")
        for k, arg in enumerate(args[arg_num:]):
            if k:
                p.write(", ")
            if arg is None:
                p.write("<nil>")
            else:
                p.write(type_name(arg) + "=")
                p.print_arg(arg, "v")
        p.write(")")
    return p.text()


def sprint(args: list[Any], max_chars: int) -> str:
    p = Printer(max_chars, 0)
    prev_string = False
    for k, arg in enumerate(args):
        is_string = type(arg) is str
        if k > 0 and not is_string and not prev_string:
            p.write(" ")
        p.print_arg(arg, "v")
        prev_string = is_string
    return p.text()


def sprintln(args: list[Any], max_chars: int) -> str:
    p = Printer(max_chars, 0)
    for k, arg in enumerate(args):
        if k > 0:
            p.write(" ")
        p.print_arg(arg, "v")
    p.write("\n")
    return p.text()


def print_action(value: Any, max_chars: int) -> str:
    """What {{pipeline}} prints: fmt.Fprint of the value, and <no value> for none."""
    t = type(value)
    if t is str:
        text: str = value
        return text
    if t is int:
        return str(value)
    if value is None:
        return "<no value>"
    return sprint([value], max_chars)

