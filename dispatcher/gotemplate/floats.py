"""Go's strconv.FormatFloat for float64: the 'e', 'E', 'f', 'g', 'G', 'b', 'x' and 'X' formats. No I/O here.

Digits come from Python's own correctly rounded conversions (``repr`` gives
the shortest digits that read back to the same float, as Go's Ryu does;
``format`` rounds exactly); the layout around them is Go's.
"""

from __future__ import annotations

import math
import struct

_MASK64 = (1 << 64) - 1


def _decimal(x: float, mode: str, prec: int) -> tuple[str, int]:
    """Digits (no leading or trailing zeros) and decimal point position of x > 0: x = 0.DIGITS * 10**dp."""
    if x == 0:
        return "", 0
    if mode == "shortest":
        text = repr(x)
    elif mode == "e":
        text = format(x, f".{prec}e")
    else:
        text = format(x, f".{prec}f")
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    all_digits = whole + frac
    stripped = all_digits.lstrip("0")
    dp = len(whole) - (len(all_digits) - len(stripped)) + (int(exp) if exp else 0)
    digits = stripped.rstrip("0")
    return digits, (dp if digits else 0)


def _fmt_e(neg: bool, digits: str, dp: int, prec: int, letter: str) -> str:
    out = ["-" if neg else "", digits[0] if digits else "0"]
    if prec > 0:
        tail = digits[1:prec + 1]
        out.append("." + tail + "0" * (prec - len(tail)))
    exp = dp - 1 if digits else 0
    sign = "-" if exp < 0 else "+"
    out.append(f"{letter}{sign}{abs(exp):02d}")
    return "".join(out)


def _fmt_f(neg: bool, digits: str, dp: int, prec: int) -> str:
    if dp > 0:
        whole = digits[:dp] + "0" * max(dp - len(digits), 0)
    else:
        whole = "0"
    out = ("-" if neg else "") + whole
    if prec > 0:
        frac = "".join(digits[dp + i] if 0 <= dp + i < len(digits) else "0" for i in range(prec))
        out += "." + frac
    return out


def _fmt_b(neg: bool, mant: int, exp: int) -> str:
    exp -= 52
    return ("-" if neg else "") + f"{mant}p{'+' if exp >= 0 else ''}{exp}"


def _fmt_x(neg: bool, mant: int, exp: int, prec: int, letter: str) -> str:
    if mant == 0:
        exp = 0
    mant = (mant << 8) & _MASK64  # leading 1 (if any) at bit 60
    while mant != 0 and mant & (1 << 60) == 0:
        mant = (mant << 1) & _MASK64
        exp -= 1
    if 0 <= prec < 15:
        shift = prec * 4
        extra = (mant << shift) & ((1 << 60) - 1)
        mant >>= 60 - shift
        if extra | (mant & 1) > 1 << 59:
            mant += 1
        mant = (mant << (60 - shift)) & _MASK64
        if mant & (1 << 61):
            mant >>= 1
            exp += 1
    hexdigits = "0123456789ABCDEF" if letter == "X" else "0123456789abcdef"
    out = ["-" if neg else "", "0", letter, str((mant >> 60) & 1)]
    mant = (mant << 4) & _MASK64
    if prec < 0 and mant != 0:
        out.append(".")
        while mant != 0:
            out.append(hexdigits[(mant >> 60) & 15])
            mant = (mant << 4) & _MASK64
    elif prec > 0:
        out.append(".")
        for _ in range(prec):
            out.append(hexdigits[(mant >> 60) & 15])
            mant = (mant << 4) & _MASK64
    out.append("P" if letter == "X" else "p")
    out.append("-" if exp < 0 else "+")
    out.append(f"{abs(exp):02d}")
    return "".join(out)


def format_float(v: float, fmt: str, prec: int) -> str:
    """strconv.FormatFloat(v, fmt, prec, 64): '-' for negatives (and -0), '+Inf', '-Inf', 'NaN'."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    neg = math.copysign(1.0, v) < 0
    x = -v if neg else v
    if fmt in "bxX":
        bits = struct.unpack("<Q", struct.pack("<d", v))[0]
        exp = (bits >> 52) & 0x7FF
        mant = bits & ((1 << 52) - 1)
        if exp == 0:
            exp += 1
        else:
            mant |= 1 << 52
        exp -= 1023
        return _fmt_b(neg, mant, exp) if fmt == "b" else _fmt_x(neg, mant, exp, prec, fmt)
    shortest = prec < 0
    if shortest:
        digits, dp = _decimal(x, "shortest", 0)
        if fmt in "eE":
            prec = max(len(digits) - 1, 0)
        elif fmt == "f":
            prec = max(len(digits) - dp, 0)
        else:
            prec = len(digits)
    elif fmt in "eE":
        digits, dp = _decimal(x, "e", prec)
    elif fmt == "f":
        digits, dp = _decimal(x, "f", prec)
    else:
        if prec == 0:
            prec = 1
        digits, dp = _decimal(x, "e", prec - 1)
    if fmt in "eE":
        return _fmt_e(neg, digits, dp, prec, fmt)
    if fmt == "f":
        return _fmt_f(neg, digits, dp, prec)
    # 'g', 'G': %e for large and small exponents, else %f; trailing zeros are not printed.
    nd = len(digits)
    eprec = prec
    if eprec > nd and nd >= dp:
        eprec = nd
    if shortest:
        eprec = 6
    exp = dp - 1
    if exp < -4 or exp >= eprec:
        if prec > nd:
            prec = nd
        return _fmt_e(neg, digits, dp, prec - 1, "e" if fmt == "g" else "E")
    if prec > dp:
        prec = nd
    return _fmt_f(neg, digits, dp, max(prec - dp, 0))
