/* charwright's sampler: runtime/c/SAMPLING.md step for step, bit for bit the numpy reference
 * (runtime/sampling/{rng,processors,selectors,config}.py). ONE source for every compiled user:
 * the emitted C runtime (runtime.c includes it; emit-c copies it beside runtime.c), the CPython
 * extension (runtime/sampling/_speedups.c includes it at `pip install`) and the WASM build.
 * It needs no model.h: sizes and buffers are passed in. No heap, no global mutable state.
 *
 *   cw_sampling      one configuration (its settings turned into the float32 constants the
 *                    chain uses), shared by every row that samples with it:
 *                    cw_sampling_init(&c, temperature, top_k, top_p, min_p, typical_p,
 *                                     repetition_penalty, repetition_window, greedy)
 *   cw_row           one row's state: its coin stream (key, coins drawn) and its repetition
 *                    window (a ring of c.window ids in a buffer the caller owns):
 *                    cw_row_init(&r, &c, seed, row, window_buf, prompt_ids, n_prompt)
 *   scratch          CW_SCRATCH_BYTES(V) bytes, 8-byte aligned, per concurrent caller (its
 *                    content does not matter between calls)
 *   cw_sample_row    one pick: cw_sample_row(&c, &r, z, V, allowed, scratch, &id); z [V] is
 *                    changed in place; allowed [V] (1 = may be picked) or NULL (all); the
 *                    pick joins the row's window and a categorical pick uses one coin
 *
 * The chain, in SAMPLING.md's order (a setting at its neutral value is left out):
 *   repetition-penalty -> allowed-mask -> [greedy: argmax] -> temperature -> top-k -> top-p ->
 *   min-p -> typical -> categorical
 * The mask (not in the numpy reference yet) sets the logits of ids not allowed to -inf right
 * after the penalty; with every id masked, greedy and categorical pick the first id, as numpy's
 * argmax does on an all -inf row.
 *
 * Everything but typical-p is bit-exact with numpy by construction (integer arithmetic,
 * float32 + - x without contraction: build with -ffp-contract=off, the exp tables below,
 * sequential sums). typical-p computes in float64 with the C library's exp and log and numpy's
 * pairwise summation; numpy's own exp/log may differ in the last bit, and it orders equal
 * distances in no defined order (here: by id), so it agrees except at exact near-ties.
 * Sorting: top-p sorts the weight indices q = (int)((max - z) * 4096) (radix sorts), which give
 * the running sums of a full descending sort of the values. It sorts only a head: the ids of
 * the smallest q, holding all but about 2^-8 of the weight (a histogram of q guesses where);
 * the rest (the tail) only adds to the total, and does so without a sort, exactly: in the
 * binade [R, 2R) of the head's sum every tail weight w adds (R + w) - R, whatever the order,
 * unless w is an odd multiple of half the sum's ulp (the chain's parity would decide) or the
 * total reaches 2R; then, or when the cut falls in the tail, it sorts every id as before
 * (cw_top_p_head, cw_top_p_sorted; -DCW_SAMPLER_SMALL_CODE keeps only the latter). The value
 * at the cut and top-k's k-th largest come from a min-heap of the k largest (one compare for
 * most values). The categorical sums run over the ids with a weight only (a zero adds nothing).
 * Measured on a 2-core Xeon (AVX-512), top-p 0.9 per draw through the extension
 * (scripts/bench_sampling.py, best of 3, another process running): V 65 0.95 us at batch 1,
 * 0.60 at batch 64 (1.03, 0.71 with every id sorted); V 5,000 15 us (23-24).
 * (About 950 lines, a third of them the two exp tables: one source on purpose, the chain and
 * its helpers in SAMPLING.md's order, so that every compiled user includes exactly this.) */
#ifndef CW_SAMPLER_H
#define CW_SAMPLER_H
#ifdef __FAST_MATH__
#error "sampler.h needs IEEE float arithmetic: build it without -ffast-math / -Ofast"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef CW_SFN
#define CW_SFN static inline /* unused ones draw no warning */
#endif
#ifndef CW_SFN_OUTLINED /* a helper called from many places: one copy (code size) */
#if defined(__GNUC__) || defined(__clang__)
#define CW_SFN_OUTLINED static __attribute__((noinline, unused))
#else
#define CW_SFN_OUTLINED static inline
#endif
#endif

/* -DCW_SAMPLER_SMALL_STACK: no 4 KB of digit counts on the stack (top-p below 512 ids sorts by
 * merging instead: slower); with -DCW_SAMPLER_SMALL_CODE too, no radix sort at all. -DCW_SAMPLER_NO_DOUBLE: no float64 exp/log (a core without a
 * float64 unit, where they and the soft-float library are most of the code): min-p and
 * typical-p are refused. */
#define CW_SAMPLER_OK 0     /* = runtime.c's CW_OK */
#define CW_SAMPLER_EPARAM 1 /* = runtime.c's CW_EPARAM: a setting out of range */
#define CW_WINDOW_MAX 65536 /* repetition_window 1..65536 (config.WINDOW_MAX) */
/* the scratch one cw_sample_row needs for V logits (8-byte aligned) */
#define CW_SCRATCH_BYTES(V) (16u * (size_t)(V) + 64u)

/* EXP_HI[h] = float32 nearest exp(-h / 16); EXP_LO[l] = float32 nearest exp(-(l + 0.5) / 4096)
 * (SAMPLING.md section 2; tests/runtime/sampling/test_speedups.py checks them against rng.py) */
