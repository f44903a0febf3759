"""`charwright emit-web`: parse, call emit_c.web.emit_web, render (what it wrote on stderr)."""

from __future__ import annotations

import click

from charwright.runtime.emit_c.project import PRECISIONS


@click.command("emit-web")
@click.argument("bundle_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(),
              help="Directory for the web package (new or empty; see --force).")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default="float32",
              show_default=True, help="Weights in charwright.wasm: float32, or int8 with one "
              "scale per output row.")
@click.option("--force", is_flag=True,
              help="Replace DIR if it holds only what emit-web wrote before.")
@click.option("--no-simd", "no_simd", is_flag=True, help="Scalar kernels, for engines "
              "without WebAssembly SIMD128 (the text is the same).")
def emit_web(bundle_dir, out_dir, precision, force, no_simd):
    """Emit BUNDLE_DIR's C runtime as WebAssembly + an ES module into DIR: charwright.wasm,
    charwright.js (load, generate), its types, package.json, a demo page (index.html) and
    `npm test`. Needs clang, lld and wasi-libc.

    \b
    charwright emit-web BUNDLE -o DIR
    npm test --prefix DIR
    python -m http.server -d DIR     # then open http://127.0.0.1:8000/
    """
    from charwright.runtime.emit_c.web import emit_web as emit

    res = emit(bundle_dir, out_dir, precision, force, simd=not no_simd)
    if res["quantization_error"]:
        worst = max(res["quantization_error"].items(), key=lambda kv: kv[1])
        click.echo(f"int8: max |weight error| {worst[1]:.3g} (in {worst[0]})", err=True)
    click.echo(f"wrote {out_dir}: {', '.join(res['files'])} (charwright.wasm: "
               f"{res['wasm_bytes']:,} bytes); test with: npm test --prefix {out_dir}", err=True)
