/* WebAssembly SIMD128 kernels (kernels.h), clang --target=wasm32 -msimd128.
 *   int8:    16 bytes = 4 rows x 4 inputs: each half sign-extended to i16x8 (2 rows x 4 inputs)
 *            and i32x4.dot_i16x8_s against the 4 inputs twice (q0..q3 q0..q3): int32 pairs,
 *            added pairwise at the end. Exact int32 sums. One gate at a time: 8 accumulators
 *            (all G gates at once kept 24 live, beyond an engine's 16 vector registers: the
 *            demo's int8 step in Node 115 -> 87 µs).
 *   float32: four f32x4 a block, f32x4.mul then f32x4.add (no fused form): the reference.
 * Not used (issue 22's WASM target, measured): relaxed SIMD's i32x4.relaxed_dot_i8x16_i7x16_add_s
 * (vpdpbusd on a CPU with AVX-VNNI: ~3 instructions per 16 products against ~8 here), even with
 * q split into max(q, 0) and max(-q, 0) (both 0..127, the range where the result is defined,
 * int16 pair sums <= 32,258): built with clang 16 (Debian 12's clang 14 cannot emit it), the
 * demo's int8 logits over 48 steps in Node 20 (--experimental-wasm-relaxed-simd) differed from
 * run to run of one module (3 runs, 3 hashes, none the scalar build's; V8's tiers disagree),
 * so its text would not be the reference's; and it was no faster there. i16x8.load8x8_s for
 * the two extends: no gain in Node 20 either. */
#include <wasm_simd128.h>

#define CW_KERNEL_NAME "WASM SIMD128"
#define CW_HAVE_BLOCK_I8 1
#define CW_HAVE_BLOCK_F32 1

#if CW_INT8
/* One gate at a time (8 accumulators: few enough for an engine's 16 vector registers); the 4
 * inputs are splat and widened again for each gate (2 instructions per 64 weight bytes). */
static void cw_block_i8(int32_t *acc, const signed char *w, size_t gap, int G,
                        const signed char *q, int n4) {
    int i, k, m;
    for (k = 0; k < G; k++, w += gap) {
        v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0;
        const signed char *p = w;
        for (i = 0; i < n4; i += 4, p += 64) {
            int32_t qq;
            v128_t q16, v;
            memcpy(&qq, q + i, 4);
            q16 = wasm_i16x8_extend_low_i8x16(wasm_i32x4_splat(qq)); /* q0..q3 q0..q3 */
            v = wasm_v128_load(p);
            a0 = wasm_i32x4_add(a0, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(v), q16));
            a1 = wasm_i32x4_add(a1, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(v), q16));
            v = wasm_v128_load(p + 16);
            a2 = wasm_i32x4_add(a2, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(v), q16));
            a3 = wasm_i32x4_add(a3, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(v), q16));
            v = wasm_v128_load(p + 32);
            a4 = wasm_i32x4_add(a4, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(v), q16));
            a5 = wasm_i32x4_add(a5, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(v), q16));
            v = wasm_v128_load(p + 48);
            a6 = wasm_i32x4_add(a6, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(v), q16));
            a7 = wasm_i32x4_add(a7, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(v), q16));
        }
        /* a(2m): (row 4m inputs 0-1, 2-3, row 4m + 1 inputs 0-1, 2-3); a(2m + 1): rows 4m + 2,
         * 4m + 3: pairwise sums give rows 4m .. 4m + 3 */
        {
            v128_t lo[4], hi[4];
            lo[0] = a0, hi[0] = a1, lo[1] = a2, hi[1] = a3, lo[2] = a4, hi[2] = a5;
            lo[3] = a6, hi[3] = a7;
            for (m = 0; m < 4; m++) {
                v128_t even = wasm_i32x4_shuffle(lo[m], hi[m], 0, 2, 4, 6);
                v128_t odd = wasm_i32x4_shuffle(lo[m], hi[m], 1, 3, 5, 7);
                wasm_v128_store(acc + 16 * k + 4 * m, wasm_i32x4_add(even, odd));
            }
        }
    }
}
#else

#define CW_F32_STEP(K)                                                                        \
    do {                                                                                      \
        const float *p_ = w + (K) * gap + (size_t)i * 16u;                                    \
        a[K][0] = wasm_f32x4_add(a[K][0], wasm_f32x4_mul(wasm_v128_load(p_), xb));            \
        a[K][1] = wasm_f32x4_add(a[K][1], wasm_f32x4_mul(wasm_v128_load(p_ + 4), xb));        \
        a[K][2] = wasm_f32x4_add(a[K][2], wasm_f32x4_mul(wasm_v128_load(p_ + 8), xb));        \
        a[K][3] = wasm_f32x4_add(a[K][3], wasm_f32x4_mul(wasm_v128_load(p_ + 12), xb));       \
    } while (0)
static void cw_block_f32(float *acc, const float *w, size_t gap, int G, const float *x, int n) {
    v128_t a[4][4];
    int i, k, m;
    for (k = 0; k < 4; k++)
        for (m = 0; m < 4; m++) a[k][m] = wasm_f32x4_splat(0.0f);
    if (G == 1) {
        for (i = 0; i < n; i++) {
            v128_t xb = wasm_f32x4_splat(x[i]);
            CW_F32_STEP(0);
        }
    } else if (G == 3) {
        for (i = 0; i < n; i++) {
            v128_t xb = wasm_f32x4_splat(x[i]);
            CW_F32_STEP(0);
            CW_F32_STEP(1);
            CW_F32_STEP(2);
        }
    } else {
        for (i = 0; i < n; i++) {
            v128_t xb = wasm_f32x4_splat(x[i]);
            CW_F32_STEP(0);
            CW_F32_STEP(1);
            CW_F32_STEP(2);
            CW_F32_STEP(3);
        }
    }
    for (k = 0; k < G; k++)
        for (m = 0; m < 4; m++) wasm_v128_store(acc + 16 * k + 4 * m, a[k][m]);
}
#undef CW_F32_STEP
#endif
