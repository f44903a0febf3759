/* charwright C runtime: the recurrent step and the sampling loop of one bundle, in C99.
 *
 * Copied verbatim by `charwright emit-c`; model.h (generated) holds the model: sizes, weights
 * (float32, or int8 with one float32 scale per output row), the vocabulary as UTF-8, the
 * sampler's exp tables and the bundle's sha256. No heap, no global mutable state: the caller
 * owns a cw_ctx (state + scratch) and a cw_sampler. Functions return a status (CW_OK = 0) and
 * never exit; text leaves through a callback; only main (behind #ifndef CW_NO_MAIN) prints.
 * The sampler is runtime/c/SAMPLING.md step for step, bit for bit the Python runtime's.
 *
 * Sections, in call order: status + structs, math, the GRU / LSTM / SimpleRNN step, sampler,
 * UTF-8 in and out, generate loop, main.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- status + structs ------------------------------------------------------------------- */

enum { CW_OK = 0, CW_EPARAM = 1, CW_EUNKNOWN = 2, CW_EUTF8 = 3, CW_ETOOLONG = 4 };
enum { CW_GRU = 0, CW_LSTM = 1, CW_RNN = 2 };

#include "model.h"

typedef struct {
    int cell;             /* CW_GRU, CW_LSTM, CW_RNN */
    int units;            /* H */
    int in_dim;           /* inputs of w_in (0 for layer 0: its input is CW_TABLE0's row) */
    const CW_WEIGHT *w_in;  /* [G*H][in_dim], row-major (NULL for layer 0) */
    const float *s_in;    /* int8: [G*H] row scales (NULL for float32) */
    const float *b_in;    /* [G*H] (GRU: bias[0]; NULL for layer 0, folded into the table) */
    const CW_WEIGHT *w_rec; /* [G*H][H] */
    const float *s_rec;   /* int8: [G*H] row scales */
    const float *b_rec;   /* GRU only (reset_after): bias[1], [G*H]; else NULL */
} cw_layer;

static const cw_layer cw_layers[CW_LAYERS] = { CW_LAYER_TABLE };

/* Everything that changes while a model runs: the caller owns it (a static or a local). */
typedef struct {
    float state[CW_STATE];   /* per layer: h [H] (then c [H] for an LSTM), as the bundle's */
    float logits[CW_VOCAB];  /* after cw_step */
    float x[CW_MAX_GATES];   /* input projection of the current layer */
    float rec[CW_MAX_GATES]; /* recurrent projection */
#if CW_INT8
    signed char q[CW_MAX_IN]; /* an activation vector quantized to int8 */
#endif
} cw_ctx;

#ifndef CW_SAMPLER_MAX
#define CW_SAMPLER_MAX CW_VOCAB /* the most logits cw_sample takes */
#endif

typedef struct {
    int greedy;           /* 1: argmax, no coin */
    float inv_t;          /* float32(1 / temperature) */
    int top_k;            /* 0: off */
    float top_p_target;   /* float32(p * (1 - 2**-10)); 0: off */
    uint64_t key;         /* splitmix64 key of (seed, row) */
    uint64_t drawn;       /* coins drawn so far */
    float z[CW_SAMPLER_MAX]; /* scratch: the logits being processed */
    float s[CW_SAMPLER_MAX]; /* scratch: sorted copy (top-k, top-p) */
    float c[CW_SAMPLER_MAX]; /* scratch: running sums */
} cw_sampler;

/* ---- math ------------------------------------------------------------------------------- */

static float cw_sigmoid(float x) { return 0.5f + 0.5f * tanhf(0.5f * x); } /* numpy's form */

