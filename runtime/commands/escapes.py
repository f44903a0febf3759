"""The escapes `--stop` strings take, as llama.cpp takes them in such options: the shell passes
`--stop "\\n\\n"` as backslash, n, backslash, n; unescape() makes it the two newlines meant.

    unescape("\\n\\n") == "\n\n"      ConfigError for an unknown or short escape
"""

from __future__ import annotations

from charwright.runtime.errors import ConfigError

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
_HEX = {"x": 2, "u": 4}


def _shown(text: str) -> str:
    """text for a one-line message: characters that do not print as themselves escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def unescape(text: str, option: str = "--stop") -> str:
    """`text` with its escapes processed, as llama.cpp processes them in such options: \\n, \\t,
    \\r, \\\\, \\", \\', \\xNN (the character U+00NN) and \\uNNNN (one character). The shell
    passes `--stop "\\n\\n"` as backslash, n, backslash, n: this makes it the two newlines meant.

    Raises ConfigError naming the option, the escape and where it is for an unknown or short
    escape (a stray backslash would make a stop string that silently never matches)."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        j = text.find("\\", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        esc = text[j + 1:j + 2]
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i = j + 2
            continue
        if esc not in _HEX:
            what = "a lone \\ at the end" if not esc else f"unknown escape \\{_shown(esc)}"
            raise ConfigError(f"{option} {_shown(text)}: {what} (at character {j}); escapes are "
                              "\\n \\t \\r \\\\ \\\" \\' \\xNN \\uNNNN: write \\\\ for a backslash, or "
                              "pass --no-escape")
        n = _HEX[esc]
        digits = text[j + 2:j + 2 + n]
        if len(digits) != n or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise ConfigError(f"{option} {_shown(text)}: \\{esc} takes {n} hex digits, not "
                              f"{_shown(digits) or 'none'!r} (at character {j}); or pass "
                              "--no-escape")
        code = int(digits, 16)
        if 0xD800 <= code <= 0xDFFF:
            raise ConfigError(f"{option} {_shown(text)}: \\u{digits} is a UTF-16 surrogate, "
                              f"not a character (at character {j})")
        out.append(chr(code))
        i = j + 2 + n
    return "".join(out)
