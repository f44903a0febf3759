#!/usr/bin/env bash
# scripts/gpu_check.sh: a reference recorded on a GPU holds float32 parity with exports made on
# a CPU (issue 24, item 6). For anyone who has a GPU; nothing in the project depends on it.
#
#   scripts/gpu_check.sh [CORPUS] [WORK_DIR]
#
# 1. trains a small model on the GPU (2-layer GRU 256, 2 epochs on <= 400 KB of CORPUS; default
#    ../shared/data/tinyshakespeare.txt, else a synthetic text), which records the reference
#    probe there with TF32 off;
# 2. checks the probe: recorded on a GPU, tf32 false; and shows what TF32 would have cost
#    (the same logits recomputed on the GPU with TF32 on; informative, Ampere or later);
# 3. exports the float32 files on the CPU only (CUDA_VISIBLE_DEVICES=): export replays the GPU
#    probe on every file and refuses one outside the float32 bound (max |dlogit| <= 1e-4);
# 4. verifies the bundle on the CPU and recomputes the reference on the CPU from the run's
#    best weights: max |CPU - GPU| must be within the same bound.
# Exit 0: every check held. Budget: under 10 minutes on one GPU (each step has a timeout).
#
# GPU_CHECK_DRY_RUN=1 runs the same steps on the CPU with a smaller model (no GPU checks): a
# check of the script itself. PYTHON=... picks the interpreter (default: the repo's .venv).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then PY="$here/.venv/bin/python"; else PY=python3; fi
fi
cw() { "$PY" -m charwright.runtime.cli "$@"; }
DRY="${GPU_CHECK_DRY_RUN:-0}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

corpus_in="${1:-$here/../shared/data/tinyshakespeare.txt}"
work="${2:-$(mktemp -d "${TMPDIR:-/tmp}/charwright-gpu-check.XXXXXX")}"
mkdir -p "$work"
run="$work/run"
bundle="$work/bundle"
corpus="$work/corpus.txt"
rm -rf "$run" "$bundle"
echo "gpu_check: work directory $work" >&2

if [[ "$DRY" == "1" ]]; then
  model=(--cell gru --layers 1 --units 32 --embedding-dim 16 --epochs 1 --seq-len 64
         --batch-size 32 --probe-chars 500 --greedy-chars 50)
  limit=60000
else
  model=(--cell gru --layers 2 --units 256 --embedding-dim 64 --epochs 2 --seq-len 100
         --batch-size 64 --probe-chars 2000 --greedy-chars 200)
  limit=400000
fi

# the corpus: the first `limit` bytes cut at a line end (never inside a UTF-8 character)
if [[ -f "$corpus_in" ]]; then
  "$PY" - "$corpus_in" "$corpus" "$limit" <<'EOF'
import sys
src, dst, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(src, encoding="utf-8").read()
cut = text[:limit]
cut = cut[: cut.rfind("\n") + 1] or cut
open(dst, "w", encoding="utf-8").write(cut)
EOF
else
  echo "gpu_check: $corpus_in not found; using a synthetic text" >&2
  "$PY" - "$corpus" "$limit" <<'EOF'
import sys
import numpy as np
rng = np.random.default_rng(0)
words = "the king queen sees loves keeps calls a red old sea moon house sword friend".split()
out, n = [], 0
while n < int(sys.argv[2]):
    s = " ".join(rng.choice(words, rng.integers(3, 9))).capitalize() + ".\n"
    out.append(s)
    n += len(s)
open(sys.argv[1], "w", encoding="utf-8").write("".join(out))
EOF
fi

# 1. train on the GPU (or, dry run, the CPU)
if [[ "$DRY" != "1" ]]; then
  gpus="$("$PY" -c 'import tensorflow as tf; print(len(tf.config.list_physical_devices("GPU")))')"
  if [[ "$gpus" == "0" ]]; then
    echo "gpu_check: TensorFlow sees no GPU here; GPU_CHECK_DRY_RUN=1 runs the steps on the CPU" >&2
    exit 2
  fi
fi
t0=$SECONDS
timeout 420 "$PY" -m charwright.runtime.cli train "$corpus" -o "$run" "${model[@]}" \
  --sample-chars 0 --distribute none --seed 1
echo "gpu_check: trained in $((SECONDS - t0)) s" >&2

# 2. the probe: where it was recorded, TF32 off; what TF32 on would have given
timeout 120 "$PY" - "$run" "$DRY" <<'EOF'
import json, sys
import numpy as np
run, dry = sys.argv[1], sys.argv[2] == "1"
with np.load(f"{run}/probe.npz", allow_pickle=False) as p:
    device = str(p["device"])
    tf32 = bool(p["tf32"]) if "tf32" in p.files else None
    tokens, logits = p["tokens"], p["logits"]
summary = json.load(open(f"{run}/run.json"))["summary"]
print(f"probe: {len(tokens)} tokens recorded on {device}; tf32 {tf32}; run.json tf32 "
      f"{summary.get('tf32')}")
fail = []
if tf32 is not False or summary.get("tf32") is not False:
    fail.append("the probe does not say tf32 false")
if not dry and not device.startswith("GPU"):
    fail.append(f"the probe was recorded on {device!r}, not a GPU")
if not dry:  # informative: the same reference with TF32 on
    import tensorflow as tf
    from charwright.trainer import ModelConfig
    from charwright.trainer.network import build_sequence_model
    run_json = json.load(open(f"{run}/run.json"))
    model = build_sequence_model(ModelConfig(**run_json["model"]))
    model.load_weights(f"{run}/best.weights.h5")
    tf.config.experimental.enable_tensor_float_32_execution(True)
    z = np.asarray(model(tokens[None, :], training=False), np.float32)[0]
    print(f"with TF32 on the same reference moves by max |dlogit| {np.abs(z - logits).max():.2e} "
          "(the float32 bound is 1e-4; ~1e-3 is typical on Ampere and later)")
if fail:
    sys.exit("gpu_check: " + "; ".join(fail))
EOF

# 3. export on the CPU: float32 files, each replayed against the GPU probe (1e-4)
t0=$SECONDS
CUDA_VISIBLE_DEVICES= timeout 300 "$PY" -m charwright.runtime.cli export "$run" -o "$bundle" \
  --precision float32
echo "gpu_check: exported on the CPU in $((SECONDS - t0)) s" >&2

# 4. verify on the CPU, and the reference itself recomputed on the CPU
CUDA_VISIBLE_DEVICES= timeout 120 "$PY" -m charwright.runtime.cli verify "$bundle"
CUDA_VISIBLE_DEVICES= timeout 120 "$PY" - "$run" <<'EOF'
import json, sys
import numpy as np
from charwright.trainer import ModelConfig
from charwright.trainer.network import build_sequence_model
from charwright.trainer.probe import exact_float32
run = sys.argv[1]
with np.load(f"{run}/probe.npz", allow_pickle=False) as p:
    tokens, logits = p["tokens"], p["logits"]
model = build_sequence_model(ModelConfig(**json.load(open(f"{run}/run.json"))["model"]))
model.load_weights(f"{run}/best.weights.h5")
with exact_float32():
    z = np.asarray(model(tokens[None, :], training=False), np.float32)[0]
d = float(np.abs(z - logits).max())
print(f"reference recomputed on the CPU: max |CPU - probe| = {d:.2e} (bound 1e-4)")
sys.exit(0 if d <= 1e-4 else "gpu_check: the CPU reference is outside the float32 bound")
EOF
echo "gpu_check: all checks held ($work)" >&2
