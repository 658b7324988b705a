/* A persistent pool of worker threads. Chunks of a range are claimed through an atomic counter, so a worker
 * the OS delays (a busy shared machine) costs little: the others, the caller included, take its chunks.
 * Workers spin briefly after a job (back-to-back GEMVs of a decode step come within microseconds), then sleep
 * on a condition variable. One job at a time; the caller returns only when every worker that took part has
 * left the job, so the job (on the caller's stack) is never touched afterwards. Reset in a forked child. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "pool.h"

#define MAX_WORKERS 255
#define SPIN 4000

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void relax(void) { _mm_pause(); }
#elif defined(__aarch64__)
static inline void relax(void) { __asm__ volatile("yield"); }
#else
static inline void relax(void) {}
#endif

typedef struct {
    pthread_mutex_t mu;      /* guards the sleep/wake of workers */
    pthread_cond_t wake;
    pthread_mutex_t call;    /* one job at a time */
    int nworkers;            /* threads started */
    uint64_t gen;            /* atomic: job sequence number << 16 | workers taking part (ids below it) */
    awq_range_fn fn;
    void *ctx;
    int64_t total, chunk;
    int64_t next;            /* atomic: first row not yet claimed */
    int acked;               /* atomic: of those, how many have left it */
} pool_t;

static pool_t P = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .call = PTHREAD_MUTEX_INITIALIZER};
static uint64_t start_gen[MAX_WORKERS];

static void run_chunks(void) {
    for (;;) {
        const int64_t r0 = __atomic_fetch_add(&P.next, P.chunk, __ATOMIC_RELAXED);
        if (r0 >= P.total) return;
        P.fn(P.ctx, r0, r0 + P.chunk < P.total ? r0 + P.chunk : P.total);
    }
}

static void *worker(void *arg) {
    const int id = (int)(intptr_t)arg;
    uint64_t seen = start_gen[id];
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = __atomic_load_n(&P.gen, __ATOMIC_ACQUIRE)) == seen && spins++ < SPIN) relax();
        if (g == seen) {
            pthread_mutex_lock(&P.mu);
            while ((g = __atomic_load_n(&P.gen, __ATOMIC_ACQUIRE)) == seen) pthread_cond_wait(&P.wake, &P.mu);
            pthread_mutex_unlock(&P.mu);
        }
        seen = g;
        /* the worker count comes in the same atomic word as the sequence number: a worker that is not part
         * of this job never reads its fields (the caller may be writing the next job's) */
        if (id < (int)(g & 0xFFFF)) {
            run_chunks();
            __atomic_fetch_add(&P.acked, 1, __ATOMIC_RELEASE);
        }
    }
    return 0;
}

static void child_after_fork(void) {
    /* the workers do not exist in a forked child: start over */
    pthread_mutex_init(&P.mu, 0);
    pthread_cond_init(&P.wake, 0);
    pthread_mutex_init(&P.call, 0);
    P.nworkers = 0;
}

int awq_parallel_for(awq_range_fn fn, void *ctx, int64_t total, int nthreads) {
    if (total <= 0) return 0;
    if (nthreads > total) nthreads = (int)total;
    if (nthreads > MAX_WORKERS + 1) nthreads = MAX_WORKERS + 1;
    if (nthreads <= 1) {
        fn(ctx, 0, total);
        return 0;
    }
    pthread_mutex_lock(&P.call);
    int need = nthreads - 1;
    while (P.nworkers < need) {
        static int atfork_done = 0;
        if (!atfork_done) { pthread_atfork(0, 0, child_after_fork); atfork_done = 1; }
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        start_gen[P.nworkers] = P.gen;
        const int bad = pthread_create(&t, &attr, worker, (void *)(intptr_t)P.nworkers);
        pthread_attr_destroy(&attr);
        if (bad) break;
        P.nworkers++;
    }
    if (need > P.nworkers) need = P.nworkers;
    if (need == 0) {
        pthread_mutex_unlock(&P.call);
        fn(ctx, 0, total);
        return 0;
    }
    P.fn = fn;
    P.ctx = ctx;
    P.total = total;
    P.chunk = (total + 8 * (int64_t)nthreads - 1) / (8 * (int64_t)nthreads); /* ~8 chunks per thread */
    P.next = 0;
    P.acked = 0;
    pthread_mutex_lock(&P.mu);
    __atomic_store_n(&P.gen, (((P.gen >> 16) + 1) << 16) | (uint64_t)need, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);
    run_chunks();
    for (int spins = 0; __atomic_load_n(&P.acked, __ATOMIC_ACQUIRE) < need; spins++) {
        if (spins < SPIN) relax();
        else sched_yield();
    }
    pthread_mutex_unlock(&P.call);
    return 0;
}