static const float cw_exp_hi[512] = {
    0x1p+0f, 0x1.e0facp-1f, 0x1.c3d6a2p-1f, 0x1.a87682p-1f, 0x1.8ebefap-1f, 0x1.769652p-1f,
    0x1.5fe462p-1f, 0x1.4a9272p-1f, 0x1.368b3p-1f, 0x1.23ba94p-1f, 0x1.120dcap-1f, 0x1.017324p-1f,
    0x1.e3b40ep-2f, 0x1.c665b2p-2f, 0x1.aaddep-2f, 0x1.91011p-2f, 0x1.78b564p-2f, 0x1.61e28ap-2f,
    0x1.4c71b2p-2f, 0x1.384d68p-2f, 0x1.256184p-2f, 0x1.139b1ap-2f, 0x1.02e862p-2f, 0x1.e6715p-3f,
    0x1.c8f878p-3f, 0x1.ad48bcp-3f, 0x1.93466ep-3f, 0x1.7ad788p-3f, 0x1.63e398p-3f,
    0x1.4e53aap-3f, 0x1.3a122cp-3f, 0x1.270adap-3f, 0x1.152aaap-3f, 0x1.045fbep-3f,
    0x1.e9328cp-4f, 0x1.cb8ef8p-4f, 0x1.afb718p-4f, 0x1.958f16p-4f, 0x1.7cfcc2p-4f,
    0x1.65e78cp-4f, 0x1.50385cp-4f, 0x1.3bd98p-4f, 0x1.28b698p-4f, 0x1.16bc7ep-4f, 0x1.05d938p-4f,
    0x1.ebf7c4p-5f, 0x1.ce2938p-5f, 0x1.b228fcp-5f, 0x1.97db0cp-5f, 0x1.7f251ap-5f,
    0x1.67ee6ep-5f, 0x1.521fccp-5f, 0x1.3da368p-5f, 0x1.2a64c2p-5f, 0x1.185098p-5f,
    0x1.0754d8p-5f, 0x1.eec102p-6f, 0x1.d0c73ep-6f, 0x1.b49e6ap-6f, 0x1.9a2a58p-6f,
    0x1.815094p-6f, 0x1.69f83ep-6f, 0x1.540ap-6f, 0x1.3f6fe8p-6f, 0x1.2c155cp-6f, 0x1.19e6fcp-6f,
    0x1.08d29cp-6f, 0x1.f18e48p-7f, 0x1.d36912p-7f, 0x1.b7176ap-7f, 0x1.9c7cfep-7f,
    0x1.837f32p-7f, 0x1.6c0504p-7f, 0x1.55f6fap-7f, 0x1.413f04p-7f, 0x1.2dc868p-7f,
    0x1.1b7faep-7f, 0x1.0a528ap-7f, 0x1.f45fap-8f, 0x1.d60eb4p-8f, 0x1.b993fep-8f, 0x1.9ed3p-8f,
    0x1.85b0fap-8f, 0x1.6e14c2p-8f, 0x1.57e6cp-8f, 0x1.4310cp-8f, 0x1.2f7decp-8f, 0x1.1d1abp-8f,
    0x1.0bd4a6p-8f, 0x1.f7350cp-9f, 0x1.d8b82ep-9f, 0x1.bc142ep-9f, 0x1.a12c66p-9f, 0x1.87e5fp-9f,
    0x1.70277ep-9f, 0x1.59d954p-9f, 0x1.44e52p-9f, 0x1.3135eap-9f, 0x1.1eb806p-9f, 0x1.0d58fp-9f,
    0x1.fa0e96p-10f, 0x1.db6582p-10f, 0x1.be97fep-10f, 0x1.a38934p-10f, 0x1.8a1e18p-10f,
    0x1.723d3cp-10f, 0x1.5bcebap-10f, 0x1.46bc24p-10f, 0x1.32f066p-10f, 0x1.2057b2p-10f,
    0x1.0edf6ep-10f, 0x1.fcec4p-11f, 0x1.de16bap-11f, 0x1.c11f72p-11f, 0x1.a5e97p-11f,
    0x1.8c597ap-11f, 0x1.7455fep-11f, 0x1.5dc6f8p-11f, 0x1.4895d6p-11f, 0x1.34ad64p-11f,
    0x1.21f9bap-11f, 0x1.106822p-11f, 0x1.ffce12p-12f, 0x1.e0cbd8p-12f, 0x1.c3aa92p-12f,
    0x1.a84d1cp-12f, 0x1.8e9818p-12f, 0x1.7671ccp-12f, 0x1.5fc21p-12f, 0x1.4a7234p-12f,
    0x1.366ce6p-12f, 0x1.239e2p-12f, 0x1.11f31p-12f, 0x1.015a08p-12f, 0x1.e384e2p-13f,
    0x1.c63962p-13f, 0x1.aab44p-13f, 0x1.90d9f6p-13f, 0x1.7890a6p-13f, 0x1.61c008p-13f,
    0x1.4c5146p-13f, 0x1.382ef2p-13f, 0x1.2544e8p-13f, 0x1.13803ap-13f, 0x1.02cf22p-13f,
    0x1.e641ep-14f, 0x1.c8cbe6p-14f, 0x1.ad1edep-14f, 0x1.931f1ap-14f, 0x1.7ab296p-14f,
    0x1.63c0e2p-14f, 0x1.4e331p-14f, 0x1.39f38ap-14f, 0x1.26ee14p-14f, 0x1.150fa2p-14f,
    0x1.044658p-14f, 0x1.e902d6p-15f, 0x1.cb6226p-15f, 0x1.af8cfep-15f, 0x1.956788p-15f,
    0x1.7cd79cp-15f, 0x1.65c4a6p-15f, 0x1.501792p-15f, 0x1.3bbab2p-15f, 0x1.2899a8p-15f,
    0x1.16a15p-15f, 0x1.05bfbp-15f, 0x1.ebc7cap-16f, 0x1.cdfc26p-16f, 0x1.b1fea4p-16f,
    0x1.97b346p-16f, 0x1.7effbep-16f, 0x1.67cb54p-16f, 0x1.51fed4p-16f, 0x1.3d846ep-16f,
    0x1.2a47a8p-16f, 0x1.183542p-16f, 0x1.073b2ap-16f, 0x1.ee90c2p-17f, 0x1.d099ecp-17f,
    0x1.b473d6p-17f, 0x1.9a0258p-17f, 0x1.812bp-17f, 0x1.69d4f2p-17f, 0x1.53e8d8p-17f,
    0x1.3f50c2p-17f, 0x1.2bf818p-17f, 0x1.19cb7ep-17f, 0x1.08b8c8p-17f, 0x1.f15dc4p-18f,
    0x1.d33b7cp-18f, 0x1.b6ec98p-18f, 0x1.9c54c4p-18f, 0x1.835968p-18f, 0x1.6be184p-18f,
    0x1.55d5a2p-18f, 0x1.411fbp-18f, 0x1.2daafap-18f, 0x1.1b6408p-18f, 0x1.0a3892p-18f,
    0x1.f42ed4p-19f, 0x1.d5e0dcp-19f, 0x1.b968eep-19f, 0x1.9eaa8cp-19f, 0x1.858af8p-19f,
    0x1.6df11p-19f, 0x1.57c536p-19f, 0x1.42f13ep-19f, 0x1.2f6054p-19f, 0x1.1cfee2p-19f,
    0x1.0bba88p-19f, 0x1.f703fap-20f, 0x1.d88a14p-20f, 0x1.bbe8dep-20f, 0x1.a103b8p-20f,
    0x1.87bfb8p-20f, 0x1.700398p-20f, 0x1.59b79ap-20f, 0x1.44c57p-20f, 0x1.311826p-20f,
    0x1.1e9c1p-20f, 0x1.0d3eacp-20f, 0x1.f9dd3cp-21f, 0x1.db3726p-21f, 0x1.be6c7p-21f,
    0x1.a3604ap-21f, 0x1.89f7aap-21f, 0x1.72192p-21f, 0x1.5bacdp-21f, 0x1.469c48p-21f,
    0x1.32d278p-21f, 0x1.203b94p-21f, 0x1.0ec504p-21f, 0x1.fcba9ep-22f, 0x1.dde81ap-22f,
    0x1.c0f3a6p-22f, 0x1.a5c04ap-22f, 0x1.8c32d2p-22f, 0x1.7431aep-22f, 0x1.5da4dcp-22f,
    0x1.4875cap-22f, 0x1.348f4ap-22f, 0x1.21dd72p-22f, 0x1.104d92p-22f, 0x1.ff9c28p-23f,
    0x1.e09cf4p-23f, 0x1.c37e86p-23f, 0x1.a823bcp-23f, 0x1.8e7138p-23f, 0x1.764d48p-23f,
    0x1.5f9fc2p-23f, 0x1.4a51fcp-23f, 0x1.364ea2p-23f, 0x1.2381bp-23f, 0x1.11d858p-23f,
    0x1.0140fp-23f, 0x1.e355bcp-24f, 0x1.c60d16p-24f, 0x1.aa8aa2p-24f, 0x1.90b2dep-24f,
    0x1.786beep-24f, 0x1.619d88p-24f, 0x1.4c30dep-24f, 0x1.38108p-24f, 0x1.25284ep-24f,
    0x1.13655cp-24f, 0x1.02b5e6p-24f, 0x1.e61274p-25f, 0x1.c89f5ap-25f, 0x1.acf506p-25f,
    0x1.92f7cap-25f, 0x1.7a8da6p-25f, 0x1.639e32p-25f, 0x1.4e1278p-25f, 0x1.39d4ecp-25f,
    0x1.26d15p-25f, 0x1.14f49ep-25f, 0x1.042cf8p-25f, 0x1.e8d326p-26f, 0x1.cb355ap-26f,
    0x1.af62eap-26f, 0x1.954p-26f, 0x1.7cb278p-26f, 0x1.65a1c2p-26f, 0x1.4ff6ccp-26f,
    0x1.3b9be8p-26f, 0x1.287cbap-26f, 0x1.168624p-26f, 0x1.05a628p-26f, 0x1.eb97d4p-27f,
    0x1.cdcf18p-27f, 0x1.b1d452p-27f, 0x1.978b84p-27f, 0x1.7eda64p-27f, 0x1.67a83ep-27f,
    0x1.51dddep-27f, 0x1.3d6578p-27f, 0x1.2a2a92p-27f, 0x1.1819eep-27f, 0x1.07217ep-27f,
    0x1.ee6086p-28f, 0x1.d06c9cp-28f, 0x1.b44946p-28f, 0x1.99da5cp-28f, 0x1.81057p-28f,
    0x1.69b1a8p-28f, 0x1.53c7b2p-28f, 0x1.3f319ep-28f, 0x1.2bdad6p-28f, 0x1.19b004p-28f,
    0x1.089ef8p-28f, 0x1.f12d42p-29f, 0x1.d30decp-29f, 0x1.b6c1cap-29f, 0x1.9c2c8ep-29f,
    0x1.8333ap-29f, 0x1.6bbe08p-29f, 0x1.55b44cp-29f, 0x1.41006p-29f, 0x1.2d8d9p-29f,
    0x1.1b4866p-29f, 0x1.0a1e9cp-29f, 0x1.f3fe0cp-30f, 0x1.d5b30ap-30f, 0x1.b93de2p-30f,
    0x1.9e821cp-30f, 0x1.8564fcp-30f, 0x1.6dcd6p-30f, 0x1.57a3bp-30f, 0x1.42d1cp-30f,
    0x1.2f42bep-30f, 0x1.1ce318p-30f, 0x1.0ba06cp-30f, 0x1.f6d2ecp-31f, 0x1.d85bfep-31f,
    0x1.bbbd94p-31f, 0x1.a0db0ep-31f, 0x1.879984p-31f, 0x1.6fdfb4p-31f, 0x1.5995e2p-31f,
    0x1.44a5c4p-31f, 0x1.30fa66p-31f, 0x1.1e801cp-31f, 0x1.0d246ap-31f, 0x1.f9abe6p-32f,
    0x1.db08cep-32f, 0x1.be40e6p-32f, 0x1.a33766p-32f, 0x1.89d13ep-32f, 0x1.71f508p-32f,
    0x1.5b8ae8p-32f, 0x1.467c6ep-32f, 0x1.32b48cp-32f, 0x1.201f78p-32f, 0x1.0eaa9cp-32f,
    0x1.fc8902p-33f, 0x1.ddb97ep-33f, 0x1.c0c7dep-33f, 0x1.a5972ap-33f, 0x1.8c0c3p-33f,
    0x1.740d62p-33f, 0x1.5d82c2p-33f, 0x1.4855c2p-33f, 0x1.347132p-33f, 0x1.21c12ep-33f,
    0x1.103304p-33f, 0x1.ff6a44p-34f, 0x1.e06e16p-34f, 0x1.c3527ep-34f, 0x1.a7fa5ep-34f,
    0x1.8e4a5cp-34f, 0x1.7628c6p-34f, 0x1.5f7d78p-34f, 0x1.4a31c4p-34f, 0x1.36305ep-34f,
    0x1.236542p-34f, 0x1.11bda4p-34f, 0x1.0127dap-34f, 0x1.e3269ap-35f, 0x1.c5e0cep-35f,
    0x1.aa610ap-35f, 0x1.908bcap-35f, 0x1.784738p-35f, 0x1.617b0cp-35f, 0x1.4c1078p-35f,
    0x1.37f212p-35f, 0x1.250bb6p-35f, 0x1.134a8p-35f, 0x1.029caap-35f, 0x1.e5e30ep-36f,
    0x1.c872d2p-36f, 0x1.accb3p-36f, 0x1.92d07ep-36f, 0x1.7a68bcp-36f, 0x1.637b84p-36f,
    0x1.4df1e4p-36f, 0x1.39b652p-36f, 0x1.26b49p-36f, 0x1.14d99cp-36f, 0x1.041398p-36f,
    0x1.e8a37ap-37f, 0x1.cb0892p-37f, 0x1.af38d8p-37f, 0x1.95187ap-37f, 0x1.7c8d58p-37f,
    0x1.657ee2p-37f, 0x1.4fd608p-37f, 0x1.3b7d2p-37f, 0x1.285fd2p-37f, 0x1.166afap-37f,
    0x1.058ca4p-37f, 0x1.eb67e4p-38f, 0x1.cda21p-38f, 0x1.b1aa04p-38f, 0x1.9763c6p-38f,
    0x1.7eb50ep-38f, 0x1.67852ap-38f, 0x1.51bceap-38f, 0x1.3d4684p-38f, 0x1.2a0d7ep-38f,
    0x1.17fe9ep-38f, 0x1.0707d4p-38f, 0x1.ee305p-39f, 0x1.d03f52p-39f, 0x1.b41ebap-39f,
    0x1.99b264p-39f, 0x1.80dfe4p-39f, 0x1.698e62p-39f, 0x1.53a68ep-39f, 0x1.3f127ep-39f,
    0x1.2bbd98p-39f, 0x1.19948cp-39f, 0x1.08852ap-39f, 0x1.f0fcc6p-40f, 0x1.d2e06p-40f,
    0x1.b697p-40f, 0x1.9c045cp-40f, 0x1.830ddep-40f, 0x1.6b9a9p-40f, 0x1.5592f8p-40f,
    0x1.40e112p-40f, 0x1.2d7026p-40f, 0x1.1b2cc6p-40f, 0x1.0a04a8p-40f, 0x1.f3cd4ap-41f,
    0x1.d5853cp-41f, 0x1.b912dap-41f, 0x1.9e59bp-41f, 0x1.853f02p-41f, 0x1.6da9b4p-41f,
    0x1.57822cp-41f, 0x1.42b246p-41f, 0x1.2f252ap-41f, 0x1.1cc74ep-41f, 0x1.0b8652p-41f,
    0x1.f6a1e2p-42f, 0x1.d82deep-42f, 0x1.bb924ep-42f, 0x1.a0b266p-42f, 0x1.877352p-42f,
    0x1.6fbbd4p-42f, 0x1.59742ep-42f, 0x1.44861ap-42f, 0x1.30dca8p-42f, 0x1.1e642cp-42f,
    0x1.0d0a2cp-42f, 0x1.f97a96p-43f, 0x1.dada7cp-43f, 0x1.be1562p-43f, 0x1.a30e84p-43f,
    0x1.89aad6p-43f, 0x1.71d0f4p-43f, 0x1.5b6902p-43f, 0x1.465c96p-43f, 0x1.3296a2p-43f,
    0x1.20036p-43f, 0x1.0e9036p-43f, 0x1.fc576ap-44f, 0x1.dd8ae8p-44f, 0x1.c09c1ap-44f,
    0x1.a56e0cp-44f, 0x1.8be59p-44f, 0x1.73e91ap-44f, 0x1.5d60acp-44f, 0x1.4835bep-44f,
    0x1.34531ep-44f, 0x1.21a4ecp-44f, 0x1.101878p-44f, 0x1.ff3864p-45f, 0x1.e03f3cp-45f,
    0x1.c3267ap-45f, 0x1.a7d106p-45f, 0x1.8e2386p-45f, 0x1.76044ap-45f, 0x1.5f5b3p-45f,
    0x1.4a1192p-45f, 0x1.36121ep-45f, 0x1.2348d8p-45f, 0x1.11a2f2p-45f, 0x1.010ec6p-45f,
    0x1.e2f77cp-46f, 0x1.c5b48cp-46f, 0x1.aa3776p-46f, 0x1.9064bap-46f, 0x1.782286p-46f,
    0x1.615894p-46f, 0x1.4bf016p-46f, 0x1.37d3a6p-46f, 0x1.24ef22p-46f, 0x1.132fa8p-46f,
    0x1.028372p-46f, 0x1.e5b3acp-47f,
};
static const float cw_exp_lo[256] = {
    0x1.fffp-1f, 0x1.ffd002p-1f, 0x1.ffb006p-1f, 0x1.ff900cp-1f, 0x1.ff7014p-1f, 0x1.ff501ep-1f,
    0x1.ff302ap-1f, 0x1.ff1038p-1f, 0x1.fef048p-1f, 0x1.fed05ap-1f, 0x1.feb06ep-1f,
    0x1.fe9084p-1f, 0x1.fe709cp-1f, 0x1.fe50b6p-1f, 0x1.fe30d2p-1f, 0x1.fe10fp-1f, 0x1.fdf11p-1f,
    0x1.fdd132p-1f, 0x1.fdb156p-1f, 0x1.fd917cp-1f, 0x1.fd71a4p-1f, 0x1.fd51cep-1f,
    0x1.fd31fap-1f, 0x1.fd1228p-1f, 0x1.fcf258p-1f, 0x1.fcd288p-1f, 0x1.fcb2bcp-1f,
    0x1.fc92f2p-1f, 0x1.fc732ap-1f, 0x1.fc5364p-1f, 0x1.fc33ap-1f, 0x1.fc13dep-1f, 0x1.fbf41ep-1f,
    0x1.fbd46p-1f, 0x1.fbb4a2p-1f, 0x1.fb94e8p-1f, 0x1.fb753p-1f, 0x1.fb557ap-1f, 0x1.fb35c6p-1f,
    0x1.fb1614p-1f, 0x1.faf662p-1f, 0x1.fad6b4p-1f, 0x1.fab708p-1f, 0x1.fa975ep-1f,
    0x1.fa77b6p-1f, 0x1.fa580ep-1f, 0x1.fa386ap-1f, 0x1.fa18c8p-1f, 0x1.f9f926p-1f,
    0x1.f9d988p-1f, 0x1.f9b9ecp-1f, 0x1.f99a52p-1f, 0x1.f97ab8p-1f, 0x1.f95b22p-1f,
    0x1.f93b8ep-1f, 0x1.f91bfap-1f, 0x1.f8fc6ap-1f, 0x1.f8dcdap-1f, 0x1.f8bd4ep-1f,
    0x1.f89dc4p-1f, 0x1.f87e3ap-1f, 0x1.f85eb4p-1f, 0x1.f83f2ep-1f, 0x1.f81facp-1f,
    0x1.f8002ap-1f, 0x1.f7e0acp-1f, 0x1.f7c12ep-1f, 0x1.f7a1b4p-1f, 0x1.f7823ap-1f,
    0x1.f762c4p-1f, 0x1.f7434ep-1f, 0x1.f723dap-1f, 0x1.f7046ap-1f, 0x1.f6e4fap-1f,
    0x1.f6c58cp-1f, 0x1.f6a622p-1f, 0x1.f686b8p-1f, 0x1.f6675p-1f, 0x1.f647ecp-1f, 0x1.f62888p-1f,
    0x1.f60926p-1f, 0x1.f5e9c6p-1f, 0x1.f5ca68p-1f, 0x1.f5ab0ep-1f, 0x1.f58bb4p-1f,
    0x1.f56c5cp-1f, 0x1.f54d06p-1f, 0x1.f52db2p-1f, 0x1.f50e6p-1f, 0x1.f4ef1p-1f, 0x1.f4cfc2p-1f,
    0x1.f4b076p-1f, 0x1.f4912cp-1f, 0x1.f471e4p-1f, 0x1.f4529ep-1f, 0x1.f4335ap-1f,
    0x1.f41418p-1f, 0x1.f3f4d8p-1f, 0x1.f3d598p-1f, 0x1.f3b65cp-1f, 0x1.f39722p-1f,
    0x1.f377eap-1f, 0x1.f358b4p-1f, 0x1.f3397ep-1f, 0x1.f31a4cp-1f, 0x1.f2fb1cp-1f,
    0x1.f2dbecp-1f, 0x1.f2bccp-1f, 0x1.f29d94p-1f, 0x1.f27e6cp-1f, 0x1.f25f46p-1f, 0x1.f2402p-1f,
    0x1.f220fep-1f, 0x1.f201dcp-1f, 0x1.f1e2bcp-1f, 0x1.f1c3ap-1f, 0x1.f1a484p-1f, 0x1.f1856cp-1f,
    0x1.f16654p-1f, 0x1.f1473ep-1f, 0x1.f1282ap-1f, 0x1.f1091ap-1f, 0x1.f0ea0ap-1f,
    0x1.f0cafcp-1f, 0x1.f0abfp-1f, 0x1.f08ce6p-1f, 0x1.f06ddep-1f, 0x1.f04ed8p-1f, 0x1.f02fd4p-1f,
    0x1.f010d2p-1f, 0x1.eff1d2p-1f, 0x1.efd2d4p-1f, 0x1.efb3d8p-1f, 0x1.ef94dep-1f,
    0x1.ef75e6p-1f, 0x1.ef56fp-1f, 0x1.ef37fap-1f, 0x1.ef1908p-1f, 0x1.eefa18p-1f, 0x1.eedb2ap-1f,
    0x1.eebc3cp-1f, 0x1.ee9d52p-1f, 0x1.ee7e68p-1f, 0x1.ee5f82p-1f, 0x1.ee409cp-1f,
    0x1.ee21bap-1f, 0x1.ee02d8p-1f, 0x1.ede3fap-1f, 0x1.edc51cp-1f, 0x1.eda64p-1f, 0x1.ed8768p-1f,
    0x1.ed689p-1f, 0x1.ed49bap-1f, 0x1.ed2ae6p-1f, 0x1.ed0c14p-1f, 0x1.eced46p-1f, 0x1.ecce78p-1f,
    0x1.ecafacp-1f, 0x1.ec90e2p-1f, 0x1.ec721ap-1f, 0x1.ec5354p-1f, 0x1.ec348ep-1f,
    0x1.ec15ccp-1f, 0x1.ebf70cp-1f, 0x1.ebd84ep-1f, 0x1.ebb992p-1f, 0x1.eb9ad6p-1f,
    0x1.eb7c1ep-1f, 0x1.eb5d66p-1f, 0x1.eb3eb2p-1f, 0x1.eb2p-1f, 0x1.eb014ep-1f, 0x1.eae29ep-1f,
    0x1.eac3f2p-1f, 0x1.eaa546p-1f, 0x1.ea869ep-1f, 0x1.ea67f6p-1f, 0x1.ea495p-1f, 0x1.ea2aacp-1f,
    0x1.ea0c0ap-1f, 0x1.e9ed6ap-1f, 0x1.e9cecep-1f, 0x1.e9b032p-1f, 0x1.e99196p-1f,
    0x1.e972fep-1f, 0x1.e95468p-1f, 0x1.e935d4p-1f, 0x1.e91742p-1f, 0x1.e8f8b2p-1f,
    0x1.e8da22p-1f, 0x1.e8bb96p-1f, 0x1.e89d0cp-1f, 0x1.e87e82p-1f, 0x1.e85ffcp-1f,
    0x1.e84176p-1f, 0x1.e822f4p-1f, 0x1.e80472p-1f, 0x1.e7e5f2p-1f, 0x1.e7c776p-1f,
    0x1.e7a8fap-1f, 0x1.e78a8p-1f, 0x1.e76c08p-1f, 0x1.e74d92p-1f, 0x1.e72f1ep-1f, 0x1.e710acp-1f,
    0x1.e6f23cp-1f, 0x1.e6d3cep-1f, 0x1.e6b562p-1f, 0x1.e696f8p-1f, 0x1.e6789p-1f, 0x1.e65a28p-1f,
    0x1.e63bc4p-1f, 0x1.e61d62p-1f, 0x1.e5ffp-1f, 0x1.e5e0a2p-1f, 0x1.e5c244p-1f, 0x1.e5a3eap-1f,
    0x1.e5859p-1f, 0x1.e56738p-1f, 0x1.e548e4p-1f, 0x1.e52a9p-1f, 0x1.e50c3ep-1f, 0x1.e4edeep-1f,
    0x1.e4cfap-1f, 0x1.e4b154p-1f, 0x1.e4930ap-1f, 0x1.e474c2p-1f, 0x1.e4567cp-1f, 0x1.e43836p-1f,
    0x1.e419f4p-1f, 0x1.e3fbb4p-1f, 0x1.e3dd74p-1f, 0x1.e3bf38p-1f, 0x1.e3a0fcp-1f,
    0x1.e382c4p-1f, 0x1.e3648cp-1f, 0x1.e34658p-1f, 0x1.e32824p-1f, 0x1.e309f2p-1f,
    0x1.e2ebc2p-1f, 0x1.e2cd94p-1f, 0x1.e2af68p-1f, 0x1.e2913ep-1f, 0x1.e27316p-1f, 0x1.e254fp-1f,
    0x1.e236ccp-1f, 0x1.e218aap-1f, 0x1.e1fa88p-1f, 0x1.e1dc6ap-1f, 0x1.e1be4ep-1f,
    0x1.e1a032p-1f, 0x1.e1821ap-1f, 0x1.e16402p-1f, 0x1.e145ecp-1f, 0x1.e127dap-1f,
    0x1.e109c8p-1f,
};

