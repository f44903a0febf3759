// charwright.js: a charwright bundle's C runtime, compiled to WebAssembly, in Node and browsers.
//
//   import { load } from './charwright.js';
//   const m = await load(dir);     // Node: a directory path; browser: a URL or File objects
//   for await (const piece of m.generate('ROMEO:', { seed: '7', topP: 0.9, maxChars: 200 }))
//     process.stdout.write(piece);
//
// The directory is what `charwright emit-web BUNDLE -o DIR` writes: charwright.wasm (runtime.c,
// the step and the sampler, with the bundle's weights) and model.json (its name, sha256 and
// sampling defaults). The text for a seed is the text of `charwright generate --backend numpy`
// (float32) and of the emitted C program: the sampling is runtime/c/SAMPLING.md's, done in the
// same C. Seeds are 0..2**63-1, given as decimal strings or BigInt (exact; a Number only up to
// 2**53 - 1). Bad options throw TypeError / RangeError synchronously from generate(); a bad
// bundle rejects load() with a CharwrightError.
//
// One module instance serves any number of generations, also interleaved: each one's state
// (recurrent state, logits, sampler settings, coins and repetition window) is saved and
// restored around the others' steps. Work runs on the calling thread in slices of about 10 ms,
// between which the event loop runs (a page stays responsive; a Worker is not needed for small
// models). A piece is the text made within about 1 ms (the first character alone): one await
// per character would cost more than a small model's step.

const ABI = 2;
const FORMAT = 'charwright-web';
const SEED_MAX = (1n << 63n) - 1n;
const MAX_JSON_BYTES = 1 << 20;
const MAX_VOCAB = 0x110000 + 1; // every Unicode code point and the end-of-sequence id
const MAX_STOPS = 256;
const MAX_STOP_CHARS = 10000;
const SLICE_MS = 10; // work between two turns of the event loop
const PIECE_MS = 1; // characters made within this long leave as one piece (the first at once)
const UNKNOWN = ['error', 'skip', 'replace'];
const KNOBS = ['temperature', 'topK', 'topP', 'minP', 'typicalP', 'repetitionPenalty',
  'repetitionWindow'];
const OPTIONS = [...KNOBS, 'greedy', 'seed', 'stop', 'maxChars', 'unknown'];
const SAMPLER_OPTIONS = [...KNOBS, 'greedy', 'seed', 'row', 'history'];

/** A bundle directory that is not a charwright-web build, or is damaged. */
export class CharwrightError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CharwrightError';
  }
}

const IN_NODE = typeof process === 'object' && process !== null && !!process.versions?.node &&
  typeof window === 'undefined';
const now = () => globalThis.performance.now();
// Node 18 has Web Crypto only as node:crypto's webcrypto (global from Node 19)
const webcrypto = globalThis.crypto ?? (IN_NODE ? (await import('node:crypto')).webcrypto : undefined);

// A macrotask (not a microtask): lets a page repaint and other work run between slices.
const macrotask = typeof setImmediate === 'function'
  ? () => new Promise((resolve) => setImmediate(resolve))
  : (() => {
      if (typeof MessageChannel !== 'function') return () => new Promise((r) => setTimeout(r, 0));
      const ch = new MessageChannel();
      const waiting = [];
      ch.port1.onmessage = () => waiting.shift()();
      return () => new Promise((resolve) => { waiting.push(resolve); ch.port2.postMessage(0); });
    })();

// ---- reading the emitted directory --------------------------------------------------------

function isFileLike(f) {
  return f !== null && typeof f === 'object' && typeof f.name === 'string' &&
    typeof f.arrayBuffer === 'function';
}

async function readFromFiles(files) {
  const byName = new Map();
  for (const f of files) {
    if (!isFileLike(f)) {
      throw new TypeError('load(files): every entry must be a File (a name and arrayBuffer())');
    }
    byName.set(f.name.split('/').pop(), f);
  }
  const get = async (name, limit) => {
    const f = byName.get(name);
    if (!f) throw new CharwrightError(`load(files): no ${name} among the files given`);
    if (typeof f.size === 'number' && f.size > limit) {
      throw new CharwrightError(`${name} is ${f.size} bytes, more than ${limit}`);
    }
    return new Uint8Array(await f.arrayBuffer());
  };
  return { wasm: await get('charwright.wasm', 2 ** 31), json: await get('model.json', MAX_JSON_BYTES) };
}

