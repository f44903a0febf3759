// npm test (node --test): the WebAssembly build of this directory against charwright's own
// references: golden.json (sampling golden vectors, SAMPLING.md section 6), test/expected.json
// (float32 builds: texts of `charwright generate --backend numpy`), and the API's contracts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CharwrightError, load, parseSeed } from '../charwright.js';

const DIR = fileURLToPath(new URL('..', import.meta.url));
const m = await load(DIR);

// Seeds and rows stay exact: their digits are quoted before JSON.parse (SAMPLING.md section 7;
// JSON.parse would read 9223372036854775807 as 9223372036854775808).
function readJson(name) {
  const text = readFileSync(join(DIR, name), 'utf8');
  return JSON.parse(text.replace(/"(seed|row)":\s*(\d+)/g, '"$1": "$2"'));
}

const golden = readJson('golden.json');
const KNOB = { temperature: 'temperature', top_k: 'topK', top_p: 'topP', min_p: 'minP',
  typical_p: 'typicalP', repetition_penalty: 'repetitionPenalty',
  repetition_window: 'repetitionWindow', greedy: 'greedy' };

function logits(hex) {
  return new Float32Array(Uint32Array.from(hex, (h) => parseInt(h, 16)).buffer);
}

async function text(prompt, options) {
  let out = '';
  for await (const piece of m.generate(prompt, options)) out += piece;
  return out;
}

test('golden rng streams: splitmix64 keyed by (seed, row), seeds read exactly', () => {
  for (const s of golden.rng) {
    const got = s.u64.map((_, k) => m.rng(s.seed, s.row, k).toString(16).padStart(16, '0'));
    assert.deepEqual(got, s.u64, `seed ${s.seed} row ${s.row}`);
  }
  assert.ok(golden.rng.some((s) => s.seed === '9223372036854775807'));
});

for (const c of golden.cases) {
  const options = {};
  for (const [k, v] of Object.entries(c.sampling)) if (v !== null) options[KNOB[k]] = v;
  const history = c.history.length ? c.history : [0];
  let unsupported = null;
  try {
    m.sampler({ ...options, seed: c.seed, row: c.row, history });
  } catch (e) {
    unsupported = e.message;
  }
  test(`golden case ${c.name}`, { skip: unsupported ?? false }, () => {
    const s = m.sampler({ ...options, seed: c.seed, row: c.row, history });
    const z = logits(c.logits);
    const got = [];
    for (let i = 0; i < c.steps; i++) got.push(s.pick(z));
    assert.deepEqual(got, c.expected);
  });
}

const expectedPath = join(DIR, 'test', 'expected.json');
test('texts equal charwright generate --backend numpy (float32)',
  { skip: existsSync(expectedPath) ? false : 'no test/expected.json (int8 build)' }, async () => {
    const { cases } = readJson('test/expected.json');
    assert.ok(cases.length >= 5);
    for (const c of cases) assert.equal(await text(c.prompt, c.options), c.text, JSON.stringify(c.options));
  });

test('a seed as a string, a BigInt or a safe Number gives the same text', async () => {
  const a = await text('', { seed: '9223372036854775807', maxChars: 40 });
  assert.equal(await text('', { seed: 9223372036854775807n, maxChars: 40 }), a);
  assert.notEqual(await text('', { seed: '9223372036854775806', maxChars: 40 }), a);
  assert.equal(await text('', { seed: 12, maxChars: 40 }), await text('', { seed: '12', maxChars: 40 }));
  assert.equal(parseSeed('0'), 0n);
  for (const bad of ['9223372036854775808', '-1', '1e3', ' 1', '', 2 ** 53, -1, 1.5, 2n ** 63n, -1n]) {
    assert.throws(() => m.generate('', { seed: bad }), RangeError, String(bad));
  }
  for (const bad of [{}, [], true]) assert.throws(() => m.generate('', { seed: bad }), TypeError);
  const it = m.generate('', { maxChars: 3 });
  assert.equal(typeof it.seed, 'bigint');
  assert.ok(it.seed >= 0n && it.seed < 2n ** 63n);
});

