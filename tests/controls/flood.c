/* Load generator, not an attack: N executable-memory events as fast as asked. It flips one
 * anonymous page between R-X and R-- with mprotect: the sensor records both directions (one
 * grants PROT_EXEC, the other takes it away), so EVENTS calls make EVENTS records. Used by the
 * flood test and the benchmark to count loss.
 *
 * usage: flood EVENTS SECONDS [noexec]   (spread EVENTS calls evenly over SECONDS; 0: flat out)
 * noexec: flip R-- / RW- instead, which the sensor filters in the kernel (its per-syscall cost)
 * prints `READY {"pid":..,"events":N,"seconds":S}` after the flood, then waits for stdin EOF. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long events = argc > 1 ? atol(argv[1]) : 50000;
    double seconds = argc > 2 ? atof(argv[2]) : 0.5;
    int noexec = argc > 3 && argv[3][0] == 'n';
    int on = noexec ? (PROT_READ | PROT_WRITE) : (PROT_READ | PROT_EXEC);
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 1;
    double t0 = now();
    for (long i = 0; i < events; i++) {
        mprotect(p, 4096, (i & 1) ? PROT_READ : on);
        if (seconds > 0 && (i & 255) == 0) {
            double due = t0 + seconds * (double)i / (double)events;
            while (now() < due) {
            }
        }
    }
    double took = now() - t0;
    printf("READY {\"pid\": %d, \"mode\": \"flood\", \"events\": %ld, \"seconds\": %.6f, "
           "\"regions\": [{\"base\": %lu, \"size\": 4096, \"prot\": \"r--\"}]}\n",
           (int)getpid(), events, took, (unsigned long)p);
    fflush(stdout);
    char buf[256];
    while (read(0, buf, sizeof buf) > 0) {
    }
    return 0;
}