async function readFromNode(dir) {
  const fs = await import('node:fs/promises');
  const path = await import('node:path');
  const read = async (name, limit) => {
    const p = path.join(dir, name);
    let st;
    try {
      st = await fs.stat(p);
    } catch (e) {
      throw new CharwrightError(`${p}: ${e.code === 'ENOENT' ? 'no such file (not a directory ' +
        'written by charwright emit-web?)' : e.message}`);
    }
    if (!st.isFile()) throw new CharwrightError(`${p} is not a file`);
    if (st.size > limit) throw new CharwrightError(`${p} is ${st.size} bytes, more than ${limit}`);
    return new Uint8Array(await fs.readFile(p));
  };
  return { wasm: await read('charwright.wasm', 2 ** 31), json: await read('model.json', MAX_JSON_BYTES) };
}

async function readFromUrl(base) {
  const dir = new URL(base.href.endsWith('/') ? base.href : base.href + '/');
  const get = async (name, limit) => {
    const url = new URL(name, dir);
    let r;
    try {
      r = await fetch(url);
    } catch (e) {
      throw new CharwrightError(`${url}: ${e.message}`);
    }
    if (!r.ok) throw new CharwrightError(`${url}: HTTP ${r.status}`);
    const tooBig = (n) => new CharwrightError(`${url} is ${n} bytes, more than ${limit}`);
    const declared = Number(r.headers?.get?.('content-length') ?? NaN);
    if (declared > limit) {
      r.body?.cancel?.().catch(() => {});
      throw tooBig(declared);
    }
    if (!r.body || typeof r.body.getReader !== 'function') {
      const data = new Uint8Array(await r.arrayBuffer());
      if (data.length > limit) throw tooBig(data.length);
      return data;
    }
    const reader = r.body.getReader(); // stop reading once past the limit
    const parts = [];
    let total = 0;
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw new CharwrightError(`${url}: ${e.message}`);
      }
      if (chunk.done) break;
      total += chunk.value.length;
      if (total > limit) {
        reader.cancel().catch(() => {});
        throw new CharwrightError(`${url} is more than ${limit} bytes`);
      }
      parts.push(chunk.value);
    }
    const data = new Uint8Array(total);
    let at = 0;
    for (const part of parts) {
      data.set(part, at);
      at += part.length;
    }
    return data;
  };
  return { wasm: await get('charwright.wasm', 2 ** 31), json: await get('model.json', MAX_JSON_BYTES) };
}