/* ---- configuration ----------------------------------------------------------------------- */

typedef struct {
    int greedy;           /* 1: argmax after the penalty (and mask), no coin */
    int temperature_on;   /* temperature != 1 */
    float inv_t;          /* float32(1 / temperature) */
    int top_k;            /* 0: off (k >= V is a no-op too) */
    int top_p_on;         /* top_p < 1 */
    float top_p_target;   /* float32(top_p * (1 - 2**-16)) (0 for top_p < ~7e-46: the max only) */
    int min_p_on;         /* min_p > 0 */
    float log_min_p;      /* float32(log(min_p)) */
    int typical_on;       /* typical_p < 1 */
    double typical_target; /* typical_p * (1 - 1e-6) */
    int penalty_on;       /* repetition_penalty != 1 */
    float penalty;        /* float32(r) */
    float inv_penalty;    /* float32(1 / r), 1/r in float64 */
    int window;           /* repetition_window: ids a row's ring holds (1..CW_WINDOW_MAX) */
} cw_sampling;

/* The ranges SamplingConfig holds (config.py); CW_SAMPLER_EPARAM outside them (nothing
 * clamped). temperature 0 or greedy != 0: greedy. top_k 0: off. top_p 1, min_p 0, typical_p 1,
 * repetition_penalty 1: off (window still checked: 1..65536). */
