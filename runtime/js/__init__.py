"""Data only: the JavaScript half of `charwright emit-web` (charwright.js, its types, the demo
page, the npm test), copied verbatim into each emitted directory by runtime/emit_c/web.py."""
