/* x86-64 kernels (kernels.h): chosen at build time by the compiler's -march flags.
 *   int8:    AVX-512 VNNI: vpdpbusd, 16 rows x 4 inputs an instruction. u8 x s8 only, so the
 *            broadcast 4 inputs q give |q| (u8) and their signs go onto the weights (a masked
 *            negate): w q = (-w) |q|. Exact: |w|, |q| <= 127, int32 sums.
 *            AVX2: the same with vpsignb + vpmaddubsw (|q| w: pairs <= 2 127 127 < 2**15, no
 *            saturation) + vpmaddwd into int32 (llama.cpp's ggml-cpu q8 dot products do this).
 *   float32: AVX-512F (16 rows a zmm) or AVX (two ymm): per input, the rows' products added in
 *            input order, mul then add (no FMA), the reference's rounding step for step. */
#include <immintrin.h>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define CW_KERNEL_NAME "x86 AVX-512 VNNI"
#elif defined(__AVX512F__) && defined(__AVX512BW__)
#define CW_KERNEL_NAME "x86 AVX-512BW"
#else
#define CW_KERNEL_NAME "x86 AVX2"
#endif

#define CW_HAVE_BLOCK_I8 1
#define CW_HAVE_BLOCK_F32 1

#if CW_INT8
static int32_t cw_load4(const signed char *q) {
    int32_t v;
    memcpy(&v, q, 4);
    return v;
}

#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
#if CW_INT8
/* G gates' 16-row blocks (the next gate's gap bytes on) times q [n4] into acc [G * 16]. */
#define CW_I8_STEP(K)                                                                         \
    do {                                                                                      \
        __m512i w_ = _mm512_loadu_si512((const void *)(w + (K) * gap + (size_t)i * 16u));     \
        w_ = _mm512_mask_sub_epi8(w_, neg, zero, w_);                                         \
        a##K = CW_DP(a##K, qa, w_);                                                           \
    } while (0)
#ifdef __AVX512VNNI__
#define CW_DP(acc, u, s) _mm512_dpbusd_epi32(acc, u, s)
#else
#define CW_DP(acc, u, s) _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), ones))
#endif
static void cw_block_i8(int32_t *acc, const signed char *w, size_t gap, int G,
                        const signed char *q, int n4) {
    const __m512i zero = _mm512_setzero_si512();
#ifndef __AVX512VNNI__
    const __m512i ones = _mm512_set1_epi16(1);
#endif
    __m512i a0 = zero, a1 = zero, a2 = zero, a3 = zero;
    int i;
    for (i = 0; i < n4; i += 4) {
        __m512i qb = _mm512_set1_epi32(cw_load4(q + i));
        __m512i qa = _mm512_abs_epi8(qb);
        __mmask64 neg = _mm512_movepi8_mask(qb);
        CW_I8_STEP(0);
        if (G > 1) {
            CW_I8_STEP(1);
            CW_I8_STEP(2);
            if (G > 3) CW_I8_STEP(3);
        }
    }
    _mm512_storeu_si512((void *)acc, a0);
    _mm512_storeu_si512((void *)(acc + 16), a1);
    _mm512_storeu_si512((void *)(acc + 32), a2);
    _mm512_storeu_si512((void *)(acc + 48), a3);
}
#undef CW_I8_STEP
#else
#define CW_F32_STEP(K)                                                                        \
    a##K = _mm512_add_ps(a##K, _mm512_mul_ps(_mm512_loadu_ps(w + (K) * gap + (size_t)i * 16u), xb))
static void cw_block_f32(float *acc, const float *w, size_t gap, int G, const float *x, int n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i;
    if (G == 1) {
        for (i = 0; i < n; i++) {
            __m512 xb = _mm512_set1_ps(x[i]);
            CW_F32_STEP(0);
        }
    } else if (G == 3) {
        for (i = 0; i < n; i++) {
            __m512 xb = _mm512_set1_ps(x[i]);
            CW_F32_STEP(0);
            CW_F32_STEP(1);
            CW_F32_STEP(2);
        }
    } else {
        for (i = 0; i < n; i++) {
            __m512 xb = _mm512_set1_ps(x[i]);
            CW_F32_STEP(0);
            CW_F32_STEP(1);
            CW_F32_STEP(2);
            CW_F32_STEP(3);
        }
    }
    _mm512_storeu_ps(acc, a0);
    _mm512_storeu_ps(acc + 16, a1);
    _mm512_storeu_ps(acc + 32, a2);
    _mm512_storeu_ps(acc + 48, a3);
}
#undef CW_F32_STEP
#endif

