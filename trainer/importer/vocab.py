"""The vocabulary of an imported model: the file the user gives -> a charwright Vocabulary plus
the permutation from charwright ids to the model's ids.

Accepted files (the model's id i is the file's entry i):
    a JSON list of strings                ["\\n", " ", "!", ...]
    a text file, one entry per line       backslash escapes \\n \\r \\t \\\\ for the characters
                                          a line cannot hold; a line holds one character
    a StringLookup vocabulary             either of the above whose index 0 is "[UNK]" (the
                                          tutorial's ids_from_chars.get_vocabulary()), with the
                                          mask token "" before it when there is one

Reserved entries ("[UNK]", the mask token "") are dropped: charwright's vocabulary is closed
(runtime/vocab.py), so the runtime never feeds the OOV id, and the model's logit for it is
removed from the exported Dense layer, which is the same distribution as masking that logit to
-inf (the other ids' probabilities renormalised). A character outside the vocabulary is
handled by the runtime's policy (error, or --unknown skip|replace), never mapped to [UNK].
Charwright ids are the characters in code-point order, so the rest are permuted to that order.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charwright.runtime.errors import ConfigError
from charwright.runtime.vocab import Vocabulary

RESERVED = ("[UNK]", "")
MAX_VOCAB_FILE_BYTES = 16 << 20  # every Unicode code point, one per line, is ~4.4 MB
_ESCAPES = {"\\n": "\n", "\\r": "\r", "\\t": "\t", "\\\\": "\\"}


@dataclass(frozen=True)
class ImportedVocab:
    """vocab: charwright's vocabulary; model_ids: int [vocab.size], the model's id of each
    charwright id; entries: the model's vocabulary size (Dense units); reserved: {id: token}."""

    vocab: Vocabulary
    model_ids: np.ndarray
    entries: int
    reserved: dict
    source: str

    def describe(self) -> dict:
        oov = ("closed vocabulary: the runtime never feeds the model's OOV id; unknown "
               "characters raise (or are skipped/replaced with --unknown)")
        return {"source": self.source, "entries": self.entries,
                "reserved": [{"id": int(i), "token": t} for i, t in sorted(self.reserved.items())],
                "dropped_logits": sorted(int(i) for i in self.reserved),
                "oov": oov if self.reserved else "none: the vocabulary has no OOV id; " + oov}


def read_text_bounded(path: Path, max_bytes: int, what: str) -> str:
    """The UTF-8 text of a regular file of at most max_bytes bytes (never a FIFO or a device,
    which would block or never end); ConfigError naming `what` and the file otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ConfigError(f"{what} {path}: not a regular file (a directory, device, FIFO or "
                          "socket)")
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ConfigError(f"{what} {path}: more than {max_bytes >> 20} MiB; give a smaller file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"cannot read {what} {path}: not UTF-8 ({e})") from None


def read_entries(path: Path) -> tuple[list[str], str]:
    """The file's entries in model-id order and what kind of file it was."""
    text = read_text_bounded(Path(path), MAX_VOCAB_FILE_BYTES, "vocabulary")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            entries = json.loads(text)
        except (ValueError, RecursionError):
            entries = None
        if isinstance(entries, list):
            if not all(isinstance(e, str) for e in entries):
                raise ConfigError(f"{path}: a JSON vocabulary must be a list of strings")
            return entries, "json"
    if stripped.startswith("{"):
        raise ConfigError(f"{path}: a JSON vocabulary must be a list of characters, not an "
                          "object")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline ends the last line; it is not an entry
    return [_ESCAPES.get(line, line) for line in (ln.removesuffix("\r") if ln != "\r" else ln
                                                  for ln in lines)], "text"


def load_import_vocab(path: Path) -> ImportedVocab:
    entries, kind = read_entries(path)
    if not entries:
        raise ConfigError(f"{path}: the vocabulary is empty")
    reserved = {}
    for i, e in enumerate(entries[:2]):  # StringLookup: [mask ""], "[UNK]" first
        if e in RESERVED:
            reserved[i] = e
    for i, e in enumerate(entries):
        if i in reserved:
            continue
        if e in RESERVED:
            raise ConfigError(f"{path}: entry {i} is {e!r}; StringLookup puts its reserved "
                              "tokens first ('' then '[UNK]'), elsewhere it is not a character")
        if len(e) != 1:
            raise ConfigError(f"{path}: entry {i} ({e!r}) is not one character; a line "
                              "holds one character (or \\n, \\r, \\t, \\\\)")
    chars = [(e, i) for i, e in enumerate(entries) if i not in reserved]
    seen = {}
    for e, i in chars:
        if e in seen:
            raise ConfigError(f"{path}: {e!r} appears twice (ids {seen[e]} and {i})")
        seen[e] = i
    if len(chars) < 2:
        raise ConfigError(f"{path}: a vocabulary needs at least two characters")
    chars.sort(key=lambda t: ord(t[0]))
    vocab = Vocabulary(tuple(c for c, _ in chars))
    source = "stringlookup" if "[UNK]" in reserved.values() else kind
    return ImportedVocab(vocab, np.array([i for _, i in chars], np.int64), len(entries),
                         reserved, source)