CW_SFN int cw_sampling_init(cw_sampling *c, double temperature, int top_k, double top_p,
                            double min_p, double typical_p, double repetition_penalty,
                            int repetition_window, int greedy) {
    if (!c) return CW_SAMPLER_EPARAM;
#ifdef CW_SAMPLER_NO_DOUBLE
    if (min_p != 0.0 || typical_p != 1.0) return CW_SAMPLER_EPARAM; /* not in this build */
#endif
    if (!(temperature == 0.0 || (temperature >= 1e-4 && temperature <= 1000.0)) || top_k < 0 ||
        !(top_p > 0.0 && top_p <= 1.0) || !(min_p >= 0.0 && min_p < 1.0) ||
        !(typical_p > 0.0 && typical_p <= 1.0) ||
        !(repetition_penalty >= 0.01 && repetition_penalty <= 100.0) || repetition_window < 1 ||
        repetition_window > CW_WINDOW_MAX)
        return CW_SAMPLER_EPARAM;
    memset(c, 0, sizeof *c);
    c->greedy = greedy || temperature == 0.0;
    c->temperature_on = !c->greedy && temperature != 1.0;
    c->inv_t = c->temperature_on ? (float)(1.0 / temperature) : 1.0f;
    if (!c->greedy) {
        c->top_k = top_k;
        c->top_p_on = top_p < 1.0;
        c->top_p_target = (float)(top_p * (1.0 - 1.0 / 65536.0));
        c->min_p_on = min_p > 0.0;
#ifndef CW_SAMPLER_NO_DOUBLE
        c->log_min_p = c->min_p_on ? (float)log(min_p) : 0.0f;
#endif
        c->typical_on = typical_p < 1.0;
        c->typical_target = typical_p * (1.0 - 1e-6);
    }
    c->penalty_on = repetition_penalty != 1.0;
    c->penalty = (float)repetition_penalty;
    c->inv_penalty = (float)(1.0 / repetition_penalty);
    c->window = repetition_window;
    return CW_SAMPLER_OK;
}

