/* demo.c: a small target for the probe examples (funclat.kp, usdt.kp,
 * malloc_sizes.kp, flamegraph.kp). tests/test_probe_examples.py builds it.
 *
 * Build it with frame pointers, so ustack() can walk its stack:
 *   gcc -O0 -fno-omit-frame-pointer -o /tmp/demo examples/demo.c
 *
 * /tmp/demo N [SPIN_MS] does, for i = 0 .. N-1:
 *   - work(i): a busy loop of (i % 4) * 20000 iterations (funclat.kp times it);
 *   - the USDT marker ktapjit_demo:tick with arguments (i, N) (usdt.kp);
 *   - malloc(40000) and free (malloc_sizes.kp: the 32768 - 65536 bucket);
 * then spins in spin() for SPIN_MS milliseconds (flamegraph.kp samples it).
 *
 * <sys/sdt.h> (systemtap-sdt-dev) is not needed: KT_SDT2 below writes the
 * .note.stapsdt section with inline asm, as sys/sdt.h's STAP_PROBE2 does.
 */
#include <stdlib.h>
#include <time.h>

#define KT_SDT_NOTE(prov, name, args)                                         \
    "990: nop\n"                                                              \
    ".pushsection .note.stapsdt,\"?\",\"note\"\n"                             \
    ".balign 4\n"                                                             \
    ".4byte 992f-991f, 994f-993f, 3\n"                                        \
    "991: .asciz \"stapsdt\"\n"                                               \
    "992: .balign 4\n"                                                        \
    "993: .8byte 990b\n"                                                      \
    ".8byte _.stapsdt.base\n"                                                 \
    ".8byte 0\n"                                                              \
    ".asciz \"" #prov "\"\n"                                                  \
    ".asciz \"" #name "\"\n"                                                  \
    ".asciz \"" args "\"\n"                                                   \
    "994: .balign 4\n"                                                        \
    ".popsection\n"                                                           \
    ".ifndef _.stapsdt.base\n"                                                \
    ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n"  \
    ".weak _.stapsdt.base\n"                                                  \
    ".hidden _.stapsdt.base\n"                                                \
    "_.stapsdt.base: .space 1\n"                                              \
    ".size _.stapsdt.base, 1\n"                                               \
    ".popsection\n"                                                           \
    ".endif\n"
/* Two signed 8-byte arguments: "-8@OPERAND" would be unsigned. */
#define KT_SDT2(prov, name, x1, x2)                                           \
    __asm__ __volatile__(KT_SDT_NOTE(prov, name, "8@%[_A1] 8@%[_A2]")         \
                         :: [_A1] "nor" ((long)(x1)), [_A2] "nor" ((long)(x2)))

static volatile unsigned long sink;

__attribute__((noinline)) void work(long i) {
    for (long k = 0; k < (i % 4) * 20000; k++) sink += k;
}

__attribute__((noinline)) void spin(void) {
    for (int k = 0; k < 100000; k++) sink += k;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100;
    long spin_ms = argc > 2 ? atol(argv[2]) : 0;
    for (long i = 0; i < n; i++) {
        work(i);
        KT_SDT2(ktapjit_demo, tick, i, n);
        char *p = malloc(40000);
        p[0] = (char)i;
        sink += p[0];
        free(p);
    }
    double end = now() + spin_ms / 1000.0;
    while (now() < end) spin();
    return 0;
}