async function readBundle(bundle) {
  const typeError = () => new TypeError('load(bundle): bundle must be a directory path (Node), ' +
    'a URL, or an array of File objects (charwright.wasm and model.json)');
  if (Array.isArray(bundle) || (typeof FileList === 'function' && bundle instanceof FileList)) {
    return readFromFiles(Array.from(bundle));
  }
  if (bundle instanceof URL) {
    if (IN_NODE && bundle.protocol === 'file:') {
      const { fileURLToPath } = await import('node:url');
      return readFromNode(fileURLToPath(bundle));
    }
    return readFromUrl(bundle);
  }
  if (typeof bundle !== 'string' || bundle === '') throw typeError();
  if (IN_NODE && /^file:/i.test(bundle)) {
    const { fileURLToPath } = await import('node:url');
    let dir;
    try {
      dir = fileURLToPath(bundle);
    } catch (e) {
      throw new CharwrightError(`${bundle}: ${e.message}`);
    }
    return readFromNode(dir);
  }
  if (IN_NODE && !/^[a-z][a-z0-9+.-]*:\/\//i.test(bundle)) return readFromNode(bundle);
  const base = globalThis.location?.href;
  let url;
  try {
    url = base ? new URL(bundle, base) : new URL(bundle);
  } catch {
    throw typeError();
  }
  return readFromUrl(url);
}

// ---- options --------------------------------------------------------------------------------

const show = (v) => (typeof v === 'bigint' ? `${v}n` : typeof v === 'string' ? JSON.stringify(v)
  : typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined ? String(v)
    : Object.prototype.toString.call(v));

function number(where, key, v, ok, range) {
  if (typeof v !== 'number') throw new TypeError(`${where}: ${key} must be a number, got ${show(v)}`);
  if (!Number.isFinite(v) || !ok(v)) throw new RangeError(`${where}: ${key} must be ${range}, got ${show(v)}`);
  return v;
}

function integer(where, key, v, lo, hi) {
  if (typeof v !== 'number') throw new TypeError(`${where}: ${key} must be an integer, got ${show(v)}`);
  if (!Number.isInteger(v) || v < lo || v > hi) {
    throw new RangeError(`${where}: ${key} must be an integer in ${lo}..${hi}, got ${show(v)}`);
  }
  return v;
}

// Each sampling knob: its check; null (or absent) means its neutral value.
const CHECKS = {
  temperature: (w, v) => number(w, 'temperature', v, (t) => t === 0 || (t >= 1e-4 && t <= 1000),
    '0 (greedy) or between 0.0001 and 1000'),
  topK: (w, v) => integer(w, 'topK', v, 1, Number.MAX_SAFE_INTEGER),
  topP: (w, v) => number(w, 'topP', v, (p) => p > 0 && p <= 1, 'in (0, 1]'),
  minP: (w, v) => number(w, 'minP', v, (p) => p >= 0 && p < 1, 'in [0, 1)'),
  typicalP: (w, v) => number(w, 'typicalP', v, (p) => p > 0 && p <= 1, 'in (0, 1]'),
  repetitionPenalty: (w, v) => number(w, 'repetitionPenalty', v, (r) => r >= 0.01 && r <= 100,
    'between 0.01 and 100'),
  repetitionWindow: (w, v) => integer(w, 'repetitionWindow', v, 1, 65536),
};

/** A seed as a BigInt in 0..2**63-1: a decimal string, a BigInt, or a Number up to 2**53-1. */
export function parseSeed(v, where = 'seed') {
  let s;
  if (typeof v === 'bigint') {
    s = v;
  } else if (typeof v === 'string') {
    if (!/^[0-9]{1,19}$/.test(v)) {
      throw new RangeError(`${where}: a seed string must be decimal digits (0..2**63-1), got ${show(v)}`);
    }
    s = BigInt(v);
  } else if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new RangeError(`${where}: a seed Number must be an integer in 0..2**53-1 (give ` +
        `larger seeds as a string or BigInt), got ${show(v)}`);
    }
    s = BigInt(v);
  } else {
    throw new TypeError(`${where}: a seed must be a decimal string, a BigInt or a Number, got ${show(v)}`);
  }
  if (s < 0n || s > SEED_MAX) throw new RangeError(`${where}: a seed must be in 0..2**63-1, got ${s}`);
  return s;
}

function randomSeed() {
  const u = new BigUint64Array(1);
  webcrypto.getRandomValues(u);
  return u[0] & SEED_MAX;
}

