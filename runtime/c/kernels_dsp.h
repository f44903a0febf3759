/* Cortex-M4 / M7 DSP kernels (kernels.h), -mcpu=cortex-m4: int8 only (float32 keeps the
 * reference: the FPU has no SIMD). As CMSIS-NN's arm_nn_vec_mat_mult_t_s8: a 32-bit load takes
 * 4 int8, SXTB16 and SXTB16 ROR #8 spread them to two pairs of int16 (bytes 0, 2 and 1, 3),
 * SMLAD multiplies both pairs and adds them to a 32-bit sum: 4 MACs in 2 instructions. One
 * unit's G rows at a time (the step's CW_UNITS_BLOCK=1 on M4: no gate-sized scratch), each row
 * a word every 64 bytes of its packed block; the 4 inputs are spread once for the G rows. Exact:
 * int32 sums of int8 products, as the reference. */
#define CW_KERNEL_NAME "Cortex-M DSP (SMLAD)"
#if CW_INT8
#define CW_HAVE_UNIT_I8 1

static uint32_t cw_sxtb16(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
    return r;
}
static uint32_t cw_sxtb16_ror8(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static int32_t cw_smlad(uint32_t a, uint32_t b, int32_t acc) {
    int32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
static uint32_t cw_word(const signed char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

#define CW_DSP_ROW(P, A)                                                                      \
    do {                                                                                      \
        uint32_t w_ = cw_word(P);                                                             \
        A = cw_smlad(cw_sxtb16(w_), q02, A);                                                  \
        A = cw_smlad(cw_sxtb16_ror8(w_), q13, A);                                             \
        P += 64;                                                                              \
    } while (0)
static void cw_unit_i8(int32_t *acc, const signed char *w, size_t gap, int G,
                       const signed char *q, int n4) {
    const signed char *p0 = w, *p1 = w + gap, *p2 = p1 + gap, *p3 = p2 + gap;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int i;
    if (G == 1) {
        for (i = 0; i < n4; i += 4) {
            uint32_t qw = cw_word(q + i), q02 = cw_sxtb16(qw), q13 = cw_sxtb16_ror8(qw);
            CW_DSP_ROW(p0, a0);
        }
    } else if (G == 3) {
        for (i = 0; i < n4; i += 4) {
            uint32_t qw = cw_word(q + i), q02 = cw_sxtb16(qw), q13 = cw_sxtb16_ror8(qw);
            CW_DSP_ROW(p0, a0);
            CW_DSP_ROW(p1, a1);
            CW_DSP_ROW(p2, a2);
        }
    } else {
        for (i = 0; i < n4; i += 4) {
            uint32_t qw = cw_word(q + i), q02 = cw_sxtb16(qw), q13 = cw_sxtb16_ror8(qw);
            CW_DSP_ROW(p0, a0);
            CW_DSP_ROW(p1, a1);
            CW_DSP_ROW(p2, a2);
            CW_DSP_ROW(p3, a3);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#undef CW_DSP_ROW
#endif
