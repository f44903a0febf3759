/* Cortex-M4 start-up for QEMU (mps2-an386) with semihosting: the vector table, FPU on (CPACR
 * bits 20-23, before the first FP instruction), .bss zeroed, argv from SYS_GET_CMDLINE split on
 * spaces, main's status returned through SYS_EXIT_EXTENDED. */
#include <stdint.h>
#include <stdio.h>

extern int main(int argc, char **argv);
extern void initialise_monitor_handles(void);
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

static char cw_cmdline[4096];
static char *cw_argv[256];

__attribute__((noinline)) static int cw_run(void) {
    struct { char *buf; int len; } block = {cw_cmdline, (int)sizeof cw_cmdline - 1};
    int argc = 0;
    char *p = cw_cmdline;
    initialise_monitor_handles();
    if (cw_semihost(0x15 /* SYS_GET_CMDLINE */, &block) != 0) block.len = 0;
    cw_cmdline[block.len] = '\0';
    while (*p && argc < 255) {
        while (*p == ' ') *p++ = '\0';
        if (!*p) break;
        cw_argv[argc++] = p;
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
        fflush(stdout);
        cw_exit(status);
    }
}
