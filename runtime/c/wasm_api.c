/* charwright's WebAssembly entry points: runtime.c (step, vocabulary) and sampler.h (the whole
 * sampling chain, which runtime.c includes) behind a few exported functions, for charwright.js
 * (runtime/js/). Built by `charwright emit-web` (runtime/emit_c/web.py: CFLAGS, FEATURES) with
 *
 *   clang --target=wasm32-wasi --sysroot=/usr -O3 -std=c99 -ffp-contract=off -msimd128
 *         -mbulk-memory -mnontrapping-fptoint -msign-ext -mexec-model=reactor -Wl,--strip-all
 *         -o charwright.wasm wasm_api.c -lm
 *
 * (--no-simd: none of the -m features, -DCW_SCALAR: plain MVP WebAssembly, the same text)
 * beside the model.h and sampler.h of `charwright emit-c` (the same C as every other build: its
 * text equals the host build's, and for float32 Python's numpy backend's). wasi-libc gives libm
 * and the string functions only: nothing here reads a file, a clock or the environment, so the
 * module imports nothing and a browser instantiates it with an empty import object.
 *
 * All state lives in one static struct (cw_web): the model's ctx and two samplers, 0 for the
 * generation (over the model's logits) and 1 a free one (over logits JavaScript writes to
 * cw_web_input: golden vectors, a caller's own model). JavaScript runs several generations (or
 * free samplers) on one instance by saving and restoring the regions cw_web_regions lists: the
 * recurrent state, the logits, the sampler's settings, coin count and repetition window; the
 * scratch is rewritten by every pick and is not part of them. A status is CW_OK (0) or a CW_E*
 * code of runtime.c; a pick returns an id >= 0 or -(code).
 */
#define CW_NO_MAIN
#ifndef CW_WEB_MAX_V
#define CW_WEB_MAX_V 65536 /* logits per pick of the free sampler (golden cases: at most 65536) */
#endif
#include "runtime.c"

#define CW_WEB_ABI 2 /* charwright.js refuses a module of another ABI */
#define CW_EXPORT(name) __attribute__((export_name(#name)))

#define CW_WEB_FEATURES 1 /* bit 0: min-p, typical-p, repetition penalty (charwright.js asks) */
/* the scratch serves both samplers: the model's vocabulary and the free sampler's logits */
#define CW_WEB_SCRATCH_V (CW_VOCAB > CW_WEB_MAX_V ? CW_VOCAB : CW_WEB_MAX_V)
#define CW_WEB_WINDOW CW_WINDOW_MAX

/* sampler.h's parts for one sampler: runtime.c's cw_sampler would carry a scratch per sampler */
typedef struct {
    cw_sampling cfg; /* settings, as the chain uses them */
    cw_row row;      /* coin stream; its window points into win */
    int32_t win[CW_WEB_WINDOW];
} cw_web_sampler;

static struct {
    cw_ctx ctx;
    cw_web_sampler s[2];
    float z[CW_VOCAB]; /* the generation's logits, changed in place by a pick */
    double scratch[(CW_SCRATCH_BYTES(CW_WEB_SCRATCH_V) + 7) / 8];
    float in[CW_WEB_MAX_V];     /* the free sampler's logits */
    int32_t ids[CW_WEB_WINDOW]; /* a repetition window's first ids, from JavaScript */
    int regions[9];
} cw_web;

CW_EXPORT(cw_web_abi) int cw_web_abi(void) { return CW_WEB_ABI; }
/* bit 0: min-p, typical-p and the repetition penalty (sampler.h) */
CW_EXPORT(cw_web_features) int cw_web_features(void) { return CW_WEB_FEATURES; }
CW_EXPORT(cw_web_vocab_size) int cw_web_vocab_size(void) { return CW_VOCAB; }
CW_EXPORT(cw_web_eos_id) int cw_web_eos_id(void) { return CW_EOS_ID; }
CW_EXPORT(cw_web_max_v) int cw_web_max_v(void) { return CW_WEB_MAX_V; }
CW_EXPORT(cw_web_max_window) int cw_web_max_window(void) { return CW_WEB_WINDOW; }
CW_EXPORT(cw_web_int8) int cw_web_int8(void) { return CW_INT8; }

/* Entry i's UTF-8 (cw_web_vocab_len(i) bytes, not NUL-terminated; 0 for the end-of-sequence
 * id); NULL / 0 for an i out of range. */
CW_EXPORT(cw_web_vocab_ptr) const char *cw_web_vocab_ptr(int i) {
    return i >= 0 && i < CW_VOCAB && cw_vocab[i] ? cw_vocab[i] : NULL;
}
CW_EXPORT(cw_web_vocab_len) int cw_web_vocab_len(int i) {
    return i >= 0 && i < CW_VOCAB ? (int)cw_vocab_len[i] : 0;
}

/* The matrix-vector kernels' name (kernels.h: "WASM SIMD128", or "scalar" built with
 * -DCW_SCALAR / without -msimd128), NUL-terminated. */
#ifndef CW_KERNEL_NAME
#define CW_KERNEL_NAME "scalar"
#endif
CW_EXPORT(cw_web_kernel) const char *cw_web_kernel(void) { return CW_KERNEL_NAME; }

