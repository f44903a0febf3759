/* charwright C runtime: the recurrent step and the sampling loop of one bundle, in C99.
 *
 * Copied verbatim by `charwright emit-c`; model.h (generated) holds the model: sizes, weights
 * (float32, or int8 with one float32 scale per output row), the vocabulary as UTF-8 with each
 * entry's byte length (an entry may be U+0000: text is written by length, never as a
 * NUL-terminated string), the sampler's exp tables and the bundle's sha256. No heap, no global
 * mutable state: the caller owns a cw_ctx (state + scratch) and a cw_sampler. Functions return
 * a status (CW_OK = 0) and never exit; text leaves through a callback; only main (behind
 * #ifndef CW_NO_MAIN) prints.
 * The sampler is runtime/c/SAMPLING.md step for step, bit for bit the Python runtime's.
 *
 * Sections, in call order: status + structs, math, the GRU / LSTM / SimpleRNN step, sampler,
 * UTF-8 in and out, generate loop, command-line values without strtod (Cortex-M4), main (stdio
 * on a host; on Cortex-M4, -DCW_SEMIHOST, m4_start.c's semihosting writes: no stdio there).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- status + structs ------------------------------------------------------------------- */

enum { CW_OK = 0, CW_EPARAM = 1, CW_EUNKNOWN = 2, CW_EUTF8 = 3, CW_ETOOLONG = 4 };
enum { CW_GRU = 0, CW_LSTM = 1, CW_RNN = 2 };

#include "model.h"
#if !defined(CW_LAYOUT) || CW_LAYOUT != 2
#error "model.h is from an older charwright emit-c: re-run emit-c (weights are packed now)"
#endif
#include "kernels.h" /* the matrix-vector kernels: scalar reference + one per target */
#ifndef CW_MAX_LAYER_IN
#define CW_MAX_LAYER_IN CW_MAX_IN /* a model.h from before it carried this */
#endif

typedef struct {
    int cell;             /* CW_GRU, CW_LSTM, CW_RNN */
    int units;            /* H */
    int in_dim;           /* inputs of w_in (0 for layer 0: its input is CW_TABLE0's row) */
    const CW_WEIGHT *w_in;  /* [G*H][in_dim] packed (kernels.h; NULL for layer 0) */
    const float *s_in;    /* int8: [G*H] row scales (NULL for float32) */
    const float *b_in;    /* [G*H] (GRU: bias[0]; NULL for layer 0, folded into the table) */
    const CW_WEIGHT *w_rec; /* [G*H][H] packed */
    const float *s_rec;   /* int8: [G*H] row scales */
    const float *b_rec;   /* GRU only (reset_after): bias[1], [G*H]; else NULL */
} cw_layer;

static const cw_layer cw_layers[CW_LAYERS] = { CW_LAYER_TABLE };

/* Everything that changes while a model runs: the caller owns it (a static or a local). A
 * step computes each unit's gates row by row (its rows of W_in and W_rec, then the cell's
 * update), so no gate vector is kept: float32 writes the layer's new h beside the old one
 * (which every row still reads); int8 quantizes the old h first and then updates it in place. */
typedef struct {
    float state[CW_STATE];   /* per layer: h [H] (then c [H] for an LSTM), as the bundle's */
    float logits[CW_VOCAB];  /* after cw_step */
#if CW_INT8
    /* a layer's input (layers after the first) as int8, zero to a multiple of 4 (kernels.h) */
    signed char q_in[CW_QBUF(CW_MAX_LAYER_IN)];
    signed char q_h[CW_QBUF(CW_MAX_IN)]; /* its old h as int8; then the last h, for the dense */
#else
    float h_new[CW_MAX_IN];  /* the layer's new h, until its rows are done */
#endif
} cw_ctx;

#if defined(CW_SEMIHOST) && !defined(CW_NO_MAIN) && !defined(CW_SAMPLER_DOUBLE)
/* Cortex-M4's cw_generate: no float64 exp/log (soft-float: most of the code), so no min-p and
 * typical-p there (-DCW_SAMPLER_DOUBLE puts them back); make check's build has them */
#define CW_SAMPLER_NO_DOUBLE
#endif
#if defined(CW_SEMIHOST) && !defined(CW_SAMPLER_SMALL_STACK)
#define CW_SAMPLER_SMALL_STACK /* Cortex-M4: no 4 KB of digit counts on the stack */
#define CW_SAMPLER_SMALL_CODE  /* and no radix sort (top-p merges) */
#endif
#include "sampler.h" /* the sampler: one source with the CPython extension and WASM */
#ifndef CW_SAMPLER_MAX
#define CW_SAMPLER_MAX CW_VOCAB /* the most logits cw_sample takes */
#endif
#ifndef CW_DEFAULT_MIN_P /* a model.h without them: neutral */
#define CW_DEFAULT_MIN_P 0.0
#define CW_DEFAULT_TYPICAL_P 1.0
#define CW_DEFAULT_REPETITION_PENALTY 1.0
#define CW_DEFAULT_REPETITION_WINDOW 64u
#endif
#ifndef CW_MAX_WINDOW /* the longest repetition window cw_sampler_setup takes */
#ifdef CW_SEMIHOST
#define CW_MAX_WINDOW (CW_DEFAULT_REPETITION_WINDOW > 64 ? CW_DEFAULT_REPETITION_WINDOW : 64)
#else
#define CW_MAX_WINDOW CW_WINDOW_MAX
#endif
#endif

/* One row's sampler (sampler.h's configuration + row state + buffers, no heap). Settings and
 * coins first, then the window, then the scratch (rewritten by every cw_sample). */
