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


/* The quantized inputs are spread once per vector (cw_spread_q, in place: the buffers are
 * CW_QBUF(n) = 2 n4 bytes on this target): group g of 4 inputs becomes two words, the int16
 * pairs (q[4g], q[4g+2]) and (q[4g+1], q[4g+3]) that SXTB16 and SXTB16 ROR #8 make of a weight
 * word. The loops are in assembly (GCC's allocation of the C form spilled sums and pointers);
 * per 4 inputs: ldrd of the spread inputs, then per row ldr (post-increment 64: the row's next
 * word), 2 sxtb16, 2 smlad. */
#define CW_Q_SPREAD 1
#define CW_QBUF(n) (2 * CW_PAD4(n))
static void cw_spread_q(signed char *q, int n4) {
    int g;
    for (g = n4 / 4 - 1; g >= 0; g--) { /* from the end: group g's words overwrite only the */
        const signed char *s = q + 4 * g; /* bytes of groups 2g, 2g + 1 (done) and its own */
        uint32_t w[2];
        w[0] = (uint32_t)(uint16_t)(int16_t)s[0] | (uint32_t)(uint16_t)(int16_t)s[2] << 16;
        w[1] = (uint32_t)(uint16_t)(int16_t)s[1] | (uint32_t)(uint16_t)(int16_t)s[3] << 16;
        memcpy(q + 8 * g, w, 8);
    }
}

#define CW_DSP_ROW(P, A)                                                                      \
    "ldr %[w], [%[" P "]], #64\n\tsxtb16 %[t], %[w]\n\tsxtb16 %[w], %[w], ror #8\n\t"          \
    "smlad %[" A "], %[t], %[qa], %[" A "]\n\tsmlad %[" A "], %[w], %[qb], %[" A "]\n\t"
#define CW_DSP_Q "ldrd %[qa], %[qb], [%[q]], #8\n\t"
#define CW_DSP_ROWS3 CW_DSP_Q CW_DSP_ROW("p0", "a0") CW_DSP_ROW("p1", "a1") CW_DSP_ROW("p2", "a2")
/* n4 / 4 groups: an odd one first, then two an iteration */
#define CW_DSP_LOOP(BODY)                                                                     \
    "tst %[n], #4\n\tbeq 2f\n\t" BODY "2:\n\tcmp %[q], %[end]\n\tbeq 3f\n\t"                    \
    "1:\n\t" BODY BODY "cmp %[q], %[end]\n\tbne 1b\n\t3:"

static void cw_unit1_i8(int32_t *acc, const signed char *p0, const signed char *q, int n4) {
    int32_t a0 = 0;
    uint32_t qa, qb, w, t;
    const signed char *end = q + 2 * n4;
    __asm__ volatile(CW_DSP_LOOP(CW_DSP_Q CW_DSP_ROW("p0", "a0"))
                     : [a0] "+r"(a0), [q] "+r"(q), [p0] "+r"(p0), [qa] "=&r"(qa),
                       [qb] "=&r"(qb), [w] "=&r"(w), [t] "=&r"(t)
                     : [end] "r"(end), [n] "r"(n4)
                     : "cc", "memory");
    acc[0] = a0;
}

static void cw_unit3_i8(int32_t *acc, const signed char *p0, size_t gap, const signed char *q,
                        int n4) {
    const signed char *p1 = p0 + gap, *p2 = p1 + gap, *end = q + 2 * n4;
    int32_t a0 = 0, a1 = 0, a2 = 0;
    uint32_t qa, qb, w, t;
    __asm__ volatile(CW_DSP_LOOP(CW_DSP_ROWS3)
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [q] "+r"(q),
                       [p0] "+r"(p0), [p1] "+r"(p1), [p2] "+r"(p2), [qa] "=&r"(qa),
                       [qb] "=&r"(qb), [w] "=&r"(w), [t] "=&r"(t)
                     : [end] "r"(end), [n] "r"(n4)
                     : "cc", "memory");
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
}

static void cw_unit_i8(int32_t *acc, const signed char *w, size_t gap, int G,
                       const signed char *q, int n4) {
    int k;
    if (G == 3) {
        cw_unit3_i8(acc, w, gap, q, n4);
        return;
    }
    for (k = 0; k < G; k++, w += gap) cw_unit1_i8(acc + k, w, q, n4); /* SimpleRNN, dense, LSTM */
}
#undef CW_DSP_ROW
#undef CW_DSP_Q
#undef CW_DSP_ROWS3
#undef CW_DSP_LOOP
#endif
