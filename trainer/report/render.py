"""`charwright report`'s file: the figure as a PNG, or an HTML page around it, written atomically.

The figures plotted are also written into the file as data: a PNG carries them in a tEXt chunk
named "charwright:series" (JSON: {name: {"x": [...], "y": [...]}}), an HTML page in a
<script type="application/json" id="charwright-series"> element beside the embedded PNG and a
table, so tests and scripts read what was drawn instead of pixels. The JSON embedded in the
HTML page escapes <, > and & (Django's json_script rule), so no string in it can end the
<script> element or open a comment.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from charwright.runtime.errors import ConfigError
from charwright.runtime.files.atomic import atomic_path

from charwright.trainer.report.collect import collect
from charwright.trainer.report.figure import figure
from charwright.trainer.report.read import fmt

SERIES_KEY = "charwright:series"
FORMATS = (".png", ".html")


def render(source, out) -> dict:
    """Writes the report of a run or bundle to `out` (.png or .html); returns collect()'s dict.
    The file is written atomically."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"-o {out}: the report is a .png or an .html file")
    data = collect(source)
    fig = figure(data)
    series_json = json.dumps(data["series"], sort_keys=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={SERIES_KEY: series_json,
                                                      "Software": "charwright report"})
    png = buf.getvalue()
    if out.suffix.lower() == ".html":
        payload = _html(data, png, series_json).encode("utf-8")
    else:
        payload = png
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=out.suffix) as tmp:
        tmp.write_bytes(payload)
    return data


def json_script_text(text: str) -> str:
    """JSON text made safe inside <script>: <, > and & as \\u escapes (Django's json_script), so
    no string in it can close the element or start "<!--" (which, followed by "<script", makes
    the parser swallow the rest of the page); JSON readers decode it unchanged."""
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _html(data: dict, png: bytes, series_json: str) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['file'])}</td><td>{fmt(r.get('top1'), '.2%')}</td>"
        f"<td>{fmt(r.get('bpc'))}</td><td>{fmt(r.get('ref_bpc'))}</td>"
        f"<td>{html.escape(str(r.get('verdict', '')))}</td></tr>" for r in data["parity"])
    table = ("<table><tr><th>file</th><th>top-1</th><th>bits/char</th><th>reference</th>"
             f"<th>verdict</th></tr>{rows}</table>") if rows else ""
    facts = "".join(f"<li>{html.escape(f)}</li>" for f in data["facts"])
    safe_json = json_script_text(series_json)
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(data['title'])}</title>"
            f"<h1>{html.escape(data['title'])}</h1><ul>{facts}</ul>"
            f"<img alt='report' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
            f"{table}<script type='application/json' id='charwright-series'>{safe_json}"
            "</script>\n")