/* ---- one row: the coin stream and the repetition window ---------------------------------- */

static const uint64_t CW_GOLDEN = 0x9E3779B97F4A7C15u;

CW_SFN uint64_t cw_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* mix64(mix64(seed + GOLDEN) ^ row) */
CW_SFN uint64_t cw_row_key(uint64_t seed, uint64_t row) {
    return cw_mix64(cw_mix64(seed + CW_GOLDEN) ^ row);
}

typedef struct {
    uint64_t key;    /* splitmix64 key of (seed, row) */
    uint64_t drawn;  /* coins drawn so far: the next is draw number `drawn` of the stream */
    int32_t *window; /* [c->window] ring of ids (caller's buffer; NULL when the penalty is off) */
    int32_t count;   /* ids in the ring (<= c->window) */
    int32_t head;    /* the slot of the oldest id */
} cw_row;

/* The row's next coin in [0, 1): splitmix64 from its key, top 24 bits. */
CW_SFN float cw_coin(cw_row *r) {
    uint64_t x;
    r->drawn += 1u;
    x = cw_mix64(r->key + r->drawn * CW_GOLDEN);
    return (float)(uint32_t)(x >> 40) * (1.0f / 16777216.0f);
}

/* An id joins the window; the oldest leaves once it holds c->window ids. */
CW_SFN void cw_row_accept(const cw_sampling *c, cw_row *r, int id) {
    if (!r->window) return;
    if (r->count < c->window) {
        int32_t slot = r->head + r->count;
        r->window[slot >= c->window ? slot - c->window : slot] = id;
        r->count++;
    } else {
        r->window[r->head] = id;
        r->head = r->head + 1 == c->window ? 0 : r->head + 1;
    }
}

/* The window's ids, oldest first, into out [c->window]; returns how many. */
CW_SFN int cw_row_window(const cw_sampling *c, const cw_row *r, int32_t *out) {
    int32_t i, slot;
    if (!r->window) return 0;
    for (i = 0; i < r->count; i++) {
        slot = r->head + i;
        out[i] = r->window[slot >= c->window ? slot - c->window : slot];
    }
    return r->count;
}

/* ids [n] (oldest first) become the window: their last c->window. */
CW_SFN void cw_row_set_window(const cw_sampling *c, cw_row *r, const int32_t *ids, long n) {
    long i;
    r->count = 0;
    r->head = 0;
    if (!r->window) return;
    for (i = n > c->window ? n - c->window : 0; i < n; i++) cw_row_accept(c, r, ids[i]);
}

/* A row of (seed, row id): no coin drawn, the window the prompt's last ids. window_buf: int32
 * [c->window], or NULL when c->penalty_on is 0 (the window is then not kept). */
CW_SFN int cw_row_init(cw_row *r, const cw_sampling *c, uint64_t seed, uint64_t row,
                       int32_t *window_buf, const int32_t *prompt, long n_prompt) {
    if (!r || !c || seed > 0x7FFFFFFFFFFFFFFFu || n_prompt < 0 || (n_prompt && !prompt) ||
        (c->penalty_on && !window_buf))
        return CW_SAMPLER_EPARAM;
    r->key = cw_row_key(seed, row);
    r->drawn = 0;
    r->window = c->penalty_on ? window_buf : NULL;
    cw_row_set_window(c, r, prompt, n_prompt);
    return CW_SAMPLER_OK;
}

/* ---- the processors ---------------------------------------------------------------------- */

/* exp(z - m) by table, to 1.2e-4 relative; 0 below m - 32 (and for -inf, NaN). */
CW_SFN float cw_weight(float m, float z) {
    float d = (m - z) * 4096.0f;
    long q;
    if (!(d < 131072.0f)) return 0.0f;
    q = (long)d;
    return cw_exp_hi[q >> 8] * cw_exp_lo[q & 255];
}


/* the largest value (-inf when none: NaN is never larger), with 8 independent maxima: the
 * same value as one running maximum, without its chain of dependent compares */
CW_SFN_OUTLINED float cw_max(const float *z, int n) {
    float a[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                  -INFINITY};
    int i, k;
    for (i = 0; i + 8 <= n; i += 8)
        for (k = 0; k < 8; k++) a[k] = z[i + k] > a[k] ? z[i + k] : a[k];
    for (; i < n; i++) a[0] = z[i] > a[0] ? z[i] : a[0];
    for (k = 1; k < 8; k++) a[0] = a[k] > a[0] ? a[k] : a[0];
    return a[0];
}

/* the first index of the largest value (0 when there is none: all NaN), as numpy's argmax
 * for NaN-free z (numpy's argmax picks the first NaN; here NaN is never the largest: see
 * SAMPLING.md, NaN logits): the maximum first (cw_max), then the first id equal to it */
CW_SFN_OUTLINED int cw_argmax(const float *z, int n) {
    float m = cw_max(z, n);
    int i;
    for (i = 0; i < n; i++)
        if (z[i] == m) return i;
    return 0;
}

/* In c [n], nondecreasing (running sums of weights >= 0): the first j with c_j >= t (strict 0)
 * or c_j > t (strict 1), n when there is none; by bisection: the same j as a scan. */
CW_SFN_OUTLINED int cw_first_reaching(const float *c, int n, float t, int strict) {
    int lo = 0, hi = n; /* the answer is in lo..hi */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strict ? c[mid] > t : c[mid] >= t) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* the scratch's arrays, carved from CW_SCRATCH_BYTES(V) bytes; each step uses them only while
 * it runs, so they overlap where no step needs two at once */
typedef struct {
    double *d;            /* typical: the distances |-lp - H| (over a and b) */
    float *a, *b;         /* top-k, top-p: values; top-p, categorical: running sums */
    uint32_t *q, *t;      /* top-p: weight indices + the radix sort's other buffer; categorical:
                           * weight indices and ids; typical: the order + the merge buffer */
    unsigned char *mark;  /* repetition penalty: ids already changed (over t, cleared first) */
} cw_scratch;

CW_SFN cw_scratch cw_scratch_of(void *mem, int V) {
    cw_scratch s;
    size_t n = (size_t)V;
    s.d = (double *)mem;
    s.a = (float *)(void *)s.d;
    s.b = s.a + n;
    s.q = (uint32_t *)(void *)(s.b + n);
    s.t = s.q + n;
    s.mark = (unsigned char *)(void *)s.t;
    return s;
}

/* 1. repetition penalty: each distinct id of the window once (mark: V bytes of scratch) */
CW_SFN void cw_penalize(const cw_sampling *c, const cw_row *r, float *z, int V,
                        unsigned char *mark) {
    int32_t i, slot, id;
    if (!r->window) return;
    memset(mark, 0, (size_t)V);
    for (i = 0; i < r->count; i++) {
        slot = r->head + i;
        id = r->window[slot >= c->window ? slot - c->window : slot];
        if (id < 0 || id >= V || mark[id]) continue;
        mark[id] = 1;
        z[id] = z[id] > 0.0f ? z[id] * c->inv_penalty : z[id] * c->penalty;
    }
}

CW_SFN void cw_swapf(float *a, int i, int j) {
    float t = a[i];
    a[i] = a[j];
    a[j] = t;
}

/* The k-th largest value of src [n] (1 <= k <= n, duplicates counted: numpy's partition), by a
 * min-heap of the k largest in heap [k]: one compare for most values, O(n log k) at most */
