"""Go's fmt printer: one value printed for one verb, with flags, width and precision. No I/O here.

The part of fmt that knows types (print.go and format.go in Go): integers in
any base, floats via floats.py, strings quoted or in hex, maps with sorted
keys, slices, structs with ``%+v`` names and ``%#v`` Go syntax, and the
``%!d(string=x)`` complaint for a verb that does not fit. Text grows through
``write``, which raises as soon as it passes ``max_chars``.
"""

from __future__ import annotations

from typing import Any

from .errors import TemplateError
from .floats import format_float
from .literals import MAX_RUNE, RUNE_ERROR, can_backquote, go_quote, go_quote_rune, is_print
from .values import GoStruct, sorted_keys, type_name

_MAX_PRINT_DEPTH = 100


class Printer:
    """One fmt call's buffer and the flags of the verb being printed (Go's pp and fmt)."""

    __slots__ = ("buf", "n", "max_chars", "max_width", "wid", "prec", "wid_present", "prec_present",
                 "minus", "plus", "sharp", "space", "zero", "plus_v", "sharp_v")

    def __init__(self, max_chars: int, max_width: int) -> None:
        self.buf: list[str] = []
        self.n = 0
        self.max_chars, self.max_width = max_chars, max_width
        self.clear_flags()

    def clear_flags(self) -> None:
        self.wid = self.prec = 0
        self.wid_present = self.prec_present = self.minus = self.plus = self.sharp = False
        self.space = self.zero = self.plus_v = self.sharp_v = False

    def text(self) -> str:
        return "".join(self.buf)

    def write(self, s: str) -> None:
        self.buf.append(s)
        self.n += len(s)
        if self.n > self.max_chars:
            raise TemplateError(f"formatted text longer than {self.max_chars} bytes (limit max_output_bytes)",
                                stage="exec", limit="max_output_bytes")

    def padding(self, n: int) -> None:
        if n > 0:
            self.write(("0" if self.zero else " ") * n)

    def pad(self, s: str) -> None:
        if not self.wid_present or self.wid == 0:
            self.write(s)
        elif self.minus:
            self.write(s)
            self.padding(self.wid - len(s))
        else:
            self.padding(self.wid - len(s))
            self.write(s)

    def pad_unzeroed(self, s: str) -> None:
        zero, self.zero = self.zero, False
        self.pad(s)
        self.zero = zero

    # Basic kinds (Go's fmt.go).
    def fmt_integer(self, v: int, base: int, verb: str, upper: bool) -> None:
        negative = v < 0
        u = -v if negative else v
        prec = 0
        if self.prec_present:
            prec = self.prec
            if prec == 0 and u == 0:
                zero, self.zero = self.zero, False
                self.padding(self.wid)
                self.zero = zero
                return
        elif self.zero and self.wid_present:
            prec = self.wid
            if negative or self.plus or self.space:
                prec -= 1
        digits = format(u, {10: "d", 16: "X" if upper else "x", 8: "o", 2: "b"}[base])
        if len(digits) < prec:
            digits = "0" * (prec - len(digits)) + digits
        if self.sharp:
            if base == 2:
                digits = "0b" + digits
            elif base == 8 and digits[0] != "0":
                digits = "0" + digits
            elif base == 16:
                digits = ("0X" if upper else "0x") + digits
        if verb == "O":
            digits = "0o" + digits
        sign = "-" if negative else "+" if self.plus else " " if self.space else ""
        self.pad_unzeroed(sign + digits)

    def fmt_unicode(self, u: int) -> None:
        prec = self.prec if self.prec_present and self.prec > 4 else 4
        out = f"U+{u:0{prec}X}"
        if self.sharp and u <= MAX_RUNE and not 0xD800 <= u <= 0xDFFF and is_print(chr(u)):
            out += f" '{chr(u)}'"
        self.pad_unzeroed(out)

    def fmt_c(self, u: int) -> None:
        self.pad(chr(u) if u <= MAX_RUNE and not 0xD800 <= u <= 0xDFFF else RUNE_ERROR)

    def fmt_s(self, s: str) -> None:
        if self.prec_present:
            s = s[:self.prec]
        self.pad(s)

    def fmt_sx(self, s: str, upper: bool) -> None:
        data = s.encode("utf-8", "replace")
        length = min(len(data), self.prec) if self.prec_present else len(data)
        width = 2 * length
        if width <= 0:
            if self.wid_present:
                self.padding(self.wid)
            return
        if self.space:
            width = (width * 2 if self.sharp else width) + length - 1
        elif self.sharp:
            width += 2
        if self.wid_present and self.wid > width and not self.minus:
            self.padding(self.wid - width)
        prefix = "0X" if upper else "0x"
        out = [prefix] if self.sharp else []
        for i in range(length):
            if self.space and i > 0:
                out.append(" " + prefix if self.sharp else " ")
            out.append(format(data[i], "02X" if upper else "02x"))
        self.write("".join(out))
        if self.wid_present and self.wid > width and self.minus:
            self.padding(self.wid - width)

    def fmt_q(self, s: str) -> None:
        if self.prec_present:
            s = s[:self.prec]
        if self.sharp and can_backquote(s):
            self.pad("`" + s + "`")
        else:
            self.pad(go_quote(s, ascii_only=self.plus))

    def fmt_float(self, v: float, verb: str, prec: int) -> None:
        if self.prec_present:
            prec = self.prec
        num = format_float(v, verb, prec)
        sign, body = (num[0], num[1:]) if num[0] in "+-" else ("+", num)
        if self.space and sign == "+" and not self.plus:
            sign = " "
        if body[0] in "IN":  # Inf, NaN: no zero padding
            self.pad_unzeroed(body if body[0] == "N" and not self.space and not self.plus else sign + body)
            return
        if self.sharp and verb != "b":
            body = _sharp_float(body, verb, prec)
        if self.plus or sign != "+":
            if self.zero and self.wid_present and self.wid > len(body) + 1:
                self.write(sign)
                self.padding(self.wid - len(body) - 1)
                self.write(body)
                return
            self.pad(sign + body)
            return
        self.pad(body)

    # Values by type (Go's print.go).
    def bad_verb(self, verb: str, value: Any, known: bool = True) -> None:
        self.write("%!" + verb + "(")
        if value is None and not known:
            self.write("<nil>")
        else:
            self.write(type_name(value) + "=")
            self.print_arg(value, "v")
        self.write(")")

    def print_arg(self, arg: Any, verb: str, depth: int = 0) -> None:
        t = type(arg)
        if depth == 0 and verb in ("T", "p") and arg is not None:
            if verb == "T":
                self.fmt_s(type_name(arg))
            else:
                self.bad_verb(verb, arg)  # Go prints an address; openfero's values have none to show
            return
        if t is str:
            if verb == "v":
                self.fmt_q(arg) if self.sharp_v else self.fmt_s(arg)
            elif verb == "s":
                self.fmt_s(arg)
            elif verb in ("x", "X"):
                self.fmt_sx(arg, verb == "X")
            elif verb == "q":
                self.fmt_q(arg)
            else:
                self.bad_verb(verb, arg)
        elif t is int:
            self.print_int(arg, verb)
        elif t is bool:
            if verb in ("t", "v"):
                self.pad("true" if arg else "false")
            else:
                self.bad_verb(verb, arg)
        elif t is float:
            if verb == "v":
                self.fmt_float(arg, "g", -1)
            elif verb in ("b", "g", "G", "x", "X"):
                self.fmt_float(arg, verb, -1)
            elif verb in ("f", "e", "E", "F"):
                self.fmt_float(arg, "f" if verb == "F" else verb, 6)
            else:
                self.bad_verb(verb, arg)
        elif arg is None:
            if depth == 0 and verb in ("T", "v"):
                self.pad("<nil>")
            elif depth > 0:
                self.write("interface {}(nil)" if self.sharp_v else "<nil>")
            else:
                self.bad_verb(verb, None, known=False)
        elif t is complex:
            if verb in ("v", "b", "g", "G", "x", "X", "f", "F", "e", "E"):
                plus = self.plus
                self.write("(")
                self.print_arg(arg.real, verb)
                self.plus = True
                self.print_arg(arg.imag, verb)
                self.write("i)")
                self.plus = plus
            else:
                self.bad_verb(verb, arg)
        else:
            self.print_value(arg, verb, depth)

    def print_int(self, v: int, verb: str) -> None:
        if verb in ("v", "d"):
            self.fmt_integer(v, 10, verb, False)
        elif verb == "b":
            self.fmt_integer(v, 2, verb, False)
        elif verb in ("o", "O"):
            self.fmt_integer(v, 8, verb, False)
        elif verb in ("x", "X"):
            self.fmt_integer(v, 16, verb, verb == "X")
        elif verb == "c":
            self.fmt_c(v & 0xFFFFFFFFFFFFFFFF)
        elif verb == "q":
            self.pad(go_quote_rune(v, ascii_only=self.plus))
        elif verb == "U":
            self.fmt_unicode(v & 0xFFFFFFFFFFFFFFFF)
        else:
            self.bad_verb(verb, v)

    def print_value(self, value: Any, verb: str, depth: int) -> None:
        if depth > _MAX_PRINT_DEPTH:
            raise TemplateError(f"value nested deeper than {_MAX_PRINT_DEPTH} levels to print", stage="exec")
        t = type(value)
        sharp_v = self.sharp_v
        if verb == "v" and not (sharp_v or self.wid_present or self.prec_present) and _all_str(value, t):
            # openfero's labels and annotations: nothing to pad or quote, so print them in one go.
            if t is dict:
                self.write("map[" + " ".join(f"{k}:{value[k]}" for k in sorted(value)) + "]")
            else:
                self.write("[" + " ".join(value) + "]")
            return
        if t is dict:
            self.write(type_name(value) + "{" if sharp_v else "map[")
            for i, key in enumerate(sorted_keys(value)):
                if i:
                    self.write(", " if sharp_v else " ")
                self.print_arg(key, verb, depth + 1)
                self.write(":")
                self.print_arg(value[key], verb, depth + 1)
            self.write("}" if sharp_v else "]")
        elif t is list or t is tuple:
            if sharp_v:
                self.write(type_name(value) + "{")
            else:
                self.write("[")
            for i, item in enumerate(value):
                if i:
                    self.write(", " if sharp_v else " ")
                self.print_arg(item, verb, depth + 1)
            self.write("}" if sharp_v else "]")
        elif t is GoStruct:
            if sharp_v:
                self.write(value.type_name)
            self.write("{")
            for i, (name, field) in enumerate(value.fields.items()):
                if i:
                    self.write(", " if sharp_v else " ")
                if self.plus_v or sharp_v:
                    self.write(name + ":")
                self.print_arg(field, verb, depth + 1)
            self.write("}")
        elif callable(value):
            self.write("?func?")
        elif verb in ("v", "s"):
            self.fmt_s(str(value))
        else:
            self.bad_verb(verb, value)


def _all_str(value: Any, t: type) -> bool:
    if t is dict:
        return all(type(k) is str and type(v) is str for k, v in value.items())
    return (t is list or t is tuple) and all(type(v) is str for v in value)


def _sharp_float(body: str, verb: str, prec: int) -> str:
    """The '#' flag on a float: always a decimal point, and %g keeps its trailing zeros."""
    digits = (6 if prec == -1 else prec) if verb in ("v", "g", "G", "x") else 0
    tail = ""
    num = body
    cut = -1
    for i, ch in enumerate(body):
        if ch in "pP" or (ch in "eE" and verb not in ("x", "X")):
            cut = i
            break
    if cut >= 0:
        num, tail = body[:cut], body[cut:]
    has_point = "." in num
    saw_nonzero = False
    for ch in num:
        if ch == ".":
            continue
        if ch != "0":
            saw_nonzero = True
        if saw_nonzero:
            digits -= 1
    if not has_point:
        if num == "0":
            digits -= 1
        num += "."
    if digits > 0:
        num += "0" * digits
    return num + tail
