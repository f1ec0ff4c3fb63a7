/* Core-to-core latency: two threads pinned to CPUs A and B hand one cache line back and forth; prints the mean round
 * trip in ns. On a VM the host decides where its virtual CPUs run: on the 2-core development machine (AMD EPYC,
 * 2026-11-27) a round trip took 55-130 ns at some times and 320-420 ns at others (the two CPUs on different dies),
 * and Miniproject_2's 2-thread convolutions were twice as slow in the second case until each thread kept to its own
 * part of the batch (Miniproject_2/others/winograd.py). Built and run by
 * benchmarks/_common.py (core_to_core_ns); by hand: cc -O2 -pthread c2c_latency.c -o c2c && ./c2c 0 1 100000 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Atomic int flag __attribute__((aligned(64)));
static long iters;

static int pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *answer(void *cpu) {
    pin(*(int *)cpu);                                       /* main checked that it can */
    for (long i = 0; i < iters; i++) {
        while (atomic_load_explicit(&flag, memory_order_acquire) != 1) {}
        atomic_store_explicit(&flag, 0, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s CPU_A CPU_B ROUND_TRIPS\n", argv[0]); return 2; }
    int a = atoi(argv[1]), b = atoi(argv[2]);
    iters = atol(argv[3]);
    if (pin(b)) { fprintf(stderr, "cannot run on CPU %d\n", b); return 1; }
    if (pin(a)) { fprintf(stderr, "cannot run on CPU %d\n", a); return 1; }
    pthread_t t;
    pthread_create(&t, NULL, answer, &b);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < iters; i++) {
        atomic_store_explicit(&flag, 1, memory_order_release);
        while (atomic_load_explicit(&flag, memory_order_acquire) != 0) {}
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_join(t, NULL);
    printf("%.1f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / iters);
    return 0;
}
