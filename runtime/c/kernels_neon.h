/* AArch64 NEON kernels (kernels.h).
 *   int8:    with the dot-product extension (__ARM_FEATURE_DOTPROD, e.g. -march=armv8.2-a+dotprod;
 *            Cortex-A55/A76 and later, Apple M1): sdot, 4 rows x 4 inputs an instruction, one
 *            16-byte group of the packed block against the 4 inputs broadcast. Without it:
 *            smull (8 bytes = 2 rows x 4 inputs) + sadalp into int32 pairs, added at the end.
 *            Exact int32 sums either way.
 *   float32: four float32x4 a block, fmul then fadd (no fmla): the reference's rounding. */
#include <arm_neon.h>

#define CW_HAVE_BLOCK_I8 1
#define CW_HAVE_BLOCK_F32 1

#ifdef __ARM_FEATURE_DOTPROD
#define CW_KERNEL_NAME "AArch64 NEON + dotprod"
#else
#define CW_KERNEL_NAME "AArch64 NEON"
#endif

#if CW_INT8
#ifdef __ARM_FEATURE_DOTPROD
#define CW_I8_STEP(K)                                                                         \
    do {                                                                                      \
        const int8_t *p_ = (const int8_t *)w + (K) * gap + (size_t)i * 16u;                   \
        a[K][0] = vdotq_s32(a[K][0], vld1q_s8(p_), qb);                                       \
        a[K][1] = vdotq_s32(a[K][1], vld1q_s8(p_ + 16), qb);                                  \
        a[K][2] = vdotq_s32(a[K][2], vld1q_s8(p_ + 32), qb);                                  \
        a[K][3] = vdotq_s32(a[K][3], vld1q_s8(p_ + 48), qb);                                  \
    } while (0)
#else
/* 16 bytes = rows 4m .. 4m + 3 x 4 inputs: a[K][2m] collects int32 pairs (row 4m inputs 0-1,
 * 2-3, row 4m + 1 inputs 0-1, 2-3), a[K][2m + 1] the same of rows 4m + 2, 4m + 3 */
#define CW_I8_STEP(K)                                                                         \
    do {                                                                                      \
        const int8_t *p_ = (const int8_t *)w + (K) * gap + (size_t)i * 16u;                   \
        int m_;                                                                               \
        for (m_ = 0; m_ < 4; m_++) {                                                          \
            int8x16_t v_ = vld1q_s8(p_ + 16 * m_);                                            \
            a[K][2 * m_] = vpadalq_s16(a[K][2 * m_], vmull_s8(vget_low_s8(v_), q8));          \
            a[K][2 * m_ + 1] = vpadalq_s16(a[K][2 * m_ + 1], vmull_high_s8(v_, qb));          \
        }                                                                                     \
    } while (0)
#endif

static void cw_block_i8(int32_t *acc, const signed char *w, size_t gap, int G,
                        const signed char *q, int n4) {
#ifdef __ARM_FEATURE_DOTPROD
    int32x4_t a[4][4];
#else
    int32x4_t a[4][8];
#endif
    int i, k, m;
    for (k = 0; k < 4; k++)
        for (m = 0; m < (int)(sizeof a[0] / sizeof a[0][0]); m++) a[k][m] = vdupq_n_s32(0);
    for (i = 0; i < n4; i += 4) {
        int32_t qq;
        int8x16_t qb;
#ifndef __ARM_FEATURE_DOTPROD
        int8x8_t q8;
#endif
        memcpy(&qq, q + i, 4);
        qb = vreinterpretq_s8_s32(vdupq_n_s32(qq));
#ifndef __ARM_FEATURE_DOTPROD
        q8 = vget_low_s8(qb);
#endif
        CW_I8_STEP(0);
        if (G > 1) {
            CW_I8_STEP(1);
            CW_I8_STEP(2);
            if (G > 3) CW_I8_STEP(3);
        }
    }
    for (k = 0; k < G; k++) {
#ifdef __ARM_FEATURE_DOTPROD
        for (m = 0; m < 4; m++) vst1q_s32(acc + 16 * k + 4 * m, a[k][m]);
#else
        /* a[k][2m] lanes: row 4m (pairs 0, 1), row 4m+1 (pairs 0, 1); a[k][2m+1]: rows 4m+2, +3 */
        for (m = 0; m < 4; m++)
            vst1q_s32(acc + 16 * k + 4 * m, vpaddq_s32(a[k][2 * m], a[k][2 * m + 1]));
#endif
    }
}
#undef CW_I8_STEP
#else

#define CW_F32_STEP(K)                                                                        \
    do {                                                                                      \
        const float *p_ = w + (K) * gap + (size_t)i * 16u;                                    \
        a[K][0] = vaddq_f32(a[K][0], vmulq_f32(vld1q_f32(p_), xb));                           \
        a[K][1] = vaddq_f32(a[K][1], vmulq_f32(vld1q_f32(p_ + 4), xb));                       \
        a[K][2] = vaddq_f32(a[K][2], vmulq_f32(vld1q_f32(p_ + 8), xb));                       \
        a[K][3] = vaddq_f32(a[K][3], vmulq_f32(vld1q_f32(p_ + 12), xb));                      \
    } while (0)
static void cw_block_f32(float *acc, const float *w, size_t gap, int G, const float *x, int n) {
    float32x4_t a[4][4];
    int i, k, m;
    for (k = 0; k < 4; k++)
        for (m = 0; m < 4; m++) a[k][m] = vdupq_n_f32(0.0f);
    if (G == 1) {
        for (i = 0; i < n; i++) {
            float32x4_t xb = vdupq_n_f32(x[i]);
            CW_F32_STEP(0);
        }
    } else if (G == 3) {
        for (i = 0; i < n; i++) {
            float32x4_t xb = vdupq_n_f32(x[i]);
            CW_F32_STEP(0);
            CW_F32_STEP(1);
            CW_F32_STEP(2);
        }
    } else {
        for (i = 0; i < n; i++) {
            float32x4_t xb = vdupq_n_f32(x[i]);
            CW_F32_STEP(0);
            CW_F32_STEP(1);
            CW_F32_STEP(2);
            CW_F32_STEP(3);
        }
    }
    for (k = 0; k < G; k++)
        for (m = 0; m < 4; m++) vst1q_f32(acc + 16 * k + 4 * m, a[k][m]);
}
#undef CW_F32_STEP
#endif
