// One step of a charwright ONNX file under onnxruntime-web (WASM backend) in Node, over a pipe.
//
//   node ort_web_step.cjs NODE_MODULES_DIR MODEL.onnx STATE_SIZE VOCAB TOKEN_NAME STATE_NAME
//        LOGITS_NAME NEW_STATE_NAME
//
// stdin, per step: int32 B (little-endian), B int32 tokens, B*STATE_SIZE float32 state.
// stdout, per step: B*VOCAB float32 logits, then B*STATE_SIZE float32 new state (bits as the
// runtime computed them). scripts/cross_runtime.py samples with charwright's own sampler, so the
// text depends only on these numbers. Errors: one line on stderr, exit 1.
"use strict";
const fs = require("fs");

function fail(msg) {
  process.stderr.write(`ort_web_step: ${msg}\n`);
  process.exit(1);
}

async function main() {
  const [dir, model, S, V, tokenName, stateName, logitsName, newStateName] = process.argv.slice(2);
  const state = Number(S), vocab = Number(V);
  if (!newStateName || !(state > 0) || !(vocab > 0)) fail("usage: see the head of this file");
  let ort;
  try {
    ort = require(require.resolve("onnxruntime-web", { paths: [dir] }));
  } catch (e) {
    fail(`onnxruntime-web not found under ${dir} (npm install --prefix DIR onnxruntime-web)`);
  }
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = "error";
  const session = await ort.InferenceSession.create(new Uint8Array(fs.readFileSync(model)), {
    executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  process.stdout.write(`ready onnxruntime-web ${ort.env.versions.web}\n`);
  let buf = Buffer.alloc(0);
  let busy = false, ended = false;
  async function pump() {
    if (busy) return;
    busy = true;
    for (;;) {
      if (buf.length < 4) break;
      const B = buf.readInt32LE(0);
      if (B < 1 || B > 4096) fail(`bad batch ${B}`);
      const need = 4 + 4 * B + 4 * B * state;
      if (buf.length < need) break;
      const frame = new Uint8Array(buf.subarray(0, need)); // a copy: aligned, owned
      buf = buf.subarray(need);
      const tokens = new Int32Array(frame.buffer, 4, B);
      const st = new Float32Array(frame.buffer, 4 + 4 * B, B * state);
      const feeds = {};
      feeds[tokenName] = new ort.Tensor("int32", tokens, [B]);
      feeds[stateName] = new ort.Tensor("float32", st, [B, state]);
      const out = await session.run(feeds);
      const lg = out[logitsName].data, ns = out[newStateName].data;
      if (lg.length !== B * vocab || ns.length !== B * state) fail("unexpected output size");
      process.stdout.write(Buffer.concat([Buffer.from(lg.buffer, lg.byteOffset, lg.byteLength),
                                          Buffer.from(ns.buffer, ns.byteOffset, ns.byteLength)]));
    }
    busy = false;
    if (ended && buf.length === 0) process.exit(0);
  }
  process.stdin.on("data", (chunk) => { buf = Buffer.concat([buf, chunk]); pump().catch((e) => fail(String(e.message || e).split("\n")[0])); });
  process.stdin.on("end", () => { ended = true; if (!busy) process.exit(0); });
}

main().catch((e) => fail(String(e.message || e).split("\n")[0]));