test('bad options throw TypeError / RangeError from generate() itself', () => {
  const range = [{ temperature: -1 }, { temperature: 1e-5 }, { temperature: 1001 }, { temperature: NaN },
    { topK: 0 }, { topK: 1.5 }, { topP: 0 }, { topP: 1.01 }, { minP: 1 }, { typicalP: 0 },
    { repetitionPenalty: 0 }, { repetitionPenalty: 101 }, { repetitionWindow: 0 },
    { maxChars: -1 }, { maxChars: 0.5 }, { maxChars: Infinity }, { unknown: 'drop' },
    { stop: new Array(257).fill('x') }];
  for (const o of range) assert.throws(() => m.generate('', o), RangeError, JSON.stringify(o));
  const type = [{ topP: '0.9' }, { greedy: 'yes' }, { temperature: null, topK: '3' }, { stop: 5 },
    { stop: ['a', 3] }, { topk: 3 }, { maxChars: 1n }];
  for (const o of type) assert.throws(() => m.generate('', o), TypeError, Object.keys(o).join());
  assert.throws(() => m.generate(42), TypeError);
  assert.throws(() => m.generate('', 'fast'), TypeError);
  // an inherited option is not read (only own keys are checked, so only own keys count)
  const inherited = Object.create({ temperature: 'hot', maxChars: -1 });
  assert.doesNotThrow(() => m.generate('', inherited));
  assert.equal(m.generate('', Object.create({ seed: '1' })).seed === 1n, false);
  // sampler().pick: an array of logits holds numbers only
  const s = m.sampler({ seed: '1' });
  assert.throws(() => s.pick(['a', 'b']), /logits\[0\] must be a number/);
  assert.throws(() => s.pick([0, 1n]), TypeError);
  assert.equal(typeof s.pick([0, 1]), 'number');
  assert.throws(() => m.generate('\u2603\ud800'), /not in the model's vocabulary: "\u2603" at 0, "\\ud800" at 1/);
});

test('maxChars bounds the characters; 0 gives none', async () => {
  for (const n of [0, 1, 7, 50]) {
    const it = m.generate('', { seed: '3', maxChars: n });
    let out = '';
    for await (const p of it) out += p;
    assert.ok([...out].length <= n);
    assert.ok(['length', 'eos'].includes(it.finishReason));
    if (n === 0) assert.equal(out, '');
  }
});

test('stop strings: the text before the first one, never the stop; held back while it may begin', async () => {
  let o;
  let full = '';
  for (let seed = 0; seed < 200 && [...full].length < 20; seed++) { // (a line-mode model may end early)
    o = { seed: String(seed), maxChars: 120 };
    full = await text('', o);
  }
  const chars = [...full];
  assert.ok(chars.length >= 20, full);
  const stop = chars.slice(10, 12).join('');
  const first = full.indexOf(stop);
  const it = m.generate('', { ...o, stop: ['\u2603never', stop] });
  const pieces = [];
  for await (const p of it) pieces.push(p);
  assert.equal(pieces.join(''), full.slice(0, first));
  assert.equal(it.finishReason, 'stop');
  assert.ok(pieces.every((p) => p.length > 0));
  // a stop that never completes: all the text comes out, the held-back part at the end
  assert.equal(await text('', { ...o, stop: chars[chars.length - 1] + '\u2603' }), full);
});

test('interleaved generations keep their own state', async () => {
  const opts = [{ seed: '5', maxChars: 60 }, { seed: '6', maxChars: 60, topK: 4 }, { greedy: true, maxChars: 60 }];
  const alone = [];
  for (const o of opts) alone.push(await text('', o));
  const its = opts.map((o) => m.generate('', o)[Symbol.asyncIterator]());
  const got = opts.map(() => '');
  let live = its.length;
  while (live) {
    live = 0;
    for (let i = 0; i < its.length; i++) {
      const r = await its[i].next();
      if (!r.done) {
        got[i] += r.value;
        live++;
      }
    }
  }
  assert.deepEqual(got, alone);
  // leaving a loop early frees the module for the next generation
  for await (const p of m.generate('', { seed: '5', maxChars: 60 })) { assert.ok(p); break; }
  assert.equal(await text('', opts[0]), alone[0]);
});

test('load: bad arguments and damaged directories', async () => {
  await assert.rejects(load(42), TypeError);
  await assert.rejects(load(join(DIR, 'no-such-dir')), CharwrightError);
  const tmp = await mkdtemp(join(tmpdir(), 'charwright-web-'));
  try {
    await cp(DIR, tmp, { recursive: true, filter: (p) => !p.includes('node_modules') });
    const meta = JSON.parse(readFileSync(join(tmp, 'model.json'), 'utf8'));
    for (const bad of [{ ...meta, defaults: { topP: 7 } }, { ...meta, vocabSize: meta.vocabSize + 1 },
      { ...meta, sha256: '0'.repeat(64) }, { ...meta, format: 'x' }, []]) {
      await writeFile(join(tmp, 'model.json'), JSON.stringify(bad));
      await assert.rejects(load(tmp), CharwrightError, JSON.stringify(bad).slice(0, 80));
    }
    await writeFile(join(tmp, 'model.json'), JSON.stringify(meta));
    await writeFile(join(tmp, 'charwright.wasm'), 'not wasm');
    await assert.rejects(load(tmp), CharwrightError);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});

test('load over HTTP: a declared or streamed size past the limit is refused early', async () => {
  const http = await import('node:http');
  const wasm = readFileSync(join(DIR, 'charwright.wasm'));
  let sent = 0;
  const server = http.createServer((req, res) => {
    if (req.url === '/big/charwright.wasm') { // declares 3 GB, sends nothing, hangs up later
      res.writeHead(200, { 'content-length': String(3e9) });
      res.flushHeaders();
      setTimeout(() => res.destroy(), 300).unref();
      return;
    }
    if (req.url.endsWith('/charwright.wasm')) return res.end(wasm);
    const chunk = Buffer.alloc(64 * 1024, 0x20); // model.json without an end
    const more = () => {
      while (sent < 64 * 2 ** 20 && !res.destroyed) {
        sent += chunk.length;
        if (!res.write(chunk)) return res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const base = `http://127.0.0.1:${server.address().port}`;
  try {
    await assert.rejects(load(new URL(`${base}/big/`)), /3000000000 bytes, more than 2147483648/);
    await assert.rejects(load(new URL(`${base}/endless/`)), /more than 1048576 bytes/);
    assert.ok(sent < 32 * 2 ** 20, `${sent} bytes sent before the refusal`);
  } finally {
    server.closeAllConnections?.();
    server.close();
  }
});

test('prompts encode as SAMPLING.md section 4 says', () => {
  const eos = m.vocab.indexOf(null);
  const id = (c) => m.vocab.indexOf(c);
  const some = m.vocab.filter((c) => c !== null && c !== '\n').slice(0, 2);
  if (eos >= 0) { // line mode: EOS first, each '\n' as EOS
    assert.deepEqual(m.encode(''), [eos]);
    assert.deepEqual(m.encode(`${some[0]}\n${some[1]}`), [eos, id(some[0]), eos, id(some[1])]);
  } else {
    if (m.vocab.includes('\n')) assert.deepEqual(m.encode(''), [id('\n')]);
    assert.deepEqual(m.encode(some.join('')), some.map(id));
  }
  assert.deepEqual(m.encode(`\u2603${some[0]}`, 'skip'), m.encode(some[0]));
  const rep = m.vocab.includes(' ') ? ' ' : m.vocab[0];
  assert.deepEqual(m.encode(`\u2603${some[0]}`, 'replace'), m.encode(rep + some[0]));
});

test('line mode: a row ends at the end-of-sequence id with finishReason eos',
  { skip: m.vocab.includes(null) ? false : 'not a line-mode model' }, async () => {
    let ended = 0;
    for (let seed = 0; seed < 20; seed++) {
      const it = m.generate('', { seed: String(seed), maxChars: 200 });
      let t = '';
      for await (const p of it) t += p;
      if (it.finishReason === 'eos') ended++;
      assert.ok(!t.includes('\n') && [...t].length <= 200);
    }
    assert.ok(ended > 0);
  });