function checkKeys(where, options, allowed) {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${where}: options must be an object, got ${show(options)}`);
  }
  const own = Object.create(null); // own properties only: an inherited option is never read
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      throw new TypeError(`${where}: unknown option ${JSON.stringify(key)} (options: ${allowed.join(', ')})`);
    }
    own[key] = options[key];
  }
  return own;
}

// ---- text out: end-of-sequence, stop strings, length (SAMPLING.md section 5) ----------------

function failure(s) { // KMP: f[i] = the longest proper prefix of s[..i] that is also its suffix
  const f = new Array(s.length).fill(0);
  for (let i = 1, k = 0; i < s.length; i++) {
    while (k && s[i] !== s[k]) k = f[k - 1];
    if (s[i] === s[k]) k++;
    f[i] = k;
  }
  return f;
}

class TextStream {
  constructor(chars, eosId, maxChars, stops) {
    this.chars = chars;
    this.eosId = eosId;
    this.maxChars = maxChars;
    this.stops = stops; // arrays of characters (code points)
    this.fail = stops.map(failure);
    this.state = stops.map(() => 0);
    this.pending = [];
    this.count = 0;
    this.finishReason = null;
  }

  // One stop string's worth of matching for one character; returns the text safe to emit.
  feed(ch) {
    const p = this.pending;
    p.push(ch);
    let hold = 0;
    let match = 0;
    for (let j = 0; j < this.stops.length; j++) {
      const s = this.stops[j];
      const f = this.fail[j];
      let k = this.state[j];
      while (k && s[k] !== ch) k = f[k - 1];
      if (s[k] === ch) k++;
      if (k === s.length) match = Math.max(match, k);
      this.state[j] = k;
      hold = Math.max(hold, k);
    }
    if (match) {
      this.finishReason = 'stop';
      this.pending = [];
      return p.slice(0, p.length - match).join('');
    }
    this.pending = hold ? p.slice(p.length - hold) : [];
    return (hold ? p.slice(0, p.length - hold) : p).join('');
  }

  push(id) {
    this.count++;
    let out;
    if (id === this.eosId) {
      this.finishReason = 'eos';
      out = this.pending.join('');
      this.pending = [];
      return out;
    }
    out = this.stops.length ? this.feed(this.chars[id]) : this.chars[id];
    if (!this.finishReason && this.count >= this.maxChars) {
      out += this.pending.join('');
      this.pending = [];
      this.finishReason = 'length';
    }
    return out;
  }
}

// ---- the model ----------------------------------------------------------------------------

function checkMeta(meta, x, vocabSize) {
  const bad = (what) => new CharwrightError(`model.json: ${what}; the directory is damaged or ` +
    'was not written by charwright emit-web');
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw bad('not a JSON object');
  if (meta.format !== FORMAT || meta.version !== 1) throw bad(`not a ${FORMAT} document of version 1`);
  if (typeof meta.name !== 'string' || meta.name.length > 1000) throw bad('name must be a string');
  if (!['float32', 'int8'].includes(meta.precision)) throw bad('precision must be float32 or int8');
  if (meta.vocabSize !== vocabSize) throw bad(`vocabSize ${show(meta.vocabSize)} is not charwright.wasm's ${vocabSize}`);
  if (meta.int8 !== undefined && meta.int8 !== (x.cw_web_int8() === 1)) throw bad('int8 differs from charwright.wasm');
  const d = meta.defaults;
  if (d === null || typeof d !== 'object' || Array.isArray(d)) throw bad('defaults must be an object');
  const defaults = {};
  for (const [k, v] of Object.entries(d)) {
    if (!KNOBS.includes(k)) throw bad(`defaults: unknown key ${JSON.stringify(k)}`);
    if (v === null) continue;
    try {
      defaults[k] = CHECKS[k]('model.json defaults', v);
    } catch (e) {
      throw bad(e.message);
    }
  }
  return defaults;
}

class Model {
  #x;
  #active = null; // the session whose state is in the module's memory
  #freeOwner = null;
  #chars;
  #index = new Map();
  #eosId;
  #defaults;
  #features;
  #meta;