CW_SFN_OUTLINED float cw_kth_largest(const float *src, int n, int k, float *heap) {
    int i, root, child;
    memcpy(heap, src, (size_t)k * sizeof *heap);
    for (i = k / 2 - 1; i >= 0; i--)
        for (root = i; (child = 2 * root + 1) < k; root = child) {
            if (child + 1 < k && heap[child + 1] < heap[child]) child++;
            if (!(heap[child] < heap[root])) break;
            cw_swapf(heap, root, child);
        }
    for (i = k; i < n; i++) {
        if (!(src[i] > heap[0])) continue; /* also NaN */
        heap[0] = src[i];
        for (root = 0; (child = 2 * root + 1) < k; root = child) {
            if (child + 1 < k && heap[child + 1] < heap[child]) child++;
            if (!(heap[child] < heap[root])) break;
            cw_swapf(heap, root, child);
        }
    }
    return heap[0];
}

/* 4. top-k: every z below the k-th largest becomes -inf (ties with it stay) */
CW_SFN void cw_top_k(int k, float *z, int V, float *a) {
    float kth;
    int i;
    if (k <= 0 || k >= V) return;
    kth = cw_kth_largest(z, V, k, a);
    for (i = 0; i < V; i++)
        if (z[i] < kth) z[i] = -INFINITY;
}

/* q [n] sorted ascending, t [n] the other buffer: insertion for a few; a bottom-up merge sort
 * without digit counts; with them (hist: lo [512] then hi [512], counted by the caller), an LSD
 * radix sort on 17 bits (9 + 8) */
CW_SFN_OUTLINED void cw_sort_q(uint32_t *q, uint32_t *t, int n, uint32_t *hist) {
    int i, j;
    if (n <= 32) {
        for (i = 1; i < n; i++) {
            uint32_t v = q[i];
            for (j = i; j > 0 && q[j - 1] > v; j--) q[j] = q[j - 1];
            q[j] = v;
        }
    } else if (!hist) {
        int width;
        uint32_t *src = q, *dst = t, *x;
        for (width = 1; width < n; width *= 2) {
            for (i = 0; i < n; i += 2 * width) {
                int mid = i + width < n ? i + width : n;
                int end = i + 2 * width < n ? i + 2 * width : n;
                int p = i, r = mid, o = i;
                while (p < mid && r < end) dst[o++] = src[r] < src[p] ? src[r++] : src[p++];
                while (p < mid) dst[o++] = src[p++];
                while (r < end) dst[o++] = src[r++];
            }
            x = src;
            src = dst;
            dst = x;
        }
        if (src != q) memcpy(q, src, (size_t)n * sizeof *q);
    }
#if !defined(CW_SAMPLER_SMALL_CODE) || !defined(CW_SAMPLER_SMALL_STACK)
    else {
        uint32_t *lo = hist, *hi = hist + 512, sum, c;
        for (sum = 0, i = 0; i < 512; i++) c = lo[i], lo[i] = sum, sum += c;
        for (sum = 0, i = 0; i < 512; i++) c = hi[i], hi[i] = sum, sum += c;
        for (i = 0; i < n; i++) t[lo[q[i] & 511u]++] = q[i];
        for (i = 0; i < n; i++) q[hi[t[i] >> 9]++] = t[i];
    }
#endif
}

/* The weight index q of z in a row whose largest logit is m, and whether it has a weight:
 * d = (m - z) * 4096; weight 0 unless d < 131072 (also for NaN, inf); q = (int) d. */
#define CW_Q(m, z, q, ok)                                                                    \
    do {                                                                                     \
        float d_ = ((m) - (z)) * 4096.0f;                                                    \
        (ok) = d_ < 131072.0f;                                                               \
        (q) = (uint32_t)(int32_t)((ok) ? d_ : 0.0f);                                         \
    } while (0)
#define CW_WQ(q) (cw_exp_hi[(q) >> 8] * cw_exp_lo[(q) & 255u])

/* 5. top-p: as a full descending sort would do it (SAMPLING.md step 5). The weight indices q
 * sorted ascending (ascending q = descending value; ids without a weight last) give the
 * running sums of the sorted values, hence the cut j* and its index qj: ids of a larger q go,
 * of a smaller q stay; of q = qj, the values from j*'s rank among them (largest first) up stay.
 * Returns the ids kept with a weight, their q in s->q and ids in s->t in id order (what the
 * categorical draw needs when nothing follows), or -1 when there is no weight at all. */
CW_SFN int cw_top_p_sorted(float target_p, float *z, int V, cw_scratch *s) {
    float m = cw_max(z, V), cum = 0.0f, target, thr = 0.0f;
    int i, n = 0, j, lo, g, ok, multi;
    uint32_t q, qj, *hist = NULL;
#ifndef CW_SAMPLER_SMALL_STACK
    uint32_t stack_hist[1024];
    if (V > 32) hist = stack_hist; /* the radix sort's digit counts: 4 KB of stack */
#endif
#ifndef CW_SAMPLER_SMALL_CODE
    if (V >= 512) hist = (uint32_t *)(void *)s->a; /* in a and b (8 V bytes), free until after */
#endif
    /* the weight indices of the ids with a weight (those without one sort last and add 0) */
    if (hist) {
        memset(hist, 0, 1024 * sizeof *hist);
        for (i = 0; i < V; i++) {
            CW_Q(m, z[i], q, ok);
            s->q[n] = q;
            hist[q & 511u] += (uint32_t)ok;
            hist[512 + (q >> 9)] += (uint32_t)ok;
            n += ok;
        }
    } else {
        for (i = 0; i < V; i++) {
            CW_Q(m, z[i], q, ok);
            s->q[n] = q;
            n += ok;
        }
    }
    if (n == 0) { /* no weight: numpy's cut is the first sorted value, the maximum */
        for (i = 0; i < V; i++)
            if (z[i] < m) z[i] = -INFINITY;
        return -1;
    }
    cw_sort_q(s->q, s->t, n, hist);
    for (j = 0; j < n; j++) {
        cum = cum + CW_WQ(s->q[j]);
        s->b[j] = cum;
    }
    target = target_p * cum;
    j = cw_first_reaching(s->b, n, target, 0); /* the first c_j >= target (one exists) */
    if (j >= n) j = n - 1;
    qj = s->q[j];
    multi = (j > 0 && s->q[j - 1] == qj) || (j + 1 < n && s->q[j + 1] == qj);
    if (multi) { /* the values of index qj, then the (j - lo)-th largest of them */
        for (lo = j; lo > 0 && s->q[lo - 1] == qj; lo--) {}
        for (g = 0, i = 0; i < V; i++) {
            CW_Q(m, z[i], q, ok);
            if (ok && q == qj) s->a[g++] = z[i];
        }
        thr = cw_kth_largest(s->a, g, j - lo + 1, s->b); /* b: the sums are read already */
    }
    if (!multi) { /* q <= qj is d < qj + 1 (d >= 0); d >= qj + 1 removes (also no weight) */
        float lim = (float)(qj + 1u);
        for (n = 0, i = 0; i < V; i++) {
            float d = (m - z[i]) * 4096.0f;
            int keep = d < lim;
            if (d >= lim) z[i] = -INFINITY; /* a NaN d (NaN z) stays, as numpy's z < thr */
            s->q[n] = (uint32_t)(int32_t)(keep ? d : 0.0f);
            s->t[n] = (uint32_t)i;
            n += keep;
        }
        return n;
    }
    for (n = 0, i = 0; i < V; i++) {
        int keep;
        CW_Q(m, z[i], q, ok);
        /* no weight: below the cut unless NaN (numpy's z < thr is false for NaN) */
        keep = ok ? q < qj || (q == qj && (!multi || z[i] >= thr)) : z[i] != z[i];
        if (!keep) z[i] = -INFINITY;
        s->q[n] = q;
        s->t[n] = (uint32_t)i;
        n += keep && ok;
    }
    return n;
}

#ifndef CW_SAMPLER_SMALL_CODE
#ifndef CW_TOP_P_TRACE /* a test hook: which way a top-p call went (nothing by default) */
#define CW_TOP_P_TRACE(k)
#endif
/* q [n] (each < 2^bits, 1 <= bits <= 18) sorted ascending by an LSD radix sort: two passes
 * on digits of up to 9 bits, or for a few ids three on up to 6 bits (fewer counts to sum); t
 * [n] the other buffer; cnt [1024] the digit counts. The result is in q. */
