"""The runtime's inspection subcommands: info, score, verify. Thin: parse, call, render.

Every command takes its bundle the way `generate` does: -b/--bundle, defaulting to the demo
bundle shipped with charwright; info and verify also take it as their one positional argument.
Ctrl-C exits with status 130 and no traceback or "Aborted!".
"""

from __future__ import annotations

import codecs
import functools
import json
import math
import os
import stat

import click

from charwright.runtime.backends import BACKENDS, BY_FORMAT, FORMAT_ALIASES
from charwright.runtime.errors import ConfigError, ParityError
from charwright.runtime.bundle.manifest import PRECISIONS

BACKEND_CHOICE = click.Choice([s.name for s in BACKENDS])
PRECISION_CHOICE = click.Choice(list(PRECISIONS))
BOM = "\ufeff"


def exit_130_on_interrupt(fn):
    """Ctrl-C ends the command with status 130 (128 + SIGINT), quietly."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None

    return wrapper


def bundle_option(fn):
    return click.option(
        "-b", "--bundle", "bundle_opt", type=click.Path(file_okay=False),
        help="Bundle directory (default: the demo model shipped with charwright).")(fn)


def resolve_bundle(positional, option):
    """The bundle directory from BUNDLE_DIR or -b (not both), else the demo bundle."""
    if positional is not None and option is not None and positional != option:
        raise click.UsageError(f"two bundles given ({positional} and -b {option}): give one")
    chosen = positional if positional is not None else option
    if chosen is None:
        from charwright.runtime.model import DEMO_BUNDLE

        return str(DEMO_BUNDLE)
    return chosen


@click.command("verify")
@click.argument("bundle_dir", required=False, type=click.Path(file_okay=False))
@bundle_option
@click.option("--format", "formats", multiple=True, type=click.Choice(sorted(FORMAT_ALIASES)),
              help="Check only files of this format (repeatable; tflite = litert, npz = numpy).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@exit_130_on_interrupt
def verify(bundle_dir, bundle_opt, formats, as_json, threads):
    """Replay the reference probe on every model file of BUNDLE_DIR (default: the demo bundle).

    Prints one row per file: max and mean |Δlogit|, top-1 agreement, KL(reference‖file),
    bits/char of the file vs the reference, the first step at which the file's greedy text
    differs from the reference's, and the verdict. A file whose runtime is not installed here
    (ai-edge-litert for .tflite) is "not checked", with one line on stderr naming the extra.
    Exits 1 if any checked file is outside its tolerance or damaged (size or sha256 mismatch),
    or if no file could be checked at all. Needs no TensorFlow.

    \b
    charwright verify BUNDLE
    charwright verify -b BUNDLE --format onnx --json
    """
    from charwright.runtime.bundle.reader import load_bundle
    from charwright.runtime.verify.check import check_files, not_checked
    from charwright.runtime.verify.parity import format_table, raise_for_failures

    root = resolve_bundle(bundle_dir, bundle_opt)
    bundle = load_bundle(root, verify=False)  # per-file checks happen in check_files
    wanted = {FORMAT_ALIASES[f] for f in formats}
    entries = [e for e in bundle.files if not wanted or e.format in wanted]
    if not entries:
        have = ", ".join(sorted({e.format for e in bundle.files}))
        raise ConfigError(f"{root}: no file of format {', '.join(sorted(wanted))} in this "
                          f"bundle (it has: {have}); drop --format or pick one of those")
    results = check_files(bundle, entries, threads=threads)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2, sort_keys=True,
                              allow_nan=False))
    else:
        click.echo(format_table(results))
    for fmt, files in not_checked(results, entries).items():
        spec = BY_FORMAT[fmt]
        click.echo(f"note: {len(files)} {fmt} file{'s' * (len(files) > 1)} not checked: "
                   f"{spec.runtime} is not installed; install it with: {spec.install_hint}",
                   err=True)
    golden = _check_golden(bundle, as_json)
    try:
        raise_for_failures(results)
    except ParityError as e:
        raise ParityError(f"{root}: {e}") from None
    if golden:
        raise ParityError(f"{root}: the sampling golden vectors fail: {'; '.join(golden)}")


def _check_golden(bundle, as_json: bool) -> list:
    """The bundle's sampling golden vectors replayed by the Python runtime: one line (stdout,
    or stderr beside --json); returns the failures."""
    from charwright.runtime.sampling.golden import check_golden, read_golden

    if bundle.manifest.get("golden") is None:
        return []
    doc = read_golden(bundle)
    fails = check_golden(doc, str(bundle.root / "golden.json"))
    n = len(doc["cases"]) + len(doc["rng"])
    click.echo(f"sampling golden vectors: {n - len(fails)} of {n} reproduced"
               + ("" if not fails else f" (FAIL: {fails[0]})"), err=as_json)
    return fails


def _finite(obj):
    """obj with every non-finite float replaced by None (valid JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _fmt(v, spec: str, default: str = "?") -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return format(v, spec)
    return default


@click.command("info")
@click.argument("bundle_dir", required=False, type=click.Path(file_okay=False))
@bundle_option
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@exit_130_on_interrupt
def info(bundle_dir, bundle_opt, as_json):
    """Show what BUNDLE_DIR (default: the demo bundle) holds: vocabulary, architecture, files,
    training, parity."""
    from charwright.runtime.bundle.reader import load_bundle

    b = load_bundle(resolve_bundle(bundle_dir, bundle_opt), verify=False)
    m = b.manifest
    if as_json:  # a manifest may hold NaN (older parity rows): JSON has no NaN, null it
        click.echo(json.dumps(_finite(m), indent=2, sort_keys=True, allow_nan=False))
        return
    a = m["architecture"]
    t = m.get("training") if isinstance(m.get("training"), dict) else {}
    parity = {p.get("file"): p for p in m.get("parity") or () if isinstance(p, dict)}
    chars = "".join(b.vocab.chars)
    click.echo(f"bundle      {b.root} ({m['format']} {m['format_version']})")
    click.echo(f"model       {a['cell'].upper()} {a['layers']}x{a['units']}, embedding "
               f"{a.get('embedding_dim') or 'one-hot'}, vocab {b.vocab.size}"
               + (" (with end-of-sequence)" if b.vocab.eos else ""))
    click.echo(f"state       float32 [batch, {b.state_size}]: "
               + ", ".join(f"{s['name']}[{s['size']}]" for s in m["state"]["layout"]))
    click.echo(f"vocabulary  {json.dumps(chars, ensure_ascii=False)}")
    if t:
        click.echo(f"training    {t.get('epochs')} epochs, {t.get('optimizer_steps')} steps, "
                   f"val {_fmt(t.get('best_val_bpc'), '.4f')} bits/char, on {t.get('device')}")
    click.echo("files")
    for f in b.files:
        p = parity.get(f.path)
        verdict = "" if p is None else (
            f"  top-1 {_fmt(p.get('top1'), '.2%', '-')}, bits/char "
            f"{_fmt(p.get('bpc'), '.4f', '-')}, {p.get('verdict', '?')}")
        click.echo(f"  {f.path:28s} {f.format:6s} {f.precision:12s} {f.bytes:>12,} bytes{verdict}")
    left_out = m.get("left_out") or []
    if left_out:
        click.echo("left out (outside their parity tolerance at export)")
    for d in left_out:
        click.echo(f"  {d['path']:28s} {d['format']:6s} {d['precision']:12s} {d['reason']}")


READ_CHUNK = 1 << 16  # bytes per read: score's memory is flat in the text's length


class _Progress:
    """runtime.progress.Progress in bytes read, for a text whose length may be unknown (a pipe,
    stdin, a device): then it shows how much was read and how fast."""

    def __init__(self, total: int | None):
        from charwright.runtime.commands.progress import Progress

        self.total = total
        self.p = Progress("score", "bytes")
        if total is None:
            self.p.line = self._open_line

    def _open_line(self, done: int, total) -> str:
        elapsed = max(self.p.clock() - self.p.start, 1e-9)
        return f"score: {done:,} bytes read ({done / elapsed:,.0f} bytes/s)"

    def update(self, done: int) -> None:
        self.p.update(done, self.total if self.total is not None else done)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.p.close()


def _open_text(text_file: str):
    """(binary stream, its size in bytes if it is a regular file else None, whether to close
    it). '-' is standard input."""
    if text_file == "-":
        return click.get_binary_stream("stdin"), None, False
    try:
        f = open(text_file, "rb")
    except OSError as e:
        raise ConfigError(f"{text_file}: cannot read ({e.strerror or e})") from None
    st = os.fstat(f.fileno())
    return f, (st.st_size if stat.S_ISREG(st.st_mode) else None), True


def read_text_pieces(stream, name: str, on_bytes=None):
    """The UTF-8 text of a binary stream, in pieces of at most READ_CHUNK bytes' worth (never
    the whole text: a pipe or /dev/zero has no end), one leading byte-order mark dropped.

    Raises ConfigError naming the byte offset of the first invalid UTF-8 sequence, or a read
    error. on_bytes(n) is called with the bytes read so far, after each piece is consumed."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    fed, first = 0, True
    while True:
        try:
            data = stream.read(READ_CHUNK)
        except OSError as e:
            raise ConfigError(f"{name}: cannot read ({e.strerror or e})") from None
        pending = len(decoder.getstate()[0])  # bytes of a character split across reads
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as e:
            raise ConfigError(f"{name}: invalid UTF-8 at byte offset {fed - pending + e.start}"
                              ) from None
        fed += len(data)
        if first and text:
            first = False
            text = text[1:] if text.startswith(BOM) else text
        if text:
            yield text
        if on_bytes is not None:
            on_bytes(fed)
        if not data:
            return


def encode_pieces(vocab, pieces, unknown: str):
    """Vocabulary.encode over each piece of text; an unknown character is reported at its
    offset in the whole text (as if it had been encoded at once)."""
    from charwright.runtime.errors import VocabularyError

    offset = 0
    for piece in pieces:
        try:
            yield vocab.encode(piece, unknown=unknown)
        except VocabularyError:
            if offset == 0:
                raise
            known = set(vocab.chars) | ({"\n"} if vocab.eos else set())
            seen: dict[str, int] = {}
            for i, c in enumerate(piece):  # the error path only: one piece, <= 64K characters
                if c not in known:
                    seen.setdefault(c, offset + i)
            listed = ", ".join(f"{c!r} at {p}" for c, p in list(seen.items())[:5])
            more = f" and {len(seen) - 5} more" if len(seen) > 5 else ""
            raise VocabularyError(
                f"{len(seen)} character(s) not in the model's vocabulary: {listed}{more}; "
                "skip or replace them (--unknown skip|replace)") from None
        offset += len(piece)


@click.command("score")
@click.argument("text_file", type=click.Path(dir_okay=False, allow_dash=True))
@bundle_option
@click.option("--backend", type=BACKEND_CHOICE, default="onnx", show_default=True)
@click.option("--precision", type=PRECISION_CHOICE, help="Model file precision (default: the "
              "fastest whose parity passed).")
@click.option("--unknown", type=click.Choice(["error", "skip", "replace"]), default="error",
              show_default=True, help="Characters outside the vocabulary.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@exit_130_on_interrupt
def score(text_file, bundle_opt, backend, precision, unknown, as_json):
    """Bits per character of TEXT_FILE (UTF-8; one leading byte-order mark is ignored, as
    `train` does) under the model in -b BUNDLE (default: the demo bundle). TEXT_FILE may be
    `-` (standard input) or a pipe: the text is read and scored in pieces, so memory stays
    flat however long it is.

    The first character is given; each following one is predicted from all before it, from a
    zero state. Progress goes to stderr (redrawn on a terminal, a line every 5 s otherwise).

    \b
    charwright score text.txt
    charwright score text.txt -b BUNDLE --backend litert --json
    cat *.txt | charwright score -
    """
    from charwright.runtime.model import load
    from charwright.runtime.verify.parity import log_likelihood_stream

    stream, size, close = _open_text(text_file)
    try:
        model = load(resolve_bundle(None, bundle_opt), backend=backend, precision=precision)
        with _Progress(size) as progress:
            pieces = read_text_pieces(stream, text_file, on_bytes=progress.update)
            logprob, n = log_likelihood_stream(
                model.backend, encode_pieces(model.vocab, pieces, unknown))
    finally:
        if close:
            stream.close()
    if n < 1:
        raise ConfigError(f"{text_file}: scoring needs a text of at least two characters")
    bpc = -logprob / n / math.log(2)
    if as_json:
        click.echo(json.dumps({"file": text_file, "bits_per_char": bpc, "logprob": logprob,
                               "chars": n, "model": model.entry.path}))
    else:
        click.echo(f"{bpc:.4f} bits/char over {n:,} characters ({model.entry.path})")
