// Drives the system Chromium over an emitted charwright-web directory (served from 127.0.0.1):
//
//   node tests/js/browser.mjs DIR CASES.json [--screenshot PNG] [--bench N]
//
// CASES.json: {"cases": [{"prompt", "options", "text"?}], "ui": index of the case to run
// through the demo page's form}. Prints one JSON object: the texts charwright.js made in the
// page for each case, the text the demo page showed for the ui case, console errors, and with
// --bench N, microseconds per character of generate() over N characters (greedy and top-p).
// Uses playwright-core from tests/js/node_modules (npm ci --prefix tests/js) and
// CHROMIUM (default /usr/bin/chromium): no browser is downloaded.
import { createServer } from 'node:http';
import { readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, sep } from 'node:path';
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const [dir, casesPath] = args;
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const screenshot = flag('--screenshot');
const benchN = flag('--bench') ? Number(flag('--bench')) : 0;
const spec = JSON.parse(await readFile(casesPath, 'utf8'));

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css',
  '.json': 'application/json', '.wasm': 'application/wasm' };
const root = await realpath(dir);
const server = createServer(async (req, res) => {
  try {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = await realpath(join(root, path.endsWith('/') ? path + 'index.html' : path));
    if (!file.startsWith(root + sep) || !(await stat(file)).isFile()) throw new Error('outside');
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(await readFile(file));
  } catch {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
  headless: true,
});
const out = { url, errors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 820 } });
  page.on('console', (m) => { if (m.type() === 'error') out.errors.push(m.text()); });
  page.on('pageerror', (e) => out.errors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 60000 });
  out.userAgent = await page.evaluate(() => navigator.userAgent);
  // the module itself, in the page
  out.texts = await page.evaluate(async (cases) => {
    const { load } = await import('./charwright.js');
    const m = await load('./');
    const texts = [];
    for (const c of cases) {
      let t = '';
      for await (const piece of m.generate(c.prompt, c.options)) t += piece;
      texts.push(t);
    }
    return texts;
  }, spec.cases);
  // the demo page's form
  const c = spec.cases[spec.ui ?? 0];
  await page.fill('#prompt', c.prompt);
  for (const [k, v] of Object.entries(c.options)) {
    if (k === 'greedy') await page.setChecked('#greedy', v);
    else if (k === 'stop') await page.fill('#stop', v);
    else await page.fill(`#${k}`, String(v));
  }
  await page.click('#generate');
  await page.waitForSelector('body[data-state="done"]', { timeout: 120000 });
  out.uiText = await page.textContent('#out-text');
  out.uiPrompt = await page.textContent('#out-prompt');
  out.status = await page.textContent('#status');
  out.error = await page.textContent('#error');
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  // "other model": the same files picked from disk (load(File[]))
  await page.setInputFiles('#files', [join(root, 'charwright.wasm'), join(root, 'model.json')]);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 60000 });
  out.filesInfo = await page.textContent('#model-info');
  out.filesError = await page.textContent('#error');
  if (benchN > 0) {
    out.bench = await page.evaluate(async (n) => {
      const { load } = await import('./charwright.js');
      const m = await load('./');
      const res = {};
      for (const [name, o] of [['greedy', { greedy: true }], ['top-p 0.9', { seed: '1', topP: 0.9 }]]) {
        let best = Infinity;
        for (let rep = 0; rep < 3; rep++) {
          let chars = 0;
          const t0 = performance.now();
          for await (const piece of m.generate('', { ...o, maxChars: n })) chars += [...piece].length;
          best = Math.min(best, ((performance.now() - t0) * 1000) / Math.max(chars, 1));
        }
        res[name] = best;
      }
      return res;
    }, benchN);
  }
} finally {
  await browser.close();
  server.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