  constructor(instance, meta) {
    const x = instance.exports;
    this.#x = x;
    const need = ['memory', 'cw_web_abi', 'cw_web_vocab_size', 'cw_web_eos_id', 'cw_web_vocab_ptr',
      'cw_web_vocab_len', 'cw_web_regions', 'cw_web_reset', 'cw_web_step', 'cw_web_sampler_init',
      'cw_web_sample', 'cw_web_input', 'cw_web_pick', 'cw_web_max_v', 'cw_web_bundle_sha256',
      'cw_web_ids', 'cw_web_max_window', 'cw_web_rng_u64'];
    const missing = need.filter((n) => !(n in x));
    if (missing.length) throw new CharwrightError(`charwright.wasm lacks ${missing.join(', ')}: not a charwright-web module`);
    if (typeof x._initialize === 'function') x._initialize();
    if (x.cw_web_abi() !== ABI) {
      throw new CharwrightError(`charwright.wasm has ABI ${x.cw_web_abi()}, this charwright.js reads ${ABI}: emit the directory again`);
    }
    const V = x.cw_web_vocab_size();
    // every entry has at least a length, a byte and a logit in memory: a bigger V is a damaged
    // (or hostile) module, refused before anything is allocated for it
    if (!Number.isInteger(V) || V < 1 || V > MAX_VOCAB || V * 8 > x.memory.buffer.byteLength) {
      throw new CharwrightError(`charwright.wasm: vocabulary size ${show(V)} does not fit its memory: ` +
        'damaged or not written by charwright emit-web');
    }
    this.#defaults = checkMeta(meta, x, V);
    const sha = this.#utf8(x.cw_web_bundle_sha256(), 64);
    if (meta.sha256 !== sha) throw new CharwrightError('model.json: sha256 differs from charwright.wasm\'s bundle');
    const eos = x.cw_web_eos_id();
    this.#eosId = eos >= 0 ? eos : -1;
    const chars = [];
    const dec = new TextDecoder('utf-8', { fatal: true });
    for (let i = 0; i < V; i++) {
      const ptr = x.cw_web_vocab_ptr(i);
      if (i === this.#eosId) {
        chars.push(null);
        continue;
      }
      const ch = dec.decode(this.#bytes(ptr, x.cw_web_vocab_len(i)));
      if ([...ch].length !== 1) throw new CharwrightError(`charwright.wasm: vocabulary entry ${i} is not one character`);
      chars.push(ch);
      this.#index.set(ch, i);
    }
    this.#chars = Object.freeze(chars);
    this.#features = typeof x.cw_web_features === 'function' ? x.cw_web_features() : 0;
    let kernel = 'scalar';
    if (typeof x.cw_web_kernel === 'function') {
      const p = x.cw_web_kernel();
      const b = this.#bytes(p, Math.min(64, Math.max(0, x.memory.buffer.byteLength - p)));
      kernel = new TextDecoder().decode(b.subarray(0, Math.max(0, b.indexOf(0))));
    }
    this.#meta = Object.freeze({ name: meta.name, precision: meta.precision, sha256: sha, kernel });
  }

  #bytes(ptr, n) {
    const size = this.#x.memory.buffer.byteLength;
    if (!Number.isInteger(ptr) || !Number.isInteger(n) || ptr < 0 || n < 0 || ptr + n > size) {
      throw new CharwrightError(`charwright.wasm: ${n} bytes at ${ptr} lie outside its memory ` +
        `(${size} bytes): damaged or not written by charwright emit-web`);
    }
    return new Uint8Array(this.#x.memory.buffer, ptr, n);
  }

  #utf8(ptr, n) { return new TextDecoder().decode(this.#bytes(ptr, n)); }

  // What a generation (which 0) or a free sampler (1) keeps in the module: [ptr, bytes] pairs.
  #regions(which) {
    const p = this.#x.cw_web_regions(which);
    const v = new Int32Array(this.#x.memory.buffer, p, 1 + 2 * 8);
    const out = [];
    for (let i = 0; i < v[0]; i++) out.push([v[1 + 2 * i], v[2 + 2 * i]]);
    return out;
  }

  /** The k-th raw draw (k = 0, 1, ...) of the coin stream of (seed, row), a BigInt: SAMPLING.md
   * section 1 (golden.json's rng streams check it). */
  rng(seed, row, k) {
    const s = parseSeed(seed, 'rng: seed');
    const r = parseSeed(row, 'rng: row');
    return BigInt.asUintN(64, this.#x.cw_web_rng_u64(s, r, BigInt(integer('rng', 'k', k, 0, 2 ** 32))));
  }

  /** The bundle's name, precision and manifest sha256, and the build's matrix-vector kernels
   * ('WASM SIMD128' or 'scalar'). */
  get info() { return this.#meta; }

  /** Id -> character; null at the end-of-sequence id (line-mode models). */
  get vocab() { return this.#chars; }

  /** The bundle's sampling defaults (what generate uses for options not given). */
  get defaults() { return { temperature: 0.8, ...this.#defaults }; }

  /** A prompt's ids, as SAMPLING.md section 4 says (line mode: EOS first, '\n' as EOS; an empty
   * prompt: '\n'). unknown: 'error' (a RangeError listing them), 'skip' or 'replace' (by ' ',
   * else the first character). */
  encode(prompt, unknown = 'error') {
    if (typeof prompt !== 'string') throw new TypeError(`prompt must be a string, got ${show(prompt)}`);
    if (!UNKNOWN.includes(unknown)) throw new RangeError(`unknown must be one of ${UNKNOWN.join(', ')}, got ${show(unknown)}`);
    const ids = [];
    const eos = this.#eosId;
    if (eos >= 0) ids.push(eos);
    const bad = new Map();
    let pos = 0;
    let replacement = null;
    for (const ch of prompt) {
      let id = eos >= 0 && ch === '\n' ? eos : this.#index.get(ch);
      if (id === undefined) {
        if (unknown === 'error') {
          if (!bad.has(ch)) bad.set(ch, pos);
        } else if (unknown === 'replace') {
          if (replacement === null) replacement = this.#index.get(' ') ?? 0; // else chars[0]
          id = replacement;
        }
      }
      if (id !== undefined) ids.push(id);
      pos++;
    }
    if (bad.size) {
      const listed = [...bad].slice(0, 5).map(([c, p]) => `${JSON.stringify(c)} at ${p}`).join(', ');
      const more = bad.size > 5 ? ` and ${bad.size - 5} more` : '';
      throw new RangeError(`${bad.size} character(s) not in the model's vocabulary: ${listed}${more}; ` +
        "skip or replace them (unknown: 'skip' | 'replace')");
    }
    if (eos < 0 && ids.length === 0) {
      const nl = this.#index.get('\n');
      if (nl === undefined) {
        throw new RangeError("empty prompt: this model has no '\\n' to start from; give a prompt " +
          'of at least one character');
      }
      ids.push(nl);
    }
    return ids;
  }

  #sampling(where, o) {
    const cfg = {};
    for (const k of KNOBS) {
      const v = o[k] !== undefined ? o[k] : this.#defaults[k];
      cfg[k] = v === undefined || v === null ? null : CHECKS[k](where, v);
    }
    if (cfg.temperature === null) cfg.temperature = 0.8; // charwright generate's default
    if (o.greedy !== undefined && typeof o.greedy !== 'boolean') {
      throw new TypeError(`${where}: greedy must be a boolean, got ${show(o.greedy)}`);
    }
    cfg.greedy = o.greedy === true || cfg.temperature === 0;
    const unsupported = [['minP', 0], ['typicalP', 1], ['repetitionPenalty', 1]]
      .filter(([k, neutral]) => cfg[k] !== null && cfg[k] !== neutral && !(this.#features & 1));
    if (unsupported.length) {
      throw new RangeError(`${where}: ${unsupported.map(([k]) => k).join(', ')}: this charwright.wasm's ` +
        'sampler has temperature, topK and topP only');
    }
    cfg.seed = o.seed === undefined || o.seed === null ? randomSeed() : parseSeed(o.seed, `${where}: seed`);
    return cfg;
  }

  // Sampler `which` (0: generation, 1: free) for cfg and row; its repetition window starts as
  // the last ids of `history`.
  #init(which, cfg, row, history) {
    const x = this.#x;
    const V = which === 0 ? this.#chars.length : x.cw_web_max_v();
    const topK = cfg.topK === null ? 0 : Math.min(cfg.topK, V);
    const window = cfg.repetitionWindow ?? 64;
    const n = Math.min(history.length, window, x.cw_web_max_window());
    new Int32Array(x.memory.buffer, x.cw_web_ids(), n).set(history.slice(history.length - n));
    const rc = x.cw_web_sampler_init(which, cfg.temperature, topK, cfg.topP ?? 1, cfg.minP ?? 0,
      cfg.typicalP ?? 1, cfg.repetitionPenalty ?? 1, window, cfg.greedy ? 1 : 0, cfg.seed, row, n);
    if (rc !== 0) throw new RangeError(`sampler settings refused by charwright.wasm (status ${rc})`);
  }

  #check(rc, what) {
    if (rc !== 0) throw new CharwrightError(`charwright.wasm: ${what} failed (status ${rc})`);
  }

  // Moves `session`'s state into the module's memory (sampler 0: a generation's, 1: a free
  // sampler's), saving the one there.
  #switchTo(session, which = 0) {
    const cur = which === 0 ? this.#active : this.#freeOwner;
    if (cur === session) return;
    const mem = new Uint8Array(this.#x.memory.buffer);
    if (cur && !cur.done) cur.saved = this.#regions(which).map(([p, n]) => [p, mem.slice(p, p + n)]);
    if (session.saved) for (const [p, data] of session.saved) mem.set(data, p);
    if (which === 0) this.#active = session;
    else this.#freeOwner = session;
  }

  /**
   * The text after `prompt`, as an async iterable of pieces. Options (a missing one takes the
   * bundle's sampling default, else its neutral value): seed (decimal string, BigInt or safe
   * Number; random when absent), greedy, temperature (default 0.8), topK, topP, minP, typicalP,
   * repetitionPenalty, repetitionWindow, stop (a string or strings: the text ends before the
   * first one that appears, which is never yielded), maxChars (default 300: characters picked
   * at most), unknown ('error' | 'skip' | 'replace': prompt characters outside the vocabulary).
   * The returned iterable has `seed` (a BigInt) and, once done, `finishReason` ('eos', 'stop' or
   * 'length').
   */
  generate(prompt, options = {}) {
    const where = 'generate';
    const o = checkKeys(where, options, OPTIONS);
    const cfg = this.#sampling(where, o);
    const maxChars = o.maxChars === undefined ? 300 : integer(where, 'maxChars', o.maxChars, 0, Number.MAX_SAFE_INTEGER);
    let stops = o.stop === undefined || o.stop === null ? [] : typeof o.stop === 'string' ? [o.stop] : o.stop;
    if (!Array.isArray(stops)) throw new TypeError(`${where}: stop must be a string or an array of strings, got ${show(o.stop)}`);
    if (stops.length > MAX_STOPS) throw new RangeError(`${where}: at most ${MAX_STOPS} stop strings, got ${stops.length}`);
    stops = stops.map((s) => {
      if (typeof s !== 'string') throw new TypeError(`${where}: stop strings must be strings, got ${show(s)}`);
      const cps = [...s];
      if (cps.length > MAX_STOP_CHARS) throw new RangeError(`${where}: a stop string has at most ${MAX_STOP_CHARS} characters`);
      return cps;
    }).filter((s) => s.length > 0);
    const unknown = o.unknown === undefined ? 'error' : o.unknown;
    const ids = this.encode(prompt, unknown);
    const info = { finishReason: null };
    const it = this.#run(ids, cfg, maxChars, stops, info);
    it.seed = cfg.seed;
    Object.defineProperty(it, 'finishReason', { get: () => info.finishReason, enumerable: true });
    return it;
  }

  async* #run(ids, cfg, maxChars, stops, info) {
    const x = this.#x;
    const session = { saved: null, done: false };
    const stream = new TextStream(this.#chars, this.#eosId, maxChars, stops);
    try {
      if (maxChars === 0) {
        info.finishReason = 'length';
        return;
      }
      this.#switchTo(session);
      this.#check(x.cw_web_reset(), 'reset');
      this.#init(0, cfg, 0n, ids);
      let t0 = now();
      for (let i = 0; i < ids.length; i++) {
        if ((i & 63) === 63 && now() - t0 > SLICE_MS) {
          await macrotask();
          this.#switchTo(session);
          t0 = now();
        }
        this.#check(x.cw_web_step(ids[i]), 'step');
      }
      let out = '';
      let tYield = -Infinity; // the first character goes out at once
      for (;;) {
        this.#switchTo(session);
        const id = x.cw_web_sample();
        if (id < 0) this.#check(-id, 'sample');
        out += stream.push(id);
        const done = stream.finishReason !== null;
        if (!done) this.#check(x.cw_web_step(id), 'step');
        else info.finishReason = stream.finishReason;
        const t = now();
        if (out && (done || t - tYield >= PIECE_MS)) {
          const piece = out;
          out = '';
          yield piece;
          tYield = now();
        }
        if (done) return;
        if (t - t0 > SLICE_MS) {
          await macrotask();
          t0 = now();
        }
      }
    } finally {
      session.done = true;
      if (this.#active === session) this.#active = null;
    }
  }

  /**
   * A sampler over logits the caller computes (SAMPLING.md's chain in the module's C):
   * `const s = m.sampler({ seed: '7', row: 0, topP: 0.9 }); const id = s.pick(logits)`.
   * Takes generate's sampling options and `row` (0..2**63-1, default 0); no bundle defaults
   * apply (temperature defaults to 1). pick(logits): a Float32Array or an array of numbers
   * (1..65536 of them) -> an id; each pick draws the row's next coin.
   */
  sampler(options = {}) {
    const where = 'sampler';
    const o = checkKeys(where, options, SAMPLER_OPTIONS);
    const saved = this.#defaults;
    this.#defaults = { temperature: 1 };
    let cfg;
    try {
      cfg = this.#sampling(where, o);
    } finally {
      this.#defaults = saved;
    }
    const row = o.row === undefined ? 0n : parseSeed(o.row, `${where}: row`);
    const x = this.#x;
    if (o.history !== undefined && !Array.isArray(o.history)) {
      throw new TypeError(`${where}: history must be an array of ids, got ${show(o.history)}`);
    }
    const history = o.history === undefined ? [] : Array.from(o.history);
    for (const id of history) integer(where, 'history id', id, 0, x.cw_web_max_v() - 1);
    const session = { saved: null, done: false };
    let started = false;
    return {
      seed: cfg.seed,
      pick: (logits) => {
        if (!(logits instanceof Float32Array) && !Array.isArray(logits)) {
          throw new TypeError(`pick: logits must be a Float32Array or an array of numbers, got ${show(logits)}`);
        }
        const n = logits.length;
        if (n < 1 || n > x.cw_web_max_v()) throw new RangeError(`pick: 1..${x.cw_web_max_v()} logits, got ${n}`);
        if (Array.isArray(logits)) {
          for (let i = 0; i < n; i++) {
            if (typeof logits[i] !== 'number') {
              throw new TypeError(`pick: logits[${i}] must be a number, got ${show(logits[i])}`);
            }
          }
        }
        this.#switchTo(session, 1);
        if (!started) {
          this.#init(1, cfg, row, history);
          started = true;
        }
        new Float32Array(x.memory.buffer, x.cw_web_input(), n).set(logits);
        const id = x.cw_web_pick(n);
        if (id < 0) this.#check(-id, 'pick');
        return id;
      },
    };
  }
}

/** Loads an emitted directory: a path (Node), a URL (or a string relative to the page), or an
 * array of File objects holding charwright.wasm and model.json. */
export async function load(bundle) {
  const { wasm, json } = await readBundle(bundle);
  let meta;
  try {
    meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch (e) {
    throw new CharwrightError(`model.json is not UTF-8 JSON: ${e.message}`);
  }
  let module;
  try {
    module = await WebAssembly.compile(wasm);
  } catch (e) {
    throw new CharwrightError(`charwright.wasm is not a WebAssembly module: ${e.message}`);
  }
  const imports = WebAssembly.Module.imports(module);
  if (imports.length) {
    throw new CharwrightError(`charwright.wasm imports ${imports.map((i) => `${i.module}.${i.name}`).join(', ')}: ` +
      'not a charwright-web module');
  }
  let instance;
  try {
    instance = await WebAssembly.instantiate(module, {});
  } catch (e) {
    throw new CharwrightError(`charwright.wasm cannot be instantiated: ${e.message}`);
  }
  try {
    return new Model(instance, meta);
  } catch (e) {
    if (e instanceof CharwrightError) throw e;
    // a trap, an out-of-range view or memory exhausted while reading a damaged module
    throw new CharwrightError(`charwright.wasm: ${e.message}: damaged or not written by charwright emit-web`);
  }
}
