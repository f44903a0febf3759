/* charwright C runtime: the matrix-vector kernels of the step (included by runtime.c).
 *
 * Weights are packed by emit-c (runtime/emit_c/model_header.py) in blocks of 16 output rows,
 * each gate of a layer padded to Hp = H rounded up to 16 rows (padding rows are zero):
 *   float32: block b holds W[16 b + r][i] at [b][i][r]            (16 floats per input)
 *   int8:    block b holds W[16 b + r][4 m + t] at [b][m][r][t]     (64 bytes per 4 inputs;
 *            the inputs padded with zero columns to n4 = n rounded up to 4)
 * so a block is 16 rows side by side: SIMD lanes are output rows and no horizontal sum is needed
 * (the layout of XNNPACK's / ruy's packed GEMV; 4-input groups are what VNNI's vpdpbusd, NEON's
 * sdot and the M4's SMLAD pairs take).
 *
 * The portable scalar code below is the reference. Every kernel gives the reference's values bit
 * for bit: int8 sums are exact int32 sums (|w|, |q| <= 127, n < 2**17), and each float32 row is
 * summed in input order from 0.0f, one rounded multiply and one rounded add per input (no fused
 * multiply-add: -ffp-contract=off and separate mul / add intrinsics), whichever lane holds it.
 *
 * One per-target file, chosen at build time from the compiler's predefined macros (the Makefile
 * builds the host program with -march=native; -DCW_SCALAR forces the reference):
 *   kernels_x86.h   AVX-512 VNNI (vpdpbusd) or AVX2 (vpmaddubsw), float32 with AVX-512F / AVX
 *   kernels_neon.h  AArch64 NEON, sdot where __ARM_FEATURE_DOTPROD
 *   kernels_dsp.h   Cortex-M4/M7 DSP: SXTB16 + SMLAD, two 16-bit MACs an instruction (CMSIS-NN's
 *                   arm_nn_vec_mat_mult_t_s8), one unit's G rows at a time
 *   kernels_wasm.h  WebAssembly SIMD128 (-msimd128)
 * A target file defines CW_KERNEL_NAME and any of:
 *   CW_HAVE_BLOCK_I8:  cw_block_i8(int32_t acc[G*16], w, gap, G, q, n4)   16 rows of G gates
 *   CW_HAVE_BLOCK_F32: cw_block_f32(float acc[G*16], w, gap, G, x, n)
 *   CW_HAVE_UNIT_I8:   cw_unit_i8(int32_t acc[G], w, gap, G, q, n4)      one row of G gates
 * w points to the first gate's row (unit) or block; gap is the distance to the next gate's, in
 * elements. What a target does not define falls back to the reference. Included after model.h
 * (CW_INT8 says which precision's functions to define). */
#ifndef CW_KERNELS_H
#define CW_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* CW_HOT: the step's functions at -O2 where the rest is built for size (Cortex-M4's -Os, the
 * Makefile: the code beyond the weights within 16 KB); float32 rows 17% fewer instructions than
 * at -Os. The optimize attribute is GCC's (clang ignores it with a warning: not used there). */
#if defined(CW_SEMIHOST) && defined(__GNUC__) && !defined(__clang__)
#define CW_HOT __attribute__((optimize("O2")))
#else
#define CW_HOT
#endif
#define CW_PAD4(n) (((n) + 3) / 4 * 4)
#define CW_PAD16(n) (((n) + 15) / 16 * 16)

#ifndef CW_SCALAR
#if defined(__AVX2__) || (defined(__AVX512F__) && defined(__AVX512BW__))
#include "kernels_x86.h"
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include "kernels_neon.h"
#elif defined(__ARM_FEATURE_DSP) && defined(__thumb2__)
#include "kernels_dsp.h"
#elif defined(__wasm_simd128__)
#include "kernels_wasm.h"
#endif
#endif
#ifndef CW_KERNEL_NAME
#define CW_KERNEL_NAME "scalar"
#endif
#ifndef CW_QBUF
#define CW_QBUF(n) CW_PAD4(n) /* bytes of a quantized vector of n (a target may spread it) */
#endif
#ifndef CW_UNITS_BLOCK
#define CW_UNITS_BLOCK 16 /* units whose gates are on the stack at once: one packed block */
#endif
#if CW_UNITS_BLOCK < 1 || CW_UNITS_BLOCK > 16
#error "CW_UNITS_BLOCK is 1..16 (a packed block is 16 rows)"
#endif
/* whole 16-row blocks at once: with CW_UNITS_BLOCK 16 (a target that spreads q reads it only
 * through its own unit kernel) */
#if CW_UNITS_BLOCK == 16 && !defined(CW_Q_SPREAD)
#define CW_BLOCKS 1
#endif

#if CW_INT8
/* int8 rows r = k Hp + j0 + b (k < G, b < nb) of a packed W with n inputs, times q (n4 int8,
 * the tail zero) with scale sx: out [k * stride + b] = float(sum) * (sw[k H + j0 + b] * sx)
 * (+ bias[k H + j0 + b]). */
