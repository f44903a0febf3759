/* WebAssembly SIMD128 kernels (kernels.h), clang --target=wasm32 -msimd128.
 *   int8:    16 bytes = 4 rows x 4 inputs: each half sign-extended to i16x8 (2 rows x 4 inputs)
 *            and i32x4.dot_i16x8_s against the 4 inputs twice (q0..q3 q0..q3): int32 pairs,
 *            added pairwise at the end. Exact int32 sums.
 *   float32: four f32x4 a block, f32x4.mul then f32x4.add (no fused form): the reference. */
#include <wasm_simd128.h>

#define CW_KERNEL_NAME "WASM SIMD128"
#define CW_HAVE_BLOCK_I8 1
#define CW_HAVE_BLOCK_F32 1

#if CW_INT8
#define CW_I8_STEP(K)                                                                         \
    do {                                                                                      \
        const signed char *p_ = w + (K) * gap + (size_t)i * 16u;                              \
        int m_;                                                                               \
        for (m_ = 0; m_ < 4; m_++) {                                                          \
            v128_t v_ = wasm_v128_load(p_ + 16 * m_);                                         \
            a[K][2 * m_] = wasm_i32x4_add(                                                    \
                a[K][2 * m_], wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(v_), q16));    \
            a[K][2 * m_ + 1] = wasm_i32x4_add(                                                \
                a[K][2 * m_ + 1], wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(v_), q16)); \
        }                                                                                     \
    } while (0)
static void cw_block_i8(int32_t *acc, const signed char *w, size_t gap, int G,
                        const signed char *q, int n4) {
    v128_t a[4][8];
    int i, k, m;
    for (k = 0; k < 4; k++)
        for (m = 0; m < 8; m++) a[k][m] = wasm_i32x4_splat(0);
    for (i = 0; i < n4; i += 4) {
        int32_t qq;
        v128_t q16;
        memcpy(&qq, q + i, 4);
        q16 = wasm_i16x8_extend_low_i8x16(wasm_i32x4_splat(qq)); /* q0 q1 q2 q3 q0 q1 q2 q3 */
        CW_I8_STEP(0);
        if (G > 1) {
            CW_I8_STEP(1);
            CW_I8_STEP(2);
            if (G > 3) CW_I8_STEP(3);
        }
    }
    /* a[k][2m]: (row 4m inputs 0-1, 2-3, row 4m + 1 inputs 0-1, 2-3); a[k][2m + 1]: rows
     * 4m + 2, 4m + 3: pairwise sums give rows 4m .. 4m + 3 */
    for (k = 0; k < G; k++)
        for (m = 0; m < 4; m++) {
            v128_t lo = a[k][2 * m], hi = a[k][2 * m + 1];
            v128_t even = wasm_i32x4_shuffle(lo, hi, 0, 2, 4, 6);
            v128_t odd = wasm_i32x4_shuffle(lo, hi, 1, 3, 5, 7);
            wasm_v128_store(acc + 16 * k + 4 * m, wasm_i32x4_add(even, odd));
        }
}
#undef CW_I8_STEP
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