typedef struct {
    cw_sampling cfg;      /* the settings as the chain uses them */
    cw_row row;           /* key, coins drawn, the window's place in `window` */
    int32_t window[CW_MAX_WINDOW]; /* the repetition penalty's ring */
    float z[CW_SAMPLER_MAX]; /* scratch: the logits being processed */
    double scratch[(CW_SCRATCH_BYTES(CW_SAMPLER_MAX) + 7) / 8];
} cw_sampler;

/* ---- math ------------------------------------------------------------------------------- */

/* tanh in float32 from + - * / and compares only, so every target computes the same bits (libm's
 * tanhf differs between glibc, newlib and wasi-libc, and does not vectorise): Eigen's rational
 * approximation (the one TensorFlow's CPU kernels use), 13/6 odd/even polynomials in x^2 on x
 * clamped to +-7.90531110763549805 (where it is 1.0f), x itself below 0.0004. Within 7 ulp of
 * tanh (mean 0.8 ulp, 4e-7 absolute at most), measured on 6 million float32 inputs in -12..12.
 * Evaluated in this order exactly (-ffp-contract=off: no fused multiply-add). */
static float cw_tanh(float x) {
    float c = x > 7.90531110763549805f ? 7.90531110763549805f
              : x < -7.90531110763549805f ? -7.90531110763549805f : x;
    float x2 = c * c, p, q;
    p = -2.76076847742355e-16f * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = (p * x2 + 4.89352455891786e-03f) * c;
    q = 1.19825839466702e-06f * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return fabsf(x) < 0.0004f ? x : p / q;
}

static float cw_sigmoid(float x) { return 0.5f + 0.5f * cw_tanh(0.5f * x); } /* numpy's form */

#if CW_INT8
/* q = round(x / sx), sx = max|x| / 127; returns sx (0 for an all-zero vector: q = 0). q has
 * CW_QBUF(n) bytes: CW_PAD4(n) int8, the tail zero (the packed weights' zero columns meet it),
 * spread into int16 pairs where the target's kernel reads them so (kernels_dsp.h). */
