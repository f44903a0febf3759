// node tests/js/generate.mjs DIR CASES.json [--bench N]: the texts charwright.js makes in Node
// for CASES.json's {"cases": [{"prompt", "options"}]} (seeds as strings), as one JSON object
// {"texts": [...], "kernel": ...}; with --bench N also microseconds per character of generate() over N
// characters (best of 3), greedy and top-p 0.9.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dir, casesPath, flag, n] = process.argv.slice(2);
const { load } = await import(pathToFileURL(resolve(dir, 'charwright.js')).href);
const m = await load(dir);
const { cases } = JSON.parse(await readFile(casesPath, 'utf8'));
const out = { texts: [], kernel: m.info.kernel };
for (const c of cases) {
  let t = '';
  for await (const piece of m.generate(c.prompt, c.options)) t += piece;
  out.texts.push(t);
}
if (flag === '--bench') {
  out.bench = {};
  for (const [name, o] of [['greedy', { greedy: true }], ['top-p 0.9', { seed: '1', topP: 0.9 }]]) {
    let best = Infinity;
    for (let rep = 0; rep < 3; rep++) {
      let chars = 0;
      const t0 = performance.now();
      for await (const piece of m.generate('', { ...o, maxChars: Number(n) })) chars += [...piece].length;
      best = Math.min(best, ((performance.now() - t0) * 1000) / Math.max(chars, 1));
    }
    out.bench[name] = best;
  }
}
process.stdout.write(JSON.stringify(out) + '\n');
