"""Regex text -> a small syntax tree, for the supported subset of Python's `re` syntax.

Supported (the semantics are Python's `re.fullmatch` on str patterns, no flags):
  literals and escapes (\\. \\n \\t \\xhh \\uhhhh \\Uhhhhhhhh \\N{name} \\0), `.` (any character
  but '\\n'), classes `[a-z]` `[^...]`, `\\d \\w \\s \\D \\W \\S` (Unicode, as in Python's str
  patterns), groups `( )` `(?: )` `(?P<name> )`, alternation `|`, repeats `* + ? {m} {m,}
  {,n} {m,n}` (lazy forms too: the set of full matches is the same), `^` as the first and `$`
  as the last character of the pattern, any Unicode literal.
Refused with one line: backreferences, lookaround, atomic groups and possessive repeats,
inline flags, conditionals, `\\b \\B \\A \\Z`, anchors anywhere but the ends.

Character sets stay symbolic here (a literal character, or the text of a one-character
pattern such as `[a-z]` or `\\d`); compile.py evaluates them over a vocabulary with Python's own
`re`, so every class means exactly what it means to `re`.

    node := ("lit", ch) | ("set", text) | ("cat", [node]) | ("alt", [node])
          | ("rep", node, lo, hi or None) | ("empty",)
"""

from __future__ import annotations

import re
import unicodedata
import warnings

from charwright.runtime.errors import ConfigError

MAX_PATTERN_CHARS = 32_768
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_HEX = {"x": 2, "u": 4, "U": 8}


def refuse(pattern: str, why: str):
    raise ConfigError(f"regex {_show(pattern)}: {why}")


def _show(pattern: str) -> str:
    return repr(pattern if len(pattern) <= 60 else pattern[:57] + "...")


