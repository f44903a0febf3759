// The demo page: load this directory's model, generate into the page as it streams.
// Everything the model or the user writes goes in as text (textContent), never as HTML.
import { load } from './charwright.js';

const $ = (id) => document.getElementById(id);
const NUMBERS = ['temperature', 'topK', 'topP', 'minP', 'typicalP', 'repetitionPenalty'];
let model = null;
let running = null; // the Generation being read, if any

function setState(state) {
  document.body.dataset.state = state;
  $('generate').disabled = state !== 'ready' && state !== 'done';
  $('cancel').disabled = state !== 'running';
  $('files').disabled = state === 'running' || state === 'loading';
}

function showError(e) {
  $('error').textContent = e ? `${e.name}: ${e.message}` : '';
}

// "\n", "\t", "\r", "\\", "\xNN", "\uNNNN" and "\u{N...}" in the stop box, as in a JS string
function unescape(s) {
  return s.replace(/\\(n|t|r|\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|u\{[0-9a-fA-F]{1,6}\})/g, (all, c) => {
    if (c.length === 1) return { n: '\n', t: '\t', r: '\r', '\\': '\\' }[c];
    const cp = parseInt(c.replace(/[xu{}]/g, ''), 16);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : all;
  });
}

function options() {
  const o = {};
  for (const k of NUMBERS) {
    const v = $(k).value.trim();
    if (v !== '') o[k] = Number(v);
  }
  const seed = $('seed').value.trim();
  if (seed !== '') o.seed = seed;
  const n = $('maxChars').value.trim();
  if (n !== '') o.maxChars = Number(n);
  const stop = $('stop').value;
  if (stop !== '') o.stop = unescape(stop);
  if ($('greedy').checked) o.greedy = true;
  return o;
}

async function use(m) {
  model = m;
  const { name, precision, kernel } = m.info;
  $('model-info').textContent = `${name} · ${precision} · ${m.vocab.length} characters · ${kernel}`;
  for (const k of NUMBERS) $(k).placeholder = m.defaults[k] === undefined ? '' : String(m.defaults[k]);
  if ($('prompt').value === '') {
    const p = 'ROMEO:';
    $('prompt').value = [...p].every((c) => m.vocab.includes(c)) ? p : '';
  }
  setState('ready');
}

async function generate(event) {
  event.preventDefault();
  if (!model || running) return;
  showError(null);
  const prompt = $('prompt').value;
  let it;
  try {
    it = model.generate(prompt, options());
  } catch (e) {
    showError(e);
    return;
  }
  running = it;
  setState('running');
  $('out-prompt').textContent = prompt;
  const out = $('out-text');
  const box = $('output');
  out.textContent = '';
  let chars = 0;
  let scrolling = false;
  const t0 = performance.now();
  try {
    for await (const piece of it) {
      out.append(piece); // a text node
      chars += [...piece].length;
      if (!scrolling) { // once a frame: reading scrollHeight per character forces a layout
        scrolling = true;
        requestAnimationFrame(() => { box.scrollTop = box.scrollHeight; scrolling = false; });
      }
    }
    const ms = performance.now() - t0;
    $('status').textContent = `${chars} characters in ${ms.toFixed(0)} ms ` +
      `(${chars ? ((ms * 1000) / chars).toFixed(0) : '-'} µs each) · seed ${it.seed} · ` +
      `finish: ${it.finishReason ?? 'stopped'}`;
  } catch (e) {
    showError(e);
  } finally {
    running = null;
    setState('done');
  }
}

$('form').addEventListener('submit', generate);
$('cancel').addEventListener('click', () => running?.return());
$('files').addEventListener('change', async () => {
  if (running) { // the input is disabled while a text streams; say so if a browser lets it through
    showError(new Error('stop the generation before loading another model'));
    $('files').value = '';
    return;
  }
  showError(null);
  setState('loading');
  try {
    await use(await load(Array.from($('files').files)));
  } catch (e) {
    showError(e);
    setState(model ? 'ready' : 'error');
  }
});

load(new URL('./', import.meta.url)).then(use, (e) => {
  $('model-info').textContent = 'no model loaded';
  showError(e);
  setState('error');
});
