/* charwright's WebAssembly entry points: runtime.c (step, sampler, vocabulary) behind a few
 * exported functions, for charwright.js (runtime/js/). Built by `charwright emit-web` with
 *
 *   clang --target=wasm32-wasi --sysroot=/usr -O3 -std=c99 -ffp-contract=off -nostartfiles
 *         -Wl,--no-entry -o charwright.wasm wasm_api.c -lm
 *
 * beside the model.h of `charwright emit-c` (the same C as every other build: its text equals
 * the host build's and Python's numpy backend's). wasi-libc gives libm and the string functions
 * only: nothing here reads a file, a clock or the environment, so the module imports nothing and
 * a browser instantiates it with an empty import object.
 *
 * All state lives in one static struct (cw_web): a model's ctx and the generation sampler, plus
 * a second sampler for logits handed in from JavaScript (golden vectors, a caller's own model).
 * JavaScript runs several generations on one instance by saving and restoring the regions that
 * cw_web_regions lists (the state, the logits, the sampler's settings and coin count): the
 * sampler's scratch arrays are rewritten by every cw_sample call and are not part of them.
 * Status: the functions return CW_OK (0) or a CW_E* code of runtime.c; a pick returns an id >= 0
 * or -(code).
 */
#define CW_NO_MAIN
#ifndef CW_WEB_MAX_V
#define CW_WEB_MAX_V 65536 /* logits per call of the free sampler (golden cases: at most 65536) */
#endif
#ifndef CW_SAMPLER_MAX
#define CW_SAMPLER_MAX CW_WEB_MAX_V
#endif
#include "runtime.c"

#define CW_WEB_ABI 1 /* charwright.js refuses a module of another ABI */
#define CW_EXPORT(name) __attribute__((export_name(#name)))

static struct {
    cw_ctx ctx;
    cw_sampler gen;    /* the generation's sampler (over the model's logits) */
    cw_sampler free_s; /* cw_web_pick's, over logits written to in[] by the caller */
    float in[CW_WEB_MAX_V];
    int regions[7];
} cw_web;

CW_EXPORT(cw_web_abi) int cw_web_abi(void) { return CW_WEB_ABI; }
CW_EXPORT(cw_web_vocab_size) int cw_web_vocab_size(void) { return CW_VOCAB; }
CW_EXPORT(cw_web_eos_id) int cw_web_eos_id(void) { return CW_EOS_ID; }
CW_EXPORT(cw_web_max_v) int cw_web_max_v(void) { return CW_WEB_MAX_V; }
CW_EXPORT(cw_web_int8) int cw_web_int8(void) { return CW_INT8; }

/* Entry i's UTF-8 (cw_web_vocab_len(i) bytes, not NUL-terminated; 0 for the end-of-sequence
 * id); NULL / 0 for an i out of range. */
CW_EXPORT(cw_web_vocab_ptr) const char *cw_web_vocab_ptr(int i) {
    return i >= 0 && i < CW_VOCAB && cw_vocab[i] ? cw_vocab[i] : NULL;
}
CW_EXPORT(cw_web_vocab_len) int cw_web_vocab_len(int i) {
    return i >= 0 && i < CW_VOCAB ? (int)cw_vocab_len[i] : 0;
}

/* The manifest.json sha256 of the bundle the module was built from (64 hex digits). */
CW_EXPORT(cw_web_bundle_sha256) const char *cw_web_bundle_sha256(void) { return CW_BUNDLE_SHA256; }

/* [n, ptr0, len0, ptr1, len1, ...]: what JavaScript saves and restores to run several
 * generations (which 0: the state, the logits, the generation sampler's settings and coins) or
 * several free samplers (which 1: the free sampler's settings and coins) on one instance. */
CW_EXPORT(cw_web_regions) const int *cw_web_regions(int which) {
    int *r = cw_web.regions;
    if (which == 1) {
        r[0] = 1;
        r[1] = (int)(size_t)&cw_web.free_s;
        r[2] = (int)offsetof(cw_sampler, z); /* settings + coins, not the scratch */
        return r;
    }
    r[0] = 3;
    r[1] = (int)(size_t)cw_web.ctx.state;
    r[2] = (int)sizeof cw_web.ctx.state;
    r[3] = (int)(size_t)cw_web.ctx.logits;
    r[4] = (int)sizeof cw_web.ctx.logits;
    r[5] = (int)(size_t)&cw_web.gen;
    r[6] = (int)offsetof(cw_sampler, z);
    return r;
}

CW_EXPORT(cw_web_reset) int cw_web_reset(void) { return cw_reset(&cw_web.ctx); }

/* Feeds one id; the logits for the next one are then at cw_web_logits(). */
CW_EXPORT(cw_web_step) int cw_web_step(int token) { return cw_step(&cw_web.ctx, token); }

CW_EXPORT(cw_web_logits) const float *cw_web_logits(void) { return cw_web.ctx.logits; }

/* which: 0 = the generation's sampler, 1 = the free one. The settings are runtime.c's
 * cw_sampler_init's (temperature 0 or greedy: argmax; top_k 0: off; top_p 1: off). */
CW_EXPORT(cw_web_sampler_init)
int cw_web_sampler_init(int which, double temperature, int top_k, double top_p, int greedy,
                        uint64_t seed, uint64_t row) {
    if (which != 0 && which != 1) return -CW_EPARAM;
    return cw_sampler_init(which ? &cw_web.free_s : &cw_web.gen, temperature, top_k, top_p,
                           greedy, seed, row);
}

/* The generation's next id from the model's logits, or -(status). */
CW_EXPORT(cw_web_sample) int cw_web_sample(void) {
    int id = 0, rc = cw_sample(&cw_web.gen, cw_web.ctx.logits, CW_VOCAB, &id);
    return rc == CW_OK ? id : -rc;
}

/* The free sampler's next id from the n logits at cw_web_input(), or -(status). */
CW_EXPORT(cw_web_input) float *cw_web_input(void) { return cw_web.in; }
CW_EXPORT(cw_web_pick) int cw_web_pick(int n) {
    int id = 0, rc;
    if (n < 1 || n > CW_WEB_MAX_V) return -CW_EPARAM;
    rc = cw_sample(&cw_web.free_s, cw_web.in, n, &id);
    return rc == CW_OK ? id : -rc;
}

/* The k-th raw draw (k = 0, 1, ...) of the stream of (seed, row): SAMPLING.md section 1, for a
 * port's test against golden.json's rng streams. */
CW_EXPORT(cw_web_rng_u64) uint64_t cw_web_rng_u64(uint64_t seed, uint64_t row, uint64_t k) {
    uint64_t key = cw_mix64(cw_mix64(seed + CW_GOLDEN) ^ row);
    return cw_mix64(key + (k + 1u) * CW_GOLDEN);
}