def parse(pattern) -> tuple:
    """The syntax tree of `pattern` (ConfigError naming what is wrong or unsupported)."""
    if not isinstance(pattern, str):
        raise ConfigError(f"regex {pattern!r}: must be a string")
    if len(pattern) > MAX_PATTERN_CHARS:
        refuse(pattern, f"{len(pattern):,} characters; at most {MAX_PATTERN_CHARS:,}")
    if any("\ud800" <= c <= "\udfff" for c in pattern):
        refuse(pattern, "holds a lone surrogate (not valid UTF-8 text)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError) as e:
        refuse(pattern, f"not a valid regular expression ({e})")
    # '^' first and '$' last change nothing under fullmatch: dropped ('\\$' is a literal)
    body = pattern[1:] if pattern.startswith("^") else pattern
    if body.endswith("$") and (len(body) - 1 - len(body[:-1].rstrip("\\"))) % 2 == 0:
        body = body[:-1]
    p = _Parser(pattern, body)
    try:
        node = p.alternation()
    except RecursionError:
        refuse(pattern, "nested too deeply")
    if p.i != len(body):  # an unbalanced ')' (re.compile refused those already)
        refuse(pattern, f"unexpected {body[p.i]!r} at {p.i}")
    return node


class _Parser:
    def __init__(self, pattern: str, body: str):
        self.pattern, self.s, self.i = pattern, body, 0

    def fail(self, why: str):
        refuse(self.pattern, why)

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def alternation(self) -> tuple:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def sequence(self) -> tuple:
        items = []
        while self.peek() not in ("", "|", ")"):
            items.append(self.quantified(self.atom()))
        if not items:
            return ("empty",)
        return items[0] if len(items) == 1 else ("cat", items)

    def quantified(self, node: tuple) -> tuple:
        while True:
            c = self.peek()
            if c in ("*", "+", "?"):
                self.i += 1
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            elif c == "{":
                bounds = self._braces()
                if bounds is None:
                    return node
                lo, hi = bounds
            else:
                return node
            if self.peek() == "?":  # lazy: the same full matches
                self.i += 1
            elif self.peek() == "+":
                self.fail("possessive repeats (*+, ++, ?+, {m,n}+) are not supported")
            node = ("rep", node, lo, hi)

    def _braces(self):
        """{m} {m,} {,n} {m,n} as (lo, hi); None when the '{' is a literal (as re reads it)."""
        # ASCII digits only: re reads `a{١}` as the literal text, not a count
        m = re.compile(r"\{([0-9]*)(,([0-9]*))?\}").match(self.s, self.i)
        if m is None or m.group(0) == "{}":
            return None
        self.i = m.end()
        lo = int(m.group(1)) if m.group(1) else 0
        if m.group(2) is None:
            return lo, lo
        return lo, (int(m.group(3)) if m.group(3) else None)

    def atom(self) -> tuple:
        c = self.peek()
        if c == "(":
            return self._group()
        if c == "[":
            return self._class()
        if c == ".":
            self.i += 1
            return ("set", ".")
        if c == "\\":
            return self._escape()
        if c in ("^", "$"):
            self.fail(f"the anchor {c!r} is supported only as the first ('^') or last ('$') "
                      "character of the pattern")
        self.i += 1
        return ("lit", c)

    def _group(self) -> tuple:
        s, i = self.s, self.i
        if s.startswith("(?", i):
            if s.startswith("(?:", i):
                self.i = i + 3
            elif s.startswith("(?P<", i):
                self.i = s.index(">", i) + 1
            elif s.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
                self.fail("lookaround ((?=, (?!, (?<=, (?<!) is not supported")
            elif s.startswith("(?P=", i):
                self.fail("backreferences are not supported")
            elif s.startswith("(?>", i):
                self.fail("atomic groups (?>...) are not supported")
            elif s.startswith("(?(", i):
                self.fail("conditional groups (?(...)) are not supported")
            else:
                self.fail("inline flags and other (?...) groups are not supported "
                          "(only (?:...) and (?P<name>...))")
        else:
            self.i = i + 1
        node = self.alternation()
        if self.peek() != ")":
            self.fail("missing ')'")
        self.i += 1
        return node

    def _class(self) -> tuple:
        s, j = self.s, self.i + 1
        if j < len(s) and s[j] == "^":
            j += 1
        if j < len(s) and s[j] == "]":
            j += 1
        while j < len(s) and s[j] != "]":
            j += 2 if s[j] == "\\" else 1
        if j >= len(s):
            self.fail("unterminated character class")
        text = s[self.i : j + 1]
        self.i = j + 1
        return ("set", text)

    def _escape(self) -> tuple:
        s, i = self.s, self.i
        if i + 1 >= len(s):
            self.fail("a trailing backslash")
        c = s[i + 1]
        if c in "dDsSwW":
            self.i = i + 2
            return ("set", s[i : i + 2])
        if c in "1234567" and len(s) >= i + 4 and all(d in "01234567" for d in s[i + 2 : i + 4]):
            self.i = i + 4  # three octal digits: a character (re refused those above \377)
            return ("lit", chr(int(s[i + 1 : i + 4], 8)))
        if c in "123456789":
            self.fail(f"backreferences (\\{c}) are not supported")
        if c in "bBAZ":
            self.fail(f"\\{c} (a boundary anchor) is not supported; '^' and '$' at the ends are")
        if c in _SIMPLE:
            self.i = i + 2
            return ("lit", _SIMPLE[c])
        if c in _HEX:
            n = _HEX[c]
            self.i = i + 2 + n
            return ("lit", chr(int(s[i + 2 : i + 2 + n], 16)))
        if c == "N":
            end = s.index("}", i)
            self.i = end + 1
            return ("lit", unicodedata.lookup(s[i + 3 : end]))
        if c == "0":
            m = re.compile(r"[0-7]{0,2}").match(s, i + 2)
            self.i = m.end()
            return ("lit", chr(int("0" + m.group(0), 8)))
        if c.isascii() and c.isalnum():
            self.fail(f"unknown escape \\{c}")
        self.i = i + 2
        return ("lit", c)
