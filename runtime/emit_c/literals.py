"""The only way a bundle's values reach generated C: checked literal writers and `Header`.

A bundle may come from anyone, and its integrator compiles what emit-c writes. So every value is
checked by type and range (ValueError otherwise) and then written by one of the writers below,
which can only produce C literals; each returns a `C` (text that is C by construction), and
`Header` takes nothing else.

    lit_int(v, lo, hi)     a decimal integer literal from an int in lo..hi
    lit_double(v)          a double literal from a finite real
    lit_string(s)          a string literal holding the UTF-8 of s byte for byte
    floats(a), ints(a)     float32 values as exact hex floats, integers, wrapped in lines
    ident(name)            one of the emitter's own names (CW_*, cw_*, NULL), never a bundle's
"""

from __future__ import annotations

import math
import re

import numpy as np

from charwright.runtime.bundle.manifest import show

INT32_MAX, INT63_MAX = 2**31 - 1, 2**63 - 1


class C(str):
    """Text that is C by construction: made only by the writers below from checked values."""


_IDENT = re.compile(r"CW_[A-Z0-9_]+|cw_[a-z0-9_]+|NULL")
_CTYPES = ("float", "signed char", "unsigned char", "int")


def ident(name: str) -> C:
    """One of the emitter's own names (never a bundle's)."""
    if not _IDENT.fullmatch(name):
        raise ValueError(f"emit-c: {name!r} is not a name the emitter makes")
    return C(name)


def lit_int(v, lo: int, hi: int, suffix: str = "") -> C:
    """A decimal integer literal from an int in lo..hi (suffix "" or "u")."""
    if isinstance(v, np.integer):
        v = int(v)
    if type(v) is not int or not lo <= v <= hi or suffix not in ("", "u"):
        raise ValueError(f"emit-c: {show(v)} is not an integer in {lo}..{hi}")
    return C(f"{v}{suffix}")


def lit_size(v) -> C:
    """A non-negative count that fits a C int (sizes, units, ids)."""
    return lit_int(v, 1, INT32_MAX)


def lit_double(v) -> C:
    """A double literal from a finite real: repr of a finite float is a C literal."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"emit-c: {show(v)} is not a finite number")
    return C(repr(float(v)))


def lit_string(s: str) -> C:
    """A string literal holding the UTF-8 of s byte for byte: printable ASCII as is except
    " \\ and ? (trigraphs), every other byte as a 3-digit octal escape, so no quote, backslash,
    newline, NUL, comment or trigraph can end the literal or change what it holds."""
    if not isinstance(s, str):
        raise ValueError(f"emit-c: {show(s)} is not a string")
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        out.append(c if 32 <= b < 127 and c not in '"\\?' else f"\\{b:03o}")
    return C('"' + "".join(out) + '"')


def floats(a) -> C:
    """float32 values as hex-float literals (exact), INFINITY / NAN for the rest."""
    a = np.asarray(a, np.float32).ravel().astype(np.float64)
    parts = []
    for v in a.tolist():
        if v != v or v in (float("inf"), float("-inf")):
            parts.append("(-INFINITY)" if v < 0 else "INFINITY" if v > 0 else "NAN")
        else:
            parts.append(v.hex() + "f")
    return wrap(parts)


def ints(a) -> C:
    a = np.asarray(a)
    if a.size and a.dtype.kind not in "iu":
        raise ValueError("emit-c: integer array expected")
    return wrap([str(int(v)) for v in a.ravel().tolist()])


def wrap(parts: list[str], width: int = 100) -> C:
    lines, line = [], ""
    for p in parts:
        if len(line) + len(p) + 2 > width:
            lines.append(line)
            line = ""
        line += p + ", "
    lines.append(line)
    return C("\n    ".join(lines))


def join(parts, sep: str = ", ") -> C:
    """Literals and names joined (an initializer's fields, a table's rows)."""
    if sep not in (", ", ",\n    ") or not all(isinstance(p, C) for p in parts):
        raise ValueError("emit-c: only literals and names join")
    return C(sep.join(parts))


def struct(fields) -> C:
    """`{a, b, c}`: one row of a table of structs."""
    return C("{" + join(fields) + "}")


class Header:
    """A generated header: #define NAME literal, static const arrays of literals, and fixed text
    written by the emitter itself; anything else is refused."""

    def __init__(self):
        self.lines: list[str] = []

    def fixed(self, line: str):  # the emitter's own text: no value may reach it
        self.lines.append(line)

    def define(self, name: str, value: C):
        if not isinstance(value, C):
            raise ValueError(f"emit-c: {name}: not a literal")
        self.lines.append(f"#define {ident(name)} {value}")

    def table(self, declaration: str, data: C):
        """`declaration = { data };`: the declaration is the emitter's own text."""
        if not isinstance(data, C):
            raise ValueError(f"emit-c: {declaration}: not literals")
        self.lines.append(f"{declaration} = {{\n    {data}\n}};")

    def array(self, ctype: str, name: str, data: C, n: int):
        if ctype not in _CTYPES or not isinstance(data, C):
            raise ValueError(f"emit-c: {name}: not an array of literals")
        size = lit_int(max(n, 1), 1, 1 << 40)
        self.lines.append(f"static const {ctype} {ident(name)}[{size}] = {{\n    {data}\n}};")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
