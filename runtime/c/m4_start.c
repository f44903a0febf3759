/* Cortex-M4 start-up for QEMU (mps2-an386) with semihosting: the vector table, FPU on (CPACR
 * bits 20-23, before the first FP instruction), .bss zeroed, argv from SYS_GET_CMDLINE split on
 * spaces, main's status returned through SYS_EXIT_EXTENDED; and runtime.c's output on M4
 * (cw_m4_write: SYS_WRITE to the console's ":tt" handles, as newlib's rdimon opens them), so
 * cw_generate-m4.elf links no stdio. check-m4.elf opens newlib's own handles in check.c. */
#include <stdint.h>

extern int main(int argc, char **argv);
extern uint32_t __bss_start__, __bss_end__, __stack_top;
void cw_reset_handler(void);
void cw_fault_handler(void);

#ifdef CW_BENCH
/* The bench build (cw_bench-m4.elf): SysTick free-running on the processor clock (one tick
 * per 40 instructions under qemu -icount shift=0), wraps counted by its interrupt; the stack
 * painted below the reset handler's frame, for its high-water mark. */
#define CW_SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define CW_SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define CW_SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define CW_STACK_PAINT (256u * 1024u)
#define CW_PAINT 0xC5C5C5C5u
static volatile uint32_t cw_wraps;
void cw_systick_handler(void);
void cw_systick_handler(void) { cw_wraps++; }

unsigned long long cw_m4_ticks(void);
unsigned long long cw_m4_ticks(void) {
    uint32_t w, v;
    do {
        w = cw_wraps;
        v = CW_SYST_CVR;
    } while (w != cw_wraps);
    return ((unsigned long long)w << 24) + (0xFFFFFFu - v);
}

unsigned long cw_m4_stack_used(void);
unsigned long cw_m4_stack_used(void) {
    uint32_t *p = (uint32_t *)((uint32_t)&__stack_top - CW_STACK_PAINT);
    while (p < &__stack_top && *p == CW_PAINT) p++;
    return (unsigned long)((uint32_t)&__stack_top - (uint32_t)p);
}

static void cw_bench_start(void) {
    uint32_t *p = (uint32_t *)((uint32_t)&__stack_top - CW_STACK_PAINT);
    uint32_t *sp = (uint32_t *)__builtin_frame_address(0) - 64;
    while (p < sp) *p++ = CW_PAINT;
    CW_SYST_RVR = 0xFFFFFFu;
    CW_SYST_CVR = 0u;
    CW_SYST_CSR = 7u; /* enable, interrupt, processor clock */
}
#endif

__attribute__((section(".vectors"), used)) static void (*const cw_vectors[16])(void) = {
    (void (*)(void))&__stack_top, cw_reset_handler, cw_fault_handler, cw_fault_handler,
    cw_fault_handler, cw_fault_handler, cw_fault_handler, 0, 0, 0, 0, cw_fault_handler,
    cw_fault_handler, 0, cw_fault_handler,
#ifdef CW_BENCH
    cw_systick_handler};
#else
    cw_fault_handler};
#endif

static int cw_semihost(int op, void *arg) {
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void cw_exit(int status) {
    uint32_t block[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)status};
    cw_semihost(0x20 /* SYS_EXIT_EXTENDED */, block);
    for (;;) {}
}

void cw_fault_handler(void) { cw_exit(99); }

/* The command line: CW_MAX_PROMPT (the Makefile's -DCW_MAX_PROMPT, the prompt's limit in
 * runtime.c) plus CW_CMDLINE_OPTS bytes for the program's name and options (every option with
 * a long value fits); a longer line is refused. argv: the first CW_MAX_ARGS - 1 words, then the
 * rest of the line as one (its runs of spaces made single): main joins the prompt's words with
 * single spaces, so its text is the same as from separate words. */
#ifndef CW_MAX_PROMPT
#define CW_MAX_PROMPT 256
#endif
#ifndef CW_CMDLINE_OPTS
#define CW_CMDLINE_OPTS 160
#endif
#ifndef CW_MAX_ARGS
#define CW_MAX_ARGS 16
#endif
static char cw_cmdline[CW_MAX_PROMPT + CW_CMDLINE_OPTS];
static char *cw_argv[CW_MAX_ARGS + 1];

/* n bytes of s to stdout (fd 1) or stderr (fd 2) through SYS_WRITE (by length: a character
 * of the text may be U+0000); 0 when all of them were written. */
int cw_m4_write(int fd, const char *s, uint32_t n);
int cw_m4_write(int fd, const char *s, uint32_t n) {
    static int handle[2]; /* ":tt" opened for writing (mode 4) / appending (8), plus 1 */
    uint32_t block[3];
    int *h = &handle[fd == 2];
    if (!*h) {
        block[0] = (uint32_t)":tt";
        block[1] = fd == 2 ? 8u : 4u;
        block[2] = 3u;
        *h = cw_semihost(0x01 /* SYS_OPEN */, block) + 1;
        if (*h <= 0) return -1;
    }
    block[0] = (uint32_t)(*h - 1);
    block[1] = (uint32_t)s;
    block[2] = n;
    return cw_semihost(0x05 /* SYS_WRITE: returns the bytes not written */, block);
}

/* errno for libm (expm1f, under tanhf, sets it on overflow): one int here, where newlib's
 * __errno would link its 1 KB reentrancy struct (impure_data) into an image without stdio. */
int *__errno(void);
int *__errno(void) {
    static int cw_errno;
    return &cw_errno;
}

/* A seed for an unseeded run: SYS_TIME (seconds) ^ SYS_CLOCK (centiseconds). */
uint64_t cw_m4_time(void);
uint64_t cw_m4_time(void) {
    return (uint64_t)(uint32_t)cw_semihost(0x11, 0) ^ (uint64_t)(uint32_t)cw_semihost(0x10, 0);
}

__attribute__((noinline)) static int cw_run(void) {
    struct { char *buf; int len; } block = {cw_cmdline, (int)sizeof cw_cmdline - 1};
    int argc = 0;
    char *p = cw_cmdline;
    if (cw_semihost(0x15 /* SYS_GET_CMDLINE */, &block) != 0) {
        static const char msg[] = "cw_generate: the command line is too long\n";
        cw_m4_write(2, msg, sizeof msg - 1);
        return 2;
    }
    cw_cmdline[block.len] = '\0';
    while (*p) {
        while (*p == ' ') *p++ = '\0';
        if (!*p) break;
        cw_argv[argc++] = p;
        if (argc == CW_MAX_ARGS) { /* the rest as one word, single-spaced */
            char *q = p;
            for (; *p; p++)
                if (*p != ' ' || (p[1] && p[1] != ' ')) *q++ = *p;
            *q = '\0';
            break;
        }
        while (*p && *p != ' ') p++;
    }
    cw_argv[argc] = 0;
    return main(argc, cw_argv);
}

void cw_reset_handler(void) {
    uint32_t *b;
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: CP10, CP11 full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    for (b = &__bss_start__; b < &__bss_end__; b++) *b = 0;
#ifdef CW_BENCH
    cw_bench_start();
#endif
    {
        int status = cw_run();
        cw_exit(status);
    }
}
