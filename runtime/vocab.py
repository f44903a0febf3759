"""The character vocabulary: ids <-> characters, saved as JSON beside every model.

Ids 0..n-1 are the corpus's distinct characters in code-point order. A line-mode model adds one
end-of-sequence symbol with id n; it marks both the start and the end of a line and is never
decoded to text.

Policy for a character the training corpus did not hold: the vocabulary is closed. Encoding such
text raises VocabularyError listing each unknown character and its first position, unless the
caller asks to `skip` those characters or to `replace` them with one character that is in the
vocabulary. Nothing is mapped silently to an [UNK] id: the model has none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charwright.runtime.errors import ConfigError, VocabularyError

VOCAB_FORMAT = "charwright-vocab"
VOCAB_VERSION = 1
UNKNOWN_POLICIES = ("error", "skip", "replace")


@dataclass(frozen=True)
class Vocabulary:
    """A closed character vocabulary.

    Attributes:
        chars: the characters in id order (sorted by code point, each exactly one code point).
        eos: whether id len(chars) is an end-of-sequence symbol (line mode).
    """

    chars: tuple[str, ...]
    eos: bool = False

    def __post_init__(self):
        if not self.chars:
            raise ConfigError("a vocabulary needs at least one character")
        if any(not isinstance(c, str) or len(c) != 1 for c in self.chars):
            raise ConfigError("each vocabulary entry must be exactly one character")
        if any("\ud800" <= c <= "\udfff" for c in self.chars):
            raise ConfigError("a vocabulary entry is a lone surrogate (U+D800..U+DFFF), which "
                              "is not a character of any UTF-8 text")
        if list(self.chars) != sorted(set(self.chars)):
            raise ConfigError("vocabulary characters must be distinct and sorted by code point")
        object.__setattr__(
            self, "_codepoints", np.array([ord(c) for c in self.chars], dtype=np.uint32)
        )
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})

    # ---- construction and persistence -------------------------------------------------------

    @classmethod
    def from_text(cls, text: str, eos: bool = False) -> "Vocabulary":
        """The sorted distinct characters of `text` (without '\\n' in line mode, see below).

        In line mode the newline separates samples and is replaced by the EOS symbol, so it is
        not a character of the vocabulary.
        """
        chars = set(text)
        if eos:
            chars.discard("\n")
        return cls(tuple(sorted(chars)), eos=eos)

    def to_dict(self) -> dict:
        return {
            "format": VOCAB_FORMAT,
            "version": VOCAB_VERSION,
            "chars": list(self.chars),
            "eos": self.eos,
            "size": self.size,
            "unknown_policy": "closed: unknown characters raise unless skipped or replaced",
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "vocabulary") -> "Vocabulary":
        if not isinstance(d, dict) or d.get("format") != VOCAB_FORMAT:
            raise ConfigError(f"{source}: not a {VOCAB_FORMAT} document")
        if d.get("version") != VOCAB_VERSION or isinstance(d.get("version"), bool):
            raise ConfigError(f"{source}: unsupported vocabulary version {d.get('version')!r}")
        chars = d.get("chars")
        if not isinstance(chars, list) or not all(isinstance(c, str) for c in chars):
            raise ConfigError(f"{source}: 'chars' must be a list of strings")
        eos = d.get("eos", False)
        if not isinstance(eos, bool):  # "false" is a string, and bool("false") is True
            raise ConfigError(f"{source}: 'eos' must be true or false, not {eos!r}")
        return cls(tuple(chars), eos=eos)

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read vocabulary {path}: {e}") from None
        return cls.from_dict(d, str(path))

    # ---- sizes and special ids --------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of ids the model predicts over (characters, plus EOS in line mode)."""
        return len(self.chars) + (1 if self.eos else 0)

    @property
    def eos_id(self) -> int | None:
        return len(self.chars) if self.eos else None

    def __len__(self) -> int:
        return self.size

    def __contains__(self, ch: str) -> bool:
        return ch in self._index

    # ---- encoding ---------------------------------------------------------------------------

    def encode(
        self, text: str, unknown: str = "error", replacement: str | None = None
    ) -> np.ndarray:
        """Text -> int32 ids [len(text)] (fewer with unknown='skip').

        Vectorised: code points are looked up with one searchsorted over the sorted vocabulary,
        so a megabyte corpus encodes in milliseconds.

        Raises:
            VocabularyError: with unknown='error', listing every unknown character (first five
                with their positions).
        """
        if unknown not in UNKNOWN_POLICIES:
            raise ConfigError(f"unknown-character policy {unknown!r}: use one of {UNKNOWN_POLICIES}")
        if not text:
            return np.zeros(0, dtype=np.int32)
        # surrogatepass: text from argv with invalid UTF-8 carries lone surrogates (Python's
        # surrogateescape); they are characters no vocabulary holds, reported like any other
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        ids = np.searchsorted(self._codepoints, cps).astype(np.int64)
        np.clip(ids, 0, len(self.chars) - 1, out=ids)
        bad = self._codepoints[ids] != cps
        if self.eos:  # in line mode, '\n' is the sample separator: it encodes to EOS
            nl = cps == 10
            ids[nl] = self.eos_id
            bad &= ~nl
        if bad.any():
            if unknown == "error":
                pos = np.flatnonzero(bad)
                seen: dict[str, int] = {}
                for p in pos:
                    seen.setdefault(text[p], int(p))
                listed = ", ".join(f"{c!r} at {p}" for c, p in list(seen.items())[:5])
                more = f" and {len(seen) - 5} more" if len(seen) > 5 else ""
                raise VocabularyError(
                    f"{len(seen)} character(s) not in the model's vocabulary: {listed}{more}; "
                    "skip or replace them (--unknown skip|replace)"
                )
            if unknown == "skip":
                ids = ids[~bad]
            else:
                rep = self._replacement_id(replacement)
                ids[bad] = rep
        return ids.astype(np.int32)

    def _replacement_id(self, replacement: str | None) -> int:
        if replacement is None:
            replacement = " " if " " in self._index else self.chars[0]
        if replacement not in self._index:
            raise VocabularyError(
                f"replacement character {replacement!r} is not in the vocabulary either"
            )
        return self._index[replacement]

    def decode(self, ids) -> str:
        """Ids -> text. The EOS id decodes to nothing (it marks the end of a line sample)."""
        n = len(self.chars)
        return "".join(self.chars[i] for i in (int(x) for x in ids) if i < n)

    def char(self, i: int) -> str:
        """One id -> its character ('' for EOS). Cheap enough for the per-character loop."""
        return self.chars[i] if i < len(self.chars) else ""
