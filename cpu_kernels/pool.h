/* Persistent worker threads for the row-parallel loops (see pool.c). */
#ifndef AWQ_POOL_H
#define AWQ_POOL_H
#include <stdint.h>

typedef void (*awq_range_fn)(void *ctx, int64_t r0, int64_t r1);

/* fn(ctx, r0, r1) over [0, total) in chunks, on the calling thread plus up to nthreads - 1 pool workers.
 * Returns 0 (the caller does all the work itself if threads cannot be started). */
int awq_parallel_for(awq_range_fn fn, void *ctx, int64_t total, int nthreads);
#endif
