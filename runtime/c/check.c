/* make check: replays the bundle's probe through the C step and the sampling golden vectors
 * (every case: the C sampler has every setting) through the C sampler. Prints max |delta
 * logit|, top-1 agreement, bits/char and the golden vectors' verdicts; exits 1 outside the
 * tolerance of this build's precision. */
#include <math.h>
#include "check_data.h"
#define CW_SAMPLER_MAX (CW_VOCAB > CW_GOLDEN_MAX_V ? CW_VOCAB : CW_GOLDEN_MAX_V)
#ifndef CW_MAX_WINDOW
#define CW_MAX_WINDOW CW_GOLDEN_MAX_WINDOW /* the longest window a case uses */
#endif
#define CW_NO_MAIN
#include "runtime.c"
#include <stdio.h>

static double cw_logsoftmax_at(const float *z, int n, int i) {
    double m = z[0], s = 0.0;
    int k;
    for (k = 1; k < n; k++)
        if (z[k] > m) m = z[k];
    for (k = 0; k < n; k++) s += exp((double)z[k] - m);
    return (double)z[i] - m - log(s);
}

static int cw_check(void) {
    static cw_ctx ctx;
    static cw_sampler s;
    double max_abs = 0.0, nll = 0.0, ref_nll = 0.0, bpc, ref_bpc, rel;
    long i, agree = 0;
    int k, c, failed = 0, golden_ok = 0;
    cw_reset(&ctx);
    for (i = 0; i < CW_PROBE_N; i++) {
        const float *ref = CW_PROBE_LOGITS + i * CW_VOCAB;
        if (cw_step(&ctx, CW_PROBE_TOKENS[i]) != CW_OK) return 1;
        for (k = 0; k < CW_VOCAB; k++) {
            double d = fabs((double)ctx.logits[k] - (double)ref[k]);
            if (d > max_abs) max_abs = d;
        }
        agree += cw_argmax(ctx.logits, CW_VOCAB) == cw_argmax(ref, CW_VOCAB);
        if (i + 1 < CW_PROBE_N) {
            nll -= cw_logsoftmax_at(ctx.logits, CW_VOCAB, CW_PROBE_TOKENS[i + 1]);
            ref_nll -= cw_logsoftmax_at(ref, CW_VOCAB, CW_PROBE_TOKENS[i + 1]);
        }
    }
    bpc = nll / (CW_PROBE_N - 1) / log(2.0);
    ref_bpc = ref_nll / (CW_PROBE_N - 1) / log(2.0);
    rel = (bpc - ref_bpc) / ref_bpc;
    printf("probe: %d tokens, max |dlogit| %.3g, top-1 agreement %.2f%%, bits/char %.4f "
           "(reference %.4f, %+.2f%%) [%s]\n", (int)CW_PROBE_N, max_abs,
           100.0 * (double)agree / CW_PROBE_N, bpc, ref_bpc, 100.0 * rel, CW_PRECISION);
#if CW_INT8
    if ((double)agree / CW_PROBE_N < CW_TOL_MIN_TOP1 || fabs(rel) > CW_TOL_MAX_BPC_REL) {
        printf("FAIL: outside the int8 tolerance (top-1 >= %g, |bits/char change| <= %g)\n",
               CW_TOL_MIN_TOP1, CW_TOL_MAX_BPC_REL);
        failed = 1;
    }
#else
    if (max_abs > CW_TOL_MAX_ABS) {
        printf("FAIL: max |dlogit| above the float32 tolerance %g\n", CW_TOL_MAX_ABS);
        failed = 1;
    }
#endif
    for (c = 0; c < CW_GOLDEN_N; c++) {
        const cw_golden *g = &cw_golden_cases[c];
        int ok = cw_sampler_setup(&s, g->temperature, g->top_k, g->top_p, g->min_p,
                                  g->typical_p, g->repetition_penalty, g->repetition_window,
                                  g->greedy, g->seed, g->row) == CW_OK &&
                 cw_sampler_prime(&s, g->history, g->n_history) == CW_OK;
        if (!ok) printf("golden %s: the C sampler refuses its settings\n", g->name);
        for (i = 0; ok && i < g->steps; i++) {
            int id = -1;
            ok = cw_sample(&s, g->logits, g->vocab, &id) == CW_OK && id == g->expected[i];
            if (!ok) printf("golden %s: step %ld picks %d, expected %d\n", g->name, i, id,
                            g->expected[i]);
        }
        golden_ok += ok;
    }
    printf("sampling golden vectors: %d of %d pass\n", golden_ok, (int)CW_GOLDEN_N);
    if (golden_ok != CW_GOLDEN_N) failed = 1;
    printf("%s\n", failed ? "FAIL" : "pass");
    return failed;
}

#ifdef CW_SEMIHOST
extern void initialise_monitor_handles(void); /* newlib rdimon: stdio on semihosting */
#endif

int main(void) {
    int rc;
#ifdef CW_SEMIHOST
    initialise_monitor_handles();
#endif
    rc = cw_check();
    fflush(stdout);
    return rc;
}