CW_SFN_OUTLINED void cw_radix_q(uint32_t *q, uint32_t *t, int n, int bits, uint32_t *cnt) {
    uint32_t *k, sum, c, mask, *src = q, *dst = t, *x;
    int i, p, passes = n < 128 ? 3 : 2, sh = (bits + passes - 1) / passes, nb = 1 << sh;
    mask = (uint32_t)nb - 1u;
    memset(cnt, 0, (size_t)(passes * nb) * sizeof *cnt);
    for (i = 0; i < n; i++)
        for (p = 0; p < passes; p++) cnt[p * nb + (int)((q[i] >> (sh * p)) & mask)]++;
    for (p = 0; p < passes; p++) {
        k = cnt + p * nb;
        for (sum = 0, i = 0; i < nb; i++) c = k[i], k[i] = sum, sum += c;
        for (i = 0; i < n; i++) dst[k[(src[i] >> (sh * p)) & mask]++] = src[i];
        x = src;
        src = dst;
        dst = x;
    }
    if (src != q) memcpy(q, src, (size_t)n * sizeof *q);
}

/* the first q (>= lo) whose weight is below h: every larger q weighs less (the weights fall
 * with q: tests/runtime/sampling/test_speedups_exact.py checks the tables) */
CW_SFN uint32_t cw_q_below(float h, uint32_t lo) {
    uint32_t hi = 131072u;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2u;
        if (CW_WQ(mid) < h) hi = mid;
        else lo = mid + 1u;
    }
    return lo;
}

/* top-p without sorting the ids that cannot matter (SAMPLING.md step 5, the same ids as
 * cw_top_p_sorted). A histogram of q by quarter logit (of about 256 ids) picks a head: the ids
 * of q < qb, with all but an estimated fraction (2^-8, or (1 - P) / 8 when smaller) of the
 * weight. Only the head is sorted and summed in order (c_h); the sorted order puts every other
 * id (the tail) after it. With R = 2^e <= c_h < 2R (ulp u = R 2^-23), adding a tail weight w
 * rounds c + w to the multiple of u nearest c + w, which is c + ((R + w) - R) unless w's
 * fraction of u is exactly one half (then the parity of c decides: a tie); so when no tail
 * weight ties and the total stays below 2R, the tail adds the sum of (R + w) - R, exact in any
 * order (multiples of u below 2R). A weight below half an ulp adds nothing: the tail lists
 * only q < qz, those above a guess of R's half ulp (listed again if R is below the guess). The
 * cut must then lie in the head (c_h >= P x total). Where any of this fails (a tie, the total
 * reaches 2R, the cut in the tail, no weight) it returns -2 and the caller sorts everything.
 * Otherwise as cw_top_p_sorted. */
CW_SFN int cw_top_p_head(float target_p, float *z, int V, cw_scratch *s) {
    uint32_t *cnt, *qa = s->q, *hid = s->t, *hq = (uint32_t *)(void *)s->a, *bq, q, qj, qb, qz;
    float m, cum = 0.0f, tot = 0.0f, tail = 0.0f, lim, thr = 0.0f, rlo, r;
    int i, k, n, nh, nb, b, bmax = 0, bits, j, lo, g, ok, multi, st;
#ifndef CW_SAMPLER_SMALL_STACK
    uint32_t counts[1024]; /* the histogram, then the radix sort's digit counts: 4 KB */
#else
    uint32_t counts[128]; /* the histogram (512 bytes); the digit counts: in t, below */
#endif
    cnt = counts;
    m = cw_max(z, V);
    for (n = 0, i = 0; i < V; i++) { /* qa: every id's q, 0xFFFFFFFF without a weight */
        float d = (m - z[i]) * 4096.0f;
        ok = d < 131072.0f;
        qa[i] = ok ? (uint32_t)(int32_t)d : 0xFFFFFFFFu;
        n += ok;
    }
    if (n == 0) { CW_TOP_P_TRACE(0); return -2; }
    memset(cnt, 0, 128 * sizeof *cnt); /* the histogram of q by quarter logit */
    st = V > 512 ? V / 256 : 1;
    for (i = 0; i < V; i += st) {
        q = qa[i];
        b = (int)((q >> 10) & 127u);
        cnt[b] += q < 131072u;
        bmax = q < 131072u && b > bmax ? b : bmax;
    }
    for (b = 0; b <= bmax; b++) tot += (float)cnt[b] * cw_exp_hi[4 * b]; /* a bound each */
    lim = tot * (1.0f - target_p) * 0.125f;
    if (lim > tot * 0x1p-8f) lim = tot * 0x1p-8f;
    for (b = bmax + 1; b > 1; b--) { /* the tail: buckets b.. */
        float add = (float)cnt[b - 1] * cw_exp_hi[4 * (b - 1)];
        if (tail + add > lim) break;
        tail += add;
    }
    qb = (uint32_t)b << 10;
    /* rlo: a guess of a power of two <= the total (R >= 1/2: the total holds w(0) > 1/2); a
     * weight below rlo 2^-24 never changes the sum, so the tail lists q < qz only */
    tot = tot * (float)st * 0.125f;
    for (rlo = 0.5f; rlo + rlo <= tot && rlo < 0x1p100f; rlo += rlo) {}
    qz = V > 1024 ? cw_q_below(rlo * 0x1p-24f, qb) : 131072u; /* few ids: list them all */
    bq = hq + V - 1; /* the tail's q < qz, from the end of a down (the head's q from its start) */
    for (nh = nb = 0, i = 0; i < V; i++) { /* the head's ids, the tail's q */
        q = qa[i];
        hid[nh] = (uint32_t)i;
        nh += q < qb;
        bq[-nb] = q;
        nb += q - qb < qz - qb;
    }
    for (k = 0; k < nh; k++) hq[k] = qa[hid[k]];
    bq -= nb - 1; /* bq [nb] */
    for (bits = 1; (qb - 1u) >> bits; bits++) {}
#ifdef CW_SAMPLER_SMALL_STACK
    cnt = V - nh >= 1024 ? hid + nh : NULL; /* the digit counts in t after the head's ids */
#endif
    if (nh <= 8 || !cnt) cw_sort_q(hq, (uint32_t *)(void *)s->b, nh, NULL); /* insert, merge */
    else cw_radix_q(hq, (uint32_t *)(void *)s->b, nh, bits, cnt);
    for (j = 0; j < nh; j++) s->b[j] = cum = cum + CW_WQ(hq[j]);
    if (nh < n) { /* the tail's sum, as the sorted chain would add it */
        float hu, fin, acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        uint32_t cb, hb, tie = 0;
        memcpy(&cb, &cum, sizeof cb);
        cb &= 0x7F800000u;
        memcpy(&r, &cb, sizeof r); /* R = 2^e <= cum < 2R */
        hu = r * 0x1p-24f;         /* half of cum's ulp: a tie is |w - y| = hu */
        memcpy(&hb, &hu, sizeof hb);
        if (r < rlo) { /* the guess was too high: list the tail again */
            CW_TOP_P_TRACE(4);
            qz = cw_q_below(hu, qb);
            bq = (uint32_t *)(void *)s->b + nh; /* the sums [nh], then the tail's q (V - nh */
            for (nb = 0, i = 0; i < V; i++)      /* at most: no write past them, into q) */
                if (qa[i] - qb < qz - qb) bq[nb++] = qa[i];
        }
        for (k = 0; k < nb; k += 8)
            for (g = 0; g < 8; g++) {
                uint32_t qi = k + g < nb ? bq[k + g] : 131071u, wb;
                float w = CW_WQ(qi), y = (r + w) - r;
                acc[g] += y;
                w = w - y;
                memcpy(&wb, &w, sizeof wb);
                tie |= (uint32_t)((wb & 0x7FFFFFFFu) == hb);
            }
        fin = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        fin = cum + fin;
        CW_TOP_P_TRACE(7);
        if (tie || !(fin < r + r)) {
            CW_TOP_P_TRACE(tie ? 1 : 2);
            return -2;
        }
        cum = fin;
    }
    j = cw_first_reaching(s->b, nh, target_p * cum, 0); /* the first c_j >= target */
    if (j >= nh) {
        if (nh < n) { CW_TOP_P_TRACE(3); return -2; } /* the cut in the tail */
        j = nh - 1;
    }
    qj = hq[j];
    multi = (j > 0 && hq[j - 1] == qj) || (j + 1 < nh && hq[j + 1] == qj);
    CW_TOP_P_TRACE(6);
    if (multi) { /* the values of index qj (all in the head), then the (j - lo)-th largest */
        CW_TOP_P_TRACE(5);
        for (lo = j; lo > 0 && hq[lo - 1] == qj; lo--) {}
        for (g = 0, k = 0; k < nh; k++)
            if (qa[hid[k]] == qj) s->a[g++] = z[hid[k]];
        thr = cw_kth_largest(s->a, g, j - lo + 1, s->b);
        for (i = 0; i < V; i++) /* no weight: removed unless NaN (numpy's z < thr) */
            if ((qa[i] > qj && z[i] == z[i]) || (qa[i] == qj && z[i] < thr)) z[i] = -INFINITY;
    } else {
        for (i = 0; i < V; i++) /* a NaN z stays, as numpy's z < thr */
            z[i] = ((qa[i] > qj) & (z[i] == z[i])) ? -INFINITY : z[i];
        thr = -INFINITY; /* every id of q = qj stays */
    }
    for (n = 0, k = 0; k < nh; k++) { /* the kept ids (all in the head), in id order; qa */
        uint32_t id = hid[k];          /* is read at hid[k] >= k >= n only: written below n */
        q = qa[id];
        hid[n] = id;
        qa[n] = q;
        n += q < qj || (q == qj && z[id] >= thr);
    }
    return n;
}
#endif

