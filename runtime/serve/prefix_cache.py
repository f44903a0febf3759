"""The server's prompt cache: the state (and next logits) after a prompt's first ids, kept for
prompts and for every CHECKPOINT_EVERY ids along them, so a request that shares a prefix with an
earlier one primes only the rest; LRU, bounded in bytes.

    cache = PrefixCache(64 << 20)
    marks = cache.marks(ids)                  {position: digest}: every CHECKPOINT_EVERY ids and
                                              the prompt's end (blake2b-128 of ids[:position])
    hit = cache.lookup(ids, marks)            (position, logits [V], state [S]) of the longest
                                              cached prefix, or None (counted: hit or miss)
    cache.put(marks, pos, logits, state)      after priming reached `pos` (a mark)

A prompt's end is seldom a multiple of CHECKPOINT_EVERY; so that a prompt that extends an
earlier one (a chat's next turn) starts where that one ended, each cached end is also listed as
a "tail" of the checkpoint before it (at most MAX_TAILS per checkpoint): lookup checks the tails
of the longest cached checkpoint on the new prompt's path.

A char-RNN's whole context is its state vector (the demo's GRU 512: 2 KiB, and 260 bytes of
logits), so an entry costs state + logits + ENTRY_OVERHEAD bytes whatever the prefix's length:
64 MiB hold about 25,000 of the demo's. Keys are digests of the ids, never the ids themselves,
so a flood of long distinct prompts costs entries, not prompt text; the least recently used
entries leave first, and `bytes` never exceeds max_bytes.

Exactness: a cached state is used as if the prompt had been primed from scratch, which holds
when a row's step does not depend on the other rows of its batch (the file is batch-invariant:
files[].batch_invariant in the manifest). The engine turns the cache off for other files (and
for bundles from before that key): their primed states already differ in the last bits with
the prompts that prime beside them, and a cached one would be one more such variant.
Side channel: a hit is faster than priming (a 2,000-character prompt: ~1 ms warm vs ~110 ms
cold), so a client can tell whether another client sent a prompt with the same prefix (vLLM's
CVE-2025-46570). A request's optional cache_salt (vLLM's field) keys its digests: requests share
entries only with requests of the same salt (a tenant, a user). Serve untrusted clients that must
not learn each other's prompts with a salt per client, or with --prompt-cache-mb 0.
Only the engine's scheduler thread calls it; the figures are plain numbers, read anywhere.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

CHECKPOINT_EVERY = 256  # ids between two cached states along a long prompt
ENTRY_OVERHEAD = 400  # bytes per entry besides its arrays: key, tuple, array headers, LRU node
TAIL_BYTES = 120  # bytes per listed tail (digest, position, dict slot)
# bytes per checkpoint that lists tails: its OrderedDict (~400 bytes under tracemalloc with one
# tail; TAIL_BYTES counts each tail) and its slot in _tails
TAILS_BASE_BYTES = 400
MAX_TAILS = 16  # tails listed per checkpoint (the most recent)
DEFAULT_MB = 64  # --prompt-cache-mb
_ROOT = b""  # the base of tails shorter than one checkpoint (never an entry's digest)


class PrefixCache:
    def __init__(self, max_bytes: int, every: int = CHECKPOINT_EVERY):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes {max_bytes!r}: must be an integer >= 0")
        self.max_bytes, self.every = max_bytes, int(every)
        # digest -> (logits, state, base digest or None), least recently used first
        self._entries: OrderedDict[bytes, tuple] = OrderedDict()
        self._tails: dict[bytes, OrderedDict[bytes, int]] = {}  # base -> {digest: position}
        self.bytes = 0
        self.hits = 0  # prompts that started from a cached state
        self.misses = 0  # prompts primed from the start
        self.evictions = 0
        self.ids_reused = 0  # prompt ids not primed thanks to the cache

    def __len__(self) -> int:
        return len(self._entries)

    def marks(self, ids: np.ndarray, salt: str | None = None) -> dict[int, bytes]:
        """{position: digest of ids[:position]} for every multiple of `every` below len(ids)
        and for len(ids) itself. salt (a request's cache_salt): the digests are keyed with it,
        so only requests with the same salt share entries (and 0 maps to the salt's own root
        of short tails); None: unsalted."""
        key = _key(salt)
        positions = list(range(self.every, len(ids), self.every)) + [len(ids)]
        if key:
            positions = [0] + positions
        return _digests(np.ascontiguousarray(ids, np.int32), positions, key)

    def lookup(self, ids: np.ndarray, marks: dict[int, bytes], salt: str | None = None):
        """(position, logits, state) of the longest cached prefix of ids (arrays are the
        cache's own: do not change them), or None. Counts a hit or a miss; a hit becomes the
        most recent. marks and salt: as marks(ids, salt) made them."""
        best = next((p for p in sorted(marks, reverse=True) if marks[p] in self._entries), 0)
        if best < len(ids):  # an earlier prompt's end beyond the best checkpoint?
            base = marks[best] if best else marks.get(0, _ROOT)
            tails = self._tails.get(base)
            ends = sorted({p for p in tails.values() if best < p < len(ids)}) if tails else []
            if ends:
                data = np.ascontiguousarray(ids, np.int32)
                for p, d in sorted(_digests(data, ends, _key(salt)).items(), reverse=True):
                    if d in tails and d in self._entries:
                        best = p
                        marks = {p: d}
                        break
        if not best:
            self.misses += 1
            return None
        self._entries.move_to_end(marks[best])
        logits, state, _ = self._entries[marks[best]]
        self.hits += 1
        self.ids_reused += best
        return best, logits, state

    def put(self, marks: dict[int, bytes], pos: int, logits: np.ndarray,
            state: np.ndarray) -> None:
        """Keeps copies of logits [V] and state [S] after the first `pos` ids (a position in
        marks), evicting the least recently used entries to stay within max_bytes (an entry
        larger than the whole cache is not kept)."""
        digest = marks[pos]
        if digest in self._entries:
            self._entries.move_to_end(digest)
            return
        logits, state = np.array(logits, np.float32), np.array(state, np.float32)
        size = logits.nbytes + state.nbytes + ENTRY_OVERHEAD
        base = None if pos % self.every == 0 else (
            marks[pos - pos % self.every] if pos > self.every else marks.get(0, _ROOT))
        # room for a new tails dict of the base, whether or not it is new once others left
        room = size + (TAIL_BYTES + TAILS_BASE_BYTES if base is not None else 0)
        if room > self.max_bytes:
            return
        while self.bytes + room > self.max_bytes and self._entries:
            self._evict()
        self._entries[digest] = (logits, state, base)
        self.bytes += size
        if base is not None:
            self.bytes += TAIL_BYTES
            if base not in self._tails:
                self.bytes += TAILS_BASE_BYTES
            tails = self._tails.setdefault(base, OrderedDict())
            tails[digest] = pos
            if len(tails) > MAX_TAILS:  # the oldest tail is no longer listed (its entry stays)
                tails.popitem(last=False)
                self.bytes -= TAIL_BYTES

    def _evict(self) -> None:
        digest, (logits, state, base) = self._entries.popitem(last=False)
        self.bytes -= logits.nbytes + state.nbytes + ENTRY_OVERHEAD
        self.evictions += 1
        if base is not None:
            tails = self._tails.get(base)
            if tails is not None and tails.pop(digest, None) is not None:
                self.bytes -= TAIL_BYTES
                if not tails:
                    del self._tails[base]
                    self.bytes -= TAILS_BASE_BYTES
        gone = self._tails.pop(digest, None)  # it was a checkpoint: its tails are not listed
        if gone is not None:
            self.bytes -= TAIL_BYTES * len(gone) + TAILS_BASE_BYTES


def _key(salt: str | None) -> bytes:
    """The blake2b key of a cache_salt (b"": unsalted)."""
    if salt is None:
        return b""
    return hashlib.blake2b(salt.encode("utf-8", "surrogatepass"), person=b"cw-cache-salt").digest()


def _digests(data: np.ndarray, positions: list[int], key: bytes = b"") -> dict[int, bytes]:
    """{p: blake2b-128 of data[:p], keyed with `key`} for ascending positions (one pass)."""
    h = hashlib.blake2b(digest_size=16, key=key)
    out, done = {}, 0
    for p in positions:
        h.update(data[done:p].tobytes())
        done = p
        out[p] = h.copy().digest()
    return out