static float cw_quantize(const float *x, int n, signed char *q) {
    float amax = 0.0f, inv;
    int i;
    for (i = n; i < CW_PAD4(n); i++) q[i] = 0;
    for (i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    if (amax == 0.0f) { /* q = 0 (spread or not) */
        for (i = 0; i < CW_QBUF(n); i++) q[i] = 0;
        return 0.0f;
    }
    inv = 127.0f / amax;
    /* rintf (to nearest, ties to even: lrintf's value, exactly) and a conversion of the integral
     * result: inline and vectorised where lrintf is a libm call per element (WASM: 6 of the
     * demo's ~59 µs a step in Node). |r| <= 127; a NaN x (never from finite weights) gives 0,
     * not an undefined conversion. */
    for (i = 0; i < n; i++) {
        float r = rintf(x[i] * inv);
        q[i] = (signed char)(r == r ? r : 0.0f);
    }
#ifdef CW_Q_SPREAD
    cw_spread_q(q, CW_PAD4(n)); /* as this target's kernel reads it (kernels.h) */
#endif
    return amax / 127.0f;
}

/* Rows k Hp + j0 .. + nb - 1 (k < G) of a packed W (kernels.h) times the quantized vector q
 * (scale sx) + bias, into out [k * CW_UNITS_BLOCK + b]: an int32 sum per row, both scales
 * applied once. This is where the time goes. */
#define CW_ROWS(out, w, s, q, sx, x, j0, nb, H, n, G, b)                                      \
    cw_rows_i8(out, CW_UNITS_BLOCK, w, s, q, sx, j0, nb, H, n, G, b)
#else
/* The same in float32: each row summed in input order (kernels.h). */
#define CW_ROWS(out, w, s, q, sx, x, j0, nb, H, n, G, b)                                      \
    ((void)(s), cw_rows_f32(out, CW_UNITS_BLOCK, w, x, j0, nb, H, n, G, b))
#endif

/* ---- the step: Keras GRU (reset_after) / LSTM (i, f, c, o) / SimpleRNN ------------------ */

int cw_reset(cw_ctx *ctx) {
    if (!ctx) return CW_EPARAM;
    memset(ctx->state, 0, sizeof ctx->state);
    return CW_OK;
}

/* The G gates of units j0 .. j0 + nb - 1 into gx [k * CW_UNITS_BLOCK + b] (input projection)
 * and gr (recurrent projection), rows k H + j. Layer 0's input projection is CW_TABLE0's row
 * (embedding, kernel and bias). */
#if CW_INT8
#define CW_TABLE0_AT(G, k, j)                                                                 \
    ((float)CW_TABLE0[(size_t)token * (size_t)((G) * H) + (size_t)((k) * H + (j))] *          \
     CW_TABLE0_SCALE[token])
#else
#define CW_TABLE0_AT(G, k, j)                                                                 \
    CW_TABLE0[(size_t)token * (size_t)((G) * H) + (size_t)((k) * H + (j))]
#endif
#define CW_GATES(G, j0, nb, gx, gr)                                                           \
    do {                                                                                      \
        int k_, b_;                                                                           \
        if (l == 0)                                                                           \
            for (k_ = 0; k_ < (G); k_++)                                                      \
                for (b_ = 0; b_ < (nb); b_++)                                                 \
                    (gx)[k_ * CW_UNITS_BLOCK + b_] = CW_TABLE0_AT(G, k_, (j0) + b_);          \
        else                                                                                  \
            CW_ROWS(gx, L->w_in, L->s_in, qx, sx, input, j0, nb, H, n, G, L->b_in);           \
        CW_ROWS(gr, L->w_rec, L->s_rec, qh, sh, h, j0, nb, H, H, G, L->b_rec);                \
    } while (0)

/* Feeds one id; ctx->logits then holds the logits for the next one. Units go in blocks of
 * CW_UNITS_BLOCK: their gates first (16 units: one packed block of each gate, kernels.h), then
 * their cell updates; every value is the same expression as one unit at a time. */
CW_HOT int cw_step(cw_ctx *ctx, int token) {
    int l, j, j0, b, nb, off = 0;
    const float *input = NULL;
    float gx[4 * CW_UNITS_BLOCK], gr[4 * CW_UNITS_BLOCK];
#if CW_INT8
    float sx = 0.0f, sh = 0.0f; /* the scales of the quantized input and old h */
    const signed char *qx, *qh;
#endif
    if (!ctx || token < 0 || token >= CW_VOCAB) return CW_EPARAM;
#if CW_INT8
    qx = ctx->q_in;
    qh = ctx->q_h;
#endif
    for (l = 0; l < CW_LAYERS; l++) {
        const cw_layer *L = &cw_layers[l];
        int H = L->units, n = L->in_dim;
        int G = L->cell == CW_GRU ? 3 : L->cell == CW_LSTM ? 4 : 1;
        float *h = ctx->state + off;
#if CW_INT8
        float *hn = h; /* old h lives on in q_h: update in place */
        if (l > 0) sx = cw_quantize(input, n, ctx->q_in);
        sh = cw_quantize(h, H, ctx->q_h);
#else
        float *hn = ctx->h_new;
#endif
        for (j0 = 0; j0 < H; j0 += CW_UNITS_BLOCK) {
            nb = H - j0 < CW_UNITS_BLOCK ? H - j0 : CW_UNITS_BLOCK;
            if (G == 3) CW_GATES(3, j0, nb, gx, gr);
            else if (G == 4) CW_GATES(4, j0, nb, gx, gr);
            else CW_GATES(1, j0, nb, gx, gr);
            /* the block's cell updates: one loop per cell, element-wise (it vectorises) */
            if (L->cell == CW_GRU) {
                for (b = 0; b < nb; b++) {
                    float z = cw_sigmoid(gx[b] + gr[b]);
                    float rg = cw_sigmoid(gx[CW_UNITS_BLOCK + b] + gr[CW_UNITS_BLOCK + b]);
                    float hh = cw_tanh(gx[2 * CW_UNITS_BLOCK + b] +
                                       rg * gr[2 * CW_UNITS_BLOCK + b]);
                    j = j0 + b;
                    hn[j] = hh + z * (h[j] - hh);
                }
            } else if (L->cell == CW_LSTM) {
                float *c = h + H; /* the rows read h only: c updates in place */
                for (b = 0; b < nb; b++) {
                    float gi = gx[b] + gr[b];
                    float gf = gx[CW_UNITS_BLOCK + b] + gr[CW_UNITS_BLOCK + b];
                    float gc = gx[2 * CW_UNITS_BLOCK + b] + gr[2 * CW_UNITS_BLOCK + b];
                    float go = gx[3 * CW_UNITS_BLOCK + b] + gr[3 * CW_UNITS_BLOCK + b];
                    j = j0 + b;
                    c[j] = cw_sigmoid(gf) * c[j] + cw_sigmoid(gi) * cw_tanh(gc);
                    hn[j] = cw_sigmoid(go) * cw_tanh(c[j]);
                }
            } else {
                for (b = 0; b < nb; b++) hn[j0 + b] = cw_tanh(gx[b] + gr[b]);
            }
        }
        if (hn != h) memcpy(h, hn, (size_t)H * sizeof *h);
        input = h;
        off += (L->cell == CW_LSTM ? 2 : 1) * H;
    }
#if CW_INT8
    sh = cw_quantize(input, CW_LAST_UNITS, ctx->q_h);
#endif
    for (j0 = 0; j0 < CW_VOCAB; j0 += CW_UNITS_BLOCK) { /* the dense layer */
        nb = CW_VOCAB - j0 < CW_UNITS_BLOCK ? CW_VOCAB - j0 : CW_UNITS_BLOCK;
        CW_ROWS(&ctx->logits[j0], CW_DENSE_W, CW_DENSE_SCALE, qh, sh, input, j0, nb, CW_VOCAB,
                CW_LAST_UNITS, 1, CW_DENSE_B);
    }
    return CW_OK;
}

/* ---- sampler (sampler.h; SAMPLING.md) ---------------------------------------------------- */

/* Every setting (SAMPLING.md section 3; the ranges of SamplingConfig, CW_EPARAM outside them):
 * temperature 0 (or greedy != 0): argmax; else 1e-4..1000. top_k 0: off. top_p 1, min_p 0,
 * typical_p 1, repetition_penalty 1: off. repetition_window 1..CW_MAX_WINDOW. The window
 * starts empty (cw_sampler_prime fills it from a prompt; cw_generate does). */
int cw_sampler_setup(cw_sampler *s, double temperature, int top_k, double top_p, double min_p,
                     double typical_p, double repetition_penalty, int repetition_window,
                     int greedy, uint64_t seed, uint64_t row) {
    if (!s || repetition_window < 1 || (unsigned long)repetition_window > CW_MAX_WINDOW)
        return CW_EPARAM;
    memset(s, 0, sizeof *s);
    if (cw_sampling_init(&s->cfg, temperature, top_k, top_p, min_p, typical_p,
                         repetition_penalty, repetition_window, greedy) != CW_SAMPLER_OK ||
        cw_row_init(&s->row, &s->cfg, seed, row, s->window, NULL, 0) != CW_SAMPLER_OK)
        return CW_EPARAM;
    return CW_OK;
}

/* temperature, top-k, top-p only (the rest neutral): cw_sampler_setup's first settings */
int cw_sampler_init(cw_sampler *s, double temperature, int top_k, double top_p, int greedy,
                    uint64_t seed, uint64_t row) {
    return cw_sampler_setup(s, temperature, top_k, top_p, 0.0, 1.0, 1.0, 64, greedy, seed, row);
}

/* The repetition window becomes the last ids of ids [n] (a row's prompt: SAMPLING.md 4). */
int cw_sampler_prime(cw_sampler *s, const int *ids, int n) {
    int k;
    if (!s || n < 0 || (n && !ids)) return CW_EPARAM;
    s->row.window = s->cfg.penalty_on ? s->window : NULL; /* the struct may have been copied */
    s->row.count = s->row.head = 0;
    for (k = n > s->cfg.window ? n - s->cfg.window : 0; k < n; k++)
        cw_row_accept(&s->cfg, &s->row, ids[k]);
    return CW_OK;
}

/* One id from logits [V] (not changed; V <= CW_SAMPLER_MAX), as SAMPLING.md says; allowed
 * [V] (0: the id may not be picked) or NULL. The pick joins the window. */
int cw_sample_masked(cw_sampler *s, const float *logits, int V, const unsigned char *allowed,
                     int *out) {
    if (!s || !logits || !out || V < 1 || V > CW_SAMPLER_MAX) return CW_EPARAM;
    memcpy(s->z, logits, (size_t)V * sizeof *logits);
    s->row.window = s->cfg.penalty_on ? s->window : NULL; /* the struct may have been copied */
    return cw_sample_row(&s->cfg, &s->row, s->z, V, allowed, s->scratch, out) == CW_SAMPLER_OK
               ? CW_OK : CW_EPARAM;
}

int cw_sample(cw_sampler *s, const float *logits, int V, int *out) {
    return cw_sample_masked(s, logits, V, NULL, out);
}

/* ---- UTF-8 in and out --------------------------------------------------------------------- */

/* Bytes of the UTF-8 sequence at p (1..4), or 0 if it is not valid UTF-8. */
static int cw_utf8_len(const unsigned char *p) {
    int n, i;
    uint32_t cp;
    if (p[0] < 0x80) return 1;
    if ((p[0] & 0xE0) == 0xC0) { n = 2; cp = p[0] & 0x1Fu; }
    else if ((p[0] & 0xF0) == 0xE0) { n = 3; cp = p[0] & 0x0Fu; }
    else if ((p[0] & 0xF8) == 0xF0) { n = 4; cp = p[0] & 0x07u; }
    else return 0;
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* text (UTF-8, NUL-terminated) -> the ids to prime with, as charwright does: a model with an
 * end-of-sequence id starts from it; an empty prompt starts from "\n". *bad: byte offset of
 * the first character outside the vocabulary or invalid UTF-8. */
int cw_encode(const char *text, int *ids, int max_ids, int *n_ids, long *bad) {
    const unsigned char *p = (const unsigned char *)text;
    int n = 0, k;
    if (!text || !ids || !n_ids) return CW_EPARAM;
    if (CW_EOS_ID >= 0) {
        if (max_ids < 1) return CW_ETOOLONG;
        ids[n++] = CW_EOS_ID;
    }
    while (*p) {
        int len = cw_utf8_len(p), found = -1;
        if (!len) {
            if (bad) *bad = (long)(p - (const unsigned char *)text);
            return CW_EUTF8;
        }
        if (CW_EOS_ID >= 0 && *p == '\n') found = CW_EOS_ID; /* line mode: '\n' is EOS */
        for (k = 0; k < CW_VOCAB && found < 0; k++)
            if (cw_vocab_len[k] == len && !memcmp(cw_vocab[k], p, (size_t)len))
                found = k;
        if (found < 0) {
            if (bad) *bad = (long)(p - (const unsigned char *)text);
            return CW_EUNKNOWN;
        }
        if (n >= max_ids) return CW_ETOOLONG;
        ids[n++] = found;
        p += len;
    }
    if (n == 0) {
        for (k = 0; k < CW_VOCAB; k++)
            if (cw_vocab_len[k] == 1 && cw_vocab[k][0] == '\n') break;
        if (k == CW_VOCAB) return CW_EUNKNOWN;
        if (max_ids < 1) return CW_ETOOLONG;
        ids[n++] = k;
    }
    *n_ids = n;
    return CW_OK;
}

/* ---- generate loop ------------------------------------------------------------------------- */

/* One character: len bytes of UTF-8 at utf8, not NUL-terminated (the character may be U+0000,
 * one zero byte). */
typedef void (*cw_emit_fn)(const char *utf8, int len, void *user);

#ifdef CW_REGEX
/* emit-c --regex (model.h's cw_dfa_* tables, runtime/emit_c/regex_header.py): which ids the
 * automaton allows at state st with `left` ids to go (RegexMask in Python): the end-of-sequence
 * id where st accepts, a character whose next state can still reach acceptance in time. */
static void cw_dfa_allowed(int st, long left, unsigned char *allowed) {
    int t;
    for (t = 0; t < CW_VOCAB; t++) {
        int nx = cw_dfa_next[st * CW_DFA_CLASSES + cw_dfa_class[t]];
        allowed[t] = (unsigned char)(t == CW_EOS_ID ? cw_dfa_accept[st]
                                                    : nx >= 0 && 1L + cw_dfa_dist[nx] <= left);
    }
}
#endif

/* Primes ids [n_ids] from a zero state, then picks up to n_chars ids (stopping at the end-of-
 * sequence id), passing each character's UTF-8 to emit. With CW_REGEX (emit-c --regex) the
 * text matches the pattern in full: ids are masked by its automaton, and generation ends where
 * the match is complete and cannot go on within n_chars (CW_EPARAM if the shortest match is
 * longer than n_chars). */
int cw_generate(cw_ctx *ctx, cw_sampler *s, const int *ids, int n_ids, long n_chars,
                cw_emit_fn emit, void *user) {
    long i;
    int k, id, rc;
#ifdef CW_REGEX
    int st = 0;
    unsigned char allowed[CW_VOCAB];
    if (n_chars < cw_dfa_min_need[0]) return CW_EPARAM; /* the start's cheapest move */
#endif
    if (!ctx || !s || !ids || n_ids < 1 || n_chars < 0 || !emit) return CW_EPARAM;
    if (n_chars == 0) return CW_OK;
    cw_reset(ctx);
    if ((rc = cw_sampler_prime(s, ids, n_ids)) != CW_OK) return rc;
    for (k = 0; k < n_ids; k++)
        if ((rc = cw_step(ctx, ids[k])) != CW_OK) return rc;
    for (i = 0; i < n_chars; i++) {
#ifdef CW_REGEX
        cw_dfa_allowed(st, n_chars - i, allowed);
        if ((rc = cw_sample_masked(s, ctx->logits, CW_VOCAB, allowed, &id)) != CW_OK) return rc;
#else
        if ((rc = cw_sample(s, ctx->logits, CW_VOCAB, &id)) != CW_OK) return rc;
#endif
        if (id == CW_EOS_ID) break;
        emit(cw_vocab[id], (int)cw_vocab_len[id], user);
#ifdef CW_REGEX
        st = cw_dfa_next[st * CW_DFA_CLASSES + cw_dfa_class[id]];
        if (cw_dfa_min_need[st] > n_chars - i - 1) break; /* complete: no way on in time */
#endif
        if (i + 1 < n_chars && (rc = cw_step(ctx, id)) != CW_OK) return rc;
    }
    return CW_OK;
}

/* ---- command-line values without strtod (Cortex-M4) ------------------------------------- */
#if (defined(CW_SEMIHOST) && !defined(CW_NO_MAIN)) || defined(CW_PARSE_TEST)
/* --temperature and --top-p on Cortex-M4, where newlib's strtod and its helpers would be most of
 * the code. Accepts [+-]DIGITS[.DIGITS][(e|E)[+-]DIGITS] (a mantissa digit on either side of
 * the point) whose value is m * 10^p with at most 15 significant digits in m and p in -22..22
 * (any p when m is 0). m and 10^|p| are then exact doubles, so one IEEE multiply or divide
 * rounds m * 10^p correctly, as strtod does (Clinger's fast path): the same double. Everything
 * else is refused, so a value is never parsed differently from the host, which uses strtod
 * (what the host also accepts and this refuses: leading blanks, more digits, far exponents,
 * hex, inf, nan). tests/runtime/test_emit_c.py checks it against strtod on many values. */
static int cw_parse_decimal(const char *a, double *out) {
    uint64_t m = 0;
    int neg = 0, digits = 0, sig = 0, zeros = 0, dot = 0, p = 0, e = 0, eneg = 0, i;
    double ten = 1.0, v;
    if (*a == '+' || *a == '-') neg = *a++ == '-';
    for (;; a++) {
        if (*a == '.' && !dot) {
            dot = 1;
            continue;
        }
        if (*a < '0' || *a > '9') break;
        digits++;
        if (dot) p--; /* the digits string times 10^p is the value */
        if (*a == '0') {
            if (m) zeros++; /* held back: trailing zeros are not significant */
            continue;
        }
        if (sig + zeros + 1 > 15) return 0;
        for (sig += zeros + 1; zeros; zeros--) m *= 10u;
        m = m * 10u + (uint64_t)(*a - '0');
    }
    if (!digits) return 0;
    if (*a == 'e' || *a == 'E') {
        a++;
        if (*a == '+' || *a == '-') eneg = *a++ == '-';
        if (*a < '0' || *a > '9') return 0;
        for (; *a >= '0' && *a <= '9'; a++)
            if (e < 10000) e = e * 10 + (*a - '0');
    }
    if (*a) return 0;
    p += zeros + (eneg ? -e : e);
    if (m == 0) {
        *out = neg ? -0.0 : 0.0;
        return 1;
    }
    if (p < -22 || p > 22) return 0;
    for (i = 0; i < (p < 0 ? -p : p); i++) ten *= 10.0; /* exact up to 10^22 */
    v = p < 0 ? (double)m / ten : (double)m * ten;
    *out = neg ? -v : v;
    return 1;
}
#endif

/* ---- main: cw_generate [--greedy] [-n N] [--seed S] [--temperature T] [--top-k K]
 *            [--top-p P] [--min-p P] [--typical-p P] [--repetition-penalty R]
 *            [--repetition-window W] PROMPT... ---------------------------------------------- */
#ifndef CW_NO_MAIN
#ifdef CW_SEMIHOST
/* Cortex-M4 (make cortex-m4, -DCW_SEMIHOST): text leaves through m4_start.c's semihosting
 * SYS_WRITE to the console's stdout / stderr handles, and values are read by
 * cw_parse_decimal: no stdio, no strtod, no heap in the image. */
/* n bytes of s to fd 1 (stdout) or 2 (stderr); 0 when all were written */
extern int cw_m4_write(int fd, const char *s, uint32_t n);
extern uint64_t cw_m4_time(void);           /* SYS_TIME ^ SYS_CLOCK, for an unseeded run */
static int cw_out_failed;
static void cw_write(int fd, const char *s, size_t n) {
    if (cw_m4_write(fd, s, (uint32_t)n) && fd == 1) cw_out_failed = 1;
}
#define cw_flush() ((void)0)
#define CW_OUT_FAILED() cw_out_failed
#define CW_CLOCK_SEED() cw_m4_time()
#define cw_parse_double cw_parse_decimal
#else
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void cw_write(int fd, const char *s, size_t n) {
    fwrite(s, 1, n, fd == 2 ? stderr : stdout);
}
#define cw_flush() fflush(stdout)
#define CW_OUT_FAILED() ferror(stdout)
#define CW_CLOCK_SEED() ((uint64_t)time(NULL) ^ (uint64_t)clock())

static int cw_parse_double(const char *a, double *out) {
    char *end;
    errno = 0;
    *out = strtod(a, &end);
    return *a && !*end && errno == 0 && *out == *out;
}
#endif

#ifndef CW_MAX_PROMPT
#define CW_MAX_PROMPT 4096 /* bytes of prompt, and ids */
#endif

static void cw_put(int fd, const char *s) { cw_write(fd, s, strlen(s)); }

static void cw_emit_stdout(const char *utf8, int len, void *user) {
    (void)user;
    cw_write(1, utf8, (size_t)len);
    cw_flush();
}

/* v in decimal, in buf [21]; returns buf. By subtraction: no 64-bit division (libgcc's
 * __udivmoddi4 is 700 bytes on Cortex-M4), and only error messages and --bench use it. */
static const char *cw_decimal(uint64_t v, char *buf) {
    uint64_t pw = 1;
    int n = 0, e = 0, k;
    while (pw < 10000000000000000000u && pw * 10u <= v) {
        pw *= 10u;
        e++;
    }
    for (; e >= 0; e--) {
        char d = '0';
        for (pw = 1, k = 0; k < e; k++) pw *= 10u;
        while (v >= pw) {
            v -= pw;
            d++;
        }
        buf[n++] = d;
    }
    buf[n] = '\0';
    return buf;
}

/* a == b, for options (no strcmp: newlib's is 700 bytes on Cortex-M4) */
static int cw_is(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

static int cw_fail(const char *msg, const char *arg) {
    cw_put(2, "cw_generate: ");
    cw_put(2, msg);
    if (arg) {
        cw_put(2, ": ");
        cw_put(2, arg);
    }
    cw_put(2, "\n");
    return 2;
}

static int cw_parse_u64(const char *a, uint64_t max, uint64_t *out) {
    uint64_t v = 0;
    if (!*a) return 0;
    for (; *a; a++) {
        /* v * 10 + digit > max, without a 64-bit division (v * 10 + 9 cannot wrap here) */
        if (*a < '0' || *a > '9' || v > 0xFFFFFFFFFFFFFFFFu / 10u - 1u) return 0;
        v = v * 10u + (uint64_t)(*a - '0');
        if (v > max) return 0;
    }
    *out = v;
    return 1;
}

#ifdef CW_BENCH
/* --bench, in the cw_bench / cw_bench-m4.elf builds only (make cw_bench, make
 * cw_bench-m4.elf): from the prompt's ids, in this build's ticks, N steps alone, the generate
 * loop over N characters (emit only counts them) and N sampler calls alone on logits recorded
 * from that loop; one line out. Ticks: clock() on a host; on Cortex-M4 the SysTick count of
 * m4_start.c (processor clock, 25 MHz on mps2-an386: one tick per 40 instructions under
 * qemu -icount shift=0), where the line also gives the stack's high-water mark in bytes. */
#ifndef CW_BENCH_ROWS
#define CW_BENCH_ROWS 8
#endif
#ifdef CW_BENCH_M4
extern unsigned long long cw_m4_ticks(void);
extern unsigned long cw_m4_stack_used(void);
#define CW_TICKS() cw_m4_ticks()
#define CW_TICKS_PER_S 25000000u
#else
#define CW_TICKS() ((unsigned long long)clock())
#define CW_TICKS_PER_S CLOCKS_PER_SEC
#endif

typedef struct { const cw_ctx *ctx; long chars; } cw_bench_sink;
static float cw_bench_rows[CW_BENCH_ROWS][CW_VOCAB];

static void cw_bench_emit(const char *utf8, int len, void *user) {
    cw_bench_sink *k = (cw_bench_sink *)user;
    (void)utf8;
    (void)len;
    if (k->chars < CW_BENCH_ROWS)
        memcpy(cw_bench_rows[k->chars], k->ctx->logits, sizeof cw_bench_rows[0]);
    k->chars++;
}

static int cw_bench(cw_ctx *ctx, cw_sampler *s, const cw_sampler *fresh, const int *ids,
                    int n_ids, long n) {
    cw_bench_sink sink;
    unsigned long long t0, t_step, t_loop, t_sample;
    long i, rows, sum = 0;
    int id = 0, k;
    char buf[21];
    const char *words[20];
    uint64_t vals[9];
    cw_reset(ctx);
    t0 = CW_TICKS();
    for (i = 0; i < n; i++)
        if (cw_step(ctx, ids[i % n_ids]) != CW_OK) return 1;
    t_step = CW_TICKS() - t0;
    sink.ctx = ctx;
    sink.chars = 0;
    *s = *fresh;
    t0 = CW_TICKS();
    if (cw_generate(ctx, s, ids, n_ids, n, cw_bench_emit, &sink) != CW_OK) return 1;
    t_loop = CW_TICKS() - t0;
    rows = sink.chars < CW_BENCH_ROWS ? sink.chars : CW_BENCH_ROWS;
    *s = *fresh;
    t0 = CW_TICKS();
    for (i = 0; rows > 0 && i < n; i++) {
        if (cw_sample(s, cw_bench_rows[i % rows], CW_VOCAB, &id) != CW_OK) return 1;
        sum += id;
    }
    t_sample = CW_TICKS() - t0;
    /* "bench ticks_per_s T ids I steps N T chars C T samples N T checksum S[ stack B]" */
    words[0] = "bench ticks_per_s ";
    words[1] = " ids ";
    words[2] = " steps ";
    words[3] = " ";
    words[4] = " chars ";
    words[5] = " ";
    words[6] = " samples ";
    words[7] = " ";
    words[8] = " checksum ";
    vals[0] = (uint64_t)CW_TICKS_PER_S;
    vals[1] = (uint64_t)n_ids;
    vals[2] = (uint64_t)n;
    vals[3] = t_step;
    vals[4] = (uint64_t)sink.chars;
    vals[5] = t_loop;
    vals[6] = rows > 0 ? (uint64_t)n : 0u;
    vals[7] = t_sample;
    vals[8] = (uint64_t)sum; /* ids are >= 0 */
    for (k = 0; k < 9; k++) {
        cw_put(1, words[k]);
        cw_put(1, cw_decimal(vals[k], buf));
    }
#ifdef CW_BENCH_M4
    cw_put(1, " stack ");
    cw_put(1, cw_decimal(cw_m4_stack_used(), buf));
#endif
    cw_put(1, "\n");
    cw_flush();
    return 0;
}
#endif

#ifdef CW_SEMIHOST
/* RAM on a microcontroller (make cortex-m4): the prompt's ids live in the sampler's z and
 * scratch, which cw_generate (and cw_bench) read them from before the first cw_sample writes
 * there (cw_sampler_prime and cw_step touch neither), where those hold CW_MAX_PROMPT + 1 ids:
 * 1 KB less (the demo's 65 ids: 1,364 bytes). A static array otherwise. */
#define CW_IDS_ROOM                                                                           \
    (offsetof(cw_sampler, scratch) + sizeof(((cw_sampler *)0)->scratch) - offsetof(cw_sampler, z))
#define CW_IDS_IN_SAMPLER (CW_IDS_ROOM >= (CW_MAX_PROMPT + 1) * sizeof(int))
#endif

int main(int argc, char **argv) {
    static cw_ctx ctx;
    static cw_sampler sampler;
#ifdef CW_SEMIHOST
    /* m4_start.c's argv words lie in order in one buffer: the prompt is joined there in place */
    static char empty[1];
    static int ids_own[CW_IDS_IN_SAMPLER ? 1 : CW_MAX_PROMPT + 1];
    int *ids = CW_IDS_IN_SAMPLER ? (int *)(void *)sampler.z : ids_own;
    char *prompt = empty;
#else
    static char prompt[CW_MAX_PROMPT];
    static int ids[CW_MAX_PROMPT + 1];
#endif
    double temperature = CW_DEFAULT_TEMPERATURE, top_p = CW_DEFAULT_TOP_P, v;
    double min_p = CW_DEFAULT_MIN_P, typical_p = CW_DEFAULT_TYPICAL_P;
    double penalty = CW_DEFAULT_REPETITION_PENALTY;
    uint64_t seed = 0, u, n_chars = 300, top_k = CW_DEFAULT_TOP_K;
    uint64_t window = CW_DEFAULT_REPETITION_WINDOW;
    int greedy = 0, have_seed = 0, a, n_ids = 0, rc, bench = 0;
    size_t used = 0;
    long bad = 0;
    char buf[21];
    for (a = 1; a < argc && argv[a][0] == '-' && argv[a][1]; a++) {
        const char *o = argv[a];
        if (cw_is(o, "--")) { a++; break; }
        if (cw_is(o, "--greedy")) { greedy = 1; continue; }
#ifdef CW_BENCH
        if (cw_is(o, "--bench")) { bench = 1; continue; }
#endif
        if (!cw_is(o, "-n") && !cw_is(o, "--max-chars") && !cw_is(o, "--seed") &&
            !cw_is(o, "--temperature") && !cw_is(o, "--top-k") && !cw_is(o, "--top-p") &&
            !cw_is(o, "--min-p") && !cw_is(o, "--typical-p") &&
            !cw_is(o, "--repetition-penalty") && !cw_is(o, "--repetition-window"))
            return cw_fail("unknown option (usage: cw_generate [--greedy] [-n N] [--seed S] "
                           "[--temperature T] [--top-k K] [--top-p P] [--min-p P] "
                           "[--typical-p P] [--repetition-penalty R] [--repetition-window W] "
                           "PROMPT...)", o);
        if (a + 1 >= argc) return cw_fail("option needs a value", o);
        if (cw_is(o, "-n") || cw_is(o, "--max-chars")) {
            if (!cw_parse_u64(argv[++a], 0x7FFFFFFFu, &n_chars))
                return cw_fail("-n must be an integer >= 0", argv[a]);
        } else if (cw_is(o, "--seed")) {
            if (!cw_parse_u64(argv[++a], 0x7FFFFFFFFFFFFFFFu, &seed))
                return cw_fail("--seed must be an integer in 0..2**63-1", argv[a]);
            have_seed = 1;
        } else if (cw_is(o, "--temperature")) {
            if (!cw_parse_double(argv[++a], &v) || !(v == 0.0 || (v >= 1e-4 && v <= 1000.0)))
                return cw_fail("--temperature must be 0 (greedy) or in 0.0001..1000", argv[a]);
            temperature = v;
        } else if (cw_is(o, "--top-k")) {
            if (!cw_parse_u64(argv[++a], 0x7FFFFFFFu, &u) || u < 1)
                return cw_fail("--top-k must be an integer >= 1", argv[a]);
            top_k = u;
        } else if (cw_is(o, "--top-p")) {
            if (!cw_parse_double(argv[++a], &v) || !(v > 0.0 && v <= 1.0))
                return cw_fail("--top-p must be in (0, 1]", argv[a]);
            top_p = v;
        } else if (cw_is(o, "--min-p")) {
#ifdef CW_SAMPLER_NO_DOUBLE
            return cw_fail("--min-p is not in this build (no float64 log; the host build has "
                           "it)", NULL);
#endif
            if (!cw_parse_double(argv[++a], &v) || !(v >= 0.0 && v < 1.0))
                return cw_fail("--min-p must be in [0, 1)", argv[a]);
            min_p = v;
        } else if (cw_is(o, "--typical-p")) {
#ifdef CW_SAMPLER_NO_DOUBLE
            return cw_fail("--typical-p is not in this build (no float64 exp and log; the host "
                           "build has it)", NULL);
#endif
            if (!cw_parse_double(argv[++a], &v) || !(v > 0.0 && v <= 1.0))
                return cw_fail("--typical-p must be in (0, 1]", argv[a]);
            typical_p = v;
        } else if (cw_is(o, "--repetition-penalty")) {
            if (!cw_parse_double(argv[++a], &v) || !(v >= 0.01 && v <= 100.0))
                return cw_fail("--repetition-penalty must be in 0.01..100 (1 = off)", argv[a]);
            penalty = v;
        } else if (cw_is(o, "--repetition-window")) {
            if (!cw_parse_u64(argv[++a], CW_MAX_WINDOW, &window) || window < 1) {
                /* the message names this build's bound: "...in 1..<CW_MAX_WINDOW>" */
                static const char head[] = "--repetition-window must be an integer in 1..";
                char msg[sizeof head + 24], *e = msg + sizeof msg - 1;
                unsigned long w = (unsigned long)CW_MAX_WINDOW;
                *e = 0;
                do *--e = (char)('0' + w % 10); while (w /= 10);
                e -= sizeof head - 1;
                memcpy(e, head, sizeof head - 1);
                return cw_fail(e, argv[a]);
            }
        } else {
            return cw_fail("unknown option (see the usage in runtime.c)", o);
        }
    }
#ifdef CW_SEMIHOST
    if (a < argc) prompt = argv[a]; /* each word moves left, over the ends of those before it */
#endif
    for (; a < argc; a++) { /* the rest, joined by single spaces, is the prompt */
        const char *w = argv[a];
        if (used + strlen(w) + 2 > CW_MAX_PROMPT) return cw_fail("the prompt is too long", NULL);
        if (used) prompt[used++] = ' ';
        while (*w) prompt[used++] = *w++; /* forward, byte by byte: no memmove linked on M4 */
    }
    prompt[used] = '\0';
    if (!have_seed) seed = CW_CLOCK_SEED() & 0x7FFFFFFFFFFFFFFFu;
    if (cw_sampler_setup(&sampler, temperature, (int)(top_k < CW_VOCAB ? top_k : CW_VOCAB),
                         top_p, min_p, typical_p, penalty, (int)window, greedy, seed,
                         0) != CW_OK)
        return cw_fail("bad sampling parameters", NULL);
    rc = cw_encode(prompt, ids, CW_MAX_PROMPT + 1, &n_ids, &bad);
    if (rc == CW_EUNKNOWN) {
        if (!used) return cw_fail("empty prompt: this model has no '\\n' to start from", NULL);
        cw_put(2, "cw_generate: the prompt has a character outside the vocabulary at byte ");
        cw_put(2, cw_decimal((uint64_t)bad, buf));
        cw_put(2, "\n");
        return 2;
    }
    if (rc == CW_EUTF8) return cw_fail("the prompt is not valid UTF-8", NULL);
    if (rc != CW_OK) return cw_fail("the prompt is too long", NULL);
    if (bench) {
#ifdef CW_BENCH
        static cw_sampler fresh;
        fresh = sampler;
        return cw_bench(&ctx, &sampler, &fresh, ids, n_ids, (long)n_chars);
#endif
    }
#ifdef CW_REGEX
    if ((long)n_chars < cw_dfa_min_need[0])
        return cw_fail("-n is shorter than the shortest match of the regex baked into model.h",
                       NULL);
#endif
    cw_put(1, prompt);
    rc = cw_generate(&ctx, &sampler, ids, n_ids, (long)n_chars, cw_emit_stdout, NULL);
    cw_put(1, "\n");
    cw_flush();
    if (rc != CW_OK) return cw_fail("generation failed", NULL);
    return CW_OUT_FAILED() ? 1 : 0;
}
#endif