CW_HOT static void cw_rows_i8(float *out, int stride, const signed char *w,
                              const float *sw, const signed char *q, float sx, int j0, int nb,
                              int H, int n, int G, const float *bias) {
    int n4 = CW_PAD4(n), Hp = CW_PAD16(H), k, b;
    size_t block = (size_t)16 * (size_t)n4, gap = (size_t)(Hp / 16) * block;
    int32_t acc[4 * CW_UNITS_BLOCK] = {0}; /* [k * CW_UNITS_BLOCK + b]; zeroed: else GCC -O3 warns */
#ifdef CW_BLOCKS
    if (nb == 16 && j0 % 16 == 0) { /* whole blocks */
#ifdef CW_HAVE_BLOCK_I8
        cw_block_i8(acc, w + (size_t)(j0 / 16) * block, gap, G, q, n4);
#else
        for (k = 0; k < G; k++) { /* rows side by side: a compiler vectorises this as it is */
            const signed char *p = w + (size_t)(j0 / 16) * block + (size_t)k * gap;
            int32_t *a = acc + 16 * k;
            int i, r;
            for (r = 0; r < 16; r++) a[r] = 0;
            for (i = 0; i < n4; i += 4, p += 64)
                for (r = 0; r < 16; r++)
                    a[r] += (int32_t)p[4 * r] * q[i] + (int32_t)p[4 * r + 1] * q[i + 1] +
                            (int32_t)p[4 * r + 2] * q[i + 2] + (int32_t)p[4 * r + 3] * q[i + 3];
        }
#endif
    } else
#endif
    {
        for (b = 0; b < nb; b++) {
            int r = j0 + b;
            const signed char *p = w + (size_t)(r / 16) * block + (size_t)(r % 16) * 4u;
#ifdef CW_HAVE_UNIT_I8
            int32_t a[4];
            cw_unit_i8(a, p, gap, G, q, n4);
            for (k = 0; k < G; k++) acc[k * CW_UNITS_BLOCK + b] = a[k];
#else
            for (k = 0; k < G; k++, p += gap) {
                int32_t a = 0;
                int i;
                for (i = 0; i < n4; i += 4) {
                    const signed char *c = p + (size_t)i * 16u;
                    a += (int32_t)c[0] * q[i] + (int32_t)c[1] * q[i + 1] +
                         (int32_t)c[2] * q[i + 2] + (int32_t)c[3] * q[i + 3];
                }
                acc[k * CW_UNITS_BLOCK + b] = a;
            }
#endif
        }
    }
    for (k = 0; k < G; k++)
        for (b = 0; b < nb; b++) {
            int r = k * H + j0 + b;
            out[k * stride + b] =
                (float)acc[k * CW_UNITS_BLOCK + b] * (sw[r] * sx) + (bias ? bias[r] : 0.0f);
        }
}

#else
/* float32 rows r = k Hp + j0 + b of a packed W with n inputs, times x: out [k * stride + b] =
 * the row's sum in input order (+ bias[k H + j0 + b]). */
CW_HOT static void cw_rows_f32(float *out, int stride, const float *w, const float *x,
                               int j0, int nb, int H, int n, int G, const float *bias) {
    int Hp = CW_PAD16(H), k, b, i;
    size_t block = (size_t)16 * (size_t)n, gap = (size_t)(Hp / 16) * block;
    float acc[4 * CW_UNITS_BLOCK] = {0}; /* [k * CW_UNITS_BLOCK + b]; zeroed as above */
#ifdef CW_BLOCKS
    if (nb == 16 && j0 % 16 == 0) { /* whole blocks */
#ifdef CW_HAVE_BLOCK_F32
        cw_block_f32(acc, w + (size_t)(j0 / 16) * block, gap, G, x, n);
#else
        for (k = 0; k < G; k++) { /* rows side by side, each in input order: vectorises */
            const float *p = w + (size_t)(j0 / 16) * block + (size_t)k * gap;
            float *a = acc + 16 * k;
            int r;
            for (r = 0; r < 16; r++) a[r] = 0.0f;
            for (i = 0; i < n; i++, p += 16)
                for (r = 0; r < 16; r++) a[r] += p[r] * x[i];
        }
#endif
    } else
#endif
    {
        for (b = 0; b < nb; b++) {
            int r = j0 + b;
            const float *p = w + (size_t)(r / 16) * block + (size_t)(r % 16);
            /* a row's next input is 16 floats on: 4 inputs an iteration at fixed offsets, then
             * one pointer step (an in-order core without scaled float loads, e.g. Cortex-M4,
             * pays for index arithmetic); each sum still takes its inputs in order */
            const float *p1 = G > 1 ? p + gap : p, *p2 = G > 1 ? p1 + gap : p;
            const float *p3 = G == 4 ? p2 + gap : p2;
            float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
#define CW_F32_IN(o, xi)                                                                      \
    do {                                                                                      \
        a0 += c0[o] * (xi);                                                                   \
        if (G > 1) {                                                                          \
            a1 += c1[o] * (xi);                                                               \
            a2 += c2[o] * (xi);                                                               \
            if (G == 4) a3 += c3[o] * (xi);                                                   \
        }                                                                                     \
    } while (0)
            {
                const float *c0 = p, *c1 = p1, *c2 = p2, *c3 = p3; /* never past a block's end */
                for (i = 0; i + 4 <= n; i += 4, c0 += 64, c1 += 64, c2 += 64, c3 += 64) {
                    CW_F32_IN(0, x[i]);
                    CW_F32_IN(16, x[i + 1]);
                    CW_F32_IN(32, x[i + 2]);
                    CW_F32_IN(48, x[i + 3]);
                }
                for (k = 0; i + k < n; k++) CW_F32_IN(16 * k, x[i + k]);
            }
#undef CW_F32_IN
            {
                acc[b] = a0;
                acc[CW_UNITS_BLOCK + b] = a1;
                acc[2 * CW_UNITS_BLOCK + b] = a2;
                acc[3 * CW_UNITS_BLOCK + b] = a3;
            }
        }
    }
    for (k = 0; k < G; k++)
        for (b = 0; b < nb; b++)
            out[k * stride + b] = acc[k * CW_UNITS_BLOCK + b] + (bias ? bias[k * H + j0 + b] : 0.0f);
}
#endif
#endif