#if CW_INT8
/* q = round(x / sx), sx = max|x| / 127; returns sx (0 for an all-zero vector: q = 0). */
static float cw_quantize(const float *x, int n, signed char *q) {
    float amax = 0.0f, inv;
    int i;
    for (i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    if (amax == 0.0f) {
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    inv = 127.0f / amax;
    for (i = 0; i < n; i++) q[i] = (signed char)lrintf(x[i] * inv);
    return amax / 127.0f;
}

/* W (d, n) int8 with row scales sw @ x (n,) -> out (d,) (+ bias): int32 sums, both scales
 * applied once per row. This is where the time goes. */
static void cw_matmul(float *out, const signed char *w, const float *sw, const float *x,
                      int d, int n, const float *bias, signed char *q) {
    int i, j;
    float sx = cw_quantize(x, n, q);
    for (j = 0; j < d; j++) {
        const signed char *row = w + (size_t)j * (size_t)n;
        int32_t acc = 0;
        for (i = 0; i < n; i++) acc += (int32_t)row[i] * (int32_t)q[i];
        out[j] = (float)acc * (sw[j] * sx) + (bias ? bias[j] : 0.0f);
    }
}
#define CW_MATMUL(out, w, s, x, d, n, b, ctx) cw_matmul(out, w, s, x, d, n, b, (ctx)->q)
#else
/* W (d, n) @ x (n,) -> out (d,) (+ bias), sums in order. This is where the time goes. */
static void cw_matmul(float *out, const float *w, const float *x, int d, int n,
                      const float *bias) {
    int i, j;
    for (j = 0; j < d; j++) {
        const float *row = w + (size_t)j * (size_t)n;
        float acc = 0.0f;
        for (i = 0; i < n; i++) acc += row[i] * x[i];
        out[j] = acc + (bias ? bias[j] : 0.0f);
    }
}
#define CW_MATMUL(out, w, s, x, d, n, b, ctx) ((void)(s), cw_matmul(out, w, x, d, n, b))
#endif

/* ---- the step: Keras GRU (reset_after) / LSTM (i, f, c, o) / SimpleRNN ------------------ */

int cw_reset(cw_ctx *ctx) {
    if (!ctx) return CW_EPARAM;
    memset(ctx->state, 0, sizeof ctx->state);
    return CW_OK;
}

/* Feeds one id; ctx->logits then holds the logits for the next one. */
int cw_step(cw_ctx *ctx, int token) {
    int l, j, off = 0;
    const float *input = NULL;
    if (!ctx || token < 0 || token >= CW_VOCAB) return CW_EPARAM;
    for (l = 0; l < CW_LAYERS; l++) {
        const cw_layer *L = &cw_layers[l];
        int H = L->units, G = L->cell == CW_GRU ? 3 : L->cell == CW_LSTM ? 4 : 1;
        float *h = ctx->state + off;
        if (l == 0) { /* embedding, input projection and bias in one table row */
            for (j = 0; j < G * H; j++)
#if CW_INT8
                ctx->x[j] = (float)CW_TABLE0[(size_t)token * (size_t)(G * H) + (size_t)j]
                            * CW_TABLE0_SCALE[token];
#else
                ctx->x[j] = CW_TABLE0[(size_t)token * (size_t)(G * H) + (size_t)j];
#endif
        } else {
            CW_MATMUL(ctx->x, L->w_in, L->s_in, input, G * H, L->in_dim, L->b_in, ctx);
        }
        CW_MATMUL(ctx->rec, L->w_rec, L->s_rec, h, G * H, H, L->b_rec, ctx);
        if (L->cell == CW_GRU) {
            for (j = 0; j < H; j++) {
                float z = cw_sigmoid(ctx->x[j] + ctx->rec[j]);
                float r = cw_sigmoid(ctx->x[H + j] + ctx->rec[H + j]);
                float hh = tanhf(ctx->x[2 * H + j] + r * ctx->rec[2 * H + j]);
                h[j] = hh + z * (h[j] - hh);
            }
        } else if (L->cell == CW_LSTM) {
            float *c = h + H;
            for (j = 0; j < H; j++) {
                float *g = ctx->x;
                float gi = g[j] + ctx->rec[j], gf = g[H + j] + ctx->rec[H + j];
                float gc = g[2 * H + j] + ctx->rec[2 * H + j];
                float go = g[3 * H + j] + ctx->rec[3 * H + j];
                c[j] = cw_sigmoid(gf) * c[j] + cw_sigmoid(gi) * tanhf(gc);
                h[j] = cw_sigmoid(go) * tanhf(c[j]);
            }
        } else {
            for (j = 0; j < H; j++) h[j] = tanhf(ctx->x[j] + ctx->rec[j]);
        }
        input = h;
        off += (L->cell == CW_LSTM ? 2 : 1) * H;
    }
    CW_MATMUL(ctx->logits, CW_DENSE_W, CW_DENSE_SCALE, input, CW_VOCAB, CW_LAST_UNITS,
              CW_DENSE_B, ctx);
    return CW_OK;
}

/* ---- sampler (SAMPLING.md) ---------------------------------------------------------------- */

static const uint64_t CW_GOLDEN = 0x9E3779B97F4A7C15u;

static uint64_t cw_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* The row's next coin in [0, 1): splitmix64 from its key, top 24 bits. */
static float cw_coin(cw_sampler *s) {
    uint64_t x;
    s->drawn += 1u;
    x = cw_mix64(s->key + s->drawn * CW_GOLDEN);
    return (float)(uint32_t)(x >> 40) * (1.0f / 16777216.0f);
}

/* exp(z - m) by table, to 1.2e-4 relative; 0 below m - 32 (and for -inf, NaN). */
static float cw_weight(float m, float z) {
    float d = (m - z) * 4096.0f;
    long q;
    if (!(d < 131072.0f)) return 0.0f;
    q = (long)d;
    return CW_EXP_HI[q >> 8] * CW_EXP_LO[q & 255];
}

/* temperature 0 (or greedy != 0): argmax; else 1e-4..1000. top_k 0: off. top_p 1: off. */
int cw_sampler_init(cw_sampler *s, double temperature, int top_k, double top_p, int greedy,
                    uint64_t seed, uint64_t row) {
    if (!s) return CW_EPARAM;
    if (!(temperature == 0.0 || (temperature >= 1e-4 && temperature <= 1000.0))) return CW_EPARAM;
    if (top_k < 0 || !(top_p > 0.0 && top_p <= 1.0) || seed > 0x7FFFFFFFFFFFFFFFu)
        return CW_EPARAM;
    memset(s, 0, sizeof *s);
    s->greedy = greedy || temperature == 0.0;
    s->inv_t = s->greedy ? 1.0f : (float)(1.0 / temperature);
    s->top_k = top_k;
    s->top_p_target = top_p < 1.0 ? (float)(top_p * (1.0 - 1.0 / 1024.0)) : 0.0f;
    s->key = cw_mix64(cw_mix64(seed + CW_GOLDEN) ^ row);
    return CW_OK;
}

static int cw_argmax(const float *z, int n) {
    int i, best = 0;
    for (i = 1; i < n; i++)
        if (z[i] > z[best]) best = i;
    return best;
}

static void cw_sort_desc(float *a, int n) { /* insertion sort: V is small */
    int i, j;
    for (i = 1; i < n; i++) {
        float v = a[i];
        for (j = i; j > 0 && a[j - 1] < v; j--) a[j] = a[j - 1];
        a[j] = v;
    }
}

/* One id from logits [V] (not changed; V <= CW_SAMPLER_MAX):
 * temperature -> top-k -> top-p -> categorical, as SAMPLING.md says. */
int cw_sample(cw_sampler *s, const float *logits, int V, int *out) {
    float *z, m, t;
    int i;
    if (!s || !logits || !out || V < 1 || V > CW_SAMPLER_MAX) return CW_EPARAM;
    z = s->z;
    if (s->greedy) {
        *out = cw_argmax(logits, V);
        return CW_OK;
    }
    for (i = 0; i < V; i++) z[i] = logits[i] * s->inv_t;
    if (s->top_k > 0 && s->top_k < V) {
        float kth;
        memcpy(s->s, z, (size_t)V * sizeof *z);
        cw_sort_desc(s->s, V);
        kth = s->s[s->top_k - 1];
        for (i = 0; i < V; i++)
            if (z[i] < kth) z[i] = -INFINITY;
    }
    if (s->top_p_target > 0.0f) {
        float cum = 0.0f, target;
        int j;
        memcpy(s->s, z, (size_t)V * sizeof *z);
        cw_sort_desc(s->s, V);
        for (j = 0; j < V; j++) s->c[j] = cum = cum + cw_weight(s->s[0], s->s[j]);
        target = s->top_p_target * cum;
        for (j = 0; j < V - 1 && !(s->c[j] >= target); j++) {}
        for (i = 0; i < V; i++)
            if (z[i] < s->s[j]) z[i] = -INFINITY;
    }
    t = cw_coin(s); /* one coin, drawn before the walk */
    m = z[cw_argmax(z, V)];
    {
        float cum = 0.0f;
        for (i = 0; i < V; i++) s->c[i] = cum = cum + cw_weight(m, z[i]);
        t = t * cum;
        for (i = 0; i < V; i++)
            if (s->c[i] > t) {
                *out = i;
                return CW_OK;
            }
        for (i = V - 1; i >= 0; i--) /* rounding fallback, as run.c keeps one */
            if (cw_weight(m, z[i]) > 0.0f) {
                *out = i;
                return CW_OK;
            }
        *out = cw_argmax(z, V);
    }
    return CW_OK;
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
            if (cw_vocab[k] && (int)strlen(cw_vocab[k]) == len && !memcmp(cw_vocab[k], p, (size_t)len))
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
            if (cw_vocab[k] && !strcmp(cw_vocab[k], "\n")) break;
        if (k == CW_VOCAB) return CW_EUNKNOWN;
        if (max_ids < 1) return CW_ETOOLONG;
        ids[n++] = k;
    }
    *n_ids = n;
    return CW_OK;
}

/* ---- generate loop ------------------------------------------------------------------------- */

typedef void (*cw_emit_fn)(const char *utf8, void *user);

/* Primes ids [n_ids] from a zero state, then picks up to n_chars ids (stopping at the end-of-
 * sequence id), passing each character's UTF-8 to emit. */
int cw_generate(cw_ctx *ctx, cw_sampler *s, const int *ids, int n_ids, long n_chars,
                cw_emit_fn emit, void *user) {
    long i;
    int k, id, rc;
    if (!ctx || !s || !ids || n_ids < 1 || n_chars < 0 || !emit) return CW_EPARAM;
    if (n_chars == 0) return CW_OK;
    cw_reset(ctx);
    for (k = 0; k < n_ids; k++)
        if ((rc = cw_step(ctx, ids[k])) != CW_OK) return rc;
    for (i = 0; i < n_chars; i++) {
        if ((rc = cw_sample(s, ctx->logits, CW_VOCAB, &id)) != CW_OK) return rc;
        if (id == CW_EOS_ID) break;
        emit(cw_vocab[id], user);
        if (i + 1 < n_chars && (rc = cw_step(ctx, id)) != CW_OK) return rc;
    }
    return CW_OK;
}

/* ---- main: cw_generate [--greedy] [-n N] [--seed S] [--temperature T] [--top-k K]
 *            [--top-p P] PROMPT... -------------------------------------------------------- */
#ifndef CW_NO_MAIN
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef CW_MAX_PROMPT
#define CW_MAX_PROMPT 4096 /* bytes of prompt, and ids */
#endif

static void cw_emit_stdout(const char *utf8, void *user) {
    (void)user;
    fputs(utf8, stdout);
    fflush(stdout);
}

static int cw_fail(const char *msg, const char *arg) {
    fprintf(stderr, "cw_generate: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    return 2;
}

static int cw_parse_double(const char *a, double *out) {
    char *end;
    errno = 0;
    *out = strtod(a, &end);
    return *a && !*end && errno == 0 && *out == *out;
}

static int cw_parse_u64(const char *a, uint64_t max, uint64_t *out) {
    uint64_t v = 0;
    if (!*a) return 0;
    for (; *a; a++) {
        if (*a < '0' || *a > '9' || v > (max - (uint64_t)(*a - '0')) / 10u) return 0;
        v = v * 10u + (uint64_t)(*a - '0');
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
#define CW_TICKS_PER_S 25000000.0
#else
#define CW_TICKS() ((unsigned long long)clock())
#define CW_TICKS_PER_S ((double)CLOCKS_PER_SEC)
#endif

typedef struct { const cw_ctx *ctx; long chars; } cw_bench_sink;
static float cw_bench_rows[CW_BENCH_ROWS][CW_VOCAB];

static void cw_bench_emit(const char *utf8, void *user) {
    cw_bench_sink *k = (cw_bench_sink *)user;
    (void)utf8;
    if (k->chars < CW_BENCH_ROWS)
        memcpy(cw_bench_rows[k->chars], k->ctx->logits, sizeof cw_bench_rows[0]);
    k->chars++;
}

static int cw_bench(cw_ctx *ctx, cw_sampler *s, const cw_sampler *fresh, const int *ids,
                    int n_ids, long n) {
    cw_bench_sink sink;
    unsigned long long t0, t_step, t_loop, t_sample;
    long i, rows, sum = 0;
    int id = 0;
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
    printf("bench ticks_per_s %.0f ids %d steps %ld %llu chars %ld %llu samples %ld %llu "
           "checksum %ld", CW_TICKS_PER_S, n_ids, n, t_step, sink.chars, t_loop,
           rows > 0 ? n : 0L, t_sample, sum);
#ifdef CW_BENCH_M4
    printf(" stack %lu", cw_m4_stack_used());
#endif
    printf("\n");
    return 0;
}
#endif

int main(int argc, char **argv) {
    static cw_ctx ctx;
    static cw_sampler sampler;
    static char prompt[CW_MAX_PROMPT];
    static int ids[CW_MAX_PROMPT + 1];
    double temperature = CW_DEFAULT_TEMPERATURE, top_p = CW_DEFAULT_TOP_P, v;
    uint64_t seed = 0, u, n_chars = 300, top_k = CW_DEFAULT_TOP_K;
    int greedy = 0, have_seed = 0, a, n_ids = 0, rc, bench = 0;
    size_t used = 0;
    long bad = 0;
    for (a = 1; a < argc && argv[a][0] == '-' && argv[a][1]; a++) {
        const char *o = argv[a];
        if (!strcmp(o, "--")) { a++; break; }
        if (!strcmp(o, "--greedy")) { greedy = 1; continue; }
#ifdef CW_BENCH
        if (!strcmp(o, "--bench")) { bench = 1; continue; }
#endif
        if (strcmp(o, "-n") && strcmp(o, "--max-chars") && strcmp(o, "--seed") &&
            strcmp(o, "--temperature") && strcmp(o, "--top-k") && strcmp(o, "--top-p"))
            return cw_fail("unknown option (usage: cw_generate [--greedy] [-n N] [--seed S] "
                           "[--temperature T] [--top-k K] [--top-p P] PROMPT...)", o);
        if (a + 1 >= argc) return cw_fail("option needs a value", o);
        if (!strcmp(o, "-n") || !strcmp(o, "--max-chars")) {
            if (!cw_parse_u64(argv[++a], 0x7FFFFFFFu, &n_chars))
                return cw_fail("-n must be an integer >= 0", argv[a]);
        } else if (!strcmp(o, "--seed")) {
            if (!cw_parse_u64(argv[++a], 0x7FFFFFFFFFFFFFFFu, &seed))
                return cw_fail("--seed must be an integer in 0..2**63-1", argv[a]);
            have_seed = 1;
        } else if (!strcmp(o, "--temperature")) {
            if (!cw_parse_double(argv[++a], &v) || !(v == 0.0 || (v >= 1e-4 && v <= 1000.0)))
                return cw_fail("--temperature must be 0 (greedy) or in 0.0001..1000", argv[a]);
            temperature = v;
        } else if (!strcmp(o, "--top-k")) {
            if (!cw_parse_u64(argv[++a], 0x7FFFFFFFu, &u) || u < 1)
                return cw_fail("--top-k must be an integer >= 1", argv[a]);
            top_k = u;
        } else if (!strcmp(o, "--top-p")) {
            if (!cw_parse_double(argv[++a], &v) || !(v > 0.0 && v <= 1.0))
                return cw_fail("--top-p must be in (0, 1]", argv[a]);
            top_p = v;
        } else {
            return cw_fail("unknown option (see the usage in runtime.c)", o);
        }
    }
    for (; a < argc; a++) { /* the rest, joined by single spaces, is the prompt */
        size_t len = strlen(argv[a]);
        if (used + len + 2 > sizeof prompt) return cw_fail("the prompt is too long", NULL);
        if (used) prompt[used++] = ' ';
        memcpy(prompt + used, argv[a], len);
        used += len;
    }
    prompt[used] = '\0';
    if (!have_seed) seed = ((uint64_t)time(NULL) ^ (uint64_t)clock()) & 0x7FFFFFFFFFFFFFFFu;
    if (cw_sampler_init(&sampler, temperature, (int)(top_k < CW_VOCAB ? top_k : CW_VOCAB),
                        top_p, greedy, seed, 0) != CW_OK)
        return cw_fail("bad sampling parameters", NULL);
    rc = cw_encode(prompt, ids, CW_MAX_PROMPT + 1, &n_ids, &bad);
    if (rc == CW_EUNKNOWN) {
        if (!used) return cw_fail("empty prompt: this model has no '\\n' to start from", NULL);
        fprintf(stderr, "cw_generate: the prompt has a character outside the vocabulary at "
                        "byte %ld\n", bad);
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
    fputs(prompt, stdout);
    rc = cw_generate(&ctx, &sampler, ids, n_ids, (long)n_chars, cw_emit_stdout, NULL);
    fputs("\n", stdout);
    fflush(stdout);
    if (rc != CW_OK) return cw_fail("generation failed", NULL);
    return ferror(stdout) ? 1 : 0;
}
#endif