/* The manifest.json sha256 of the bundle the module was built from (64 hex digits). */
CW_EXPORT(cw_web_bundle_sha256) const char *cw_web_bundle_sha256(void) { return CW_BUNDLE_SHA256; }

/* [n, ptr0, len0, ptr1, len1, ...]: what JavaScript saves and restores to run several
 * generations (which 0: the state, the logits, the generation sampler) or several free
 * samplers (which 1) on one instance. The window's length is the sampler's current one. */
CW_EXPORT(cw_web_regions) const int *cw_web_regions(int which) {
    int *r = cw_web.regions, n = 0, k = which == 1 ? 1 : 0;
    if (k == 0) {
        r[1 + 2 * n] = (int)(size_t)cw_web.ctx.state;
        r[2 + 2 * n++] = (int)sizeof cw_web.ctx.state;
        r[1 + 2 * n] = (int)(size_t)cw_web.ctx.logits;
        r[2 + 2 * n++] = (int)sizeof cw_web.ctx.logits;
    }
    r[1 + 2 * n] = (int)(size_t)&cw_web.s[k];
    r[2 + 2 * n++] = (int)offsetof(cw_web_sampler, win);
    r[1 + 2 * n] = (int)(size_t)cw_web.s[k].win;
    r[2 + 2 * n++] = cw_web.s[k].cfg.penalty_on ? cw_web.s[k].cfg.window * 4 : 0;
    r[0] = n;
    return r;
}

CW_EXPORT(cw_web_reset) int cw_web_reset(void) { return cw_reset(&cw_web.ctx); }

/* Feeds one id; the logits for the next one are then at cw_web_logits(). */
CW_EXPORT(cw_web_step) int cw_web_step(int token) { return cw_step(&cw_web.ctx, token); }

CW_EXPORT(cw_web_logits) const float *cw_web_logits(void) { return cw_web.ctx.logits; }

/* int32 [cw_web_max_window()]: the ids a sampler's repetition window starts with */
CW_EXPORT(cw_web_ids) int32_t *cw_web_ids(void) { return cw_web.ids; }

/* which: 0 = the generation's sampler, 1 = the free one. SAMPLING.md's settings, refused
 * (CW_EPARAM) outside SamplingConfig's ranges: temperature 0 or greedy: argmax; top_k 0: off;
 * top_p 1, min_p 0, typical_p 1, repetition_penalty 1: off; window 1..65536. The window
 * starts as the last of the n_ids ids at cw_web_ids(). */
CW_EXPORT(cw_web_sampler_init)
int cw_web_sampler_init(int which, double temperature, int top_k, double top_p, double min_p,
                        double typical_p, double repetition_penalty, int window, int greedy,
                        uint64_t seed, uint64_t row, int n_ids) {
    cw_web_sampler *s;
    int i;
    if ((which != 0 && which != 1) || n_ids < 0 || n_ids > CW_WEB_WINDOW) return CW_EPARAM;
    for (i = 0; i < n_ids; i++)
        if (cw_web.ids[i] < 0) return CW_EPARAM;
    s = &cw_web.s[which];
    if (cw_sampling_init(&s->cfg, temperature, top_k, top_p, min_p, typical_p,
                         repetition_penalty, window, greedy) != CW_SAMPLER_OK ||
        cw_row_init(&s->row, &s->cfg, seed, row, s->win, cw_web.ids, n_ids) != CW_SAMPLER_OK)
        return CW_EPARAM;
    return CW_OK;
}

/* one pick of sampler `which` from z [n] (changed in place); the scratch's content does not
 * matter between calls (sampler.h), so both samplers share it */
static int cw_web_pick_from(int which, float *z, int n) {
    cw_web_sampler *s = &cw_web.s[which];
    int id = 0;
    s->row.window = s->cfg.penalty_on ? s->win : NULL; /* restored bytes: point it home */
    if (cw_sample_row(&s->cfg, &s->row, z, n, NULL, cw_web.scratch, &id) != CW_SAMPLER_OK)
        return -CW_EPARAM;
    return id;
}

/* The generation's next id from the model's logits (which stay as they are), or -(status). */
CW_EXPORT(cw_web_sample) int cw_web_sample(void) {
    memcpy(cw_web.z, cw_web.ctx.logits, sizeof cw_web.z);
    return cw_web_pick_from(0, cw_web.z, CW_VOCAB);
}

/* The free sampler's next id from the n logits at cw_web_input() (changed by the pick), or
 * -(status). */
CW_EXPORT(cw_web_input) float *cw_web_input(void) { return cw_web.in; }
CW_EXPORT(cw_web_pick) int cw_web_pick(int n) {
    if (n < 1 || n > CW_WEB_MAX_V) return -CW_EPARAM;
    return cw_web_pick_from(1, cw_web.in, n);
}

/* The k-th raw draw (k = 0, 1, ...) of the stream of (seed, row): SAMPLING.md section 1, for a
 * port's test against golden.json's rng streams. */
CW_EXPORT(cw_web_rng_u64) uint64_t cw_web_rng_u64(uint64_t seed, uint64_t row, uint64_t k) {
    return cw_mix64(cw_row_key(seed, row) + (k + 1u) * CW_GOLDEN);
}
