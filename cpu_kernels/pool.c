/* A persistent pool of worker threads for row-parallel loops.
 *
 * Chunks of the range are claimed through an atomic counter, so a worker the OS does not schedule (a busy
 * shared machine) costs little: the others, the caller included, take its chunks. The caller waits only for
 * workers that actually entered the job (and so may hold a chunk), never for one that has not woken up yet:
 * entering is a compare-and-swap on one word holding (job sequence number, closed flag, workers inside), and the
 * caller closes the job once no worker is inside, after which a late worker can no longer enter. So the job (on
 * the caller's stack) is never touched after awq_parallel_for returns.
 *
 * Workers spin briefly after a job (the GEMVs of a decode step come microseconds apart), then sleep on a
 * condition variable. One job at a time. A forked child starts with no workers. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "pool.h"

#define MAX_WORKERS 255
#define SPIN 4000
#define CLOSED (1ULL << 31)
#define INSIDE 0x7FFFFFFFULL

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
    uint64_t seq;            /* atomic: sequence number of the latest job (workers wait for it to change) */
    uint64_t state;          /* atomic: seq << 32 | CLOSED | workers inside the job */
    int helpers;             /* at most this many workers may enter the current job */
    awq_range_fn fn;
    void *ctx;
    int64_t total, chunk;
    int64_t next;            /* atomic: first row not yet claimed */
} pool_t;

static pool_t P = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .call = PTHREAD_MUTEX_INITIALIZER,
                   .state = CLOSED};

static void run_chunks(void) {
    for (;;) {
        const int64_t r0 = __atomic_fetch_add(&P.next, P.chunk, __ATOMIC_RELAXED);
        if (r0 >= P.total) return;
        P.fn(P.ctx, r0, r0 + P.chunk < P.total ? r0 + P.chunk : P.total);
    }
}

/* enter job `seq` if it is still open and has room; returns 1 if entered */
static int enter(uint64_t seq) {
    uint64_t s = __atomic_load_n(&P.state, __ATOMIC_ACQUIRE);
    for (;;) {
        if ((s >> 32) != (seq & 0xFFFFFFFFULL) || (s & CLOSED)) return 0;
        if ((s & INSIDE) >= (uint64_t)__atomic_load_n(&P.helpers, __ATOMIC_RELAXED)) return 0;
        if (__atomic_compare_exchange_n(&P.state, &s, s + 1, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return 1;
    }
}

static void *worker(void *arg) {
    uint64_t seen = (uint64_t)(uintptr_t)arg;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = __atomic_load_n(&P.seq, __ATOMIC_ACQUIRE)) == seen && spins++ < SPIN) relax();
        if (g == seen) {
            pthread_mutex_lock(&P.mu);
            while ((g = __atomic_load_n(&P.seq, __ATOMIC_ACQUIRE)) == seen) pthread_cond_wait(&P.wake, &P.mu);
            pthread_mutex_unlock(&P.mu);
        }
        seen = g;
        if (enter(g)) {
            run_chunks();
            __atomic_fetch_sub(&P.state, 1, __ATOMIC_RELEASE);
        }
    }
    return 0;
}

static void child_after_fork(void) {
    pthread_mutex_init(&P.mu, 0);
    pthread_cond_init(&P.wake, 0);
    pthread_mutex_init(&P.call, 0);
    P.nworkers = 0;
    P.state = CLOSED;
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
        const int bad = pthread_create(&t, &attr, worker, (void *)(uintptr_t)P.seq);
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
    /* the previous job is closed with nobody inside: its fields are free */
    const uint64_t seq = P.seq + 1;
    P.fn = fn;
    P.ctx = ctx;
    P.total = total;
    P.chunk = (total + 8 * (int64_t)nthreads - 1) / (8 * (int64_t)nthreads); /* ~8 chunks per thread */
    P.next = 0;
    __atomic_store_n(&P.helpers, need, __ATOMIC_RELAXED);
    __atomic_store_n(&P.state, (seq & 0xFFFFFFFFULL) << 32, __ATOMIC_RELEASE);
    pthread_mutex_lock(&P.mu);
    __atomic_store_n(&P.seq, seq, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);
    run_chunks();
    /* every chunk is claimed; wait for the workers inside to finish theirs, then close the job */
    uint64_t s = __atomic_load_n(&P.state, __ATOMIC_ACQUIRE);
    for (int spins = 0;; spins++) {
        if ((s & INSIDE) == 0 &&
            __atomic_compare_exchange_n(&P.state, &s, s | CLOSED, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            break;
        if (spins < SPIN) relax();
        else sched_yield();
        s = __atomic_load_n(&P.state, __ATOMIC_ACQUIRE);
    }
    pthread_mutex_unlock(&P.call);
    return 0;
}
