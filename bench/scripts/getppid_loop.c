/* getppid_loop.c: N getppid() system calls, timed from inside.
 *
 * The live-overhead workload (bench/live.py builds it with gcc into a temp
 * dir). The loop is timed with CLOCK_MONOTONIC around the calls only, so
 * process start-up and a tracer's set-up and tear-down are not counted.
 * syscall(SYS_getppid) makes sure every iteration enters the kernel.
 * Output, one line: "loop: N calls, NS ns/call".
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("loop: %ld calls, %.2f ns/call\n", n, n > 0 ? ns / n : 0.0);
    return 0;
}