#else /* AVX2 */
#if CW_INT8
#define CW_I8_STEP(K, H)                                                                      \
    do {                                                                                      \
        __m256i w_ = _mm256_loadu_si256(                                                      \
            (const __m256i *)(w + (K) * gap + (size_t)i * 16u + 32u * (H)));                 \
        w_ = _mm256_maddubs_epi16(qa, _mm256_sign_epi8(w_, qb));                              \
        a##K##H = _mm256_add_epi32(a##K##H, _mm256_madd_epi16(w_, ones));                     \
    } while (0)
static void cw_block_i8(int32_t *acc, const signed char *w, size_t gap, int G,
                        const signed char *q, int n4) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00,
            a21 = a00, a30 = a00, a31 = a00;
    int i;
    for (i = 0; i < n4; i += 4) {
        __m256i qb = _mm256_set1_epi32(cw_load4(q + i));
        __m256i qa = _mm256_abs_epi8(qb);
        CW_I8_STEP(0, 0);
        CW_I8_STEP(0, 1);
        if (G > 1) {
            CW_I8_STEP(1, 0);
            CW_I8_STEP(1, 1);
            CW_I8_STEP(2, 0);
            CW_I8_STEP(2, 1);
            if (G > 3) {
                CW_I8_STEP(3, 0);
                CW_I8_STEP(3, 1);
            }
        }
    }
    /* 32 bytes = rows 8 m .. 8 m + 7, 4 inputs each: lane r of a?m is row 8 m + r */
    _mm256_storeu_si256((__m256i *)acc, a00);
    _mm256_storeu_si256((__m256i *)(acc + 8), a01);
    _mm256_storeu_si256((__m256i *)(acc + 16), a10);
    _mm256_storeu_si256((__m256i *)(acc + 24), a11);
    _mm256_storeu_si256((__m256i *)(acc + 32), a20);
    _mm256_storeu_si256((__m256i *)(acc + 40), a21);
    _mm256_storeu_si256((__m256i *)(acc + 48), a30);
    _mm256_storeu_si256((__m256i *)(acc + 56), a31);
}
#undef CW_I8_STEP
#else
#define CW_F32_STEP(K)                                                                        \
    do {                                                                                      \
        const float *p_ = w + (K) * gap + (size_t)i * 16u;                                    \
        a##K##0 = _mm256_add_ps(a##K##0, _mm256_mul_ps(_mm256_loadu_ps(p_), xb));             \
        a##K##1 = _mm256_add_ps(a##K##1, _mm256_mul_ps(_mm256_loadu_ps(p_ + 8), xb));         \
    } while (0)
static void cw_block_f32(float *acc, const float *w, size_t gap, int G, const float *x, int n) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
           a30 = a00, a31 = a00;
    int i;
    if (G == 1) {
        for (i = 0; i < n; i++) {
            __m256 xb = _mm256_set1_ps(x[i]);
            CW_F32_STEP(0);
        }
    } else if (G == 3) {
        for (i = 0; i < n; i++) {
            __m256 xb = _mm256_set1_ps(x[i]);
            CW_F32_STEP(0);
            CW_F32_STEP(1);
            CW_F32_STEP(2);
        }
    } else {
        for (i = 0; i < n; i++) {
            __m256 xb = _mm256_set1_ps(x[i]);
            CW_F32_STEP(0);
            CW_F32_STEP(1);
            CW_F32_STEP(2);
            CW_F32_STEP(3);
        }
    }
    _mm256_storeu_ps(acc, a00);
    _mm256_storeu_ps(acc + 8, a01);
    _mm256_storeu_ps(acc + 16, a10);
    _mm256_storeu_ps(acc + 24, a11);
    _mm256_storeu_ps(acc + 32, a20);
    _mm256_storeu_ps(acc + 40, a21);
    _mm256_storeu_ps(acc + 48, a30);
    _mm256_storeu_ps(acc + 56, a31);
}
#undef CW_F32_STEP
#endif
#endif
