// Every output of an ONNX file under onnxruntime-web (WASM) for a list of feeds; used by
// explain.py to find which ops give other bits than native onnxruntime.
//
//   node ort_web_outputs.cjs NODE_MODULES_DIR MODEL.onnx all|disabled IN.json OUT.json
//
// IN.json: {"steps": [{name: {dtype: "int32"|"float32", shape: [...], data: base64}}]};
// OUT.json: per step {name: {dtype, dims, data: base64}} (raw little-endian bytes).
"use strict";
const fs = require("fs");

const ARRAYS = { int32: Int32Array, float32: Float32Array, int64: BigInt64Array };

async function main() {
  const [dir, model, level, inFile, outFile] = process.argv.slice(2);
  const ort = require(require.resolve("onnxruntime-web", { paths: [dir] }));
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = "error";
  const session = await ort.InferenceSession.create(new Uint8Array(fs.readFileSync(model)), {
    executionProviders: ["wasm"], graphOptimizationLevel: level });
  const results = [];
  for (const step of JSON.parse(fs.readFileSync(inFile)).steps) {
    const feeds = {};
    for (const [name, v] of Object.entries(step)) {
      const u = new Uint8Array(Buffer.from(v.data, "base64"));
      feeds[name] = new ort.Tensor(v.dtype, new ARRAYS[v.dtype](u.buffer, 0, u.byteLength / 4), v.shape);
    }
    const out = await session.run(feeds);
    const r = {};
    for (const [k, t] of Object.entries(out)) {
      const d = t.data;
      r[k] = { dtype: t.type, dims: t.dims,
               data: Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString("base64") };
    }
    results.push(r);
  }
  fs.writeFileSync(outFile, JSON.stringify(results));
}

main().catch((e) => { process.stderr.write(`ort_web_outputs: ${String(e.message || e).split("\n")[0]}\n`); process.exit(1); });