CW_SFN int cw_top_p(float target_p, float *z, int V, cw_scratch *s) {
#ifndef CW_SAMPLER_SMALL_CODE
    int n = cw_top_p_head(target_p, z, V, s);
    if (n != -2) return n;
#endif
    return cw_top_p_sorted(target_p, z, V, s);
}

/* 6. min-p: every z below max + float32(log p) becomes -inf */
CW_SFN void cw_min_p(float log_p, float *z, int V) {
    float m = cw_max(z, V), thr;
    int i;
    thr = m + log_p;
    for (i = 0; i < V; i++)
        if (z[i] < thr) z[i] = -INFINITY;
}

#ifndef CW_SAMPLER_NO_DOUBLE
/* typical's float64 terms of id i, made where they are used (no array of them):
 * what 0: exp(x_i), x_i = z_i - max z; 1: p_i lp_i (0 for a non-finite lp_i, and NaN: nansum);
 * 2: p_i; with lp_i = x_i - lse, p_i = exp(lp_i), as numpy computes them */
CW_SFN_OUTLINED double cw_typ_term(const float *z, long i, double mx, double lse, int what) {
    double x = (double)z[i] - mx, lp, p, v;
    if (what == 0) return exp(x);
    lp = x - lse;
    p = exp(lp);
    if (what == 2) return p;
    v = p * (isfinite(lp) ? lp : 0.0);
    return v != v ? 0.0 : v;
}

/* numpy's pairwise sum of float64 terms (numpy/_core/src/umath/loops_utils.h: blocks of 128
 * with eight accumulators, halves at multiples of 8 above that), over terms i0..i0+n-1 */
CW_SFN double cw_pairwise_sum(const float *z, long i0, long n, double mx, double lse,
                              int what) {
    if (n < 8) {
        double r = -0.0;
        long i;
        for (i = 0; i < n; i++) r += cw_typ_term(z, i0 + i, mx, lse, what);
        return r;
    } else if (n <= 128) {
        double r[8], res;
        long i;
        int k;
        for (k = 0; k < 8; k++) r[k] = cw_typ_term(z, i0 + k, mx, lse, what);
        for (i = 8; i < n - (n % 8); i += 8)
            for (k = 0; k < 8; k++) r[k] += cw_typ_term(z, i0 + i + k, mx, lse, what);
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += cw_typ_term(z, i0 + i, mx, lse, what);
        return res;
    } else {
        long n2 = n / 2;
        n2 -= n2 % 8;
        return cw_pairwise_sum(z, i0, n2, mx, lse, what) +
               cw_pairwise_sum(z, i0 + n2, n - n2, mx, lse, what);
    }
}

/* ids ord [n] sorted by key[id] ascending, ties by id (a stable bottom-up merge sort; tmp [n]) */
CW_SFN void cw_sort_ids(uint32_t *ord, uint32_t *tmp, const double *key, int n) {
    int width, i;
    uint32_t *src = ord, *dst = tmp;
    for (i = 0; i < n; i++) ord[i] = (uint32_t)i;
    for (width = 1; width < n; width *= 2) {
        for (i = 0; i < n; i += 2 * width) {
            int l = i, mid = i + width < n ? i + width : n;
            int r = i + 2 * width < n ? i + 2 * width : n;
            int p = l, q = mid, o = l;
            while (p < mid && q < r) dst[o++] = key[src[q]] < key[src[p]] ? src[q++] : src[p++];
            while (p < mid) dst[o++] = src[p++];
            while (q < r) dst[o++] = src[q++];
        }
        {
            uint32_t *x = src;
            src = dst;
            dst = x;
        }
    }
    if (src != ord) memcpy(ord, src, (size_t)n * sizeof *ord);
}

/* 7. typical-p (SAMPLING.md step 7), in float64 as processors.Typical does it; the terms are
 * recomputed where used (the same IEEE operations on the same values: the same numbers) */
CW_SFN void cw_typical(double target, float *z, int V, cw_scratch *s) {
    double mx = -INFINITY, lse, ent, cum = 0.0;
    int i, j;
    for (i = 0; i < V; i++)
        if ((double)z[i] > mx) mx = (double)z[i];
    lse = log(cw_pairwise_sum(z, 0, V, mx, 0.0, 0));
    ent = -cw_pairwise_sum(z, 0, V, mx, lse, 1);
    for (i = 0; i < V; i++) /* |-lp - H|: an -inf lp gives +inf, last */
        s->d[i] = fabs(-(((double)z[i] - mx) - lse) - ent);
    cw_sort_ids(s->q, s->t, s->d, V);
    for (j = 0; j < V; j++) {
        uint32_t id = s->q[j];
        double p = cw_typ_term(z, (long)id, mx, lse, 2);
        cum += p;
        if (j > 0 && cum - p >= target) z[id] = -INFINITY;
    }
}
#endif

/* ---- one pick --------------------------------------------------------------------------- */

/* One id from z [V] (changed in place) for row r: the chain, then the pick joins the window.
 * allowed: [V], 0 = the id may not be picked (its logit becomes -inf after the penalty), or
 * NULL. scratch: CW_SCRATCH_BYTES(V) bytes, 8-byte aligned (nothing is kept there between
 * calls). */
CW_SFN int cw_sample_row(const cw_sampling *c, cw_row *r, float *z, int V,
                         const unsigned char *allowed, void *scratch, int *out) {
    cw_scratch s;
    int i, j, id, n = -1; /* n: the ids with a weight, listed in s.q / s.t (-1: not yet) */
    float m, t, cum;
    if (!c || !r || !z || !out || V < 1 || !scratch) return CW_SAMPLER_EPARAM;
    s = cw_scratch_of(scratch, V);
    if (c->penalty_on) cw_penalize(c, r, z, V, s.mark);
    if (allowed)
        for (i = 0; i < V; i++)
            if (!allowed[i]) z[i] = -INFINITY;
    if (c->greedy) {
        id = cw_argmax(z, V);
        goto done;
    }
    if (c->temperature_on) {
        float inv_t = c->inv_t; /* a local: z cannot alias it (the loop vectorizes) */
        for (i = 0; i < V; i++) z[i] = z[i] * inv_t;
    }
    if (c->top_k) cw_top_k(c->top_k, z, V, s.a);
    if (c->top_p_on) n = cw_top_p(c->top_p_target, z, V, &s);
    if (c->min_p_on) cw_min_p(c->log_min_p, z, V);
#ifndef CW_SAMPLER_NO_DOUBLE
    if (c->typical_on) cw_typical(c->typical_target, z, V, &s);
#endif
    /* 8. categorical: one coin; the first i whose running sum exceeds u * total. The sums
     * run over the ids with a weight only, in id order (a zero adds nothing: the same sums),
     * so after a filter the chain is as long as the ids it kept; top-p leaves them listed. */
    t = cw_coin(r);
    if (n < 0 || c->min_p_on || c->typical_on) {
        int ok;
        uint32_t q;
        m = cw_max(z, V);
        for (n = 0, i = 0; i < V; i++) {
            CW_Q(m, z[i], q, ok);
            s.q[n] = q;
            s.t[n] = (uint32_t)i;
            n += ok;
        }
    }
    cum = 0.0f;
    for (j = 0; j < n; j++) s.b[j] = cum = cum + CW_WQ(s.q[j]);
    t = t * cum;
    j = cw_first_reaching(s.b, n, t, 1); /* the first c_j > u * total */
    /* j == n: the rounding fallback, as run.c keeps one: the last id with a weight, else the
     * argmax */
    id = j < n ? (int)s.t[j] : n > 0 ? (int)s.t[n - 1] : cw_argmax(z, V);
done:
    cw_row_accept(c, r, id);
    *out = id;
    return CW_SAMPLER_OK;
}

#endif /* CW_SAMPLER_H */
